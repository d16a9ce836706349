package specdec

// Logging: the threshold of specdec's and ONNX Runtime's messages, and a Go function receiving
// them. The library calls the C shim below from any thread (ONNX Runtime's workers included),
// with a runtime/cgo.Handle as user_data; the exported trampoline of log_export.go recovers
// panics, so none unwinds into the library.

/*
#include <stdint.h>
#include "specdec.h"

extern void specdecgoLog(uintptr_t handle, uint32_t level, char *source, char *message);

void specdecgo_log_shim(void *user_data, specdec_log_level level, const char *source, const char *message) {
    specdecgoLog((uintptr_t)user_data, (uint32_t)level, (char *)source, (char *)message);
}

static void *specdecgo_log_user_data(uintptr_t handle) { return (void *)handle; }
*/
import "C"

import (
	"fmt"
	"runtime/cgo"
	"sync"
)

// LogLevel is the severity of a log message, and the threshold of SetLogLevel.
type LogLevel uint32

const (
	LogVerbose LogLevel = C.SPECDEC_LOG_LEVEL_VERBOSE
	LogInfo    LogLevel = C.SPECDEC_LOG_LEVEL_INFO
	LogWarning LogLevel = C.SPECDEC_LOG_LEVEL_WARNING
	LogError   LogLevel = C.SPECDEC_LOG_LEVEL_ERROR
	LogFatal   LogLevel = C.SPECDEC_LOG_LEVEL_FATAL
	// LogOff, as a threshold, silences every message.
	LogOff LogLevel = C.SPECDEC_LOG_LEVEL_OFF
)

func (l LogLevel) String() string {
	switch l {
	case LogVerbose:
		return "verbose"
	case LogInfo:
		return "info"
	case LogWarning:
		return "warning"
	case LogError:
		return "error"
	case LogFatal:
		return "fatal"
	case LogOff:
		return "off"
	}
	return fmt.Sprintf("LogLevel(%d)", uint32(l))
}

// SetLogLevel sets the threshold of every message, specdec's own and ONNX Runtime's (LogOff
// silences both). Until it is called specdec's pass from LogWarning and ONNX Runtime's from
// LogError. It takes effect at once, also for loaded models. Safe for concurrent use, also from a
// log function. Errors: ErrInvalidArgument (unknown level).
func SetLogLevel(level LogLevel) error {
	var cerr *C.specdec_error
	return takeError(C.specdec_set_log_level(C.uint32_t(level), &cerr), cerr)
}

// GetLogLevel returns the threshold of specdec's own messages.
func GetLogLevel() LogLevel { return LogLevel(C.specdec_get_log_level()) }

// LogFunc receives one log message: its severity, its source ("specdec" or "onnxruntime") and the
// text. It may run on any goroutine or OS thread, several at once, so it must be safe for
// concurrent use. A panic in it is recovered and the message dropped. It may call the package's
// functions except SetLogFunc (ErrBusy); messages those log on the same thread are dropped.
type LogFunc func(level LogLevel, source, message string)

var logState struct {
	mu     sync.Mutex
	handle cgo.Handle // of the current LogFunc; 0 for none
}

// SetLogFunc sends every message that passes the threshold to fn; nil restores the default (one
// plain line per message on stderr). It replaces an earlier function, waiting for calls of it
// running on other threads to return. Errors: ErrBusy (called from inside a LogFunc).
func SetLogFunc(fn LogFunc) error {
	logState.mu.Lock()
	defer logState.mu.Unlock()
	var h cgo.Handle
	var cerr *C.specdec_error
	var st C.specdec_status
	if fn == nil {
		st = C.specdec_set_log_callback(nil, nil, &cerr)
	} else {
		h = cgo.NewHandle(fn)
		st = C.specdec_set_log_callback(C.specdec_log_fn(C.specdecgo_log_shim), C.specdecgo_log_user_data(C.uintptr_t(h)), &cerr)
	}
	if err := takeError(st, cerr); err != nil {
		if h != 0 {
			h.Delete()
		}
		return err
	}
	// The library no longer calls the old function (it waited for running calls): drop it.
	if logState.handle != 0 {
		logState.handle.Delete()
	}
	logState.handle = h
	return nil
}
