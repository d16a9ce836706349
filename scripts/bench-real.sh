#!/usr/bin/env bash
# Issue 16's measurements on onnxruntime-genai builder exports, all with `specdec bench` (paired,
# interleaved repetitions; medians with min-max), into benches/results/real/<pair>[-<threads>]/:
#
#   builder demo pair fp32     .cache/builder-models/genai/demo-{target,draft}-fp32
#   builder demo pair int4     models/builder/demo-{target,draft}-int4 (a compute-bound 10M target
#                              whose int4 verify curve is steep: where speculation cannot pay)
#   cost-scaled int4 pair      .cache/builder-models/genai/demo-target-scaled-int4 + the int4 draft
#                              (272M-parameter target computing the demo target's function)
#   32k-vocabulary pair        models/builder/vocab32k-{target,draft}
#   weak fp32 pair             models/builder/demo-draft-fp32 as the target (0.72M) with
#                              models/builder/llama-fp32 (0.16M) drafting: acceptance ~0.4, c ~0.5
#   152k-vocabulary pair       .cache/builder-models/genai/qwen2-random{,-draft}-fp32 (random
#                              Qwen2 shapes, nearly flat rows), at T = 1 with top-p 0.9
#
# each at T = 0 and 1 (the 152k pair at T = 1, top-p 0.9): target-only, fixed gamma 1..4, auto. Then the thread comparison on the
# cost-scaled pair: the shared pool (--threads 0, the library's default) against a pool of 1 and of
# 2 threads per model. Pairs whose files are missing are skipped with a note (make them with
# scripts/make_builder_models.py). Usage: scripts/bench-real.sh [--reps N] [--new-tokens N] [--only NAME,...]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
reps=3
new=64
only=
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) reps="$2"; shift 2 ;;
    --new-tokens) new="$2"; shift 2 ;;
    --only) only=",$2,"; shift 2 ;;
    *) echo "bench-real: unknown argument $1" >&2; exit 2 ;;
  esac
done
bin=target/release/specdec
[ -x "$bin" ] || cargo build --release
cache=.cache/builder-models/genai
out=benches/results/real
mkdir -p "$out"

run() { # name target draft threads [variants [extra bench flags...]]
  local name="$1" target="$2" draft="$3" threads="$4" variants="${5:-target,gammas,auto}"
  shift 5 2>/dev/null || shift $#
  local extra=("--temperatures" "0,1")
  [ $# -gt 0 ] && extra=("$@")
  if [ -n "$only" ] && [[ "$only" != *",$name,"* ]]; then
    return
  fi
  if [ ! -e "$target" ] || [ ! -e "$draft" ]; then
    echo "bench-real: skipping $name: $target or $draft is missing (scripts/make_builder_models.py)"
    return
  fi
  echo "== $name (threads $threads)"
  "$bin" bench --target "$target" --draft "$draft" --repeats "$reps" --max-new-tokens "$new" \
    --gammas 1-4 "${extra[@]}" --variants "$variants" --threads "$threads" --out "$out/$name" ||
    { echo "bench-real: $name FAILED"; failed=1; }
}
failed=0

run builder-fp32 "$cache/demo-target-fp32" "$cache/demo-draft-fp32" 0
run builder-int4 models/builder/demo-target-int4 models/builder/demo-draft-int4 0
run scaled-int4 "$cache/demo-target-scaled-int4" models/builder/demo-draft-int4 0
run vocab32k models/builder/vocab32k-target models/builder/vocab32k-draft 0
run weak-fp32 models/builder/demo-draft-fp32 models/builder/llama-fp32 0
run vocab152k-topp "$cache/qwen2-random-fp32" "$cache/qwen2-random-draft-fp32" 0 target,gammas,auto \
  --temperatures 1 --top-p 0.9
for t in 1 2; do
  run "scaled-int4-threads$t" "$cache/demo-target-scaled-int4" models/builder/demo-draft-int4 "$t" target,auto
done
echo "bench-real: results in $out/*/bench.md"
exit "$failed"
