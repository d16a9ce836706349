package specdec

/*
#include "specdec.h"
*/
import "C"

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"time"
	"unsafe"
)

// SeqID names a sequence of an Engine (specdec_engine_add's id).
type SeqID uint64

// SeqState is a sequence's state in an Engine (specdec_seq_state).
type SeqState uint32

const (
	// SeqWaiting: added, not yet admitted into the running batch (max batch or KV budget full).
	SeqWaiting SeqState = C.SPECDEC_SEQ_STATE_WAITING
	// SeqRunning: in the running batch; each Step extends it.
	SeqRunning SeqState = C.SPECDEC_SEQ_STATE_RUNNING
	// SeqFinished: ended (EOS, stop sequence, max tokens, context, or cancelled: see FinishReason).
	SeqFinished SeqState = C.SPECDEC_SEQ_STATE_FINISHED
	// SeqFailed: ended by an error, which Poll returns once the sequence's tokens are drained.
	SeqFailed SeqState = C.SPECDEC_SEQ_STATE_FAILED
)

func (s SeqState) String() string {
	switch s {
	case SeqWaiting:
		return "waiting"
	case SeqRunning:
		return "running"
	case SeqFinished:
		return "finished"
	case SeqFailed:
		return "failed"
	}
	return fmt.Sprintf("SeqState(%d)", uint32(s))
}

// Done reports whether the sequence has ended (finished or failed).
func (s SeqState) Done() bool { return s == SeqFinished || s == SeqFailed }

// Admission says what Engine.Add does when the KV memory limit has no room for a sequence now
// (specdec_admission).
type Admission uint32

const (
	// AdmissionWait: the sequence waits (SeqWaiting) until a slot frees. The default.
	AdmissionWait Admission = C.SPECDEC_ADMISSION_WAIT
	// AdmissionRefuse: Add fails with ErrMemoryBudget when the KV limit has no room now (a full
	// batch still queues).
	AdmissionRefuse Admission = C.SPECDEC_ADMISSION_REFUSE
)

func (a Admission) String() string {
	switch a {
	case AdmissionWait:
		return "wait"
	case AdmissionRefuse:
		return "refuse"
	}
	return fmt.Sprintf("Admission(%d)", uint32(a))
}

// EngineOption configures an Engine (NewEngine). Options are applied in order with the C library's
// own validation; the first invalid one makes NewEngine fail with its error.
type EngineOption func(*engineConfig)

type engineConfig struct {
	ptr       *C.specdec_engine_options
	err       error
	tokenizer *Tokenizer
}

func (c *engineConfig) apply(set func(**C.specdec_error) C.specdec_status) {
	if c.err != nil {
		return
	}
	var cerr *C.specdec_error
	c.err = takeError(set(&cerr), cerr)
}

// WithMaxBatch sets the most sequences running at once (the rows of one batched round); the others
// wait (a full batch always queues).
func WithMaxBatch(rows int) EngineOption {
	return func(c *engineConfig) {
		v, err := toU32(rows, "max batch")
		if err != nil {
			if c.err == nil {
				c.err = err
			}
			return
		}
		c.apply(func(e **C.specdec_error) C.specdec_status {
			return C.specdec_engine_options_set_max_batch(c.ptr, v, e)
		})
	}
}

// WithEngineKVMemoryLimit caps the bytes the KV caches of all the engine's sequences (target and
// draft) may use together, each sequence counted at the most it can grow to; 0 means no limit. A
// sequence that does not fit now waits (or, with AdmissionRefuse, is refused).
func WithEngineKVMemoryLimit(totalBytes uint64) EngineOption {
	return func(c *engineConfig) {
		c.apply(func(e **C.specdec_error) C.specdec_status {
			return C.specdec_engine_options_set_kv_memory_limit(c.ptr, C.uint64_t(totalBytes), e)
		})
	}
}

