package specdec

/*
#include "specdec.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// FinishReason tells why a generation ended.
type FinishReason uint32

const (
	// FinishNone: not finished yet (or ended by an error).
	FinishNone FinishReason = C.SPECDEC_FINISH_REASON_NONE
	// FinishEOS: an end-of-sequence token was generated (it is part of the tokens).
	FinishEOS FinishReason = C.SPECDEC_FINISH_REASON_EOS
	// FinishMaxTokens: max_new_tokens were generated.
	FinishMaxTokens FinishReason = C.SPECDEC_FINISH_REASON_MAX_TOKENS
	// FinishStopSequence: a stop sequence was generated (it is part of the tokens).
	FinishStopSequence FinishReason = C.SPECDEC_FINISH_REASON_STOP_SEQUENCE
	// FinishStopped: the callback asked to stop.
	FinishStopped FinishReason = C.SPECDEC_FINISH_REASON_STOPPED
	// FinishLength: the sequence fills the context (only with WithFinishAtContextLimit;
	// otherwise the next iteration fails with ErrContextLimit).
	FinishLength FinishReason = C.SPECDEC_FINISH_REASON_LENGTH
	// FinishCancelled: the sequence was cancelled with Engine.Cancel (batch engine only).
	FinishCancelled FinishReason = C.SPECDEC_FINISH_REASON_CANCELLED
)

func (r FinishReason) String() string {
	switch r {
	case FinishNone:
		return "none"
	case FinishEOS:
		return "eos"
	case FinishMaxTokens:
		return "max_tokens"
	case FinishStopSequence:
		return "stop_sequence"
	case FinishStopped:
		return "stopped"
	case FinishLength:
		return "length"
	case FinishCancelled:
		return "cancelled"
	}
	return fmt.Sprintf("FinishReason(%d)", uint32(r))
}

// Stats are a generator's counters and timings, cumulative over its prompts.
type Stats struct {
	TargetCalls uint64 // ONNX Runtime calls of the target
	DraftCalls  uint64 // ONNX Runtime calls of the draft
	Rounds      uint64 // iterations (one verification each)
	Drafted     uint64 // tokens proposed by the draft
	Accepted    uint64 // proposals the target accepted
	NewTokens   uint64 // tokens generated
	// AcceptanceRate is Accepted / Drafted (0 when nothing was drafted).
	AcceptanceRate float64
	// TokensPerTargetCall is NewTokens / Rounds.
	TokensPerTargetCall float64
	DraftTime           time.Duration // in ONNX Runtime calls of the draft
	TargetTime          time.Duration // in ONNX Runtime calls of the target
	OtherTime           time.Duration // everything else
	TotalTime           time.Duration
	// Rejected counts the rounds that ended in a rejection; the others accepted every proposal.
	Rejected uint64
	// Alpha is the paper's acceptance rate per verified position: Accepted / (Accepted + Rejected)
	// (proposals after a rejection are never judged and do not count).
	Alpha float64
	// TimeToFirstToken of the latest generation: from the start of its first iteration (prefill
	// included) to the end of the iteration that produced its first token; 0 until then.
	TimeToFirstToken time.Duration
}

// Generator holds one sequence being generated. It is not meant for concurrent use (one goroutine
// at a time; its calls are serialised by a mutex so misuse cannot corrupt memory), except Cancel,
// which any goroutine may call at any time. Close it when done.
type Generator struct {
	mu sync.Mutex // serialises every call that uses the generator
	// handleMu guards ptr against being freed while Cancel (which does not take mu) uses it.
	handleMu sync.RWMutex
	ptr      *C.specdec_generator
	// stopped: a Generate callback asked to stop. The C ABI has no call to mark a generator
	// stopped outside specdec_generator_generate, so the binding keeps that state itself, with
	// the same semantics (Step gives nothing more until Append).
	stopped bool
	// flags is shared with the callbacks running on the generator's behalf (see genFlags).
	flags *genFlags
	// cb is this generator's instance of a callback drafter (nil for other drafters); its handle
	// is the native drafter's user_data, deleted after the native generator is freed.
	cb *callbackBinding
}

// NewGenerator creates a generator over target, speculating with draft (nil: target-only
// decoding). Models may be shared by any number of generators on any goroutines. Errors:
// ErrVocabMismatch (draft and target vocabularies differ), ErrTokenOutOfRange (an EOS id outside
// the vocabulary), ErrInvalidArgument (a bad option), ErrNullParameter (nil or closed target).
// For the other draft sources (n-gram lookup, counts, a callback) see NewGeneratorWithDrafter.
func NewGenerator(target, draft *Model, opts ...GenerateOption) (*Generator, error) {
	var dptr *C.specdec_model
	if draft != nil {
		var err error
		if dptr, err = draft.acquire("draft model"); err != nil {
			return nil, err
		}
		defer draft.mu.RUnlock()
	}
	return newGenerator(target, opts, func(t *C.specdec_model, cfg *C.specdec_gen_config, out **C.specdec_generator, e **C.specdec_error) C.specdec_status {
		return C.specdec_generator_new(t, dptr, cfg, out, e)
	}, nil)
}

// newGenerator builds the config from opts and the native generator with create. cb is the
// callback drafter binding the generator will own (nil for none).
func newGenerator(target *Model, opts []GenerateOption, create func(*C.specdec_model, *C.specdec_gen_config, **C.specdec_generator, **C.specdec_error) C.specdec_status, cb *callbackBinding) (*Generator, error) {
	if target == nil {
		return nil, &Error{Code: StatusNullParameter, Message: "target model is nil"}
	}
	cfg := genConfig{ptr: C.specdec_gen_config_new()}
	defer C.specdec_gen_config_free(cfg.ptr)
	for _, opt := range opts {
		if opt != nil {
			opt(&cfg)
		}
	}
	if cfg.err != nil {
		return nil, cfg.err
	}
	if (cfg.draft != nil || cfg.drafter != nil) && !cfg.sourceOK {
		return nil, &Error{Code: StatusInvalidArgument, Message: "WithDraftModel and WithDrafter are options of specdec.Generate; pass the draft to NewGenerator or NewGeneratorWithDrafter"}
	}

	tptr, err := target.acquire("target model")
	if err != nil {
		return nil, err
	}
	defer target.mu.RUnlock()

	var out *C.specdec_generator
	var cerr *C.specdec_error
	st := create(tptr, cfg.ptr, &out, &cerr)
	if err := takeError(st, cerr); err != nil {
		return nil, err
	}
	g := &Generator{ptr: out, flags: &genFlags{}, cb: cb}
	if cb != nil {
		g.flags = cb.flags
	}
	runtime.SetFinalizer(g, (*Generator).finalize)
	if cfg.tokenizer != nil {
		if err := g.SetTokenizer(cfg.tokenizer); err != nil {
			g.Close()
			return nil, err
		}
	}
	return g, nil
}

func (g *Generator) finalize() {
	C.specdec_generator_free(g.ptr)
	g.ptr = nil
	g.releaseCallback()
}

// releaseCallback deletes the callback drafter's handle, once the native generator that could
// call it is gone.
func (g *Generator) releaseCallback() {
	if g.cb != nil {
		g.cb.handle.Delete()
		g.cb = nil
	}
}

// Close frees the generator. It is idempotent. It waits for a call in progress on another
// goroutine (cancel it first to make that quick). From inside one of the generator's own callbacks
// (a DraftCallback, or GenerateAll's onTokens) it returns ErrBusy and does nothing.
func (g *Generator) Close() error {
	if g == nil {
		return nil
	}
	if g.inCallback() {
		return busyError()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.handleMu.Lock()
	defer g.handleMu.Unlock()
	if g.ptr != nil {
		C.specdec_generator_free(g.ptr)
		g.ptr = nil
		g.releaseCallback()
		runtime.SetFinalizer(g, nil)
	}
	return nil
}

// inCallback reports whether one of the generator's callbacks is running (see genFlags).
func (g *Generator) inCallback() bool {
	return g.flags != nil && g.flags.inCallback.Load() > 0
}

func busyError() error {
	return &Error{Code: StatusBusy, Message: "the generator is running one of its callbacks (only Cancel may be called from there)"}
}

// lock locks the generator and checks that it is open; the caller unlocks g.mu.
func (g *Generator) lock() error {
	if g == nil {
		return &Error{Code: StatusNullParameter, Message: "generator is nil"}
	}
	// From inside a callback of a native call on this generator, the goroutine holding g.mu is
	// this one: waiting would deadlock. (The native library answers BUSY there too.)
	if g.inCallback() {
		return busyError()
	}
	g.mu.Lock()
	if g.ptr == nil {
		g.mu.Unlock()
		return closedError("generator")
	}
	return nil
}

// SetTokenizer sets the tokenizer used to match stop texts (the generator keeps it alive).
func (g *Generator) SetTokenizer(tok *Tokenizer) error {
	if err := g.lock(); err != nil {
		return err
	}
	defer g.mu.Unlock()
	tptr, err := tok.acquire()
	if err != nil {
		return err
	}
	defer tok.mu.RUnlock()
	var cerr *C.specdec_error
	return takeError(C.specdec_generator_set_tokenizer(g.ptr, tptr, &cerr), cerr)
}

// Append appends prompt tokens (a first prompt or a follow-up turn) and starts a new generation of
// up to max_new_tokens. Appending no tokens continues the sequence with a fresh allowance. All or
// nothing: on error the generator is unchanged. It also clears a cancellation request that no
// iteration has consumed yet. Errors: ErrTokenOutOfRange, ErrContextLimit.
func (g *Generator) Append(ids []uint32) error {
	if err := g.lock(); err != nil {
		return err
	}
	defer g.mu.Unlock()
	var cerr *C.specdec_error
	st := C.specdec_generator_append_tokens(g.ptr, idsPtr(ids), C.size_t(len(ids)), &cerr)
	runtime.KeepAlive(ids)
	if err := takeError(st, cerr); err != nil {
		return err
	}
	g.stopped = false
	return nil
}

// Step runs one iteration (draft, verify in one target call, accept or resample) and returns a copy
// of the tokens it added: none once the generation has finished. Errors: ErrInvalidArgument (no
// prompt yet), ErrCancelled (Cancel was called; the generator stays usable), ErrContextLimit,
// ErrInference, ErrCallback (a DraftCallback failed; the error wraps the callback's own).
func (g *Generator) Step() ([]uint32, error) {
	if err := g.lock(); err != nil {
		return nil, err
	}
	defer g.mu.Unlock()
	return g.stepLocked()
}

func (g *Generator) stepLocked() ([]uint32, error) {
	if g.stopped {
		return []uint32{}, nil
	}
	var p *C.uint32_t
	var n C.size_t
	var cerr *C.specdec_error
	st := C.specdec_generator_step(g.ptr, &p, &n, &cerr)
	if err := g.callError(st, cerr, callbackOutcome{}); err != nil {
		return nil, err
	}
	// The array belongs to the generator and is valid until its next non-const call: copy it now.
	return copyIDs(p, n), nil
}

// callError turns the result of a native call that may have run callbacks into an error: the
// library's, wrapping the DraftCallback's own error. A panic of a callback (the drafter's, or the
// token callback's in tok) is re-raised here, on the calling goroutine; the caller holds g.mu and
// must release it with a defer.
func (g *Generator) callError(st C.specdec_status, cerr *C.specdec_error, tok callbackOutcome) error {
	var drafted callbackOutcome
	if g.cb != nil {
		drafted = g.cb.outcome.take()
	}
	err := takeError(st, cerr)
	if drafted.panicked {
		panic(drafted.panicVal)
	}
	if tok.panicked {
		panic(tok.panicVal)
	}
	if err != nil && errors.Is(err, ErrCallback) {
		err = callbackError(err, drafted.err)
	}
	return err
}

// Tokens returns a copy of the whole sequence: prompts and generated tokens (nil after Close).
func (g *Generator) Tokens() []uint32 {
	if g.lock() != nil {
		return nil
	}
	defer g.mu.Unlock()
	var p *C.uint32_t
	var n C.size_t
	var cerr *C.specdec_error
	if takeError(C.specdec_generator_tokens(g.ptr, &p, &n, &cerr), cerr) != nil {
		return nil
	}
	return copyIDs(p, n)
}

// FinishReason tells why the current generation ended, or FinishNone if it has not.
func (g *Generator) FinishReason() FinishReason {
	if g.lock() != nil {
		return FinishNone
	}
	defer g.mu.Unlock()
	return g.finishReasonLocked()
}

func (g *Generator) finishReasonLocked() FinishReason {
	r := FinishReason(C.specdec_generator_finish_reason(g.ptr))
	if r == FinishNone && g.stopped {
		return FinishStopped
	}
	return r
}

// Stats returns the generator's counters and timings (zero after Close).
func (g *Generator) Stats() Stats {
	if g.lock() != nil {
		return Stats{}
	}
	defer g.mu.Unlock()
	var s C.specdec_stats
	s.struct_size = C.sizeof_specdec_stats
	var cerr *C.specdec_error
	if takeError(C.specdec_generator_stats(g.ptr, &s, &cerr), cerr) != nil {
		return Stats{}
	}
	return statsFromC(&s)
}

// statsFromC converts a filled specdec_stats.
func statsFromC(s *C.specdec_stats) Stats {
	secs := func(v C.double) time.Duration { return time.Duration(float64(v) * float64(time.Second)) }
	return Stats{
		TargetCalls:         uint64(s.target_calls),
		DraftCalls:          uint64(s.draft_calls),
		Rounds:              uint64(s.rounds),
		Drafted:             uint64(s.drafted),
		Accepted:            uint64(s.accepted),
		NewTokens:           uint64(s.new_tokens),
		AcceptanceRate:      float64(s.acceptance_rate),
		TokensPerTargetCall: float64(s.tokens_per_target_call),
		DraftTime:           secs(s.draft_seconds),
		TargetTime:          secs(s.target_seconds),
		OtherTime:           secs(s.other_seconds),
		TotalTime:           secs(s.total_seconds),
		Rejected:            uint64(s.rejected),
		Alpha:               float64(s.alpha),
		TimeToFirstToken:    secs(s.time_to_first_token_seconds),
	}
}

// Cancel asks a running or future generation to stop: the next iteration (at most one iteration
// away) returns ErrCancelled, and the request is then consumed; Append clears a request no
// iteration has consumed. Safe to call from any goroutine at any time, also after Close (no-op).
func (g *Generator) Cancel() {
	if g == nil {
		return
	}
	g.handleMu.RLock()
	defer g.handleMu.RUnlock()
	if g.ptr != nil {
		C.specdec_generator_cancel(g.ptr)
	}
}

// Generate runs iterations until EOS, a stop sequence, max_new_tokens, onTokens returning false
// (FinishStopped), an error, or ctx being done. onTokens (may be nil) receives a copy of each
// iteration's tokens; it runs on the calling goroutine, between iterations, and may call the
// generator's methods (Tokens, Stats, ...). Each iteration is one Step; GenerateAll runs the whole
// generation in one native call instead.
//
// When ctx is done, the iteration in progress is interrupted at its end (the library checks the
// cancellation between iterations) and Generate returns an error matching both ErrCancelled and
// ctx.Err() (context.Canceled or context.DeadlineExceeded); the tokens produced so far stay in the
// generator, which remains usable: Generate again continues the same generation.
func (g *Generator) Generate(ctx context.Context, onTokens func(tokens []uint32) bool) (FinishReason, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if err := g.checkCtx(ctx); err != nil {
		return FinishNone, err
	}
	w := g.watch(ctx)
	defer w.finish()

	for {
		if err := ctx.Err(); err != nil {
			return FinishNone, cancelledError(err)
		}
		toks, reason, err := g.stepOnce()
		if err != nil {
			return FinishNone, w.wrap(ctx, err)
		}
		if len(toks) > 0 && onTokens != nil && !onTokens(toks) {
			if err := g.lock(); err != nil {
				return FinishNone, err
			}
			reason = g.finishReasonLocked()
			if reason == FinishNone {
				g.stopped = true
				reason = FinishStopped
			}
			g.mu.Unlock()
		}
		if reason != FinishNone {
			return reason, nil
		}
		if len(toks) == 0 {
			return FinishNone, &Error{Code: StatusPanic, Message: "an iteration produced no token and did not finish"}
		}
	}
}

// stepOnce runs one Step and reads the finish reason, under the lock.
func (g *Generator) stepOnce() ([]uint32, FinishReason, error) {
	if err := g.lock(); err != nil {
		return nil, FinishNone, err
	}
	defer g.mu.Unlock()
	toks, err := g.stepLocked()
	if err != nil {
		return nil, FinishNone, err
	}
	return toks, g.finishReasonLocked(), nil
}

// GenerateAll is Generate in one native call (specdec_generator_generate): the library loops over
// the iterations itself, so without onTokens the whole generation is a single cgo call, and with
// it one call back into Go per iteration. It ends, and honours ctx, as Generate does, and
// returns the same tokens.
//
// onTokens (may be nil) receives a copy of each iteration's tokens, on the calling goroutine but
// from inside the native call, which holds the generator: there the generator's methods return
// ErrBusy, except Cancel. A panic in onTokens stops the generation and is re-raised, with its
// value, once the native call has returned.
func (g *Generator) GenerateAll(ctx context.Context, onTokens func(tokens []uint32) bool) (FinishReason, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if err := g.checkCtx(ctx); err != nil {
		return FinishNone, err
	}
	w := g.watch(ctx)
	defer w.finish()

	reason, err := func() (FinishReason, error) {
		if err := g.lock(); err != nil {
			return FinishNone, err
		}
		defer g.mu.Unlock()
		if g.stopped {
			return FinishStopped, nil
		}
		reason, st, cerr, tok := g.generateNative(onTokens)
		if err := g.callError(st, cerr, tok); err != nil {
			return FinishNone, err
		}
		return reason, nil
	}()
	if err != nil {
		return FinishNone, w.wrap(ctx, err)
	}
	return reason, nil
}

func cancelledError(ctxErr error) error {
	return fmt.Errorf("%w: %w", &Error{Code: StatusCancelled, Message: "generation cancelled"}, ctxErr)
}

// checkCtx refuses a context that is already done (after checking that the generator is usable).
func (g *Generator) checkCtx(ctx context.Context) error {
	err := ctx.Err()
	if err == nil {
		return nil
	}
	if err := g.lock(); err != nil {
		return err
	}
	g.mu.Unlock()
	return cancelledError(err)
}

// ctxWatcher turns ctx being done into specdec_generator_cancel while a generation runs.
type ctxWatcher struct {
	g        *Generator
	issued   atomic.Bool // the watcher called specdec_generator_cancel
	consumed bool        // an iteration returned CANCELLED after that
	stop     chan struct{}
	done     chan struct{}
}

func (g *Generator) watch(ctx context.Context) *ctxWatcher {
	w := &ctxWatcher{g: g}
	ctxDone := ctx.Done()
	if ctxDone == nil {
		return w
	}
	w.stop = make(chan struct{})
	w.done = make(chan struct{})
	go func() {
		defer close(w.done)
		select {
		case <-ctxDone:
			g.Cancel()
			w.issued.Store(true)
		case <-w.stop:
		}
	}()
	return w
}

// wrap adds the context's error to a cancellation, and notes that the request was consumed.
func (w *ctxWatcher) wrap(ctx context.Context, err error) error {
	if errors.Is(err, ErrCancelled) {
		if w.issued.Load() {
			w.consumed = true
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("%w: %w", err, ctxErr)
		}
	}
	return err
}

// finish stops the watcher and withdraws a cancellation request it made that no iteration
// consumed, so that it cannot cancel a later call. Call it without holding g.mu.
func (w *ctxWatcher) finish() {
	if w.stop == nil {
		return
	}
	close(w.stop)
	<-w.done
	if w.issued.Load() && !w.consumed {
		w.g.consumeStaleCancel()
	}
}

// staleCancels counts the requests consumeStaleCancel withdrew (for the tests).
var staleCancels atomic.Int64

// consumeStaleCancel withdraws a cancellation request that the context watcher of Generate made
// after the last iteration had started, so that it cannot cancel a later Step or Generate.
func (g *Generator) consumeStaleCancel() {
	if g.lock() != nil {
		return
	}
	defer g.mu.Unlock()
	staleCancels.Add(1)
	C.specdec_generator_clear_cancel(g.ptr)
}

// Stream runs Generate on a new goroutine and sends each iteration's tokens on the first channel,
// which is closed at the end; the second channel then receives the result (nil, or the error) and
// is closed. Read the tokens until the channel is closed, or cancel ctx to abandon the stream (the
// goroutine then ends within one iteration). The generator must not be used meanwhile.
func (g *Generator) Stream(ctx context.Context) (<-chan []uint32, <-chan error) {
	if ctx == nil {
		ctx = context.Background()
	}
	out := make(chan []uint32, 8)
	errc := make(chan error, 1)
	go func() {
		defer close(errc)
		_, err := g.Generate(ctx, func(toks []uint32) bool {
			select {
			case out <- toks:
			case <-ctx.Done():
				// Nobody may be reading any more: drop the tokens (they stay in the generator)
				// and let Generate return the cancellation before the next iteration.
			}
			return true
		})
		close(out)
		errc <- err
	}()
	return out, errc
}

// GenerateText runs Generate and streams the text of the generated tokens, decoded with tok by a
// StreamDecoder (whole UTF-8 characters only), to onText, which may return false to stop. The text
// held back at the end is flushed to onText too, also after an error. tok also becomes the
// generator's tokenizer (SetTokenizer), so stop texts (WithStopTexts) work without WithTokenizer.
func (g *Generator) GenerateText(ctx context.Context, tok *Tokenizer, onText func(text string) bool) (FinishReason, error) {
	if err := g.SetTokenizer(tok); err != nil {
		return FinishNone, err
	}
	dec, err := NewStreamDecoder(tok)
	if err != nil {
		return FinishNone, err
	}
	defer dec.Close()
	var decodeErr error
	reason, err := g.Generate(ctx, func(toks []uint32) bool {
		text, err := dec.Push(toks)
		if err != nil {
			decodeErr = err
			return false
		}
		return text == "" || onText == nil || onText(text)
	})
	if decodeErr != nil {
		return FinishNone, decodeErr
	}
	if rest, ferr := dec.Flush(); ferr == nil && rest != "" && onText != nil {
		onText(rest)
	} else if ferr != nil && err == nil {
		err = ferr
	}
	return reason, err
}
