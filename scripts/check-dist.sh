#!/usr/bin/env bash
# Check the release tarball of scripts/dist.sh as a user would use it: unpack it outside the
# repository, check the shared library's exports, SONAME and links, then build C and C++ programs
# with nothing but pkg-config's flags (shared and static) and run them on models/fixtures/llama;
# then build and run the examples of examples/c, examples/cpp, examples/go (vendored, default
# pkg-config flags) and examples/csharp (also from the .nupkg's layout) against the unpacked tarball.
# Every program runs in a folder outside the repository without ORT_DYLIB_PATH or LD_LIBRARY_PATH
# into the checkout, and LD_DEBUG=libs shows that ONNX Runtime came from the tarball's lib/ (never
# from the checkout's .deps/); no program or library has a RUNPATH into the checkout.
#
#   bash scripts/check-dist.sh [TARBALL]     (default: target/dist/specdec-<version>-linux-<arch>.tar.gz)
#
# KEEP_TMP=1 keeps the temporary folder. Ends with one "check-dist: PASS" or "check-dist: FAIL" line.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

failures=()
fail() { echo "  FAIL: $*" >&2; failures+=("$*"); }
ok() { echo "  ok: $*"; }
die() { echo "check-dist: $*" >&2; echo "check-dist: FAIL (could not run the checks)" >&2; exit 1; }
# ort_from_tarball LABEL PREFIX: the LD_DEBUG=libs logs PREFIX.* show ONNX Runtime initialised from
# the tarball's lib/ and nothing loaded from the checkout's .deps/ or target/.
ort_from_tarball() {
  local label="$1" logs
  logs="$(cat "$2".* 2>/dev/null || true)"
  rm -f "$2".*
  if grep -q "calling init: $lib/libonnxruntime" <<<"$logs"; then ok "$label loaded ONNX Runtime from the tarball's lib/"
  else fail "$label: no 'calling init: $lib/libonnxruntime' in LD_DEBUG=libs"; fi
  if grep -Eq "calling init: ($root/(\.deps|target)/|.*/\.deps/onnxruntime)" <<<"$logs"; then
    fail "$label loaded a library from the checkout: $(grep -E "calling init: .*($root|\.deps)" <<<"$logs" | head -n 3)"
  fi
}
# no_checkout_runpath LABEL FILE: FILE's RUNPATH/RPATH does not name the checkout.
no_checkout_runpath() {
  local rp
  rp="$(readelf -d "$2" | sed -n 's/.*(R[UN]*PATH).*\[\(.*\)\].*/\1/p')"
  case "$rp" in
    *"$root"*) fail "$1 has a RUNPATH into the checkout: $rp";;
    *) ok "$1: no RUNPATH into the checkout (${rp:-none})";;
  esac
}

for tool in cc c++ pkg-config nm readelf tar; do
  command -v "$tool" >/dev/null || die "$tool is required"
done

version="$(awk '
  /^\[/ { in_pkg = ($0 ~ /^\[package\][[:space:]]*$/) }
  in_pkg && /^[[:space:]]*version[[:space:]]*=/ {
    sub(/^[^=]*=[[:space:]]*"/, ""); sub(/".*$/, ""); print; exit
  }' Cargo.toml)"
[ -n "$version" ] || die "cannot read the version from Cargo.toml"
tarball="${1:-$root/target/dist/specdec-$version-linux-$(uname -m).tar.gz}"
[ -f "$tarball" ] || die "$tarball not found: run 'make dist' (or bash scripts/dist.sh) first"
tarball="$(cd "$(dirname "$tarball")" && pwd)/$(basename "$tarball")"
model="$root/models/fixtures/llama"
[ -f "$model/model.onnx" ] && [ -f "$model/tokenizer.json" ] || die "$model lacks model.onnx or tokenizer.json"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/specdec-check-dist.XXXXXX")"
tmp="$(cd "$tmp" && pwd -P)"
case "$tmp/" in "$(cd "$root" && pwd -P)/"*) die "temporary folder $tmp is inside the repository (set TMPDIR)";; esac
if [ "${KEEP_TMP:-0}" = 1 ]; then
  echo "check-dist: keeping $tmp"
