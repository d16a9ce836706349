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
#   lib/libonnxruntime.so.<ort> (+ libonnxruntime.so link)  ONNX Runtime, found beside libspecdec
#   include/specdec.h, include/specdec.hpp     the C header and the C++ header-only wrapper
#   README.md, share/doc/specdec/ONNXRUNTIME.txt
#   share/doc/onnxruntime/LICENSE, ThirdPartyNotices.txt   ONNX Runtime's licence (from its wheel)
#
# Beside the tarball: target/dist/nuget/ (the NuGet layout: Specdec.nuspec, lib/net45/Specdec.dll
# when Mono's mcs is there, runtimes/linux-<rid>/native/libspecdec.so and libonnxruntime.so) and,
# with zip, target/dist/Specdec.<version>.nupkg (that folder zipped; a .nupkg is a zip).
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

# ONNX Runtime: the library scripts/setup.sh fetched, and the licence texts of the same wheel
# (setup.sh keeps them; otherwise fetched here once into target/ort-license/ with pip download).
ort_dir=.deps/onnxruntime
ort_real="$(readlink -f "$ort_dir/libonnxruntime.so" 2>/dev/null || true)"
[ -f "$ort_real" ] || die "$ort_dir/libonnxruntime.so is missing: run 'make setup' (scripts/setup.sh) first"
ort_name="$(basename "$ort_real")"
ort_version="${ort_name#libonnxruntime.so.}"
[[ "$ort_version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "cannot read ONNX Runtime's version from $ort_name"
lic_dir=""
for d in "$ort_dir" "target/ort-license/$ort_version"; do
  if [ -f "$d/LICENSE" ] && [ -f "$d/ThirdPartyNotices.txt" ]; then lic_dir="$d"; break; fi
done
if [ -z "$lic_dir" ]; then
  lic_dir="target/ort-license/$ort_version"
  echo "dist: fetching ONNX Runtime $ort_version's licence (pip download onnxruntime==$ort_version --no-deps)" >&2
  wheel_tmp="$(mktemp -d)"
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$wheel_tmp" "onnxruntime==$ort_version" \
    || die "pip download onnxruntime==$ort_version failed: ONNX Runtime's licence must ship with its library"
  mkdir -p "$lic_dir"
  python3 - "$wheel_tmp" "$lic_dir" <<'PY'
import glob, os, sys, zipfile
tmp, dest = sys.argv[1:]
with zipfile.ZipFile(glob.glob(os.path.join(tmp, "onnxruntime-*.whl"))[0]) as z:
    for name in ("LICENSE", "ThirdPartyNotices.txt"):
        with z.open("onnxruntime/" + name) as src, open(os.path.join(dest, name), "wb") as out:
            out.write(src.read())
PY
  rm -rf "$wheel_tmp"
fi

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
mkdir -p "$top/lib/pkgconfig" "$top/include" "$top/share/doc/specdec" "$top/share/doc/onnxruntime"

real="libspecdec.so.$version"
strip --strip-debug -o "$top/lib/$real" "$so_src"
chmod 0755 "$top/lib/$real"
ln -s "$real" "$top/lib/$soname"
ln -s "$soname" "$top/lib/libspecdec.so"
strip --strip-debug -o "$top/lib/libspecdec.a" "$a_src"
chmod 0644 "$top/lib/libspecdec.a"
# libspecdec looks for libonnxruntime.so in its own folder (after an explicit path and
# ORT_DYLIB_PATH, before the build machine's checkout).
install -m 0755 "$ort_real" "$top/lib/$ort_name"
ln -s "$ort_name" "$top/lib/libonnxruntime.so"
install -m 0644 "$lic_dir/LICENSE" "$lic_dir/ThirdPartyNotices.txt" "$top/share/doc/onnxruntime/"

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

ONNX Runtime $ort_version is bundled: lib/$ort_name (with the link lib/libonnxruntime.so), under
its own licence, share/doc/onnxruntime/LICENSE (MIT) and ThirdPartyNotices.txt. libspecdec loads it
at run time (dlopen) the first time it is needed, from the first of:

  1. the path given to specdec_runtime_init(path, &err), when path is not NULL;
  2. the environment variable ORT_DYLIB_PATH (an empty one counts as unset);
  3. libonnxruntime.so in the same folder as libspecdec itself: the bundled one, so nothing needs
     configuring;
  4. a default compiled into the library: .deps/onnxruntime/libonnxruntime.so inside the source
     checkout it was built from (an absolute path on the build machine). Elsewhere it does not
     exist.

Loading a model without calling specdec_runtime_init first initialises the runtime in the
same order (steps 2 to 4). A missing, unloadable or too old library is reported as
SPECDEC_STATUS_RUNTIME_LOAD, with a message naming the path and the loader's reason.
ONNX Runtime 1.31 or newer is required (C API version 31). With a static link (libspecdec.a),
step 3 is the program's own folder: copy lib/libonnxruntime.so* there, or set ORT_DYLIB_PATH.

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

# The NuGet layout (runtimes/<rid>/native) for .NET and Mono, and a .nupkg when zip is there.
case "$arch" in x86_64) rid=linux-x64;; aarch64) rid=linux-arm64;; *) rid="linux-$arch";; esac
nuget="$dist/nuget"
rm -rf "$nuget"
native="$nuget/runtimes/$rid/native"
mkdir -p "$native"
cp "$top/lib/$real" "$native/libspecdec.so"
cp "$ort_real" "$native/libonnxruntime.so"
install -m 0644 "$lic_dir/LICENSE" "$nuget/ONNXRUNTIME-LICENSE.txt"
install -m 0644 "$lic_dir/ThirdPartyNotices.txt" "$nuget/ONNXRUNTIME-ThirdPartyNotices.txt"
cs_files=(bindings/csharp/*.cs)
if command -v mcs >/dev/null; then
  mkdir -p "$nuget/lib/net45"
  mcs -nologo -optimize+ -target:library -out:"$nuget/lib/net45/Specdec.dll" -doc:"$nuget/lib/net45/Specdec.xml" "${cs_files[@]}" >/dev/null \
    || die "mcs failed on bindings/csharp"
else
  echo "dist: mcs not found: the NuGet layout has no lib/net45/Specdec.dll" >&2
fi
cat > "$nuget/Specdec.nuspec" <<EOF
<?xml version="1.0" encoding="utf-8"?>
<package xmlns="http://schemas.microsoft.com/packaging/2013/05/nuspec.xsd">
  <metadata>
    <id>Specdec</id>
    <version>$version</version>
    <authors>specdec</authors>
    <description>${description:-Exact speculative decoding over ONNX Runtime}. Bundles ONNX Runtime $ort_version (MIT; see ONNXRUNTIME-LICENSE.txt).</description>
    <license type="expression">MIT OR Apache-2.0</license>
  </metadata>
</package>
EOF
cat > "$nuget/[Content_Types].xml" <<'EOF'
<?xml version="1.0" encoding="utf-8"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
  <Default Extension="nuspec" ContentType="application/octet" />
  <Default Extension="dll" ContentType="application/octet" />
  <Default Extension="xml" ContentType="application/octet" />
  <Default Extension="so" ContentType="application/octet" />
  <Default Extension="txt" ContentType="application/octet" />
</Types>
EOF
nupkg="$dist/Specdec.$version.nupkg"
rm -f "$nupkg"
if command -v zip >/dev/null; then
  (cd "$nuget" && zip -q -X -r "$root/$nupkg.tmp" .) && mv "$nupkg.tmp" "$nupkg"
else
  echo "dist: zip not found: no $nupkg (the layout is in $nuget)" >&2
fi
rm -rf "$stage"
echo "$root/$tarball"
