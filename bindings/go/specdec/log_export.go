package specdec

/*
#include <stdint.h>
*/
import "C"

import "runtime/cgo"

//export specdecgoLog
func specdecgoLog(handle C.uintptr_t, level C.uint32_t, source, message *C.char) {
	defer func() { _ = recover() }() // a panicking LogFunc loses its message, never the process
	fn := cgo.Handle(handle).Value().(LogFunc)
	fn(LogLevel(level), C.GoString(source), C.GoString(message))
}
