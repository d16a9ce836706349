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
	mu   sync.RWMutex // readers: calls using ptr; writer: Close
	ptr  *C.specdec_model
	path string // as given to LoadModel (Generate loads the tokenizer from it)
}

// ModelOption configures LoadModel.
type ModelOption func(*modelOptions)

type modelOptions struct {
	device           *string
	intraThreads     *int
	variant          *string
	cudaFallback     *bool
	ioBinding        *bool
	deviceReductions *bool
	spinning         *bool
	optLevel         *int
	contextLimit     *int
}

// WithDevice selects the execution provider: "cpu" (default), "cuda" or "cuda:N". CUDA where it
// cannot run (no GPU build of ONNX Runtime, driver or CUDA library) gives ErrUnavailable, unless
// WithCUDAFallback allows the CPU instead.
func WithDevice(device string) ModelOption {
	return func(o *modelOptions) { o.device = &device }
}

// WithIntraThreads sets the ONNX Runtime intra-op thread count of a pool of the model's own; 0 (default)
// runs the model on the process's shared pool (one thread per core), which a target and its draft share.
func WithIntraThreads(n int) ModelOption {
	return func(o *modelOptions) { o.intraThreads = &n }
}

// WithVariant chooses which graph of a model folder holding several to load: "q4" loads
// model_q4.onnx (in the onnx/ subfolder of onnx-community layouts), "fp16" model_fp16.onnx,
// "default" model.onnx. Without it the folder's only graph is loaded, and a folder with several is
// refused with an error listing them. An unknown variant gives ErrIO naming the variants present.
func WithVariant(variant string) ModelOption {
	return func(o *modelOptions) { o.variant = &variant }
}

// WithCUDAFallback lets a model asked to run on CUDA load on the CPU instead where CUDA cannot be
// used (default false: LoadModel fails with ErrUnavailable). Model.CUDADevice tells where it runs.
func WithCUDAFallback(allow bool) ModelOption {
	return func(o *modelOptions) { o.cudaFallback = &allow }
}

// WithIOBinding runs every call through ONNX Runtime's IoBinding with the KV cache bound to the
// device's memory (always on for CUDA; default false on the CPU, where it runs the CUDA code path
// and gives the same output).
func WithIOBinding(enable bool) ModelOption {
	return func(o *modelOptions) { o.ioBinding = &enable }
}

// WithDeviceReductions sets whether logits are reduced on the model's device where sampling needs
// only the best of each row (the argmax, or the top-k candidates, cross to the host instead of
// whole rows). Default: on for CUDA, off on the CPU; on the CPU it gives the same tokens.
func WithDeviceReductions(enable bool) ModelOption {
	return func(o *modelOptions) { o.deviceReductions = &enable }
}

// WithSpinning sets whether idle ONNX Runtime worker threads spin before sleeping (default true).
// Turn it off when other work shares the cores between this model's calls.
func WithSpinning(spin bool) ModelOption {
	return func(o *modelOptions) { o.spinning = &spin }
}

// WithOptimizationLevel sets ONNX Runtime's graph optimization level, 0 (none) to 3 (all, the
// default); above 3 gives ErrInvalidArgument.
func WithOptimizationLevel(level int) ModelOption {
	return func(o *modelOptions) { o.optLevel = &level }
}

// set applies one native option setter.
func setOption(set func(**C.specdec_error) C.specdec_status) error {
	var cerr *C.specdec_error
	st := set(&cerr)
	return takeError(st, cerr)
}

