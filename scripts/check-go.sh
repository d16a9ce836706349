#!/usr/bin/env bash
# Check the Go binding: go vet and the tests (under the race detector) of bindings/go/specdec, then
# build examples/go and run it on the test fixtures. Needs target/release/libspecdec.so (make build)
# and Go 1.22 or newer (PATH, or /usr/local/go/bin). Usage: scripts/check-go.sh
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

echo "== go vet (bindings/go/specdec)"
(cd bindings/go/specdec && go vet ./...)
echo "== go test -race (bindings/go/specdec)"
(cd bindings/go/specdec && go test -race -count=1 -v ./... 2>&1 | grep -Ev '^=== (RUN|PAUSE|CONT)'; exit "${PIPESTATUS[0]}")

echo "== go vet and build (examples/go)"
mkdir -p target/go
(cd examples/go && go vet ./... && go build -o ../../target/go/example .)

echo "== running the example on the fixtures"
./target/go/example -target models/fixtures/llama -draft models/fixtures/draft -prompt "def __init__(self, name):" -max 48
./target/go/example -target models/fixtures/llama -drafter ngram -policy auto -prompt "def __init__(self, name):" -max 48

echo "== Go binding checks passed"
