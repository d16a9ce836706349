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
}

// NewGenerator creates a generator over target, speculating with draft (nil: target-only
// decoding). Models may be shared by any number of generators on any goroutines. Errors:
// ErrVocabMismatch (draft and target vocabularies differ), ErrTokenOutOfRange (an EOS id outside
// the vocabulary), ErrInvalidArgument (a bad option), ErrNullParameter (nil or closed target).
func NewGenerator(target, draft *Model, opts ...GenerateOption) (*Generator, error) {
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

	tptr, err := target.acquire("target model")
	if err != nil {
		return nil, err
	}
	defer target.mu.RUnlock()
	var dptr *C.specdec_model
	if draft != nil {
		dptr, err = draft.acquire("draft model")
		if err != nil {
			return nil, err
		}
		defer draft.mu.RUnlock()
	}

	var out *C.specdec_generator
	var cerr *C.specdec_error
	st := C.specdec_generator_new(tptr, dptr, cfg.ptr, &out, &cerr)
	if err := takeError(st, cerr); err != nil {
		return nil, err
	}
	g := &Generator{ptr: out}
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
}

// Close frees the generator. It is idempotent. It waits for a call in progress on another
// goroutine (cancel it first to make that quick).
func (g *Generator) Close() error {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.handleMu.Lock()
	defer g.handleMu.Unlock()
	if g.ptr != nil {
		C.specdec_generator_free(g.ptr)
		g.ptr = nil
		runtime.SetFinalizer(g, nil)
	}
	return nil
}

// lock locks the generator and checks that it is open; the caller unlocks g.mu.
func (g *Generator) lock() error {
	if g == nil {
		return &Error{Code: StatusNullParameter, Message: "generator is nil"}
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
// ErrInference.
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
	if err := takeError(st, cerr); err != nil {
		return nil, err
	}
	// The array belongs to the generator and is valid until its next non-const call: copy it now.
	return copyIDs(p, n), nil
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
// generator's methods (Tokens, Stats, ...).
//
// When ctx is done, the iteration in progress is interrupted at its end (the library checks the
// cancellation between iterations) and Generate returns an error matching both ErrCancelled and
// ctx.Err() (context.Canceled or context.DeadlineExceeded); the tokens produced so far stay in the
// generator, which remains usable: Generate again continues the same generation.
func (g *Generator) Generate(ctx context.Context, onTokens func(tokens []uint32) bool) (FinishReason, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if err := ctx.Err(); err != nil {
		if err := g.lock(); err != nil {
			return FinishNone, err
		}
		g.mu.Unlock()
		return FinishNone, fmt.Errorf("%w: %w", &Error{Code: StatusCancelled, Message: "generation cancelled"}, err)
	}
	var issued atomic.Bool // the watcher called specdec_generator_cancel
	consumed := false      // an iteration returned CANCELLED after that
	var watcherDone chan struct{}
	if done := ctx.Done(); done != nil {
		stop := make(chan struct{})
		watcherDone = make(chan struct{})
		go func() {
			defer close(watcherDone)
			select {
			case <-done:
				g.Cancel()
				issued.Store(true)
			case <-stop:
			}
		}()
		defer func() {
			close(stop)
			<-watcherDone
			if issued.Load() && !consumed {
				g.consumeStaleCancel()
			}
		}()
	}

	for {
		if err := ctx.Err(); err != nil {
			return FinishNone, fmt.Errorf("%w: %w", &Error{Code: StatusCancelled, Message: "generation cancelled"}, err)
		}
		if err := g.lock(); err != nil {
			return FinishNone, err
		}
		toks, err := g.stepLocked()
		reason := FinishNone
		if err == nil {
			reason = g.finishReasonLocked()
		}
		g.mu.Unlock()
		if err != nil {
			if errors.Is(err, ErrCancelled) {
				if issued.Load() {
					consumed = true
				}
				if ctxErr := ctx.Err(); ctxErr != nil {
					return FinishNone, fmt.Errorf("%w: %w", err, ctxErr)
				}
			}
			return FinishNone, err
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
// held back at the end is flushed to onText too, also after an error.
func (g *Generator) GenerateText(ctx context.Context, tok *Tokenizer, onText func(text string) bool) (FinishReason, error) {
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
