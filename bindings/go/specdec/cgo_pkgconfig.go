//go:build !specdec_checkout && !specdec_manual

package specdec

// The default build flags: the header is the copy in this folder (specdec.h, kept identical to the
// repository's include/specdec.h by scripts/check-go.sh, so that `go mod vendor` carries it), and
// the library comes from pkg-config: set PKG_CONFIG_PATH to the lib/pkgconfig folder of an unpacked
// dist tarball (or of an install prefix). Nothing here puts a path into the program's RUNPATH: add
// one with CGO_LDFLAGS="-Wl,-rpath,<prefix>/lib", or set LD_LIBRARY_PATH when running.
//
// Other choices (build tags): specdec_checkout (the source checkout's target/release, with an rpath
// to it) and specdec_manual (only -lspecdec: give -L and the rest in CGO_LDFLAGS). See README.md.

/*
#cgo CFLAGS: -I${SRCDIR}
#cgo pkg-config: specdec
*/
import "C"