// WithAdmission sets what Add does when the engine is full (default AdmissionWait).
func WithAdmission(mode Admission) EngineOption {
	return func(c *engineConfig) {
		c.apply(func(e **C.specdec_error) C.specdec_status {
			return C.specdec_engine_options_set_admission(c.ptr, C.specdec_admission(mode), e)
		})
	}
}

// WithEngineTokenizer gives the engine a tokenizer to match stop texts (WithStopTexts) with
// (Engine.SetTokenizer).
func WithEngineTokenizer(tok *Tokenizer) EngineOption {
	return func(c *engineConfig) { c.tokenizer = tok }
}

// EngineStats are an engine's counters: the current batch and queue, and totals since NewEngine.
type EngineStats struct {
	Rounds       uint64 // Steps that ran a round
	Active       uint64 // sequences running now
	Waiting      uint64 // sequences waiting for a slot
	Finished     uint64 // sequences that ended (finished or failed) and are not removed yet
	NewTokens    uint64 // tokens generated, all sequences
	Drafted      uint64 // draft proposals, all sequences
	Accepted     uint64 // proposals accepted
	KVBytesUsed  uint64 // bytes of KV cache held now
	KVBytesLimit uint64 // the limit (0: none)
	TargetTime   time.Duration
	DraftTime    time.Duration
	TotalTime    time.Duration
}

// AcceptanceRate is Accepted / Drafted (0 when nothing was drafted).
func (s EngineStats) AcceptanceRate() float64 {
	if s.Drafted == 0 {
		return 0
	}
	return float64(s.Accepted) / float64(s.Drafted)
}

// PollResult is what Engine.Poll returns: the tokens generated since the previous Poll, the
// sequence's state, and why it finished (FinishNone while it runs).
type PollResult struct {
	Tokens []uint32
	State  SeqState
	Reason FinishReason
}

// Engine runs many sequences over one pair of models, one batched round (Step) at a time: the
// target scores the draft proposals of every running sequence in one call. It is safe for
// concurrent use: typically one goroutine calls Step in a loop while others Add, Poll, Cancel and
// Remove sequences; those calls do not wait for a running Step. Close it when done.
type Engine struct {
	// mu guards ptr: every call holds it shared, Close exclusively.
	mu  sync.RWMutex
	ptr *C.specdec_engine
}

// NewEngine creates an engine over target, speculating with draft (nil: target-only decoding).
// Errors: ErrVocabMismatch, ErrInvalidArgument (a bad option), ErrNullParameter (nil or closed
// target).
func NewEngine(target, draft *Model, opts ...EngineOption) (*Engine, error) {
	if target == nil {
		return nil, &Error{Code: StatusNullParameter, Message: "target model is nil"}
	}
	cfg := engineConfig{ptr: C.specdec_engine_options_new()}
	if cfg.ptr == nil {
		return nil, &Error{Code: StatusPanic, Message: "specdec_engine_options_new failed"}
	}
	defer C.specdec_engine_options_free(cfg.ptr)
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
		if dptr, err = draft.acquire("draft model"); err != nil {
			return nil, err
		}
		defer draft.mu.RUnlock()
	}
	var out *C.specdec_engine
	var cerr *C.specdec_error
	if err := takeError(C.specdec_engine_new(tptr, dptr, cfg.ptr, &out, &cerr), cerr); err != nil {
		return nil, err
	}
	e := &Engine{ptr: out}
	runtime.SetFinalizer(e, (*Engine).finalize)
	if cfg.tokenizer != nil {
		if err := e.SetTokenizer(cfg.tokenizer); err != nil {
			e.Close()
			return nil, err
		}
	}
	return e, nil
}

func (e *Engine) finalize() {
	C.specdec_engine_free(e.ptr)
	e.ptr = nil
}

// Close frees the engine and every sequence in it. It is idempotent; it waits for calls in
// progress on other goroutines (a running Step included).
func (e *Engine) Close() error {
	if e == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ptr != nil {
		C.specdec_engine_free(e.ptr)
		e.ptr = nil
		runtime.SetFinalizer(e, nil)
	}
	return nil
}

