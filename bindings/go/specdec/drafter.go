package specdec

/*
#include <stdlib.h>
#include "specdec.h"
*/
import "C"

import (
	"runtime"
	"sync"
	"unsafe"
)

// Drafter is a draft source for NewGeneratorWithDrafter: an ONNX draft model, n-gram prompt
// lookup, unigram or bigram counts, or a DraftCallback of the host. It is a recipe: every
// Generator made from it gets its own drafter state (a draft model's KV cache, an n-gram index),
// so one Drafter serves any number of generators on any goroutines. Close releases it; generators
// already made from it keep what they need.
type Drafter struct {
	mu  sync.RWMutex // readers: calls using ptr or cb; writer: Close
	ptr *C.specdec_drafter
	// A callback drafter has no native handle of its own: each generator made from it gets a
	// native callback drafter whose user_data is that generator's cgo handle (see
	// newCallbackBinding), so errors and panics of the callback reach the generator that ran it.
	cb        DraftCallback
	withProbs bool
	closed    bool
}

// CountsOrder is the order of a counts drafter: unigram or bigram.
type CountsOrder uint32

const (
	// Unigram proposes the most frequent tokens.
	Unigram CountsOrder = 1
	// Bigram proposes the most frequent successor of the last token.
	Bigram CountsOrder = 2
)

func newDrafter(make func(out **C.specdec_drafter, e **C.specdec_error) C.specdec_status) (*Drafter, error) {
	var out *C.specdec_drafter
	var cerr *C.specdec_error
	if err := takeError(make(&out, &cerr), cerr); err != nil {
		return nil, err
	}
	d := &Drafter{ptr: out}
	runtime.SetFinalizer(d, (*Drafter).finalize)
	return d, nil
}

// NewModelDrafter drafts with the ONNX model draft (kept alive by the drafter), which must share
// the target's vocabulary (ErrVocabMismatch from NewGeneratorWithDrafter otherwise).
// NewGeneratorWithDrafter(target, NewModelDrafter(draft)) is NewGenerator(target, draft).
func NewModelDrafter(draft *Model) (*Drafter, error) {
	if draft == nil {
		return nil, &Error{Code: StatusNullParameter, Message: "draft model is nil"}
	}
	dptr, err := draft.acquire("draft model")
	if err != nil {
		return nil, err
	}
	defer draft.mu.RUnlock()
	return newDrafter(func(out **C.specdec_drafter, e **C.specdec_error) C.specdec_status {
		return C.specdec_drafter_new_model(dptr, out, e)
	})
}

// NewNGramDrafter drafts by prompt lookup: it matches the last n tokens (longest first, nMax down
// to nMin) against the sequence so far and proposes up to maxProposal tokens that followed the
// latest match. No model; where nothing matches, the round is a plain target step. Requires
// 1 <= nMin <= nMax <= 64 and 1 <= maxProposal <= MaxGamma (ErrInvalidArgument otherwise).
func NewNGramDrafter(nMin, nMax, maxProposal int) (*Drafter, error) {
	var v [3]C.uint32_t
	for i, x := range []struct {
		n    int
		what string
	}{{nMin, "n_min"}, {nMax, "n_max"}, {maxProposal, "max_proposal"}} {
		u, err := toU32(x.n, x.what)
		if err != nil {
			return nil, err
		}
		v[i] = u
	}
	return newDrafter(func(out **C.specdec_drafter, e **C.specdec_error) C.specdec_status {
		return C.specdec_drafter_new_ngram(v[0], v[1], v[2], out, e)
	})
}

// NewCountsDrafter drafts from unigram or bigram counts. countsPath names a count file (one entry
// per line: "<id> <count>" or "<prev> <id> <count>", # comments; `specdec counts` writes one); ""
// learns the counts from the sequence itself (prompt and output so far). Errors:
// ErrInvalidArgument (order), ErrIO (unreadable or malformed file).
func NewCountsDrafter(order CountsOrder, countsPath string) (*Drafter, error) {
	var cpath *C.char
	if countsPath != "" {
		p, err := cString(countsPath, "counts path")
		if err != nil {
			return nil, err
		}
		defer C.free(unsafe.Pointer(p))
		cpath = p
	}
	return newDrafter(func(out **C.specdec_drafter, e **C.specdec_error) C.specdec_status {
		return C.specdec_drafter_new_counts(C.uint32_t(order), cpath, out, e)
	})
}

