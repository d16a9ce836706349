#!/usr/bin/env bash
# Build the example server (examples/server) and its load test, then run the load test: the server
# in engine mode and in generator mode on the demo pair, 1, 4, 16 and 64 concurrent clients, greedy
# outputs checked token for token against batch-1 output, some clients disconnecting mid-stream
# (slots must be freed), the server's RSS after a warm-up and at the end; a Markdown table.
#   scripts/load-test.sh          the short form (make load-test, part of make test; under 30 s):
#                                 few requests per level, 24 new tokens each
#   scripts/load-test.sh --full   the documented run (make load-test-full, two minutes or so): 64 new
#                                 tokens per request, more requests, the client counts twice (the RSS
#                                 after each level shows whether memory plateaus); writes
#                                 benches/results/load-test.md
# Further arguments go to the load test (see examples/server/loadtest/main.go).
# Needs target/release/libspecdec.so (make build) and Go 1.23 or newer.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

full=0
if [ "${1:-}" = "--full" ]; then
  full=1
  shift
fi
if [ ! -f target/release/libspecdec.so ]; then
  echo "load-test: target/release/libspecdec.so is missing; run: make build" >&2
  exit 1
fi
if [ ! -e target/release/libspecdec.so.1 ]; then
  ln -sf libspecdec.so target/release/libspecdec.so.1
fi
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
  export PATH="/usr/local/go/bin:$PATH"
fi
export GOTOOLCHAIN=local CGO_ENABLED=1 GOFLAGS=-mod=mod GOPROXY=off

out="target/server"
mkdir -p "$out"
echo "== go vet, go test -race and build (examples/server, examples/server/loadtest; -tags specdec_checkout)"
(
  cd examples/server
  go vet -tags specdec_checkout ./...
  # The HTTP layer on the test fixtures: validation (400s), greedy = Generator, streaming, stop
  # strings, a disconnecting client, in both modes.
  go test -tags specdec_checkout -race -count=1 ./...
  go build -tags specdec_checkout -o "../../$out/server" .
  go build -tags specdec_checkout -o "../../$out/loadtest" ./loadtest
)

models=(--target models/demo/target --draft models/demo/draft)
if [ "$full" = 1 ]; then
  echo "== load test (full): engine vs generator, 1/4/16/64 clients"
  "$out/loadtest" --server "$out/server" "${models[@]}" --clients 1,4,16,64 --max-tokens 64 \
    --requests-per-client 4 --min-requests 24 --level-time 90s --max-batch 64 --passes 2 \
    --out benches/results/load-test.md "$@"
  echo "== wrote benches/results/load-test.md"
else
  echo "== load test (short): engine vs generator, 1/4/16/64 clients"
  "$out/loadtest" --server "$out/server" "${models[@]}" --clients 1,4,16,64 --max-tokens 24 \
    --requests-per-client 1 --min-requests 8 --level-time 6s --max-batch 64 \
    --out "$out/load-test.md" "$@"
fi