// acquire read-locks the engine; the caller calls e.mu.RUnlock.
func (e *Engine) acquire() (*C.specdec_engine, error) {
	if e == nil {
		return nil, &Error{Code: StatusNullParameter, Message: "engine is nil"}
	}
	e.mu.RLock()
	if e.ptr == nil {
		e.mu.RUnlock()
		return nil, closedError("engine")
	}
	return e.ptr, nil
}

// SetTokenizer sets the tokenizer used to match stop texts (the engine keeps it alive).
func (e *Engine) SetTokenizer(tok *Tokenizer) error {
	p, err := e.acquire()
	if err != nil {
		return err
	}
	defer e.mu.RUnlock()
	tptr, err := tok.acquire()
	if err != nil {
		return err
	}
	defer tok.mu.RUnlock()
	var cerr *C.specdec_error
	return takeError(C.specdec_engine_set_tokenizer(p, tptr, &cerr), cerr)
}

// Add queues a sequence: prompt, then up to max_new_tokens (WithMaxNewTokens) generated with the
// given settings (the GenerateOptions of NewGenerator; WithTokenizer is refused, use
// SetTokenizer). It returns at once; a later Step admits it. Errors: ErrInvalidArgument (empty
// prompt, a bad setting, stop texts without a tokenizer), ErrTokenOutOfRange, ErrContextLimit (the
// prompt does not fit), ErrMemoryBudget (more than its own or the engine's KV limit could ever
// hold; under AdmissionRefuse, more than the engine's limit has room for now).
func (e *Engine) Add(prompt []uint32, opts ...GenerateOption) (SeqID, error) {
	cfg := genConfig{ptr: C.specdec_gen_config_new()}
	defer C.specdec_gen_config_free(cfg.ptr)
	for _, opt := range opts {
		if opt != nil {
			opt(&cfg)
		}
	}
	if cfg.err != nil {
		return 0, cfg.err
	}
	if cfg.tokenizer != nil || cfg.draft != nil || cfg.drafter != nil {
		return 0, invalidArg("WithTokenizer, WithDraftModel and WithDrafter are not options of Engine.Add (use NewEngine and Engine.SetTokenizer)")
	}
	p, err := e.acquire()
	if err != nil {
		return 0, err
	}
	defer e.mu.RUnlock()
	var id C.uint64_t
	var cerr *C.specdec_error
	st := C.specdec_engine_add(p, idsPtr(prompt), C.size_t(len(prompt)), cfg.ptr, &id, &cerr)
	runtime.KeepAlive(prompt)
	if err := takeError(st, cerr); err != nil {
		return 0, err
	}
	return SeqID(id), nil
}

// Cancel ends a sequence before the next round: it finishes with FinishCancelled (a sequence that
// has already ended is left as it is) and its KV caches are freed. Its tokens stay readable with
// Poll until Remove. Errors: ErrInvalidArgument (unknown id).
func (e *Engine) Cancel(id SeqID) error {
	p, err := e.acquire()
	if err != nil {
		return err
	}
	defer e.mu.RUnlock()
	var cerr *C.specdec_error
	return takeError(C.specdec_engine_cancel(p, C.uint64_t(id), &cerr), cerr)
}

// Step runs one round over every running sequence (admitting waiting ones first) and returns how
// many sequences are still active (running or waiting). A Step while another runs returns ErrBusy.
// Errors of one sequence fail that sequence only (Poll returns them); Step itself fails only for
// the engine as a whole.
func (e *Engine) Step() (int, error) {
	p, err := e.acquire()
	if err != nil {
		return 0, err
	}
	defer e.mu.RUnlock()
	var n C.size_t
	var cerr *C.specdec_error
	if err := takeError(C.specdec_engine_step(p, &n, &cerr), cerr); err != nil {
		return 0, err
	}
	return int(n), nil
}

// pollChunk is the buffer size of one specdec_engine_poll call.
const pollChunk = 256

