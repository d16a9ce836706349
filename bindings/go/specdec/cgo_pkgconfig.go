//go:build specdec_pkgconfig

package specdec

// With -tags specdec_pkgconfig the flags come from pkg-config: set PKG_CONFIG_PATH to the lib/pkgconfig
// folder of an unpacked dist tarball (or an install prefix). specdec.pc has no rpath: add one with
// CGO_LDFLAGS="-Wl,-rpath,<prefix>/lib", or set LD_LIBRARY_PATH when running.

// #cgo pkg-config: specdec
import "C"
