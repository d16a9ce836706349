#!/usr/bin/env bash
# The CUDA check, for a machine with an NVIDIA GPU and driver, in at most 8 minutes:
#   1. scripts/setup-gpu.sh: ONNX Runtime GPU 1.31.1 (CUDA 13, cuDNN 9) and the NVIDIA runtime
#      wheels from PyPI into .deps/ (skipped when already there; SPECDEC_GPU_WHEELS for offline hosts)
#   2. the release build (the CLI and the device tests)
#   3. tests/device.rs with SPECDEC_TEST_DEVICE set: target and draft on CUDA, and a CPU draft
#      feeding a CUDA target, greedy speculation = CUDA target-only output for gamma 1..8 on every
#      fixture pair and the demo pair; CUDA greedy = CPU greedy (a divergence passes only at a
#      near-tie, whose margin is printed); logits against CPU; the KV cache in CUDA memory and no
#      KV data through host memory (specdec's own counters, which count every host copy of KV data
#      and every KV tensor found outside the device's memory at a call)
#   4. `specdec generate` on CUDA (both on CUDA, then a CPU draft)
#   5. `specdec bench --quick` on CPU, on CUDA, and with a CPU draft and a CUDA target
#   6. the GPU-scale pair (scripts/gpu_scaled_check.py, about 3 minutes on an H200): the demo pair
#      cost-scaled to a 1.6B target (Llama-3.2-1B body, 151,936-entry vocabulary) and a 0.13B
#      draft, builder fp16 (scripts/make_builder_models.py --stage gpu-pair): greedy output equal
#      to the demo pair's; target-only tokens/s of specdec with device reductions on and off and of
#      onnxruntime-genai(-cuda) 0.18 on the same files; `specdec bench` at gamma 1..8, T = 0 and 1
#      (alpha, c, T(k)/T(1), predicted and measured speed-up); GPU memory after the first and the
#      100th of 100 generations; results under benches/results/gpu-scaled/. The pair's 3.3 GB of
#      files are made on the host (.venv-builder: torch, transformers 5, the genai builder) or
#      brought there into .cache/builder-models/genai/; GPU_CHECK_SCALED=0 leaves this step out.
#      onnxruntime-genai runs from $SPECDEC_GENAI_PYTHON or .venv-genai-cuda (pip install
#      onnxruntime-genai-cuda==0.18.0), else its row says it was skipped.
# and prints a summary. Logs and the benchmark's JSON/markdown go to target/gpu-check/.
#
# Usage: scripts/gpu-check.sh [cuda:N]      (default cuda:0, or $SPECDEC_TEST_DEVICE)
#        scripts/gpu-check.sh --cpu         a dry run of the parts that run anywhere, on the CPU with
#                                           small counts: the release build, tests/device_reductions.rs
#                                           and step 6 (results under benches/results/gpu-scaled-cpu-dryrun/)
# Needs Rust (cargo with its crates, or network), Python 3 with pip, and network to PyPI unless
# .deps/ is already set up or SPECDEC_GPU_WHEELS names a folder of the wheels.
# GPU_CHECK_SECONDS changes the overall limit (default 480).
# For a GPU host without Rust or network, build here and bring the binaries:
#   SPECDEC_BIN=path/to/specdec  SPECDEC_DEVICE_TEST_BIN=path/to/deps/device-<hash>
#   ORT_DYLIB_PATH=dir/libonnxruntime.so (the providers beside it)  SPECDEC_CUDA_LIB_DIRS=...
# skip steps 1 and 2 (the test binary finds the models through the path it was built in).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cpu_only=0
if [ "${1:-}" = "--cpu" ]; then
  cpu_only=1
  shift
fi
dev="${1:-${SPECDEC_TEST_DEVICE:-cuda:0}}"
[ "$cpu_only" -eq 1 ] && dev=cpu
out="target/gpu-check"
mkdir -p "$out"
started=$(date +%s)
deadline=$((started + ${GPU_CHECK_SECONDS:-480}))
results=()
failed=0

# step NAME LIMIT COMMAND...: run with a time limit (never past the overall deadline), output in
# $out/NAME.log, its tail shown on failure.
step() {
  local name="$1" limit="$2"
  shift 2
  local left=$((deadline - $(date +%s)))
  if [ "$left" -le 5 ]; then
    results+=("SKIP  $name (out of time)")
    failed=1
    return 1
  fi
  [ "$limit" -gt "$left" ] && limit="$left"
  echo "== $name (limit ${limit}s)"
  local t0 rc
  t0=$(date +%s)
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  rc=$?
  local took=$(($(date +%s) - t0))
  if [ "$rc" -eq 0 ]; then
    results+=("PASS  $name (${took}s)")
  else
    local why="exit $rc"
    [ "$rc" -eq 124 ] && why="timed out"
    results+=("FAIL  $name (${took}s, $why; log $out/$name.log)")
    failed=1
    tail -n 40 "$out/$name.log"
  fi
  return "$rc"
}

