#!/usr/bin/env bash
# Build and run the C++ wrapper checks: tests/cpp/test_wrapper.cpp and examples/cpp/generate.cpp,
# both against target/release/libspecdec.so (build it first: cargo build --release).
# Usage: scripts/check-cpp.sh   (CXX overrides the compiler, default g++; CXXFLAGS adds flags)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CXX="${CXX:-g++}"
lib="target/release/libspecdec.so"
if [ ! -f "$lib" ]; then
  echo "check-cpp: $lib is missing; run: cargo build --release" >&2
  exit 1
fi

# The library's SONAME is libspecdec.so.<ABI> (build.rs), so programs linked with -lspecdec ask the
# loader for libspecdec.so.1, which cargo does not create: add that link beside the library.
soname="$(readelf -d "$lib" 2>/dev/null | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p')"
if [ -n "$soname" ] && [ "$soname" != "libspecdec.so" ] && [ ! -e "target/release/$soname" ]; then
  ln -sfn libspecdec.so "target/release/$soname"
fi

out="target/cpp"
mkdir -p "$out"
flags=(-std=c++17 -Wall -Wextra -Werror -I include -I bindings/cpp ${CXXFLAGS:-})
link=(-L target/release -lspecdec "-Wl,-rpath,$PWD/target/release" -lpthread)

echo "== compiling tests/cpp/test_wrapper.cpp"
"$CXX" "${flags[@]}" tests/cpp/test_wrapper.cpp -o "$out/test_wrapper" "${link[@]}"
echo "== compiling examples/cpp/generate.cpp"
"$CXX" "${flags[@]}" examples/cpp/generate.cpp -o "$out/generate" "${link[@]}"

echo "== running the wrapper tests"
"$out/test_wrapper" models/fixtures

echo "== running the example on the fixtures"
"$out/generate" models/fixtures/llama models/fixtures/draft "Once upon a time" 32
"$out/generate" models/fixtures/llama ngram "Once upon a time" 32

echo "== C++ wrapper checks passed"