// DraftCallback is a draft source implemented by the host (NewCallbackDrafter).
//
// Draft proposes up to len(req.Proposals) tokens continuing req.Tokens: it writes them to
// req.Proposals from index 0 and returns how many (0 proposes nothing this round). Whatever it
// proposes, the output stays exact: proposals are verified by the target. Returning an error (or
// panicking) fails the round: the Generator call returns an error matching ErrCallback that also
// wraps the callback's error (errors.Is works for both); a panic is re-raised, with its value, on
// the goroutine that called the Generator, once the native call has returned. The generator stays
// usable either way.
//
// Draft runs on the goroutine calling Step/Generate, from inside the native call; it must not use
// the generator that called it (its methods return ErrBusy there, Cancel excepted). One
// DraftCallback may serve several generators on several goroutines at once, so it must be safe for
// concurrent use.
type DraftCallback interface {
	Draft(req *DraftRequest) (int, error)
}

// DraftFunc adapts a function to DraftCallback.
type DraftFunc func(req *DraftRequest) (int, error)

// Draft calls f(req).
func (f DraftFunc) Draft(req *DraftRequest) (int, error) { return f(req) }

// DraftRequest is one round's question to a DraftCallback. Its slices view the library's memory
// and are valid only during the call: copy what must be kept.
type DraftRequest struct {
	// Tokens is the sequence so far: prompts and generated tokens. Read-only.
	Tokens []uint32
	// Proposals has room for the most tokens this round may propose (len(Proposals)).
	Proposals []uint32
	// Probs is nil unless the drafter was made with probabilities; then it holds len(Proposals)
	// rows of VocabSize floats, and row i (ProbRow(i)) must be filled with the distribution
	// proposal i was sampled from (giving it a positive probability, summing to 1).
	Probs []float32
	// VocabSize is the target's vocabulary size.
	VocabSize int
}

// ProbRow returns row i of Probs: the distribution of proposal i (nil without probabilities).
func (r *DraftRequest) ProbRow(i int) []float32 {
	if r.Probs == nil {
		return nil
	}
	return r.Probs[i*r.VocabSize : (i+1)*r.VocabSize]
}

// NewCallbackDrafter drafts by asking cb each round. With withProbs false the proposals are
// verified as fixed tokens (exact whatever they are); with withProbs true cb also gives the
// distribution each proposal was sampled from (DraftRequest.Probs), which at temperature > 0
// accepts more.
func NewCallbackDrafter(cb DraftCallback, withProbs bool) (*Drafter, error) {
	if cb == nil {
		return nil, &Error{Code: StatusNullParameter, Message: "draft callback is nil"}
	}
	return &Drafter{cb: cb, withProbs: withProbs}, nil
}

func (d *Drafter) finalize() {
	C.specdec_drafter_free(d.ptr)
	d.ptr = nil
}

// Close releases the drafter. It is idempotent; generators made from it keep working.
func (d *Drafter) Close() error {
	if d == nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ptr != nil {
		C.specdec_drafter_free(d.ptr)
		d.ptr = nil
		runtime.SetFinalizer(d, nil)
	}
	d.cb = nil
	d.closed = true
	return nil
}

// NewGeneratorWithDrafter creates a generator over target drafting with drafter (nil: target-only
// decoding). The drafter may be shared by any number of generators. Errors: as NewGenerator, and
// ErrNullParameter for a closed drafter.
func NewGeneratorWithDrafter(target *Model, drafter *Drafter, opts ...GenerateOption) (*Generator, error) {
	if drafter == nil {
		return newGenerator(target, opts, func(t *C.specdec_model, cfg *C.specdec_gen_config, out **C.specdec_generator, e **C.specdec_error) C.specdec_status {
			return C.specdec_generator_new_with_drafter(t, nil, cfg, out, e)
		}, nil)
	}
	drafter.mu.RLock()
	defer drafter.mu.RUnlock()
	if drafter.closed {
		return nil, closedError("drafter")
	}
	if drafter.cb == nil {
		dptr := drafter.ptr
		return newGenerator(target, opts, func(t *C.specdec_model, cfg *C.specdec_gen_config, out **C.specdec_generator, e **C.specdec_error) C.specdec_status {
			return C.specdec_generator_new_with_drafter(t, dptr, cfg, out, e)
		}, nil)
	}
	// A callback drafter: a native drafter per generator, freed once the generator holds it.
	b := newCallbackBinding(drafter.cb)
	g, err := newGenerator(target, opts, func(t *C.specdec_model, cfg *C.specdec_gen_config, out **C.specdec_generator, e **C.specdec_error) C.specdec_status {
		var dptr *C.specdec_drafter
		if st := newNativeCallbackDrafter(b.handle, drafter.withProbs, &dptr, e); st != C.SPECDEC_STATUS_OK {
			return st
		}
		defer C.specdec_drafter_free(dptr)
		return C.specdec_generator_new_with_drafter(t, dptr, cfg, out, e)
	}, b)
	if err != nil {
		b.handle.Delete()
		return nil, err
	}
	return g, nil
}
