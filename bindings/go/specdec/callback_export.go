package specdec

// The exported Go trampolines the C shims of callback.go call. They run on the goroutine that
// made the native call, never let a panic unwind into the library (it would cross Rust frames):
// a panic is recovered, recorded and re-raised by the Generator method once the native call has
// returned.

/*
#include <stdint.h>
#include <stddef.h>
*/
import "C"

import (
	"fmt"
	"math"
	"runtime/cgo"
	"unsafe"
)

//export specdecgoDraft
func specdecgoDraft(handle C.uintptr_t, tokens *C.uint32_t, nTokens, maxProposals, vocabSize C.size_t,
	proposals *C.uint32_t, probs *C.float) (ret C.int32_t) {
	b := cgo.Handle(handle).Value().(*callbackBinding)
	b.flags.inCallback.Add(1)
	defer b.flags.inCallback.Add(-1)
	defer func() {
		if r := recover(); r != nil {
			if !b.outcome.panicked && b.outcome.err == nil {
				b.outcome.panicked, b.outcome.panicVal = true, r
			}
			ret = -1
		}
	}()
	req := &b.req
	req.Tokens = unsafe.Slice((*uint32)(unsafe.Pointer(tokens)), int(nTokens))
	req.Proposals = unsafe.Slice((*uint32)(unsafe.Pointer(proposals)), int(maxProposals))
	req.Probs = nil
	if probs != nil {
		req.Probs = unsafe.Slice((*float32)(unsafe.Pointer(probs)), int(maxProposals)*int(vocabSize))
	}
	req.VocabSize = int(vocabSize)
	defer func() { *req = DraftRequest{} }() // the views die with the call

	n, err := b.cb.Draft(req)
	if err != nil {
		if b.outcome.err == nil && !b.outcome.panicked {
			b.outcome.err = err
		}
		return -1
	}
	if n < 0 {
		if b.outcome.err == nil && !b.outcome.panicked {
			b.outcome.err = fmt.Errorf("the draft callback returned %d proposals", n)
		}
		return -1
	}
	// More than maxProposals is refused by the library (ErrInvalidArgument, naming both).
	return C.int32_t(min(n, math.MaxInt32))
}

//export specdecgoTokens
func specdecgoTokens(handle C.uintptr_t, tokens *C.uint32_t, nTokens C.size_t) (ret C.int32_t) {
	tb := cgo.Handle(handle).Value().(*tokenBinding)
	tb.flags.inCallback.Add(1)
	defer tb.flags.inCallback.Add(-1)
	defer func() {
		if r := recover(); r != nil {
			tb.outcome.panicked, tb.outcome.panicVal = true, r
			ret = 1
		}
	}()
	if tb.outcome.panicked {
		return 1
	}
	if tb.fn(copyIDs(tokens, nTokens)) {
		return 0
	}
	return 1
}
