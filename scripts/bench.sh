#!/usr/bin/env bash
# The benchmark: `specdec bench` (JSON + markdown table) and its plot (PNG), in target/bench/ or
# the folder given with --out. All arguments go to `specdec bench` (see `specdec --help`).
# The plot needs matplotlib: it is installed into the git-ignored virtualenv .venv-bench.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/target/bench"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  [ "${args[$i]}" = "--out" ] && out="${args[$((i + 1))]}"
done
"$root/target/release/specdec" bench "$@"
venv="$root/.venv-bench"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import matplotlib" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check matplotlib==3.11.2
fi
"$venv/bin/python" "$root/scripts/plot_bench.py" "$out/bench.json" "$out/speedup.png"
