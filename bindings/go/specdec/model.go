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

// Model is a loaded decoder model. It is immutable and safe for concurrent use by many goroutines;
// one Model may back any number of Generators. Close releases this handle; Generators created from
// the model keep it alive until they are closed.
type Model struct {
	mu  sync.RWMutex // readers: calls using ptr; writer: Close
	ptr *C.specdec_model
}

// ModelOption configures LoadModel.
type ModelOption func(*modelOptions)

type modelOptions struct {
	device       *string
	intraThreads *int
}

// WithDevice selects the execution provider: "cpu" (default), "cuda" or "cuda:N". CUDA where it
// cannot run (no GPU build of ONNX Runtime, driver or CUDA library) gives ErrUnavailable.
func WithDevice(device string) ModelOption {
	return func(o *modelOptions) { o.device = &device }
}

// WithIntraThreads sets the ONNX Runtime intra-op thread count; 0 (default) lets ONNX Runtime choose.
func WithIntraThreads(n int) ModelOption {
	return func(o *modelOptions) { o.intraThreads = &n }
}

// LoadModel loads a model from a folder (model.onnx, config.json, generation_config.json) or an
// .onnx file. Errors: ErrIO (missing path or file), ErrInvalidModel, ErrUnsupportedLayout,
// ErrUnavailable, ErrRuntimeLoad, ErrInvalidArgument (bad option). Safe for concurrent use.
func LoadModel(path string, opts ...ModelOption) (*Model, error) {
	var o modelOptions
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	cpath, err := cString(path, "model path")
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(cpath))

	var copts *C.specdec_model_options
	if o.device != nil || o.intraThreads != nil {
		copts = C.specdec_model_options_new()
		defer C.specdec_model_options_free(copts)
		if o.device != nil {
			dev, err := cString(*o.device, "device")
			if err != nil {
				return nil, err
			}
			var cerr *C.specdec_error
			st := C.specdec_model_options_set_device(copts, dev, &cerr)
			C.free(unsafe.Pointer(dev))
			if err := takeError(st, cerr); err != nil {
				return nil, err
			}
		}
		if o.intraThreads != nil {
			n := *o.intraThreads
			if n < 0 || uint64(n) > 1<<32-1 {
				return nil, invalidArg("intra-op threads %d out of range", n)
			}
			var cerr *C.specdec_error
			st := C.specdec_model_options_set_intra_threads(copts, C.uint32_t(n), &cerr)
			if err := takeError(st, cerr); err != nil {
				return nil, err
			}
		}
	}

	var out *C.specdec_model
	var cerr *C.specdec_error
	st := C.specdec_model_load(cpath, copts, &out, &cerr)
	if err := takeError(st, cerr); err != nil {
		return nil, err
	}
	m := &Model{ptr: out}
	runtime.SetFinalizer(m, (*Model).finalize)
	return m, nil
}

func (m *Model) finalize() {
	// Unreachable, so no other goroutine can hold the lock.
	C.specdec_model_free(m.ptr)
	m.ptr = nil
}

// Close releases the model handle. It is idempotent; Generators already created keep working.
func (m *Model) Close() error {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ptr != nil {
		C.specdec_model_free(m.ptr)
		m.ptr = nil
		runtime.SetFinalizer(m, nil)
	}
	return nil
}

// VocabSize returns the vocabulary size (0 after Close).
func (m *Model) VocabSize() int {
	if m == nil {
		return 0
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	return int(C.specdec_model_vocab_size(m.ptr))
}

// ContextLimit returns the longest sequence (prompt plus generated tokens) the model accepts (0
// after Close).
func (m *Model) ContextLimit() int {
	if m == nil {
		return 0
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	return int(C.specdec_model_context_limit(m.ptr))
}

// acquire read-locks the model and returns its handle, or an error if it is closed. The caller
// must call m.mu.RUnlock (if m is not nil) after the C call.
func (m *Model) acquire(what string) (*C.specdec_model, error) {
	m.mu.RLock()
	if m.ptr == nil {
		m.mu.RUnlock()
		return nil, closedError(what)
	}
	return m.ptr, nil
}