else
  trap 'rm -rf "$tmp"' EXIT
fi

echo "check-dist: $tarball"
tar -xzf "$tarball" -C "$tmp"
top="$tmp/specdec-$version"
[ -d "$top" ] || die "the tarball has no top folder specdec-$version/"
lib="$top/lib"
abi="$(sed -n 's/^#define SPECDEC_ABI_VERSION \([0-9][0-9]*\)$/\1/p' "$top/include/specdec.h" 2>/dev/null || true)"
[ -n "$abi" ] || die "no SPECDEC_ABI_VERSION in include/specdec.h of the tarball"
soname="libspecdec.so.$abi"
real="libspecdec.so.$version"

echo "== contents"
ort_real="$(cd "$lib" && ls libonnxruntime.so.*.*.* 2>/dev/null | head -n 1)"
[ -n "$ort_real" ] || fail "lib/libonnxruntime.so.<version> (ONNX Runtime) is missing"
for f in "lib/$real" lib/libspecdec.a include/specdec.h include/specdec.hpp lib/pkgconfig/specdec.pc \
         README.md share/doc/specdec/ONNXRUNTIME.txt ${ort_real:+lib/$ort_real} \
         share/doc/onnxruntime/LICENSE share/doc/onnxruntime/ThirdPartyNotices.txt; do
  if [ -f "$top/$f" ] && [ ! -L "$top/$f" ]; then ok "$f"; else fail "$f is missing (or not a regular file)"; fi
done
check_link() {
  local link="$1" target="$2"
  if [ -L "$lib/$link" ] && [ "$(readlink "$lib/$link")" = "$target" ] && [ -f "$lib/$link" ]; then
    ok "lib/$link -> $target"
  else
    fail "lib/$link should be a symlink to $target (is: $(readlink "$lib/$link" 2>/dev/null || echo 'not a symlink'))"
  fi
}
check_link "$soname" "$real"
check_link libspecdec.so "$soname"
[ -n "$ort_real" ] && check_link libonnxruntime.so "$ort_real"

echo "== shared library"
if [ -f "$lib/$soname" ]; then
  no_checkout_runpath "lib/$real" "$lib/$real"
  if readelf -d "$lib/$real" | grep -q 'R[UN]*PATH'; then fail "lib/$real has a RUNPATH/RPATH"; fi
  got="$(readelf -d "$lib/$soname" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')"
  if [ "$got" = "$soname" ]; then ok "SONAME [$soname]"; else fail "SONAME is [${got:-none}], expected [$soname]"; fi

  exported="$(nm -D --defined-only "$lib/$soname" | awk 'NF >= 3 { print $3 }' | sort -u)"
  offenders="$(grep -v '^specdec_' <<<"$exported" || true)"
  if [ -z "$exported" ]; then
    fail "nm -D lists no defined symbols"
  elif [ -n "$offenders" ]; then
    fail "exported symbols without the specdec_ prefix: $(tr '\n' ' ' <<<"$offenders")"
  else
    ok "$(wc -l <<<"$exported") exported symbols, all specdec_*"
  fi
  # Every function the header declares must be exported.
  declared="$(grep -o '\bspecdec_[a-z0-9_]*(' "$top/include/specdec.h" | tr -d '(' | sort -u)"
  missing="$(comm -23 <(echo "$declared") <(echo "$exported"))"
  if [ -z "$missing" ]; then ok "all $(wc -l <<<"$declared") functions of specdec.h are exported"
  else fail "declared in specdec.h but not exported: $(tr '\n' ' ' <<<"$missing")"; fi
  if readelf -S "$lib/$real" | grep -q '\.debug_'; then fail "lib/$real still has debug sections"
  else ok "no debug sections in lib/$real"; fi
