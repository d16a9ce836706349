package main

import (
	"context"
	"errors"
	"log"
	"sync"
	"sync/atomic"
	"time"

	"github.com/specdec/specdec/bindings/go/specdec"
)

// job is one validated, tokenized request.
type job struct {
	prompt []uint32
	opts   []specdec.GenerateOption
}

// backendStats are what /metrics reports of a backend.
type backendStats struct {
	Active, Waiting   uint64
	Drafted, Accepted uint64
	KVUsed, KVLimit   uint64
	Rounds            uint64
}

// errRefused: the backend is full and refuses new sequences (engine admission "refuse").
var errRefused = errors.New("the server is at capacity")

// backend generates the tokens of jobs.
type backend interface {
	// run generates j, giving each batch of new tokens to emit (on the calling goroutine); emit
	// returning an error stops the generation (its slot is freed) and run returns that error.
	// When ctx is done the sequence is cancelled, its slot freed, and ctx.Err() returned.
	run(ctx context.Context, j *job, emit func([]uint32) error) (specdec.FinishReason, error)
	stats() backendStats
	close()
}

// engineBackend: every request is a sequence of one specdec.Engine; one goroutine runs Step in a
// loop while request goroutines add and poll their sequences.
type engineBackend struct {
	eng    *specdec.Engine
	refuse bool // admission "refuse": a full engine's ErrMemoryBudget is a 429, not a 400

	mu   sync.Mutex
	tick chan struct{} // closed (and replaced) after every Step
	wake chan struct{} // a sequence was added: the loop should step

	stop chan struct{}
	done chan struct{}
}

func newEngineBackend(target, draft *specdec.Model, tok *specdec.Tokenizer, maxBatch int, kvLimit uint64, refuse bool) (*engineBackend, error) {
	opts := []specdec.EngineOption{specdec.WithEngineTokenizer(tok), specdec.WithEngineKVMemoryLimit(kvLimit)}
	if maxBatch > 0 {
		opts = append(opts, specdec.WithMaxBatch(maxBatch))
	}
	if refuse {
		opts = append(opts, specdec.WithAdmission(specdec.AdmissionRefuse))
	}
	eng, err := specdec.NewEngine(target, draft, opts...)
	if err != nil {
		return nil, err
	}
	b := &engineBackend{eng: eng, refuse: refuse, tick: make(chan struct{}), wake: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{})}
	go b.loop()
	return b, nil
}