// Poll drains the tokens the sequence generated since the previous Poll and returns them with the
// sequence's state. Once a failed sequence's tokens are drained, Poll returns its error (with
// State SeqFailed). Errors: ErrInvalidArgument (unknown id).
func (e *Engine) Poll(id SeqID) (PollResult, error) {
	p, err := e.acquire()
	if err != nil {
		return PollResult{}, err
	}
	defer e.mu.RUnlock()
	res := PollResult{Tokens: []uint32{}}
	buf := make([]uint32, pollChunk)
	for {
		var n C.size_t
		var state C.specdec_seq_state
		var reason C.specdec_finish_reason
		var cerr *C.specdec_error
		st := C.specdec_engine_poll(p, C.uint64_t(id), (*C.uint32_t)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)),
			&n, &state, &reason, &cerr)
		err := takeError(st, cerr)
		if err != nil && Status(st) == StatusBufferTooSmall && int(n) > len(buf) && uint64(n) < math.MaxInt32 {
			// A library that asks for the whole backlog at once: give it room and ask again.
			buf = make([]uint32, int(n))
			continue
		}
		if int(n) > len(buf) {
			n = C.size_t(len(buf))
		}
		res.Tokens = append(res.Tokens, buf[:int(n)]...)
		res.State = SeqState(state)
		res.Reason = FinishReason(reason)
		if err != nil {
			if res.State != SeqFailed {
				// An error about the call itself (unknown id, ...), not the sequence's.
				return PollResult{Tokens: []uint32{}}, err
			}
			return res, err
		}
		// A full buffer may mean more tokens are waiting.
		if int(n) < len(buf) {
			return res, nil
		}
	}
}

// Remove forgets a sequence (cancelling it if it still runs) and frees what it holds; its id is
// unknown afterwards. Errors: ErrInvalidArgument (unknown id).
func (e *Engine) Remove(id SeqID) error {
	p, err := e.acquire()
	if err != nil {
		return err
	}
	defer e.mu.RUnlock()
	var cerr *C.specdec_error
	return takeError(C.specdec_engine_remove(p, C.uint64_t(id), &cerr), cerr)
}

// SeqStats returns one sequence's counters and timings (as Generator.Stats).
func (e *Engine) SeqStats(id SeqID) (Stats, error) {
	p, err := e.acquire()
	if err != nil {
		return Stats{}, err
	}
	defer e.mu.RUnlock()
	var s C.specdec_stats
	s.struct_size = C.sizeof_specdec_stats
	var cerr *C.specdec_error
	if err := takeError(C.specdec_engine_seq_stats(p, C.uint64_t(id), &s, &cerr), cerr); err != nil {
		return Stats{}, err
	}
	return statsFromC(&s), nil
}

// Stats returns the engine's counters.
func (e *Engine) Stats() (EngineStats, error) {
	p, err := e.acquire()
	if err != nil {
		return EngineStats{}, err
	}
	defer e.mu.RUnlock()
	var s C.specdec_engine_stats
	s.struct_size = C.sizeof_specdec_engine_stats
	var cerr *C.specdec_error
	if err := takeError(C.specdec_engine_get_stats(p, &s, &cerr), cerr); err != nil {
		return EngineStats{}, err
	}
	secs := func(v C.double) time.Duration { return time.Duration(float64(v) * float64(time.Second)) }
	return EngineStats{
		Rounds:       uint64(s.rounds),
		Active:       uint64(s.active),
		Waiting:      uint64(s.waiting),
		Finished:     uint64(s.finished),
		NewTokens:    uint64(s.new_tokens),
		Drafted:      uint64(s.drafted),
		Accepted:     uint64(s.accepted),
		KVBytesUsed:  uint64(s.kv_bytes_used),
		KVBytesLimit: uint64(s.kv_bytes_limit),
		TargetTime:   secs(s.target_seconds),
		DraftTime:    secs(s.draft_seconds),
		TotalTime:    secs(s.total_seconds),
	}, nil
}
