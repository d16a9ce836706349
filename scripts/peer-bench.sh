#!/usr/bin/env bash
# Peer benchmark: specdec vs onnxruntime-genai on the same ONNX pair (scripts/peer_bench.py).
# Makes the git-ignored virtualenv .venv-bench with the pinned packages, then runs the script
# with all arguments passed through, e.g. `scripts/peer-bench.sh --quick`.
# Needs `make setup build` first (target/release/libspecdec.so).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv-bench"
pins=(onnxruntime-genai==0.18.0 onnxruntime==1.32.0 numpy==2.4.6 tokenizers==0.23.3)
stamp="$venv/.pins"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "${pins[*]}" ]; then
  command -v python3 >/dev/null || { echo "peer-bench: python3 is required" >&2; exit 1; }
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}"
  echo "${pins[*]}" > "$stamp"
fi
if [ ! -f "$root/target/release/libspecdec.so" ]; then
  echo "peer-bench: target/release/libspecdec.so missing; run 'make setup build' first" >&2
  exit 1
fi
exec "$venv/bin/python" "$root/scripts/peer_bench.py" "$@"
