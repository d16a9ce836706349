package specdec

// Native callbacks into Go. The library calls a C function pointer with a void* user_data; here
// user_data is a runtime/cgo.Handle (an integer, never a Go pointer, so cgo's pointer rules hold)
// and the C shims below forward to the exported Go trampolines of callback_export.go. (The shims
// live here because a file with //export may only declare, not define, C functions.)

/*
#include <stdint.h>
#include "specdec.h"

extern int32_t specdecgoDraft(uintptr_t handle, uint32_t *tokens, size_t n_tokens, size_t max_proposals,
                              size_t vocab_size, uint32_t *proposals, float *probs);
extern int32_t specdecgoTokens(uintptr_t handle, uint32_t *tokens, size_t n_tokens);

int32_t specdecgo_draft_shim(void *user_data, const uint32_t *tokens, size_t n_tokens, size_t max_proposals,
                                    size_t vocab_size, uint32_t *proposals, float *probs) {
    return specdecgoDraft((uintptr_t)user_data, (uint32_t *)tokens, n_tokens, max_proposals, vocab_size, proposals, probs);
}

int32_t specdecgo_tokens_shim(void *user_data, const uint32_t *tokens, size_t n_tokens) {
    return specdecgoTokens((uintptr_t)user_data, (uint32_t *)tokens, n_tokens);
}

// The handle as the library's user_data. (The shims above are not static: Go takes their
// addresses, which needs linker symbols.)
static void *specdecgo_user_data(uintptr_t handle) { return (void *)handle; }
*/
import "C"

import (
	"fmt"
	"runtime/cgo"
	"sync/atomic"
)

// genFlags is the part of a Generator its callbacks see. It is a separate allocation so that a
// callback's state (reachable from cgo's handle table) never keeps the Generator itself alive,
// which would stop its finalizer from ever running.
type genFlags struct {
	// inCallback counts the user callbacks running on this generator's behalf (from inside a
	// native call, which holds the generator): its methods then return ErrBusy instead of waiting
	// for a lock that the callback's own goroutine holds.
	inCallback atomic.Int32
}

// callbackOutcome records what a callback did besides its return value: the first error it
// returned and a panic it raised, for the Generator call that ran it to report once the native
// call is over. Only the goroutine holding the generator touches it.
type callbackOutcome struct {
	err      error
	panicked bool
	panicVal any
}

func (o *callbackOutcome) take() callbackOutcome {
	r := *o
	*o = callbackOutcome{}
	return r
}

// callbackBinding is one generator's instance of a callback drafter.
type callbackBinding struct {
	cb      DraftCallback
	flags   *genFlags
	handle  cgo.Handle
	req     DraftRequest
	outcome callbackOutcome
}

func newCallbackBinding(cb DraftCallback) *callbackBinding {
	b := &callbackBinding{cb: cb, flags: &genFlags{}}
	b.handle = cgo.NewHandle(b)
	return b
}

// newNativeCallbackDrafter makes a native drafter calling specdecgoDraft with handle.
func newNativeCallbackDrafter(handle cgo.Handle, withProbs bool, out **C.specdec_drafter, e **C.specdec_error) C.specdec_status {
	return C.specdec_drafter_new_callback(C.specdec_draft_fn(C.specdecgo_draft_shim),
		C.specdecgo_user_data(C.uintptr_t(handle)), C.bool(withProbs), out, e)
}

// tokenBinding is the state of one GenerateAll call's token callback.
type tokenBinding struct {
	fn      func(tokens []uint32) bool
	flags   *genFlags
	outcome callbackOutcome
}

// generateNative runs specdec_generator_generate on g.ptr (the caller holds g.mu), calling onTokens
// (may be nil) through specdecgoTokens. It returns the finish reason, the status and error object
// of the call, and what the token callback did.
func (g *Generator) generateNative(onTokens func([]uint32) bool) (FinishReason, C.specdec_status, *C.specdec_error, callbackOutcome) {
	var reason C.specdec_finish_reason
	var cerr *C.specdec_error
	if onTokens == nil {
		st := C.specdec_generator_generate(g.ptr, nil, nil, &reason, &cerr)
		return FinishReason(reason), st, cerr, callbackOutcome{}
	}
	tb := &tokenBinding{fn: onTokens, flags: g.flags}
	h := cgo.NewHandle(tb)
	defer h.Delete()
	st := C.specdec_generator_generate(g.ptr, C.specdec_token_callback(C.specdecgo_tokens_shim),
		C.specdecgo_user_data(C.uintptr_t(h)), &reason, &cerr)
	return FinishReason(reason), st, cerr, tb.outcome.take()
}

// callbackError combines the library's ErrCallback error with the callback's own error.
func callbackError(lib error, cause error) error {
	if cause == nil {
		return lib
	}
	return fmt.Errorf("%w: %w", lib, cause)
}
