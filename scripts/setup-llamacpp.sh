#!/usr/bin/env bash
# Build llama.cpp's CPU tools from the source vendored in the llama-cpp-python sdist on PyPI
# (only package registries are reachable here). Used by scripts/make_gguf.py and
# scripts/peer_llamacpp.py (benches/PEER.md, "llama.cpp on the same weights").
#
#   scripts/setup-llamacpp.sh                  # fetch, unpack, configure, build, check
#   nohup scripts/setup-llamacpp.sh > .cache/llama.cpp/setup.log 2>&1 &   # the build takes a while
#
# Everything lives in the git-ignored .cache/llama.cpp/:
#   dl/llama_cpp_python-VERSION.tar.gz   the sdist (pip download --no-binary :all: --no-deps)
#   src/llama_cpp_python-VERSION/vendor/llama.cpp   the llama.cpp source (convert_hf_to_gguf.py, gguf-py)
#   build/                               CMake + Ninja build tree (CPU only, shared libraries, no OpenSSL)
#   build/bin/                           the tools below, libllama.so and libggml*.so (RPATH = build/bin)
#   build-info.json                      version, commit of the vendored source, tools, wall times
# Resumable: every stage skips what is already there, and Ninja rebuilds only what is missing.
# Settings: LLAMACPP_PY_VERSION (0.3.36), JOBS (2), NICE (19), CMAKE/NINJA (found on PATH, else
# installed from PyPI into .cache/llama.cpp/tools-venv).
set -euo pipefail
VERSION="${LLAMACPP_PY_VERSION:-0.3.36}"
JOBS="${JOBS:-2}"
NICE="${NICE:-19}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
base="$root/.cache/llama.cpp"
dl="$base/dl"
tarball="$dl/llama_cpp_python-$VERSION.tar.gz"
srcroot="$base/src/llama_cpp_python-$VERSION"
src="$srcroot/vendor/llama.cpp"
build="$base/build"
bin="$build/bin"
tools=(llama-bench llama-completion llama-simple llama-speculative llama-speculative-simple
       llama-quantize llama-tokenize)
libs=(libllama.so libggml.so libggml-base.so libggml-cpu.so)
t_all=$(date +%s)
stage() { echo "[setup-llamacpp $(date +%H:%M:%S)] $*"; }
mkdir -p "$dl" "$base/src"
# The cache folder is git-ignored by .cache/.gitignore ("*"); keep that true if .cache is new.
[ -f "$root/.cache/.gitignore" ] || echo '*' > "$root/.cache/.gitignore"

# 1. sdist from PyPI
t0=$(date +%s)
if [ -f "$tarball" ]; then
  stage "sdist already in $tarball"
else
  stage "downloading llama-cpp-python==$VERSION sdist from PyPI (about 75 MB, ~1 min)"
  python3 -m pip download --quiet --disable-pip-version-check --no-binary :all: --no-deps \
    -d "$dl.tmp" "llama-cpp-python==$VERSION"
  mv "$dl.tmp"/llama_cpp_python-"$VERSION".tar.gz "$tarball"
  rm -rf "$dl.tmp"
fi
t_fetch=$(( $(date +%s) - t0 ))

# 2. unpack
t0=$(date +%s)
if [ -f "$src/CMakeLists.txt" ] && [ -f "$src/convert_hf_to_gguf.py" ]; then
  stage "source already unpacked in $src"
else
  stage "unpacking"
  rm -rf "$srcroot"
  tar -xzf "$tarball" -C "$base/src"
  [ -f "$src/CMakeLists.txt" ] || { echo "setup-llamacpp: no vendor/llama.cpp in the sdist" >&2; exit 1; }
fi
t_unpack=$(( $(date +%s) - t0 ))

# 3. cmake and ninja: the system ones, else from PyPI (pip install cmake ninja)
CMAKE="${CMAKE:-$(command -v cmake || true)}"
NINJA="${NINJA:-$(command -v ninja || true)}"
if [ -z "$CMAKE" ] || [ -z "$NINJA" ]; then
  stage "cmake/ninja not on PATH: installing them from PyPI into $base/tools-venv"
  [ -x "$base/tools-venv/bin/python" ] || python3 -m venv "$base/tools-venv"
  "$base/tools-venv/bin/python" -m pip install --quiet --disable-pip-version-check cmake ninja
  CMAKE="$base/tools-venv/bin/cmake"
  NINJA="$base/tools-venv/bin/ninja"