// native builds the specdec_model_options (nil when every option is left at its default). The
// caller frees it.
func (o *modelOptions) native() (*C.specdec_model_options, error) {
	if *o == (modelOptions{}) {
		return nil, nil
	}
	copts := C.specdec_model_options_new()
	fail := func(err error) (*C.specdec_model_options, error) {
		C.specdec_model_options_free(copts)
		return nil, err
	}
	setString := func(v *string, what string, set func(*C.char, **C.specdec_error) C.specdec_status) error {
		if v == nil {
			return nil
		}
		cs, err := cString(*v, what)
		if err != nil {
			return err
		}
		defer C.free(unsafe.Pointer(cs))
		return setOption(func(e **C.specdec_error) C.specdec_status { return set(cs, e) })
	}
	setBool := func(v *bool, set func(C.bool, **C.specdec_error) C.specdec_status) error {
		if v == nil {
			return nil
		}
		return setOption(func(e **C.specdec_error) C.specdec_status { return set(C.bool(*v), e) })
	}
	setU32 := func(v *int, what string, set func(C.uint32_t, **C.specdec_error) C.specdec_status) error {
		if v == nil {
			return nil
		}
		n, err := toU32(*v, what)
		if err != nil {
			return err
		}
		return setOption(func(e **C.specdec_error) C.specdec_status { return set(n, e) })
	}
	steps := []func() error{
		func() error {
			return setString(o.device, "device", func(s *C.char, e **C.specdec_error) C.specdec_status {
				return C.specdec_model_options_set_device(copts, s, e)
			})
		},
		func() error {
			return setU32(o.intraThreads, "intra-op threads", func(n C.uint32_t, e **C.specdec_error) C.specdec_status {
				return C.specdec_model_options_set_intra_threads(copts, n, e)
			})
		},
		func() error {
			return setString(o.variant, "variant", func(s *C.char, e **C.specdec_error) C.specdec_status {
				return C.specdec_model_options_set_variant(copts, s, e)
			})
		},
		func() error {
			return setBool(o.cudaFallback, func(b C.bool, e **C.specdec_error) C.specdec_status {
				return C.specdec_model_options_set_cuda_fallback(copts, b, e)
			})
		},
		func() error {
			return setBool(o.ioBinding, func(b C.bool, e **C.specdec_error) C.specdec_status {
				return C.specdec_model_options_set_io_binding(copts, b, e)
			})
		},
		func() error {
			return setBool(o.deviceReductions, func(b C.bool, e **C.specdec_error) C.specdec_status {
				return C.specdec_model_options_set_device_reductions(copts, b, e)
			})
		},
		func() error {
			return setBool(o.spinning, func(b C.bool, e **C.specdec_error) C.specdec_status {
				return C.specdec_model_options_set_spinning(copts, b, e)
			})
		},
		func() error {
			if o.contextLimit == nil {
				return nil
			}
			if *o.contextLimit < 0 {
				return invalidArg("context limit %d is negative", *o.contextLimit)
			}
			return setOption(func(e **C.specdec_error) C.specdec_status {
				return C.specdec_model_options_set_context_limit(copts, C.size_t(*o.contextLimit), e)
			})
		},
		func() error {
			return setU32(o.optLevel, "optimization level", func(n C.uint32_t, e **C.specdec_error) C.specdec_status {
				return C.specdec_model_options_set_optimization_level(copts, n, e)
			})
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return fail(err)
		}
	}
	return copts, nil
}

// LoadModel loads a model from a folder (model.onnx, config.json, generation_config.json; or a
// builder / onnx-community folder) or an .onnx file. Errors: ErrIO (missing path or file, unknown
// variant), ErrInvalidModel, ErrUnsupportedLayout, ErrUnavailable, ErrRuntimeLoad,
// ErrInvalidArgument (bad option, or a folder with several variants and no WithVariant). Safe for
// concurrent use.
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

	copts, err := o.native()
	if err != nil {
		return nil, err
	}
	if copts != nil {
		defer C.specdec_model_options_free(copts)
	}

	var out *C.specdec_model
	var cerr *C.specdec_error
	st := C.specdec_model_load(cpath, copts, &out, &cerr)
	if err := takeError(st, cerr); err != nil {
		return nil, err
	}
	m := &Model{ptr: out, path: path}
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

// CUDADevice returns the CUDA device the model runs on, or -1 when it runs on the CPU (also after a
// CUDA fallback, see WithCUDAFallback) or the model is closed.
func (m *Model) CUDADevice() int {
	if m == nil {
		return -1
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	return int(C.specdec_model_cuda_device(m.ptr))
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
