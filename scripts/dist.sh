#!/usr/bin/env bash
# Package the C ABI of a release build (`cargo build --release`, or `make build`) as
# target/dist/specdec-<version>-linux-<arch>.tar.gz and print the tarball's path.
#
# Layout (everything under specdec-<version>/):
#   lib/libspecdec.so.<version>                the shared library (debug info stripped, symbols kept)
#   lib/libspecdec.so.<abi> -> libspecdec.so.<version>   its SONAME, what programs load at run time
#   lib/libspecdec.so -> libspecdec.so.<abi>   the link-time name (-lspecdec)
#   lib/libspecdec.a                           the static library (debug info stripped)
#   lib/pkgconfig/specdec.pc                   relocatable: the prefix is found from the .pc file
#   include/specdec.h, include/specdec.hpp     the C header and the C++ header-only wrapper
#   README.md, share/doc/specdec/ONNXRUNTIME.txt
#
# `make dist` builds first; `make dist-test` (scripts/check-dist.sh) checks the tarball.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

die() { echo "dist: $*" >&2; exit 1; }

for tool in strip readelf tar gzip; do
  command -v "$tool" >/dev/null || die "$tool is required (binutils, tar, gzip)"
done

# Version: the `version` key of the [package] table of Cargo.toml.
version="$(awk '
  /^\[/ { in_pkg = ($0 ~ /^\[package\][[:space:]]*$/) }
  in_pkg && /^[[:space:]]*version[[:space:]]*=/ {
    sub(/^[^=]*=[[:space:]]*"/, ""); sub(/".*$/, ""); print; exit
  }' Cargo.toml)"
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "cannot read a MAJOR.MINOR.PATCH version from Cargo.toml (got '$version')"
arch="$(uname -m)"

so_src=target/release/libspecdec.so
a_src=target/release/libspecdec.a
h_src=include/specdec.h
hpp_src=bindings/cpp/specdec.hpp
[ -f "$so_src" ] || die "$so_src is missing: run 'cargo build --release' (or 'make build') first"
[ -f "$a_src" ] || die "$a_src is missing: run 'cargo build --release' (or 'make build') first"
[ -f "$h_src" ] || die "$h_src is missing"
[ -f README.md ] || die "README.md is missing"
[ -f "$hpp_src" ] || die "$hpp_src (the C++ wrapper) is missing: it is part of every release"

# The header's version and ABI macros must agree with Cargo.toml and with the library's SONAME.
hdr_macro() { sed -n "s/^#define $1 \\([0-9][0-9]*\\)\$/\\1/p" "$h_src"; }
hdr_version="$(hdr_macro SPECDEC_VERSION_MAJOR).$(hdr_macro SPECDEC_VERSION_MINOR).$(hdr_macro SPECDEC_VERSION_PATCH)"
[ "$hdr_version" = "$version" ] || die "$h_src says version $hdr_version, Cargo.toml says $version (run make header)"
abi="$(hdr_macro SPECDEC_ABI_VERSION)"
[ -n "$abi" ] || die "no SPECDEC_ABI_VERSION in $h_src"
soname="$(readelf -d "$so_src" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')"
[ "$soname" = "libspecdec.so.$abi" ] || die "$so_src has SONAME '${soname:-none}', expected libspecdec.so.$abi (see build.rs)"
# A library older than the header means a stale build.
[ "$so_src" -nt "$h_src" ] || [ "$so_src" -ef "$h_src" ] || echo "dist: warning: $so_src is older than $h_src; is the build stale?" >&2

name="specdec-$version"
dist=target/dist
stage="$dist/stage"
tarball="$dist/$name-linux-$arch.tar.gz"
rm -rf "$stage"
top="$stage/$name"
mkdir -p "$top/lib/pkgconfig" "$top/include" "$top/share/doc/specdec"

real="libspecdec.so.$version"
strip --strip-debug -o "$top/lib/$real" "$so_src"
chmod 0755 "$top/lib/$real"
ln -s "$real" "$top/lib/$soname"
ln -s "$soname" "$top/lib/libspecdec.so"
strip --strip-debug -o "$top/lib/libspecdec.a" "$a_src"
chmod 0644 "$top/lib/libspecdec.a"

install -m 0644 "$h_src" "$top/include/specdec.h"
install -m 0644 "$hpp_src" "$top/include/specdec.hpp"
install -m 0644 README.md "$top/README.md"

description="$(awk '
  /^\[/ { in_pkg = ($0 ~ /^\[package\][[:space:]]*$/) }
  in_pkg && /^[[:space:]]*description[[:space:]]*=/ {
    sub(/^[^=]*=[[:space:]]*"/, ""); sub(/"[[:space:]]*$/, ""); print; exit
  }' Cargo.toml)"
# Libs.private: what the Rust standard library and the dependencies of libspecdec.a need when it
# is linked statically (unwinding from libgcc_s, dlopen for ONNX Runtime, libm for exp/log).
# -lpthread and -ldl are empty stubs on glibc >= 2.34 but needed on older ones.
cat > "$top/lib/pkgconfig/specdec.pc" <<EOF
prefix=\${pcfiledir}/../..
exec_prefix=\${prefix}
libdir=\${exec_prefix}/lib
includedir=\${prefix}/include

Name: specdec
Description: ${description:-Exact speculative decoding over ONNX Runtime}
Version: $version
Libs: -L\${libdir} -lspecdec
Libs.private: -lgcc_s -lpthread -ldl -lm
Cflags: -I\${includedir}
EOF

title="specdec $version and ONNX Runtime"
cat > "$top/share/doc/specdec/ONNXRUNTIME.txt" <<EOF
$title
${title//?/=}

ONNX Runtime is not bundled. libspecdec loads libonnxruntime.so at run time (dlopen) the first
time it is needed, from the first of:

  1. the path given to specdec_runtime_init(path, &err), when path is not NULL;
  2. the environment variable ORT_DYLIB_PATH;
  3. libonnxruntime.so in the same folder as libspecdec itself (copy or link it into lib/ of
     this package and nothing needs configuring);
  4. a default compiled into the library: .deps/onnxruntime/libonnxruntime.so inside the source
     checkout it was built from (an absolute path on the build machine). Elsewhere it does not
     exist. An empty ORT_DYLIB_PATH counts as unset.

Loading a model without calling specdec_runtime_init first initialises the runtime in the
same order (steps 2 to 4). A missing, unloadable or too old library is reported as
SPECDEC_STATUS_RUNTIME_LOAD, with a message naming the path and the loader's reason.

ONNX Runtime 1.31 or newer is required (C API version 31); this release is tested with 1.32.0.
One way to get it without root or a system install is the onnxruntime wheel from PyPI, which
holds libonnxruntime.so.1.32.0 under onnxruntime/capi/:

  pip download --no-deps --only-binary=:all: onnxruntime==1.32.0 -d /tmp/ort
  unzip -j /tmp/ort/onnxruntime-1.32.0-*.whl 'onnxruntime/capi/libonnxruntime.so*' -d /opt/onnxruntime
  export ORT_DYLIB_PATH=/opt/onnxruntime/libonnxruntime.so.1.32.0

(The wheel's file name depends on the Python version and platform; pip picks the one for the
running Python. Any wheel of that version for this CPU architecture holds the same library.)

Linking: use pkg-config with PKG_CONFIG_PATH=<this folder>/lib/pkgconfig.
  shared:  cc app.c \$(pkg-config --cflags --libs specdec) -Wl,-rpath,<this folder>/lib
  static:  cc app.c \$(pkg-config --cflags specdec) <this folder>/lib/libspecdec.a \\
              \$(pkg-config --static --libs-only-l specdec | sed 's/-lspecdec//')
EOF

mkdir -p "$dist"
rm -f "$tarball"
# Set SOURCE_DATE_EPOCH for a byte-reproducible tarball (it fixes the files' times).
tar_opts=(--sort=name --owner=0 --group=0 --numeric-owner)
[ -n "${SOURCE_DATE_EPOCH:-}" ] && tar_opts+=(--mtime="@$SOURCE_DATE_EPOCH" --clamp-mtime)
tar "${tar_opts[@]}" -C "$stage" -cf - "$name" | gzip -n -9 > "$tarball.tmp"
mv "$tarball.tmp" "$tarball"
rm -rf "$stage"
echo "$root/$tarball"
