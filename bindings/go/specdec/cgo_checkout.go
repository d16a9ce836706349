//go:build !specdec_pkgconfig

package specdec

// Build flags for the source checkout: the header from include/ and the library from
// target/release/ (make build), found at run time through an rpath. For an installed library,
// either add CGO_CFLAGS/CGO_LDFLAGS (they come before these flags, so their -L wins), or build with
// -tags specdec_pkgconfig to take the flags from pkg-config (specdec.pc) instead: see README.md.

/*
#cgo CFLAGS: -I${SRCDIR}/../../../include
#cgo LDFLAGS: -L${SRCDIR}/../../../target/release -lspecdec -Wl,-rpath,${SRCDIR}/../../../target/release
*/
import "C"