fi
if [ -f "$lib/libspecdec.a" ] && readelf -S "$lib/libspecdec.a" 2>/dev/null | grep -q '\.debug_'; then
  fail "lib/libspecdec.a still has debug sections"
else
  ok "no debug sections in lib/libspecdec.a"
fi

echo "== pkg-config"
export PKG_CONFIG_PATH="$lib/pkgconfig" PKG_CONFIG_LIBDIR="$lib/pkgconfig"
unset LD_LIBRARY_PATH LIBRARY_PATH CPATH C_INCLUDE_PATH CPLUS_INCLUDE_PATH || true
pc_version="$(pkg-config --modversion specdec 2>&1 || true)"
if [ "$pc_version" = "$version" ]; then ok "pkg-config --modversion specdec = $version"
else fail "pkg-config --modversion specdec gave '$pc_version', expected $version"; fi
cflags_libs="$(pkg-config --cflags --libs specdec)"
static_flags="$(pkg-config --static --cflags --libs specdec)"
echo "  shared: $cflags_libs"
echo "  static: $static_flags"

work="$tmp/work"
mkdir -p "$work"
cat > "$work/prog.c" <<'EOF'
/* specdec check-dist: greedy generation of 8 tokens through the C ABI. */
#include <specdec.h>
#include <stdio.h>
#include <string.h>

static int fail(const char *what, specdec_status st, specdec_error *err) {
    fprintf(stderr, "prog: %s failed: %s (%u): %s\n", what, specdec_status_name(st), (unsigned)st,
            err ? specdec_error_message(err) : "");
    specdec_error_free(err);
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL_DIR\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    if (specdec_abi_version() != SPECDEC_ABI_VERSION) {
        fprintf(stderr, "prog: library ABI %u, header ABI %u\n", specdec_abi_version(),
                (unsigned)SPECDEC_ABI_VERSION);
        return 1;
    }
    printf("specdec %s (ABI %u)\n", specdec_version(), specdec_abi_version());

    specdec_error *err = NULL;
    specdec_status st;
    if ((st = specdec_runtime_init(NULL, &err)) != SPECDEC_STATUS_OK) return fail("specdec_runtime_init", st, err);
    specdec_model *model = NULL;
    if ((st = specdec_model_load(dir, NULL, &model, &err))) return fail("specdec_model_load", st, err);
    specdec_tokenizer *tok = NULL;
    if ((st = specdec_tokenizer_load(dir, &tok, &err))) return fail("specdec_tokenizer_load", st, err);

    const char *prompt = "def main():";
    uint32_t ids[256];
    size_t n_ids = 0;
    if ((st = specdec_tokenizer_encode(tok, prompt, strlen(prompt), ids, 256, &n_ids, &err)))
        return fail("specdec_tokenizer_encode", st, err);
    if (n_ids == 0) {
        fprintf(stderr, "prog: the prompt encoded to no tokens\n");
        return 1;
    }

    specdec_gen_config *cfg = specdec_gen_config_new();
    const uint32_t no_eos[1] = {0};
    if (!cfg) { fprintf(stderr, "prog: specdec_gen_config_new returned NULL\n"); return 1; }
    if ((st = specdec_gen_config_set_temperature(cfg, 0.0f, &err))) return fail("set_temperature", st, err);
    if ((st = specdec_gen_config_set_max_new_tokens(cfg, 8, &err))) return fail("set_max_new_tokens", st, err);
    /* No EOS, so that exactly 8 tokens come out. */
    if ((st = specdec_gen_config_set_eos_ids(cfg, no_eos, 0, &err))) return fail("set_eos_ids", st, err);

    specdec_generator *gen = NULL;
    if ((st = specdec_generator_new(model, NULL, cfg, &gen, &err))) return fail("specdec_generator_new", st, err);
    specdec_gen_config_free(cfg);
    if ((st = specdec_generator_append_tokens(gen, ids, n_ids, &err))) return fail("append_tokens", st, err);
    specdec_finish_reason reason = SPECDEC_FINISH_REASON_NONE;
    if ((st = specdec_generator_generate(gen, NULL, NULL, &reason, &err))) return fail("generate", st, err);

    const uint32_t *all = NULL;
    size_t n_all = 0;
    if ((st = specdec_generator_tokens(gen, &all, &n_all, &err))) return fail("specdec_generator_tokens", st, err);
    if (n_all != n_ids + 8 || reason != SPECDEC_FINISH_REASON_MAX_TOKENS) {
        fprintf(stderr, "prog: expected 8 new tokens ending with MAX_TOKENS, got %zu (reason %u)\n",
                n_all - n_ids, (unsigned)reason);
        return 1;
    }
    printf("tokens:");
    for (size_t i = n_ids; i < n_all; i++) printf(" %u", all[i]);
    printf("\n");

    char text[4096];
    size_t len = 0;
    if ((st = specdec_tokenizer_decode(tok, all + n_ids, n_all - n_ids, text, sizeof text, &len, &err)))
        return fail("specdec_tokenizer_decode", st, err);
    printf("text: %s\n", text);

    specdec_generator_free(gen);
    specdec_tokenizer_free(tok);
    specdec_model_free(model);
    return 0;
}
EOF


