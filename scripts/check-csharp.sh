#!/usr/bin/env bash
# Build and run the C# binding checks with Mono: bindings/csharp/*.cs compiled into a library,
# examples/csharp/Test.cs (the binding's self-checking tests) and examples/csharp/Example.cs (a
# streaming example), all against target/release/libspecdec.so (build it first: make build).
# Installs Mono with apt-get when mcs or mono is missing (Debian/Ubuntu, as root or with sudo).
# Usage: scripts/check-csharp.sh   (MCSFLAGS adds compiler flags)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v mcs >/dev/null 2>&1 || ! command -v mono >/dev/null 2>&1; then
  echo "== installing Mono (mono-mcs, mono-runtime)"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update
  # mono-mcs brings the compiler and mscorlib/System/System.Core (libmono-corlib4.5-cil,
  # libmono-system4.0-cil, libmono-system-core4.0-cil); mono-runtime the VM. Nothing else is needed.
  $sudo apt-get install -y mono-mcs mono-runtime
fi

lib="target/release/libspecdec.so"
if [ ! -f "$lib" ]; then
  echo "check-csharp: $lib is missing; run: make build" >&2
  exit 1
fi
# The library's SONAME is libspecdec.so.<ABI>; cargo does not create that name (make build does).
soname="$(readelf -d "$lib" 2>/dev/null | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p')"
if [ -n "$soname" ] && [ "$soname" != "libspecdec.so" ] && [ ! -e "target/release/$soname" ]; then
  ln -sfn libspecdec.so "target/release/$soname"
fi

out="target/csharp"
mkdir -p "$out"
flags=(-warn:4 -warnaserror+ -nologo ${MCSFLAGS:-})

echo "== compiling bindings/csharp/*.cs"
mcs "${flags[@]}" -target:library -out:"$out/Specdec.dll" bindings/csharp/*.cs
echo "== compiling examples/csharp/Test.cs and examples/csharp/Example.cs"
mcs "${flags[@]}" -target:exe -r:"$out/Specdec.dll" -out:"$out/Test.exe" examples/csharp/Test.cs
mcs "${flags[@]}" -target:exe -r:"$out/Specdec.dll" -out:"$out/Example.exe" examples/csharp/Example.cs

# DllImport("specdec") resolves to libspecdec.so through the loader's search path.
export LD_LIBRARY_PATH="$PWD/target/release${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

echo "== running the binding tests"
mono --debug "$out/Test.exe" models/fixtures

echo "== running the example on the fixtures"
mono --debug "$out/Example.exe" models/fixtures/llama models/fixtures/draft "Once upon a time" 32

echo "== C# binding checks passed"