// loop steps while any sequence is active, and sleeps until one is added otherwise.
func (b *engineBackend) loop() {
	defer close(b.done)
	for {
		n, err := b.eng.Step()
		b.broadcast()
		if err != nil {
			// A failure of the engine as a whole (a sequence's own error fails only it): log it,
			// let the pollers see their sequences' states, and try again shortly.
			log.Printf("engine step: %v", err)
			select {
			case <-b.stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		if n > 0 {
			select {
			case <-b.stop:
				return
			default:
			}
			continue
		}
		select {
		case <-b.stop:
			return
		case <-b.wake:
		}
	}
}

// broadcast wakes every poller.
func (b *engineBackend) broadcast() {
	b.mu.Lock()
	close(b.tick)
	b.tick = make(chan struct{})
	b.mu.Unlock()
}

// kick makes the loop run a round even if it last found nothing to do.
func (b *engineBackend) kick() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

func (b *engineBackend) currentTick() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.tick
}

func (b *engineBackend) run(ctx context.Context, j *job, emit func([]uint32) error) (specdec.FinishReason, error) {
	id, err := b.eng.Add(j.prompt, j.opts...)
	if err != nil {
		if errors.Is(err, specdec.ErrBusy) || (b.refuse && errors.Is(err, specdec.ErrMemoryBudget)) {
			return specdec.FinishNone, errRefused
		}
		return specdec.FinishNone, err
	}
	// Remove frees the slot (cancelling a sequence that still runs, at the next round: kick the
	// loop so that there is one).
	defer func() {
		if err := b.eng.Remove(id); err != nil {
			log.Printf("engine remove %d: %v", id, err)
		}
		b.kick()
	}()
	b.kick()
	for {
		tick := b.currentTick() // before Poll: a Step ending after Poll closes this one
		res, err := b.eng.Poll(id)
		if len(res.Tokens) > 0 {
			if eerr := emit(res.Tokens); eerr != nil {
				_ = b.eng.Cancel(id)
				return specdec.FinishNone, eerr
			}
		}
		if err != nil {
			return specdec.FinishNone, err
		}
		if res.State.Done() {
			return res.Reason, nil
		}
		select {
		case <-ctx.Done():
			_ = b.eng.Cancel(id)
			return specdec.FinishNone, ctx.Err()
		case <-tick:
		}
	}
}

func (b *engineBackend) stats() backendStats {
	s, err := b.eng.Stats()
	if err != nil {
		return backendStats{}
	}
	return backendStats{Active: s.Active, Waiting: s.Waiting, Drafted: s.Drafted, Accepted: s.Accepted,
		KVUsed: s.KVBytesUsed, KVLimit: s.KVBytesLimit, Rounds: s.Rounds}
}

func (b *engineBackend) close() {
	close(b.stop)
	<-b.done
	b.eng.Close()
}

// generatorBackend: one specdec.Generator per request over the shared models, at most maxBatch
// running at once (the others wait for a slot), for comparison with the engine.
type generatorBackend struct {
	target, draft *specdec.Model
	tok           *specdec.Tokenizer
	slots         chan struct{}
	kvLimit       uint64 // over all generators; each gets kvLimit / maxBatch
	kvPerToken    uint64 // target + draft bytes per token (the estimate behind KVUsed)

	active, waiting   atomic.Int64
	drafted, accepted atomic.Uint64
	rounds            atomic.Uint64
	kvUsed            atomic.Int64
}

func newGeneratorBackend(target, draft *specdec.Model, tok *specdec.Tokenizer, maxBatch int, kvLimit uint64) *generatorBackend {
	if maxBatch <= 0 {
		maxBatch = 64
	}
	kv := uint64(target.KVBytesPerToken())
	if draft != nil {
		kv += uint64(draft.KVBytesPerToken())
	}
	return &generatorBackend{target: target, draft: draft, tok: tok, slots: make(chan struct{}, maxBatch),
		kvLimit: kvLimit, kvPerToken: kv}
}

func (b *generatorBackend) run(ctx context.Context, j *job, emit func([]uint32) error) (specdec.FinishReason, error) {
	b.waiting.Add(1)
	select {
	case b.slots <- struct{}{}:
		b.waiting.Add(-1)
	case <-ctx.Done():
		b.waiting.Add(-1)
		return specdec.FinishNone, ctx.Err()
	}
	b.active.Add(1)
	defer func() {
		b.active.Add(-1)
		<-b.slots
	}()
	opts := append([]specdec.GenerateOption{}, j.opts...)
	opts = append(opts, specdec.WithTokenizer(b.tok))
	if b.kvLimit > 0 {
		opts = append(opts, specdec.WithKVMemoryLimit(b.kvLimit/uint64(cap(b.slots))))
	}
	gen, err := specdec.NewGenerator(b.target, b.draft, opts...)
	if err != nil {
		return specdec.FinishNone, err
	}
	defer gen.Close()
	if err := gen.Append(j.prompt); err != nil {
		return specdec.FinishNone, err
	}
	held := int64(len(j.prompt)) * int64(b.kvPerToken)
	b.kvUsed.Add(held)
	defer func() { b.kvUsed.Add(-held) }()
	var emitErr error
	reason, err := gen.Generate(ctx, func(toks []uint32) bool {
		n := int64(len(toks)) * int64(b.kvPerToken)
		held += n
		b.kvUsed.Add(n)
		if emitErr = emit(toks); emitErr != nil {
			return false
		}
		return true
	})
	s := gen.Stats()
	b.drafted.Add(s.Drafted)
	b.accepted.Add(s.Accepted)
	b.rounds.Add(s.Rounds)
	if emitErr != nil {
		return specdec.FinishNone, emitErr
	}
	if err != nil && ctx.Err() != nil {
		return specdec.FinishNone, ctx.Err()
	}
	return reason, err
}

func (b *generatorBackend) stats() backendStats {
	kv := b.kvUsed.Load()
	if kv < 0 {
		kv = 0
	}
	return backendStats{Active: uint64(b.active.Load()), Waiting: uint64(b.waiting.Load()),
		Drafted: b.drafted.Load(), Accepted: b.accepted.Load(), Rounds: b.rounds.Load(),
		KVUsed: uint64(kv), KVLimit: b.kvLimit}
}

func (b *generatorBackend) close() {}