# Run a built program on the fixture (with ORT_DYLIB_PATH only if ORT_FOR_PROG is set); its
# tokens go to EXE.tokens.
run_prog() {
  local label="$1" exe="$2" out
  if out="$(cd "$work" && env -u ORT_DYLIB_PATH ${ORT_FOR_PROG:+ORT_DYLIB_PATH="$ORT_FOR_PROG"} LD_DEBUG=libs LD_DEBUG_OUTPUT="$exe.ld" "$exe" "$model" 2>&1)"; then
    ort_from_tarball "$label" "$exe.ld"
    local toks; toks="$(sed -n 's/^tokens: //p' <<<"$out")"
    if [ "$(wc -w <<<"$toks")" = 8 ]; then
      ok "$label generated: $toks"
      printf '%s' "$toks" > "$exe.tokens"
    else
      fail "$label: no 8 tokens in its output: $out"
    fi
  else
    fail "$label exited with an error: $out"
  fi
}

echo "== C, shared (cc prog.c \$(pkg-config --cflags --libs specdec) -Wl,-rpath,$lib)"
# shellcheck disable=SC2086  # pkg-config output is meant to be word-split
if (cd "$work" && cc prog.c $cflags_libs -Wl,-rpath,"$lib" -o prog_shared) >"$work/cc_shared.log" 2>&1; then
  ok "built"
  needed="$(readelf -d "$work/prog_shared" | sed -n 's/.*(NEEDED).*\[\(.*\)\].*/\1/p' | tr '\n' ' ')"
  if grep -qw "$soname" <<<"$needed"; then ok "NEEDED $soname"; else fail "prog_shared does not need $soname (NEEDED: $needed)"; fi
  resolved="$(ldd "$work/prog_shared" 2>/dev/null | awk -v so="$soname" '$1 == so { print $3 }')"
  if [ "$resolved" = "$lib/$soname" ]; then ok "$soname resolves to the unpacked lib/"
  else fail "$soname resolves to '${resolved:-nothing}', not $lib/$soname"; fi
  run_prog "C (shared)" "$work/prog_shared"
  no_checkout_runpath prog_shared "$work/prog_shared"
  # A missing ONNX Runtime is a clean error, not a crash.
  set +e
  out="$(cd "$work" && ORT_DYLIB_PATH="$tmp/no-such-libonnxruntime.so" ./prog_shared "$model" 2>&1)"; rc=$?
  set -e
  if [ "$rc" = 1 ] && grep -q SPECDEC_STATUS_RUNTIME_LOAD <<<"$out"; then ok "a missing ONNX Runtime gives SPECDEC_STATUS_RUNTIME_LOAD"
  else fail "with ORT_DYLIB_PATH pointing nowhere: exit $rc, output: $out"; fi
else
  fail "cc (shared) failed: $(cat "$work/cc_shared.log")"
fi

