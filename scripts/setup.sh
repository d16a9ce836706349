#!/usr/bin/env bash
# Fetch the pinned ONNX Runtime from PyPI into .deps/onnxruntime/ (no root, no system install).
# The library is taken out of the `onnxruntime` wheel, with its licence texts (LICENSE,
# ThirdPartyNotices.txt: scripts/dist.sh ships them beside the library); nothing else of it is used.
# With --old-runtime, also fetches an old ONNX Runtime (ORT_OLD_VERSION, 1.20.1) into
# .deps/onnxruntime-old/: the bad-input catalog (scripts/check-c.sh) checks that specdec refuses
# a runtime that is too old, with a message saying so.
set -euo pipefail
ORT_VERSION="${ORT_VERSION:-1.32.0}"
ORT_OLD_VERSION="${ORT_OLD_VERSION:-1.20.1}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# fetch VERSION DEST [pip download options...]: libonnxruntime.so.VERSION and a libonnxruntime.so
# link in DEST.
fetch() {
  local version="$1" dest="$2"
  shift 2
  if [ -f "$dest/libonnxruntime.so.$version" ]; then
    echo "ONNX Runtime $version already in $dest"
    return 0
  fi
  command -v python3 >/dev/null || { echo "setup: python3 is required" >&2; exit 1; }
  local tmp
  tmp="$(mktemp -d)"
  echo "Fetching onnxruntime==$version from PyPI..."
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "$@" "onnxruntime==$version"
  mkdir -p "$dest"
  python3 - "$tmp" "$dest" <<'PY'
import glob, os, sys, zipfile
tmp, dest = sys.argv[1:]
wheel = glob.glob(os.path.join(tmp, "onnxruntime-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if "/capi/libonnxruntime.so" in n]
    if not names:
        sys.exit(f"setup: no libonnxruntime.so in {os.path.basename(wheel)}")
    names += [n for n in ("onnxruntime/LICENSE", "onnxruntime/ThirdPartyNotices.txt") if n in z.namelist()]
    for n in names:
        with z.open(n) as src, open(os.path.join(dest, os.path.basename(n)), "wb") as out:
            out.write(src.read())
PY
  rm -rf "$tmp"
  ln -sf "libonnxruntime.so.$version" "$dest/libonnxruntime.so"
  echo "ONNX Runtime $version installed in $dest"
}

fetch "$ORT_VERSION" "$root/.deps/onnxruntime"
if [ "${1:-}" = "--old-runtime" ]; then
  # Named by platform and Python version so that any host Python can download it (1.20.1 has
  # no wheels for the newest Pythons); only the shared library inside is used.
  fetch "$ORT_OLD_VERSION" "$root/.deps/onnxruntime-old" \
    --platform "manylinux_2_28_$(uname -m)" --python-version 3.11 --implementation cp --abi cp311
fi
