#!/usr/bin/env bash
# Build and run the C ABI checks: the C API test programs (tests/c/test_runtime.c, test_model.c,
# test_config.c, test_tokenizer.c, test_generator.c, test_threads.c, test_chat.c, test_engine.c: every function of the header
# by handle, with each documented error) and examples/c/stream.c, all strict C99 against
# target/release/libspecdec.so (build it first: cargo build --release), all again linked against
# target/release/libspecdec.a, then all under valgrind (memcheck, leaks included).
# Also the bad-input catalog (tests/c/test_catalog.c: every kind of bad input, its status and
# message, handles usable afterwards) and the concurrency test (tests/c/test_concurrency.c:
# 8 threads x 100 generations on shared models, cancellation races), each also under valgrind.
# Every program uses tests/c/harness.h (checks, counters, scratch folder); the API tests share
# tests/c/fixtures.h. Each prints "N passed, M failed" last; the total is printed at the end.
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

# The C API tests, one program per handle (see tests/c/fixtures.h).
api_tests=(runtime model config tokenizer generator threads chat engine)

# Runs a test program, adds its "N passed, M failed" line to the totals; exits on failure.
passed_total=0
run_test() {
  local name="$1"; shift
  local log="$out/$name.log"
  if ! "$@" > "$log"; then
    cat "$log"; echo "check-c: $name failed" >&2; exit 1
  fi
  local last; last="$(tail -n 1 "$log")"
  echo "$name: $last"
  local n; n="$(sed -n 's/^\(.*; \)\{0,1\}\([0-9]*\) passed, 0 failed$/\2/p' <<<"$last")"
  [ -n "$n" ] || { echo "check-c: $name: unexpected last line: $last" >&2; exit 1; }
  passed_total=$((passed_total + n))
}

echo "== compiling the C API tests (tests/c/test_{$(IFS=,; echo "${api_tests[*]}")}.c)"
for t in "${api_tests[@]}"; do
  "$CC" "${flags[@]}" "tests/c/test_$t.c" -o "$out/test_$t" "${link[@]}"
done
echo "== compiling tests/c/test_catalog.c and tests/c/test_concurrency.c"
"$CC" "${flags[@]}" tests/c/test_catalog.c -o "$out/test_catalog" "${link[@]}" -lm
"$CC" "${flags[@]}" tests/c/test_concurrency.c -o "$out/test_concurrency" "${link[@]}"
echo "== compiling tests/c/test_embedder.c"
"$CC" "${flags[@]}" tests/c/test_embedder.c -o "$out/test_embedder" "${link[@]}" -lm
echo "== compiling examples/c/stream.c"
"$CC" "${flags[@]}" examples/c/stream.c -o "$out/stream" "${link[@]}"

echo "== running the C API tests"
for t in "${api_tests[@]}"; do
  run_test "test_$t" "$out/test_$t"
done

# The catalog also loads a too-old ONNX Runtime (1.20.1) to check that it is refused.
bash scripts/setup.sh --old-runtime >/dev/null
echo "== running the bad-input catalog (entries in $out/test_catalog.log)"
run_test test_catalog "$out/test_catalog"

echo "== running the concurrency test (8 threads x 100 generations, cancellation races)"
run_test test_concurrency "$out/test_concurrency"
echo "== $passed_total checks passed in $((${#api_tests[@]} + 2)) C test programs"

echo "== running the embedder tests (length, logprobs, rewind, fork, metadata, memory, timings, logging)"
"$out/test_embedder"

echo "== running the streaming example on the fixtures"
"$out/stream" models/fixtures/llama models/fixtures/draft "def __init__(self, name):" 48

# The static library: the same programs linked against libspecdec.a (no libspecdec.so at run time).
if [ -f target/release/libspecdec.a ]; then
  static_link=(target/release/libspecdec.a -lpthread -ldl -lm)
  echo "== compiling the C API tests and the example against target/release/libspecdec.a"
  for t in "${api_tests[@]}"; do
    "$CC" "${flags[@]}" "tests/c/test_$t.c" -o "$out/test_${t}_static" "${static_link[@]}"
  done
  "$CC" "${flags[@]}" examples/c/stream.c -o "$out/stream_static" "${static_link[@]}"
  echo "== running the statically linked C API tests and example"
  for t in "${api_tests[@]}"; do
    "$out/test_${t}_static" > "$out/test_${t}_static.log" || { cat "$out/test_${t}_static.log"; exit 1; }
    echo "test_${t} (static): $(tail -n 1 "$out/test_${t}_static.log")"
  done
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
  echo "== running the C API tests under valgrind (a few minutes)"
  for t in "${api_tests[@]}"; do
    SPECDEC_TEST_QUICK=1 "${vg[@]}" "$out/test_$t" > "$out/test_$t-valgrind.log" || { cat "$out/test_$t-valgrind.log"; exit 1; }
    echo "test_$t (valgrind): $(tail -n 1 "$out/test_$t-valgrind.log")"
  done
  echo "== running the bad-input catalog under valgrind"
  "${vg[@]}" "$out/test_catalog" > "$out/test_catalog-valgrind.log" || { cat "$out/test_catalog-valgrind.log"; exit 1; }
  tail -n 1 "$out/test_catalog-valgrind.log"
  echo "== running the concurrency test under valgrind (quick: 3 threads x 4 generations)"
  SPECDEC_TEST_QUICK=1 "${vg[@]}" "$out/test_concurrency"
  echo "== running the embedder tests under valgrind (quick)"
  SPECDEC_TEST_QUICK=1 "${vg[@]}" "$out/test_embedder"
  echo "== running the streaming example under valgrind"
  "${vg[@]}" "$out/stream" models/fixtures/llama models/fixtures/draft "def __init__(self, name):" 16
fi

echo "== C API checks passed"
