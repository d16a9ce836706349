#!/usr/bin/env bash
# Build and run the C ABI checks: tests/c/test_capi.c and examples/c/stream.c, both strict C99
# against target/release/libspecdec.so (build it first: cargo build --release), both again linked
# against target/release/libspecdec.a, then both under valgrind (memcheck, leaks included).
# Also the bad-input catalog (tests/c/test_catalog.c: every kind of bad input, its status and
# message, handles usable afterwards) and the concurrency test (tests/c/test_concurrency.c:
# 8 threads x 100 generations on shared models, cancellation races), each also under valgrind.
# And the embedder test (tests/c/test_embedder.c: the LENGTH finish reason, log-probabilities,
# rewind, settings between turns, forks, metadata, loading from memory, timings, logging), also
# under valgrind.
# Usage: scripts/check-c.sh
#   CC overrides the compiler (default gcc); CFLAGS adds flags;
#   SPECDEC_SKIP_VALGRIND=1 skips the valgrind runs (without it a missing valgrind is an error).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CC="${CC:-gcc}"
lib="target/release/libspecdec.so"
if [ ! -f "$lib" ]; then
  echo "check-c: $lib is missing; run: cargo build --release" >&2
  exit 1
fi

# The library's SONAME is libspecdec.so.<ABI> (build.rs), so programs linked with -lspecdec ask the
# loader for libspecdec.so.1, which cargo does not create: add that link beside the library.
soname="$(readelf -d "$lib" 2>/dev/null | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p')"
if [ -n "$soname" ] && [ "$soname" != "libspecdec.so" ] && [ ! -e "target/release/$soname" ]; then
  ln -sfn libspecdec.so "target/release/$soname"
fi

out="target/c"
mkdir -p "$out"
# -g for readable valgrind reports; _POSIX_C_SOURCE for pthreads, clock_gettime, mkdtemp.
flags=(-std=c99 -Wall -Wextra -Werror -pedantic -D_POSIX_C_SOURCE=200809L -O2 -g -I include ${CFLAGS:-})
link=(-L target/release -lspecdec "-Wl,-rpath,$PWD/target/release" -lpthread)

echo "== compiling tests/c/test_capi.c"
"$CC" "${flags[@]}" tests/c/test_capi.c -o "$out/test_capi" "${link[@]}"
echo "== compiling tests/c/test_catalog.c and tests/c/test_concurrency.c"
"$CC" "${flags[@]}" tests/c/test_catalog.c -o "$out/test_catalog" "${link[@]}" -lm
"$CC" "${flags[@]}" tests/c/test_concurrency.c -o "$out/test_concurrency" "${link[@]}"
echo "== compiling tests/c/test_embedder.c"
"$CC" "${flags[@]}" tests/c/test_embedder.c -o "$out/test_embedder" "${link[@]}" -lm
echo "== compiling examples/c/stream.c"
"$CC" "${flags[@]}" examples/c/stream.c -o "$out/stream" "${link[@]}"

echo "== running the C API tests"
"$out/test_capi"

# The catalog also loads a too-old ONNX Runtime (1.20.1) to check that it is refused.
bash scripts/setup.sh --old-runtime >/dev/null
echo "== running the bad-input catalog"
"$out/test_catalog" > "$out/catalog.txt" || { cat "$out/catalog.txt"; exit 1; }
tail -n 1 "$out/catalog.txt"

echo "== running the concurrency test (8 threads x 100 generations, cancellation races)"
"$out/test_concurrency"

echo "== running the embedder tests (length, logprobs, rewind, fork, metadata, memory, timings, logging)"
"$out/test_embedder"

echo "== running the streaming example on the fixtures"
"$out/stream" models/fixtures/llama models/fixtures/draft "def __init__(self, name):" 48

# The static library: the same programs linked against libspecdec.a (no libspecdec.so at run time).
if [ -f target/release/libspecdec.a ]; then
  static_link=(target/release/libspecdec.a -lpthread -ldl -lm)
  echo "== compiling both against target/release/libspecdec.a"
  "$CC" "${flags[@]}" tests/c/test_capi.c -o "$out/test_capi_static" "${static_link[@]}"
  "$CC" "${flags[@]}" examples/c/stream.c -o "$out/stream_static" "${static_link[@]}"
  echo "== running the statically linked C API tests and example"
  "$out/test_capi_static"
  "$out/stream_static" models/fixtures/llama models/fixtures/draft "def __init__(self, name):" 16
fi

if [ "${SPECDEC_SKIP_VALGRIND:-0}" != "0" ]; then
  echo "== valgrind run skipped (SPECDEC_SKIP_VALGRIND)"
elif ! command -v valgrind >/dev/null; then
  echo "check-c: valgrind is not installed (SPECDEC_SKIP_VALGRIND=1 skips the valgrind runs)" >&2
  exit 1
else
  # SPECDEC_TEST_QUICK trims repetitions (gamma sweep, architectures, thread count); every error
  # path and the cancellation tests still run. Suppressions: ONNX Runtime only, see the file.
  # --fair-sched=yes: valgrind runs one thread at a time, and without fair scheduling the
  # cancellation test's second thread can starve until the generation it should cancel is over.
  vg=(valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=1
      --num-callers=40 --fair-sched=yes --suppressions=tests/c/valgrind.supp)
  echo "== running the C API tests under valgrind (about a minute)"
  SPECDEC_TEST_QUICK=1 "${vg[@]}" "$out/test_capi"
  echo "== running the bad-input catalog under valgrind"
  "${vg[@]}" "$out/test_catalog" > "$out/catalog-valgrind.txt" || { cat "$out/catalog-valgrind.txt"; exit 1; }
  tail -n 1 "$out/catalog-valgrind.txt"
  echo "== running the concurrency test under valgrind (quick: 3 threads x 4 generations)"
  SPECDEC_TEST_QUICK=1 "${vg[@]}" "$out/test_concurrency"
  echo "== running the embedder tests under valgrind (quick)"
  SPECDEC_TEST_QUICK=1 "${vg[@]}" "$out/test_embedder"
  echo "== running the streaming example under valgrind"
  "${vg[@]}" "$out/stream" models/fixtures/llama models/fixtures/draft "def __init__(self, name):" 16
fi

echo "== C API checks passed"
