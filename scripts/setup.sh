#!/usr/bin/env bash
# Fetch the pinned ONNX Runtime from PyPI into .deps/onnxruntime/ (no root, no system install).
# The library is taken out of the `onnxruntime` wheel; nothing else of it is used.
set -euo pipefail
ORT_VERSION="${ORT_VERSION:-1.32.0}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.deps/onnxruntime"
lib="$dest/libonnxruntime.so.$ORT_VERSION"

if [ -f "$lib" ]; then
  echo "ONNX Runtime $ORT_VERSION already in $dest"
  exit 0
fi
command -v python3 >/dev/null || { echo "setup: python3 is required" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "Fetching onnxruntime==$ORT_VERSION from PyPI..."
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "onnxruntime==$ORT_VERSION"
mkdir -p "$dest"
python3 - "$tmp" "$dest" <<'PY'
import glob, os, sys, zipfile
tmp, dest = sys.argv[1:]
wheel = glob.glob(os.path.join(tmp, "onnxruntime-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if "/capi/libonnxruntime.so" in n]
    if not names:
        sys.exit(f"setup: no libonnxruntime.so in {os.path.basename(wheel)}")
    for n in names:
        with z.open(n) as src, open(os.path.join(dest, os.path.basename(n)), "wb") as out:
            out.write(src.read())
PY
ln -sf "libonnxruntime.so.$ORT_VERSION" "$dest/libonnxruntime.so"
echo "ONNX Runtime $ORT_VERSION installed in $dest"
