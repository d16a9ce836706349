#!/usr/bin/env bash
# Check the Go binding: its header copy (bindings/go/specdec/specdec.h) is include/specdec.h; go vet
# and the tests (under the race detector, -tags specdec_checkout) of bindings/go/specdec; then
# examples/go built with the default flags (pkg-config, here a specdec.pc for target/release) with
# no RUNPATH into the checkout, and built vendored (go mod vendor, offline) in a temporary module
# outside the repository; each run on the test fixtures.
# Needs target/release/libspecdec.so (make build) and Go 1.23 or newer. Usage: scripts/check-go.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

lib="target/release/libspecdec.so"
if [ ! -f "$lib" ]; then
  echo "check-go: $lib is missing; run: make build" >&2
  exit 1
fi
# Programs linked with -lspecdec ask the loader for the SONAME libspecdec.so.1, which cargo does not
# create.
if [ ! -e target/release/libspecdec.so.1 ]; then
  ln -sf libspecdec.so target/release/libspecdec.so.1
fi

if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
  export PATH="/usr/local/go/bin:$PATH"
fi
if ! command -v go >/dev/null; then
  echo "check-go: go is not installed" >&2
  exit 1
fi
# Never download a toolchain; the binding and the example use only the standard library.
export GOTOOLCHAIN=local
export CGO_ENABLED=1
echo "== $(go version)"

echo "== bindings/go/specdec/specdec.h is include/specdec.h"
if ! diff -u include/specdec.h bindings/go/specdec/specdec.h; then
  echo "check-go: bindings/go/specdec/specdec.h is stale: cp include/specdec.h bindings/go/specdec/" >&2
  exit 1
fi

echo "== go vet (bindings/go/specdec, -tags specdec_checkout)"
(cd bindings/go/specdec && go vet -tags specdec_checkout ./...)
echo "== go test -race (bindings/go/specdec, -tags specdec_checkout)"
(cd bindings/go/specdec && go test -tags specdec_checkout -race -count=1 -v ./... 2>&1 | grep -Ev '^=== (RUN|PAUSE|CONT)'; exit "${PIPESTATUS[0]}")

# The default flags come from pkg-config: a specdec.pc for the checkout's target/release.
repo="$PWD"
pcdir="$repo/target/go/pkgconfig"
mkdir -p "$pcdir"
cat > "$pcdir/specdec.pc" <<EOF
libdir=$repo/target/release
includedir=$repo/include
Name: specdec
Description: specdec (source checkout)
Version: 0
Libs: -L\${libdir} -lspecdec
Cflags: -I\${includedir}
EOF
export PKG_CONFIG_PATH="$pcdir"
# no_checkout_runpath EXE: the program's RUNPATH/RPATH does not name the checkout.
no_checkout_runpath() {
  local rp
  rp="$(readelf -d "$1" | sed -n 's/.*(R[UN]*PATH).*\[\(.*\)\].*/\1/p')"
  case "$rp" in
    *"$repo"*) echo "check-go: $1 has the checkout in its RUNPATH: $rp" >&2; exit 1;;
  esac
  echo "ok: no RUNPATH into the checkout in $1 (${rp:-none})"
}

echo "== go vet and build (examples/go, default pkg-config flags)"
mkdir -p target/go
(cd examples/go && go vet ./... && go build -o ../../target/go/example .)
no_checkout_runpath target/go/example

echo "== running the example on the fixtures"
export LD_LIBRARY_PATH="$repo/target/release${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
./target/go/example -target models/fixtures/llama -draft models/fixtures/draft -prompt "def __init__(self, name):" -max 48
./target/go/example -target models/fixtures/llama -drafter ngram -policy auto -prompt "def __init__(self, name):" -max 48

echo "== vendored build of examples/go in a module outside the repository (offline)"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/specdec-check-go.XXXXXX")"
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
cp examples/go/main.go "$tmp/"
cat > "$tmp/go.mod" <<EOF
module example.com/specdec-user

go 1.23

require github.com/specdec/specdec/bindings/go/specdec v0.0.0

replace github.com/specdec/specdec/bindings/go/specdec => $repo/bindings/go/specdec
EOF
(
  cd "$tmp"
  export GOPROXY=off GOFLAGS=-mod=mod GOPATH="$tmp/gopath"
  go mod vendor
  test -f vendor/github.com/specdec/specdec/bindings/go/specdec/specdec.h
  echo "ok: go mod vendor carried specdec.h"
  GOFLAGS=-mod=vendor go build -o example .
)
no_checkout_runpath "$tmp/example"
(cd "$tmp" && ./example -target "$repo/models/fixtures/llama" -draft "$repo/models/fixtures/draft" -prompt "def main():" -max 16)

echo "== Go binding checks passed"
