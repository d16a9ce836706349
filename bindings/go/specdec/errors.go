package specdec

/*
#include "specdec.h"
*/
import "C"

import "fmt"

// Status is a specdec status code (specdec_status in the C header).
type Status uint32

// The status codes of the C ABI.
const (
	StatusOK                Status = C.SPECDEC_STATUS_OK
	StatusNullParameter     Status = C.SPECDEC_STATUS_NULL_PARAMETER
	StatusInvalidArgument   Status = C.SPECDEC_STATUS_INVALID_ARGUMENT
	StatusRuntimeLoad       Status = C.SPECDEC_STATUS_RUNTIME_LOAD
	StatusIO                Status = C.SPECDEC_STATUS_IO
	StatusInvalidModel      Status = C.SPECDEC_STATUS_INVALID_MODEL
	StatusUnsupportedLayout Status = C.SPECDEC_STATUS_UNSUPPORTED_LAYOUT
	StatusVocabMismatch     Status = C.SPECDEC_STATUS_VOCAB_MISMATCH
	StatusTokenOutOfRange   Status = C.SPECDEC_STATUS_TOKEN_OUT_OF_RANGE
	StatusContextLimit      Status = C.SPECDEC_STATUS_CONTEXT_LIMIT
	StatusTokenizer         Status = C.SPECDEC_STATUS_TOKENIZER
	StatusCancelled         Status = C.SPECDEC_STATUS_CANCELLED
	StatusInference         Status = C.SPECDEC_STATUS_INFERENCE
	StatusUnavailable       Status = C.SPECDEC_STATUS_UNAVAILABLE
	StatusBufferTooSmall    Status = C.SPECDEC_STATUS_BUFFER_TOO_SMALL
	StatusInvalidUTF8       Status = C.SPECDEC_STATUS_INVALID_UTF8
	StatusBusy              Status = C.SPECDEC_STATUS_BUSY
	StatusMemoryBudget      Status = C.SPECDEC_STATUS_MEMORY_BUDGET
	StatusCallback          Status = C.SPECDEC_STATUS_CALLBACK
	StatusPanic             Status = C.SPECDEC_STATUS_PANIC
)

// String returns the library's name of the code, for example "SPECDEC_STATUS_IO".
func (s Status) String() string {
	return C.GoString(C.specdec_status_name(C.uint32_t(s)))
}

// Error is a failure reported by the library: its status code and message.
type Error struct {
	Code    Status
	Message string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "specdec: " + e.Code.String()
	}
	return fmt.Sprintf("specdec: %s (%s)", e.Message, e.Code)
}

// Is reports whether target is an *Error with the same code, so that
// errors.Is(err, specdec.ErrVocabMismatch) holds for every vocabulary-mismatch error whatever its
// message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t != nil && e != nil && t.Code == e.Code
}

// Sentinels for errors.Is; they match any *Error with the same code.
var (
	ErrNullParameter     = &Error{Code: StatusNullParameter}
	ErrInvalidArgument   = &Error{Code: StatusInvalidArgument}
	ErrRuntimeLoad       = &Error{Code: StatusRuntimeLoad}
	ErrIO                = &Error{Code: StatusIO}
	ErrInvalidModel      = &Error{Code: StatusInvalidModel}
	ErrUnsupportedLayout = &Error{Code: StatusUnsupportedLayout}
	ErrVocabMismatch     = &Error{Code: StatusVocabMismatch}
	ErrTokenOutOfRange   = &Error{Code: StatusTokenOutOfRange}
	ErrContextLimit      = &Error{Code: StatusContextLimit}
	ErrTokenizer         = &Error{Code: StatusTokenizer}
	ErrCancelled         = &Error{Code: StatusCancelled}
	ErrInference         = &Error{Code: StatusInference}
	ErrUnavailable       = &Error{Code: StatusUnavailable}
	ErrBufferTooSmall    = &Error{Code: StatusBufferTooSmall}
	ErrInvalidUTF8       = &Error{Code: StatusInvalidUTF8}
	ErrBusy              = &Error{Code: StatusBusy}
	ErrMemoryBudget      = &Error{Code: StatusMemoryBudget}
	ErrCallback          = &Error{Code: StatusCallback}
	ErrPanic             = &Error{Code: StatusPanic}
)

// takeError turns a status and the error object the call filled into a Go error, freeing the
// error object. It returns nil for StatusOK.
func takeError(st C.specdec_status, cerr *C.specdec_error) error {
	if cerr == nil {
		if Status(st) == StatusOK {
			return nil
		}
		return &Error{Code: Status(st)}
	}
	e := &Error{Code: Status(C.specdec_error_code(cerr)), Message: C.GoString(C.specdec_error_message(cerr))}
	C.specdec_error_free(cerr)
	if Status(st) != StatusOK {
		e.Code = Status(st)
	}
	return e
}

// closedError is returned by methods of an object after Close: the C library would see a NULL
// handle, so the code is the one it gives for that.
func closedError(what string) error {
	return &Error{Code: StatusNullParameter, Message: what + " is closed"}
}

func invalidArg(format string, args ...any) error {
	return &Error{Code: StatusInvalidArgument, Message: fmt.Sprintf(format, args...)}
}
