# specdec: the two commands of the README are `make demo` and `make test`.
CARGO ?= cargo
PYTHON ?= python3

.PHONY: all setup build demo test models clean

all: build

setup:
	bash scripts/setup.sh

build: setup
	$(CARGO) build --release
	@# cargo names the shared library libspecdec.so; programs linked with -lspecdec look for its SONAME.
	ln -sf libspecdec.so target/release/libspecdec.so.1

# Speculative generation on the bundled demo pair beside target-only generation.
demo: build
	./target/release/specdec demo

# The benchmark (see README): speed-up per gamma at T = 0 and 1 beside the paper's prediction,
# JSON + markdown + PNG in target/bench/. Several minutes; run it on an otherwise idle machine.
BENCH_ARGS ?= --variants target,gammas,auto,heuristic,confidence,ngram,ngram-auto,bigram,opt,iobinding
.PHONY: bench bench-smoke peer-bench
bench: build
	bash scripts/bench.sh $(BENCH_ARGS)

# The bench command end to end on little work (every variant; greedy outputs must agree).
bench-smoke: build
	./target/release/specdec bench --quick --variants target,gammas,auto,heuristic,confidence,ngram,ngram-auto,bigram,unigram,opt,iobinding --out target/bench-smoke

# specdec against onnxruntime-genai 0.18 on the same pair (benches/PEER.md).
peer-bench: build
	bash scripts/peer-bench.sh

# Every test: formatting (crate and fuzz targets) and binding coverage first (seconds), Rust unit
# and integration tests (exactness, bad input), doc tests, the header's freshness, the C test
# programs (ABI by handle, bad-input catalog, concurrency; also under valgrind), the C++ wrapper,
# the dist tarball, the Go and C# bindings, the example server under load (short form), the fuzz
# targets briefly, and clippy last.
test: setup
	$(MAKE) fmt-check check-bindings check-imports readme-figures
	$(CARGO) test --release --all-targets
	$(CARGO) test --release --doc
	$(MAKE) check-header capi-test cpp-test dist-test go-test csharp-test load-test bench-smoke genai-parity
	$(MAKE) fuzz-test
	$(MAKE) lint

# rustfmt.toml's style, checked on the crate and on the fuzz targets (their own workspace).
.PHONY: fmt fmt-check lint check-bindings check-imports
fmt:
	$(CARGO) fmt
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml

fmt-check:
	$(CARGO) fmt --check
	$(CARGO) fmt --check --manifest-path fuzz/Cargo.toml

# Clippy on every target (lib, bin, tests, examples, benches), warnings as errors.
lint:
	$(CARGO) clippy --release --all-targets -- -D warnings

# Every specdec_* function and SPECDEC_STATUS_* value of include/specdec.h is in the Go, C# and C++
# bindings, or listed with its reason in bindings/coverage-allow.txt (stale entries fail too).
check-bindings:
	$(PYTHON) scripts/check-bindings.py

# The README's demo figures are those of the recorded run in benches/results/demo.txt.
.PHONY: readme-figures
readme-figures:
	$(PYTHON) scripts/readme-figures.py check

# No import cycles among the library's modules; ONNX input/output names only in src/model/.
check-imports:
	$(PYTHON) scripts/check-imports.py

# specdec's greedy output beside onnxruntime-genai 0.18's own, live, on every committed builder
# export (models/builder/), in a small venv of its own (onnxruntime-genai and numpy, ~200 MB).
GENAI_VENV ?= .venv-genai
.PHONY: genai-parity
genai-parity: build
	@test -x $(GENAI_VENV)/bin/python && cmp -s scripts/requirements-genai.txt $(GENAI_VENV)/requirements.txt || { \
	  rm -rf $(GENAI_VENV) && $(PYTHON) -m venv $(GENAI_VENV) && \
	  $(GENAI_VENV)/bin/pip install -q -r scripts/requirements-genai.txt && \
	  cp scripts/requirements-genai.txt $(GENAI_VENV)/requirements.txt; }
	$(GENAI_VENV)/bin/python tests/genai/check_genai_parity.py --specdec target/release/specdec

# The three cargo-fuzz targets (C ABI argument layer, model layout, tokenizer), briefly, from their
# committed seed corpora; `bash scripts/fuzz.sh SECONDS` for longer runs.
FUZZ_SECONDS ?= 20
.PHONY: fuzz-test
fuzz-test: setup
	bash scripts/fuzz.sh $(FUZZ_SECONDS)

# Regenerate the tokenizer and all models (about 70 minutes on 2 cores; see README).
models:
	$(PYTHON) -m venv .venv-models
	.venv-models/bin/pip install -q -r scripts/requirements-models.txt
	.venv-models/bin/python scripts/make_models.py --stage all

clean:
	$(CARGO) clean

# The C header is generated from src/ffi by cbindgen; CI checks that the committed one is fresh.
CBINDGEN_VERSION = 0.29.4
.PHONY: header check-header cbindgen
cbindgen:
	@command -v cbindgen >/dev/null && cbindgen --version | grep -q "$(CBINDGEN_VERSION)" || $(CARGO) install cbindgen --locked --version $(CBINDGEN_VERSION)

header: cbindgen
	cbindgen --config cbindgen.toml --crate specdec --output include/specdec.h
	@# The Go package carries a copy so that `go mod vendor` builds (scripts/check-go.sh diffs it).
	cp include/specdec.h bindings/go/specdec/specdec.h

check-header: cbindgen
	@tmp=$$(mktemp) && cbindgen --config cbindgen.toml --crate specdec --output $$tmp 2>/dev/null && \
	  if diff -u include/specdec.h $$tmp; then echo "include/specdec.h is fresh"; rm -f $$tmp; \
	  else echo "include/specdec.h is stale: run make header" >&2; rm -f $$tmp; exit 1; fi

# C ABI checks (scripts written per check; each builds what it needs from target/release).
.PHONY: capi-test cpp-test dist dist-test go-test csharp-test
capi-test: build
	bash scripts/check-c.sh

cpp-test: build
	bash scripts/check-cpp.sh

dist: build
	bash scripts/dist.sh

dist-test: dist
	bash scripts/check-dist.sh

go-test: build
	bash scripts/check-go.sh

csharp-test: build
	bash scripts/check-csharp.sh

# The example server (examples/server) under concurrent clients, engine mode beside generator mode:
# every request completes or gets an error response, greedy outputs equal batch-1 output, cancelled
# requests free their slots (scripts/load-test.sh). load-test is the short form (under 30 s, part of
# make test); load-test-full the documented run (benches/results/load-test.md, a few minutes).
.PHONY: load-test load-test-full
load-test: build
	bash scripts/load-test.sh

load-test-full: build
	bash scripts/load-test.sh --full
