#!/usr/bin/env bash
# Set up CUDA for specdec on a GPU host, from PyPI, without root, a system CUDA or LD_LIBRARY_PATH:
#
#   .deps/onnxruntime-gpu/  libonnxruntime.so (-> .so.1.31.1), libonnxruntime_providers_cuda.so and
#                           libonnxruntime_providers_shared.so from the `onnxruntime-gpu` 1.31.1
#                           wheel (built for CUDA 13 and cuDNN 9); nothing else of it is used.
#   .deps/nvidia/           the shared libraries of the NVIDIA runtime wheels that ONNX Runtime's
#                           `cuda` and `cudnn` extras name (CUDA runtime, NVRTC, cuFFT, cuRAND,
#                           cuDNN 9 for CUDA 13) plus what those need (cuBLAS, nvJitLink), in the
#                           wheels' own layout (nvidia/cu13/lib, nvidia/cudnn/lib).
#
# specdec finds both by itself: a CUDA model loads .deps/onnxruntime-gpu/libonnxruntime.so when no
# other ONNX Runtime was chosen (--ort-lib / ORT_DYLIB_PATH win), and loads the libraries under
# .deps/nvidia/ (or $SPECDEC_CUDA_LIB_DIRS) by absolute path before it registers the CUDA provider.
# The NVIDIA driver (libcuda.so.1) must come from the host.
#
# About 1.5 GB of wheels (2-3 GB unpacked). Environment:
#   ORT_GPU_VERSION     onnxruntime-gpu version (default 1.31.1)
#   NVIDIA_WHEELS       the NVIDIA wheels to fetch, as pip requirements (default below)
#   SPECDEC_GPU_WHEELS  a folder of wheels downloaded beforehand (for hosts without network:
#                       `pip download --no-deps --only-binary=:all: -d DIR <the same requirements>`
#                       elsewhere); nothing is downloaded then.
# Without network and without SPECDEC_GPU_WHEELS, an installed `onnxruntime-gpu` (and the
# `nvidia` packages beside it in site-packages) is linked into .deps instead, if there is one.
set -euo pipefail
ORT_GPU_VERSION="${ORT_GPU_VERSION:-1.31.1}"
# onnxruntime-gpu 1.31.1's extras: cuda = nvidia-cuda-nvrtc~=13.0, nvidia-cuda-runtime~=13.0,
# nvidia-cufft~=12.0, nvidia-curand~=10.0; cudnn = nvidia-cudnn-cu13~=9.0. nvidia-cudnn-cu13 needs
# nvidia-cublas and nvidia-cufft needs nvidia-nvjitlink (fetched with --no-deps, so named here).
NVIDIA_WHEELS="${NVIDIA_WHEELS:-nvidia-cuda-runtime~=13.0 nvidia-cuda-nvrtc~=13.0 nvidia-cublas~=13.0 nvidia-curand~=10.0 nvidia-cufft~=12.0 nvidia-nvjitlink~=13.0 nvidia-cudnn-cu13~=9.0}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ort_dest="$root/.deps/onnxruntime-gpu"
nv_dest="$root/.deps/nvidia"

if [ -f "$ort_dest/libonnxruntime.so.$ORT_GPU_VERSION" ] && [ -f "$ort_dest/libonnxruntime_providers_cuda.so" ] && [ -f "$nv_dest/.complete" ]; then
  echo "ONNX Runtime GPU $ORT_GPU_VERSION already in $ort_dest, NVIDIA libraries in $nv_dest"
  exit 0
fi
command -v python3 >/dev/null || { echo "setup-gpu: python3 is required" >&2; exit 1; }

# An onnxruntime-gpu installed in this Python (with its nvidia packages), linked into .deps.
link_installed() {
  local site
  site="$(python3 -c 'import importlib.util, os; s = importlib.util.find_spec("onnxruntime"); print(os.path.dirname(os.path.dirname(s.origin)) if s and s.origin else "")' 2>/dev/null || true)"
  local capi="$site/onnxruntime/capi"
  if [ -z "$site" ] || [ ! -f "$capi/libonnxruntime_providers_cuda.so" ]; then
    return 1
  fi
  local core
  core="$(cd "$capi" && ls libonnxruntime.so.* 2>/dev/null | head -n 1)"
  [ -n "$core" ] || return 1
  rm -rf "$ort_dest"
  mkdir -p "$ort_dest"
  for f in "$core" libonnxruntime_providers_cuda.so libonnxruntime_providers_shared.so; do
    ln -sf "$capi/$f" "$ort_dest/$f"
  done
  ln -sf "$core" "$ort_dest/libonnxruntime.so"
  if [ -d "$site/nvidia" ]; then
    rm -rf "$nv_dest"
    ln -sfn "$site/nvidia" "$nv_dest"
  fi
  echo "setup-gpu: linked the installed ONNX Runtime ($capi/$core) into $ort_dest${site:+ and $site/nvidia to $nv_dest}"
}