echo "== C, static (libspecdec.a)"
static_cmd="${static_flags/-lspecdec/-Wl,-Bstatic -lspecdec -Wl,-Bdynamic}"
echo "  cc prog.c $static_cmd"
# shellcheck disable=SC2086
if (cd "$work" && cc prog.c $static_cmd -o prog_static) >"$work/cc_static.log" 2>&1; then
  ok "built"
  if readelf -d "$work/prog_static" | grep -q 'NEEDED.*libspecdec'; then fail "prog_static still needs libspecdec.so"
  else ok "prog_static does not need libspecdec.so"; fi
  # A static libspecdec's own folder is the program's: it is told where ONNX Runtime is.
  ORT_FOR_PROG="$lib/libonnxruntime.so" run_prog "C (static, ORT_DYLIB_PATH=lib/libonnxruntime.so)" "$work/prog_static"
  if [ -f "$work/prog_shared.tokens" ] && [ -f "$work/prog_static.tokens" ]; then
    if cmp -s "$work/prog_shared.tokens" "$work/prog_static.tokens"; then ok "shared and static builds generate the same tokens"
    else fail "shared and static builds generate different tokens"; fi
  fi
else
  fail "cc (static) failed: $(cat "$work/cc_static.log")"
fi

echo "== C++17 (c++ -std=c++17 prog.cpp \$(pkg-config --cflags --libs specdec))"
if [ -f "$top/include/specdec.hpp" ]; then
  cat > "$work/prog.cpp" <<'EOF'
// specdec check-dist: the C++ wrapper compiles, links and loads.
#include <specdec.hpp>
#include <cstdio>
#include <string>

int main() {
    if (specdec::abi_version() != SPECDEC_ABI_VERSION) {
        std::fprintf(stderr, "prog_cpp: library ABI %u, header ABI %u\n", specdec::abi_version(),
                     static_cast<unsigned>(SPECDEC_ABI_VERSION));
        return 1;
    }
    const std::string v(specdec::version());
    std::printf("specdec %s (ABI %u) from C++\n", v.c_str(), specdec::abi_version());
    return v.empty() ? 1 : 0;
}
EOF
  # shellcheck disable=SC2086
  if (cd "$work" && c++ -std=c++17 prog.cpp $cflags_libs -Wl,-rpath,"$lib" -o prog_cpp) >"$work/cxx.log" 2>&1; then
    ok "built"
    if out="$(cd "$work" && ./prog_cpp 2>&1)"; then ok "ran: $out"; else fail "prog_cpp failed: $out"; fi
  else
    fail "c++ failed: $(cat "$work/cxx.log")"
  fi
else
  fail "include/specdec.hpp is missing from the tarball"
fi

# run_example LABEL EXPECT OUTFILE CMD...: run CMD in $work without ORT_DYLIB_PATH, LD_LIBRARY_PATH
# or the checkout's paths, expecting exit 0 and EXPECT (a grep -E pattern) in its output.
run_example() {
  local label="$1" expect="$2" log="$work/$3"
  shift 3
  if (cd "$work" && env -u ORT_DYLIB_PATH -u LD_LIBRARY_PATH LD_DEBUG=libs LD_DEBUG_OUTPUT="$log.ld" "$@") >"$log" 2>&1; then
    if grep -Eq "$expect" "$log"; then ok "$label ran"; else fail "$label: no '$expect' in its output: $(tail -n 5 "$log")"; fi
    ort_from_tarball "$label" "$log.ld"
  else
    fail "$label exited with an error: $(tail -n 20 "$log")"
    rm -f "$log.ld".*
  fi
}
fix_target="$model"
fix_draft="$root/models/fixtures/draft"
stats_re='new tokens|tokens/s|acceptance'

echo "== examples/c/stream.c (pkg-config, rpath to the tarball's lib/)"
# shellcheck disable=SC2086
if cc -std=c99 -Wall -Wextra examples/c/stream.c $cflags_libs -Wl,-rpath,"$lib" -lpthread -o "$work/stream" >"$work/stream_cc.log" 2>&1; then
  ok "built"
  no_checkout_runpath stream "$work/stream"
  run_example "examples/c" "$stats_re" stream.log "$work/stream" "$fix_target" "$fix_draft" "def main():" 16