summary() {
  echo
  echo "================ gpu-check summary ($dev, $(($(date +%s) - started)) s) ================"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/GPU: /'
  fi
  printf '%s\n' "${results[@]}"
  if [ -f "$out/device-tests.log" ]; then
    echo "--- device tests (what was compared, margins of near-ties, KV host copies) ---"
    grep -E "on cuda|near-tie|cuda:0 here|greedy speculation checked|max \|logits" "$out/device-tests.log" | head -n 40
    grep -E "^test result" "$out/device-tests.log"
  fi
  if [ -f "$out/nsys.log" ]; then
    echo "--- nsys: GPU memory copies during one CUDA generation of 64 tokens ---"
    grep -iE "memcpy|memset|Total|Operation" "$out/nsys.log" | head -n 12
  fi
  for f in generate-cuda generate-cpu-draft; do
    [ -f "$out/$f.log" ] && grep -o '"stats":{[^}]*}' "$out/$f.log" | head -n 1 | sed "s/^/$f: /"
  done
  for b in bench-cpu bench-cuda bench-cuda-cpu-draft; do
    if [ -f "$out/$b/bench.md" ]; then
      echo "--- $b ($out/$b/bench.md) ---"
      cat "$out/$b/bench.md"
    fi
  done
  if [ -f "$scaled_out/summary.md" ]; then
    echo "--- GPU-scale pair ($scaled_out/summary.md) ---"
    sed -n '/^- \*\*/p;/^| target-only/,/^$/p;/^Greedy output/p;/^Memory/p' "$scaled_out/summary.md"
  fi
  if [ "$failed" -eq 0 ]; then echo "gpu-check: PASS"; else echo "gpu-check: FAIL"; fi
}
scaled_out=benches/results/gpu-scaled
[ "$cpu_only" -eq 1 ] && scaled_out=benches/results/gpu-scaled-cpu-dryrun
trap summary EXIT

if [ "$cpu_only" -eq 1 ]; then
  # The CPU dry run: what needs no GPU, with small counts.
  export SPECDEC_BIN="${SPECDEC_BIN:-target/release/specdec}"
  step build 420 bash -c 'cargo build --release --bin specdec && cargo test --release --test device_reductions --no-run' || exit 1
  step device-reductions 300 cargo test --release --test device_reductions -- --nocapture --test-threads 1
  step scaled-pair 600 python3 scripts/gpu_scaled_check.py --device cpu --small --out "$scaled_out"
  [ "$failed" -eq 0 ]
  exit
fi

if command -v nvidia-smi >/dev/null; then
  nvidia-smi -L
else
  echo "gpu-check: nvidia-smi not found (the NVIDIA driver may be missing)"
fi

export SPECDEC_TEST_DEVICE="$dev"
specdec="${SPECDEC_BIN:-target/release/specdec}"
if [ -n "${SPECDEC_DEVICE_TEST_BIN:-}" ]; then
  [ -f "${ORT_DYLIB_PATH:-}" ] || { echo "gpu-check: prebuilt binaries need ORT_DYLIB_PATH"; exit 1; }
  results+=("INFO  prebuilt: $specdec, $SPECDEC_DEVICE_TEST_BIN, $ORT_DYLIB_PATH")
  step device-tests 200 "$SPECDEC_DEVICE_TEST_BIN" --nocapture --test-threads 2
else
  step setup 240 bash scripts/setup-gpu.sh || exit 1
  export ORT_DYLIB_PATH="$PWD/.deps/onnxruntime-gpu/libonnxruntime.so"
  step build 300 bash -c 'cargo build --release --bin specdec && cargo test --release --test device --no-run' || exit 1
  step device-tests 200 cargo test --release --test device -- --nocapture --test-threads 2
fi

demo=(--target models/demo/target --draft models/demo/draft --max-new-tokens 64 --json
  --prompt $'import os\n\n\ndef walk(top):\n    for name in os.listdir(top):')
step generate-cuda 60 "$specdec" generate --device "$dev" "${demo[@]}"
step generate-cpu-draft 60 "$specdec" generate --device "$dev" --draft-device cpu "${demo[@]}"

# A second witness besides specdec's counters, when Nsight Systems is installed: every memory copy
# the GPU made during a CUDA generation, by direction and size (not a pass/fail step). Per token,
# device-to-host traffic should be about the logits rows sampling needs; KV-sized copies would show.
if command -v nsys >/dev/null && [ $((deadline - $(date +%s))) -gt 150 ]; then
  echo "== nsys: memory copies during a CUDA generation"
  timeout 90 nsys profile --trace=cuda --force-overwrite true --output "$out/generate-cuda" \
    "$specdec" generate --device "$dev" "${demo[@]}" >"$out/nsys.log" 2>&1 &&
    { timeout 30 nsys stats --report cuda_gpu_mem_size_sum "$out/generate-cuda.nsys-rep" ||
      timeout 30 nsys stats --report gpumemsizesum "$out/generate-cuda.nsys-rep"; } >>"$out/nsys.log" 2>&1
  results+=("INFO  nsys memory-copy summary in $out/nsys.log")
fi

step bench-cpu 90 "$specdec" bench --quick --device cpu --out "$out/bench-cpu"
step bench-cuda 120 "$specdec" bench --quick --device "$dev" --out "$out/bench-cuda"
step bench-cuda-cpu-draft 120 "$specdec" bench --quick --device "$dev" --draft-device cpu --out "$out/bench-cuda-cpu-draft"

if [ "${GPU_CHECK_SCALED:-1}" != 0 ]; then
  export SPECDEC_BIN="$specdec"
  step scaled-pair 330 python3 scripts/gpu_scaled_check.py --device "$dev" --out "$scaled_out"
fi

[ "$failed" -eq 0 ]