fi
stage "cmake: $("$CMAKE" --version | head -1); ninja $("$NINJA" --version); $(${CXX:-c++} --version | head -1)"

# 4. configure (once)
t0=$(date +%s)
if [ -f "$build/build.ninja" ] && grep -q "^BUILD_SHARED_LIBS:BOOL=ON" "$build/CMakeCache.txt" 2>/dev/null; then
  stage "already configured in $build"
else
  # Shared libraries (llama.cpp's default): scripts/peer_llamacpp.py also loads build/bin/libllama.so
  # through the sdist's own ctypes binding (llama_cpp/llama_cpp.py) to feed and read token ids.
  stage "configuring (CPU only, Release, shared libraries, native ISA)"
  rm -rf "$build"
  nice -n "$NICE" "$CMAKE" -S "$src" -B "$build" -G Ninja -DCMAKE_MAKE_PROGRAM="$NINJA" \
    -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DGGML_NATIVE=ON \
    -DGGML_CUDA=OFF -DGGML_VULKAN=OFF -DGGML_METAL=OFF -DGGML_BLAS=OFF \
    -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_EXAMPLES=ON >"$base/configure.log" 2>&1 \
    || { tail -30 "$base/configure.log"; echo "setup-llamacpp: configure failed ($base/configure.log)" >&2; exit 1; }
fi
t_configure=$(( $(date +%s) - t0 ))

# 5. build only the tools needed, $JOBS jobs, niced (the machine is shared)
t0=$(date +%s)
stage "building ${tools[*]} with $JOBS jobs under nice -n $NICE (log: $base/build.log)"
# Ninja prints one "[i/n] ..." line per step; pass them through so a background run can be polled.
set +o pipefail
nice -n "$NICE" "$NINJA" -C "$build" -j "$JOBS" "${tools[@]}" llama 2>&1 | tee "$base/build.log" \
  | { grep --line-buffered -E '^\[[0-9]+/[0-9]+\] |error|FAILED' || true; }
status=${PIPESTATUS[0]}
set -o pipefail
[ "$status" -eq 0 ] || { echo "setup-llamacpp: build failed ($base/build.log)" >&2; exit 1; }
t_build=$(( $(date +%s) - t0 ))

# 6. check the outputs
for t in "${tools[@]}" "${libs[@]}"; do
  [ -e "$bin/$t" ] || { echo "setup-llamacpp: $bin/$t missing" >&2; exit 1; }
done
commit="$(sed -n 's/.*LLAMA_COMMIT *= *"\{0,1\}\([0-9a-f]*\).*/\1/p' "$build/common/build-info.cpp" 2>/dev/null | head -1)"
version_line="$("$bin/llama-bench" --version 2>&1 | head -3 | tr '\n' ' ' || true)"
t_total=$(( $(date +%s) - t_all ))
python3 - "$base/build-info.json" "$VERSION" "$src" "$commit" "$version_line" "$JOBS" "$NICE" \
  "$t_fetch" "$t_unpack" "$t_configure" "$t_build" "$t_total" "$bin" "${tools[@]}" <<'PY'
import json, os, sys
(out, ver, src, commit, vline, jobs, nice, tf, tu, tc, tb, tt, bindir), tools = sys.argv[1:14], sys.argv[14:]
old = {}
if os.path.exists(out):
    try:
        old = json.load(open(out))
    except Exception:
        old = {}
runs = old.get("runs", [])
runs.append({"fetch_s": int(tf), "unpack_s": int(tu), "configure_s": int(tc), "build_s": int(tb),
             "total_s": int(tt), "jobs": int(jobs), "nice": int(nice)})
json.dump({"llama_cpp_python_sdist": ver, "source": src, "llama_cpp_commit": commit,
           "version": vline.strip(), "tools": {t: os.path.getsize(os.path.join(bindir, t)) for t in tools},
           "runs": runs}, open(out, "w"), indent=1)
PY
stage "done: ${tools[*]} in $bin"
stage "wall time: fetch ${t_fetch}s, unpack ${t_unpack}s, configure ${t_configure}s, build ${t_build}s, total ${t_total}s"
