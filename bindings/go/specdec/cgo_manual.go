//go:build specdec_manual

package specdec

// -tags specdec_manual: no pkg-config and no paths; CGO_LDFLAGS gives -L<dir> (and an rpath if
// wanted), for example CGO_LDFLAGS="-L/opt/specdec/lib -Wl,-rpath,/opt/specdec/lib".

/*
#cgo CFLAGS: -I${SRCDIR}
#cgo LDFLAGS: -lspecdec
*/
import "C"
