#!/usr/bin/env bash
# Paired A/B of two specdec builds: runs `specdec bench` with the same arguments on build A, then
# build B, N times, alternating, so that a drifting machine weighs on both alike. Prints each run's
# table rows.
#
#   scripts/ab-bench.sh OLD_BIN NEW_BIN N [specdec bench arguments...]
#
# e.g. (an old build: `git worktree add /tmp/old REV && cargo build --release --manifest-path
# /tmp/old/Cargo.toml --target-dir /tmp/old-target`)
#   scripts/ab-bench.sh /tmp/old-target/release/specdec target/release/specdec 3 \
#     --target T --draft D --temperatures 1 --top-p 0.9 --variants target,gammas --gammas 2 --repeats 3
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ $# -ge 3 ] || { sed -n '2,11p' "$0" >&2; exit 2; }
a="$1" b="$2" n="$3"
shift 3
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$root/.deps/onnxruntime/libonnxruntime.so}"
for i in $(seq "$n"); do
  for side in A B; do
    bin="$a"; [ "$side" = B ] && bin="$b"
    echo "== $side $i ($bin)"
    "$bin" bench "$@" 2>&1 | grep -E '^\| [0-9]|^Target-only step'
  done
done