else
  fail "cc examples/c/stream.c: $(cat "$work/stream_cc.log")"
fi

echo "== examples/cpp/generate.cpp (pkg-config, rpath to the tarball's lib/)"
# shellcheck disable=SC2086
if c++ -std=c++17 -Wall -Wextra examples/cpp/generate.cpp $cflags_libs -Wl,-rpath,"$lib" -lpthread -o "$work/generate" >"$work/generate_cxx.log" 2>&1; then
  ok "built"
  no_checkout_runpath generate "$work/generate"
  run_example "examples/cpp (draft model)" "$stats_re" generate.log "$work/generate" "$fix_target" "$fix_draft" "Once upon a time" 16
  run_example "examples/cpp (n-grams)" "$stats_re" generate_ngram.log "$work/generate" "$fix_target" ngram "Once upon a time" 16
else
  fail "c++ examples/cpp/generate.cpp: $(cat "$work/generate_cxx.log")"
fi

echo "== examples/go (vendored module outside the repository, default pkg-config flags)"
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then export PATH="/usr/local/go/bin:$PATH"; fi
if command -v go >/dev/null; then
  gomod="$tmp/gomod"
  mkdir -p "$gomod"
  cp examples/go/main.go "$gomod/"
  cat > "$gomod/go.mod" <<EOF
module example.com/specdec-user

go 1.23

require github.com/specdec/specdec/bindings/go/specdec v0.0.0

replace github.com/specdec/specdec/bindings/go/specdec => $root/bindings/go/specdec
EOF
  if (cd "$gomod" && export GOTOOLCHAIN=local CGO_ENABLED=1 GOPROXY=off GOFLAGS=-mod=mod GOPATH="$tmp/gopath" \
        CGO_LDFLAGS="-Wl,-rpath,$lib" && go mod vendor && GOFLAGS=-mod=vendor go build -o "$work/example_go" .) >"$work/go_build.log" 2>&1; then
    ok "built (go mod vendor, then -mod=vendor)"
    no_checkout_runpath example_go "$work/example_go"
    run_example "examples/go" "$stats_re" go.log "$work/example_go" -target "$fix_target" -draft "$fix_draft" -prompt "def main():" -max 16
  else
    fail "go build examples/go: $(tail -n 20 "$work/go_build.log")"
  fi
  chmod -R u+w "$tmp/gopath" 2>/dev/null || true
else
  echo "  SKIP: go is not installed"
fi

