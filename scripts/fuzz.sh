#!/usr/bin/env bash
# Run the cargo-fuzz targets of fuzz/ (libFuzzer + AddressSanitizer), each for SECONDS (default 30):
#   capi       the C ABI's configuration and generation argument layer (tiny fixture models)
#   layout     model-layout parsing from arbitrary ONNX input/output metadata and config JSON
#   tokenizer  tokenizer.json loading from arbitrary bytes; encode/decode/stream of arbitrary input
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
# Starts from the committed seed corpora (fuzz/corpus/<target>/, left unchanged: new inputs go to
# a scratch folder, FUZZ_CORPUS_OUT=DIR keeps them); a crash is saved under fuzz/artifacts/<target>/
# and fails the script. Prints each target's executions from libFuzzer's final stats.
# Needs cargo-fuzz (installed when missing) and a nightly toolchain; without nightly, stable is
# used with RUSTC_BOOTSTRAP=1 (cargo-fuzz passes -Z flags). ONNX Runtime comes from scripts/setup.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

secs="${1:-30}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(capi layout tokenizer)

if ! command -v cargo-fuzz >/dev/null && [ ! -x "$HOME/.cargo/bin/cargo-fuzz" ]; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
export PATH="$HOME/.cargo/bin:$PATH"

if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
else
  echo "== no nightly toolchain: using stable with RUSTC_BOOTSTRAP=1"
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi

# The capi target loads ONNX Runtime from the checkout (.deps/onnxruntime, scripts/setup.sh).
[ -f .deps/onnxruntime/libonnxruntime.so ] || bash scripts/setup.sh

echo "== building the fuzz targets (release, debug assertions, AddressSanitizer)"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
if ! (cd fuzz && "${fuzz[@]}" build -O) > "$scratch/build.log" 2>&1; then
  cat "$scratch/build.log" >&2
  exit 1
fi
tail -n 1 "$scratch/build.log"
status=0
for t in "${targets[@]}"; do
  new="${FUZZ_CORPUS_OUT:-$scratch}/$t"
  mkdir -p "$new" "fuzz/artifacts/$t"
  log="$scratch/$t.log"
  echo "== fuzzing $t for ${secs}s"
  # -timeout: an input running 30 s is a hang; -rss_limit_mb: the capi target holds three models.
  if (cd fuzz && "${fuzz[@]}" run -O "$t" "$new" "corpus/$t" -- \
        -max_total_time="$secs" -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/") > "$log" 2>&1; then
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)"
    cov="$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)"
    echo "   $t: ${execs:-?} executions in ${secs}s (${rate:-?}/s), ${cov:-cov: ?}, no crash"
  else
    status=1
    echo "   $t: FAILED (log below; the input is under fuzz/artifacts/$t/)" >&2
    grep -v '^#[0-9]' "$log" | tail -n 60 >&2
  fi
done
exit $status
