package specdec

/*
#include <stdlib.h>
#include "specdec.h"
*/
import "C"

import (
	"strings"
	"unsafe"
)

// Version numbers of the header this package was compiled against.
const (
	VersionMajor = C.SPECDEC_VERSION_MAJOR
	VersionMinor = C.SPECDEC_VERSION_MINOR
	VersionPatch = C.SPECDEC_VERSION_PATCH
	// HeaderABIVersion is the ABI version of the header; ABIVersion returns the loaded library's.
	HeaderABIVersion = C.SPECDEC_ABI_VERSION
	// MaxGamma is the largest draft length WithGamma accepts.
	MaxGamma = C.SPECDEC_MAX_GAMMA
)

// Version returns the loaded library's version, "MAJOR.MINOR.PATCH".
func Version() string {
	return C.GoString(C.specdec_version())
}

// ABIVersion returns the ABI version of the loaded library (compare with HeaderABIVersion).
func ABIVersion() int {
	return int(C.specdec_abi_version())
}

// RuntimeInit loads ONNX Runtime for the process from the shared library at path. With an empty
// path the library looks, in order, at $ORT_DYLIB_PATH, libonnxruntime.so beside libspecdec, and
// the source checkout's .deps/onnxruntime/libonnxruntime.so. Calling it is optional (loading a
// model initialises the runtime from the default location) but gives a clear ErrRuntimeLoad early.
// Calling it again succeeds if the same library (or "") is named. Safe for concurrent use.
func RuntimeInit(path string) error {
	var cpath *C.char
	if path != "" {
		p, err := cString(path, "ONNX Runtime path")
		if err != nil {
			return err
		}
		defer C.free(unsafe.Pointer(p))
		cpath = p
	}
	var cerr *C.specdec_error
	st := C.specdec_runtime_init(cpath, &cerr)
	return takeError(st, cerr)
}

// cString copies s into C memory (free it with C.free). A string holding a NUL byte cannot cross
// the C ABI intact, so it is refused rather than silently truncated.
func cString(s, what string) (*C.char, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return nil, invalidArg("%s contains a NUL byte", what)
	}
	return C.CString(s), nil
}

// idsPtr returns a pointer to the first id, or nil for an empty slice (the C ABI accepts NULL with
// length 0). The C side only reads the ids during the call and keeps no reference.
func idsPtr(ids []uint32) *C.uint32_t {
	if len(ids) == 0 {
		return nil
	}
	return (*C.uint32_t)(unsafe.Pointer(&ids[0]))
}

// copyIDs copies n ids owned by the library into a new Go slice.
func copyIDs(p *C.uint32_t, n C.size_t) []uint32 {
	if n == 0 || p == nil {
		return []uint32{}
	}
	out := make([]uint32, int(n))
	copy(out, unsafe.Slice((*uint32)(unsafe.Pointer(p)), int(n)))
	return out
}