echo "== examples/csharp (Mono; the binding compiled from bindings/csharp, then the .nupkg)"
if command -v mcs >/dev/null && command -v mono >/dev/null; then
  cs_files=(bindings/csharp/*.cs)
  if mcs -nologo -target:library -out:"$work/Specdec.dll" "${cs_files[@]}" >"$work/mcs.log" 2>&1 \
     && mcs -nologo -target:exe -r:"$work/Specdec.dll" -out:"$work/Example.exe" examples/csharp/Example.cs >>"$work/mcs.log" 2>&1; then
    ok "built"
    run_example "examples/csharp (LD_LIBRARY_PATH=lib/)" "$stats_re" cs.log env LD_LIBRARY_PATH="$lib" mono "$work/Example.exe" "$fix_target" "$fix_draft" "Once upon a time" 16
  else
    fail "mcs: $(cat "$work/mcs.log")"
  fi
  nupkg="$(dirname "$tarball")/Specdec.$version.nupkg"
  if [ -f "$nupkg" ] && command -v unzip >/dev/null; then
    pkg="$tmp/nupkg"
    mkdir -p "$pkg"
    unzip -q "$nupkg" -d "$pkg"
    rid="linux-x64"; [ "$(uname -m)" = aarch64 ] && rid=linux-arm64
    for f in Specdec.nuspec lib/net45/Specdec.dll "runtimes/$rid/native/libspecdec.so" "runtimes/$rid/native/libonnxruntime.so" ONNXRUNTIME-LICENSE.txt; do
      if [ -f "$pkg/$f" ]; then ok "nupkg: $f"; else fail "nupkg: $f is missing"; fi
    done
    if [ -f "$pkg/lib/net45/Specdec.dll" ] && mcs -nologo -target:exe -r:"$pkg/lib/net45/Specdec.dll" -out:"$pkg/lib/net45/Example.exe" examples/csharp/Example.cs >"$work/mcs_pkg.log" 2>&1; then
      native="$pkg/runtimes/$rid/native"
      lib_saved="$lib"; lib="$native"
      run_example "examples/csharp (.nupkg layout)" "$stats_re" cs_pkg.log env LD_LIBRARY_PATH="$native" mono "$pkg/lib/net45/Example.exe" "$fix_target" "$fix_draft" "Once upon a time" 16
      lib="$lib_saved"
    else
      fail "examples/csharp against the .nupkg's Specdec.dll: $(cat "$work/mcs_pkg.log" 2>/dev/null)"
    fi
  else
    echo "  SKIP: no $nupkg (or no unzip)"
  fi
else
  echo "  SKIP: Mono (mcs, mono) is not installed"
fi

echo "== the same programs with no source checkout present (an empty tmpfs over it, in a mount namespace)"
# Copies of the fixtures outside the checkout, then each program built above run where the
# checkout is not there at all: nothing of it can be found, whatever a path inside says.
if [ "$(id -u)" = 0 ] && unshare --mount --propagation private true 2>/dev/null; then
  hidden="$tmp/hidden"
  mkdir -p "$hidden/models"
  cp -r "$fix_target" "$hidden/models/target"
  cp -r "$fix_draft" "$hidden/models/draft"
  t="$hidden/models/target" d="$hidden/models/draft"
  {
    echo 'set -u'
    echo "mount -t tmpfs none '$root' || exit 90"
    echo "[ -z \"\$(ls -A '$root')\" ] || exit 91"
    echo "cd '$work'"
    echo "run() { name=\"\$1\"; shift; \"\$@\" >'$hidden'/\"\$name\".log 2>&1; echo \"\$?\" >'$hidden'/\"\$name\".rc; }"
    [ -x "$work/stream" ] && echo "run c '$work/stream' '$t' '$d' 'def main():' 16"
    [ -x "$work/generate" ] && echo "run cpp '$work/generate' '$t' '$d' 'Once upon a time' 16"
    [ -x "$work/example_go" ] && echo "run go '$work/example_go' -target '$t' -draft '$d' -prompt 'def main():' -max 16"
    [ -f "$work/Example.exe" ] && command -v mono >/dev/null &&
      echo "run csharp env LD_LIBRARY_PATH='$lib' mono '$work/Example.exe' '$t' '$d' 'Once upon a time' 16"
    echo 'exit 0'
  } >"$hidden/run.sh"
  if env -u ORT_DYLIB_PATH -u LD_LIBRARY_PATH unshare --mount --propagation private bash "$hidden/run.sh"; then
    for name in c cpp go csharp; do
      [ -f "$hidden/$name.rc" ] || continue
      if [ "$(cat "$hidden/$name.rc")" = 0 ] && grep -Eq "$stats_re" "$hidden/$name.log"; then
        ok "$name example ran without the checkout"
      else
        fail "$name example without the checkout: $(tail -n 5 "$hidden/$name.log")"
      fi
    done
  else
    fail "could not hide the checkout in a mount namespace"
  fi
else
  echo "  SKIP: hiding the checkout needs root and unshare"
fi

echo
if [ ${#failures[@]} -eq 0 ]; then
  echo "check-dist: PASS ($(basename "$tarball"))"
else
  echo "check-dist: FAIL (${#failures[@]} failed: $(printf '%s; ' "${failures[@]}" | cut -c1-400))" >&2
  exit 1
fi