wheels="${SPECDEC_GPU_WHEELS:-}"
if [ -z "$wheels" ]; then
  mkdir -p "$root/.deps"
  # Beside .deps rather than in /tmp: the wheels take gigabytes.
  wheels="$(mktemp -d "$root/.deps/.wheels.XXXXXX")"
  trap 'rm -rf "$wheels"' EXIT
  echo "Fetching onnxruntime-gpu==$ORT_GPU_VERSION and the NVIDIA runtime wheels from PyPI..."
  # Named by platform and Python version so that any host Python can download them (only the
  # shared libraries inside are used). pip matches an explicit --platform exactly, so every
  # manylinux level the wheels are tagged with is listed.
  arch="$(uname -m)"
  platforms=()
  for level in 2_28 2_27 2_17 2_12 2_5; do
    platforms+=(--platform "manylinux_${level}_$arch")
  done
  # shellcheck disable=SC2086 # NVIDIA_WHEELS is a list of requirements
  if ! python3 -m pip download --quiet --no-deps --no-cache-dir --only-binary=:all: "${platforms[@]}" \
      --python-version 3.11 --implementation cp --abi cp311 \
      -d "$wheels" "onnxruntime-gpu==$ORT_GPU_VERSION" $NVIDIA_WHEELS; then
    echo "setup-gpu: pip could not download the wheels; looking for an installed onnxruntime-gpu" >&2
    if link_installed; then
      exit 0
    fi
    echo "setup-gpu: no network and no installed onnxruntime-gpu; download the wheels elsewhere and set SPECDEC_GPU_WHEELS" >&2
    exit 1
  fi
fi

mkdir -p "$ort_dest" "$nv_dest"
python3 - "$wheels" "$ort_dest" "$nv_dest" "$ORT_GPU_VERSION" <<'PY'
import glob, os, shutil, sys, zipfile
wheels, ort_dest, nv_dest, version = sys.argv[1:]
ort = glob.glob(os.path.join(wheels, f"onnxruntime_gpu-{version}-*.whl"))
if not ort:
    sys.exit(f"setup-gpu: no onnxruntime_gpu-{version} wheel in {wheels}")
wanted = (f"libonnxruntime.so.{version}", "libonnxruntime_providers_cuda.so", "libonnxruntime_providers_shared.so")
with zipfile.ZipFile(ort[0]) as z:
    for n in z.namelist():
        if n.startswith("onnxruntime/capi/") and os.path.basename(n) in wanted:
            with z.open(n) as src, open(os.path.join(ort_dest, os.path.basename(n)), "wb") as out:
                shutil.copyfileobj(src, out)
missing = [w for w in wanted if not os.path.isfile(os.path.join(ort_dest, w))]
if missing:
    sys.exit(f"setup-gpu: {os.path.basename(ort[0])} lacks {', '.join(missing)}")
names = []
for wheel in sorted(glob.glob(os.path.join(wheels, "nvidia_*.whl"))):
    names.append(os.path.basename(wheel))
    with zipfile.ZipFile(wheel) as z:
        for n in z.namelist():
            # Shared libraries only (lib/ folders); headers and Python files are not needed.
            if n.startswith("nvidia/") and "/lib/" in n and ".so" in os.path.basename(n):
                dest = os.path.join(nv_dest, n[len("nvidia/"):])
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                with z.open(n) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out)
if not names:
    sys.exit(f"setup-gpu: no nvidia_* wheels in {wheels}")
with open(os.path.join(nv_dest, "WHEELS"), "w") as f:
    f.write("\n".join([os.path.basename(ort[0])] + names) + "\n")
open(os.path.join(nv_dest, ".complete"), "w").close()
print(f"setup-gpu: {len(names)} NVIDIA wheels unpacked into {nv_dest}:")
for n in names:
    print("  " + n)
PY
ln -sf "libonnxruntime.so.$ORT_GPU_VERSION" "$ort_dest/libonnxruntime.so"
echo "ONNX Runtime GPU $ORT_GPU_VERSION installed in $ort_dest (use it with ORT_DYLIB_PATH=$ort_dest/libonnxruntime.so or --ort-lib)"
