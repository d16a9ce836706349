//go:build specdec_checkout && !specdec_manual

package specdec

// -tags specdec_checkout: build against the source checkout's target/release/libspecdec.so (make
// build), found at run time through an rpath to that folder. For development in the checkout only:
// the program then depends on the checkout's path.

/*
#cgo CFLAGS: -I${SRCDIR}
#cgo LDFLAGS: -L${SRCDIR}/../../../target/release -lspecdec -Wl,-rpath,${SRCDIR}/../../../target/release
*/
import "C"
