#!/usr/bin/env python3
"""Peer run against llama.cpp on the same weights (benches/PEER.md, "llama.cpp on the same weights").

Needs scripts/setup-llamacpp.sh (llama.cpp tools and libllama.so in .cache/llama.cpp/build/bin),
scripts/make_gguf.py (GGUF files in .cache/gguf/), scripts/make_builder_models.py (the
onnxruntime-genai builder exports in .cache/builder-models/genai/, which specdec runs) and
`make setup build` (target/release/specdec, libspecdec.so). Run with the builder venv (numpy,
typing_extensions; tokenizers optional), in the background (about 55 minutes on the shared
2-core machine):

    .venv-builder/bin/python scripts/peer_llamacpp.py --quick            # smoke test, about 2 min
    nohup .venv-builder/bin/python scripts/peer_llamacpp.py > target/peer/llamacpp.log 2>&1 &
    .venv-builder/bin/python scripts/peer_llamacpp.py --parts h2h --merge   # redo one part, keep the rest

Parts (--parts, comma-separated; default tok,plain,cli,spin,bench,spec,h2h,greedy):
  tok      tokenization: every prompt of --prompts with specdec's tokenizer (libspecdec on the
           checkpoint's tokenizer.json) against llama.cpp's (llama_tokenize through the sdist's own
           ctypes binding llama_cpp/llama_cpp.py on build/bin/libllama.so, add_special and
           parse_special on as llama.cpp's tools call it), plus the converter's hashing text and a
           few other strings. The cli parts also check the ids llama-completion prints.
  plain    llama.cpp plain greedy decoding in-process (libllama through that binding; prompt fed
           as token ids, one llama_decode for the prompt and one per new token, argmax), on the
           Q4_0 demo target, Q4_0 cost-scaled target and Q4_0 draft, at each --threads, --reps
           repetitions interleaved, after a warm-up run of each. tok/s = new tokens / llama.cpp's
           own decode time (llama_perf_context: prompt eval + eval; prefill included, as
           peer_bench.py times genai and specdec), summed over the prompts of a repetition; the
           wall clock around the Python loop is reported too. In-process because llama.cpp's
           logger writes from a worker thread that is not flushed at exit (common/log.cpp): on
           this loaded machine one llama-completion run in ~4 lost the tail of its output,
           timings included, which made the tools unfit as the main instrument.
  cli      cross-check: llama-completion itself, one process per run, prompt as text
           (--no-escape), --temp 0 --ignore-eos, --cli-reps repetitions; runs whose output was cut
           are rerun (up to 10 times) and counted; text compared with the in-process greedy text.
  spin     the same with OMP_WAIT_POLICY unset (llama.cpp's default: OpenMP threads spin), on
           --spin-prompts prompts, --spin-new-tokens tokens, --spin-reps repetitions. Every other
           llama.cpp run uses --omp-wait (default passive): with two spinning threads on a 2-core
           machine shared with other jobs, the scaled target fell from ~80 to ~4 tok/s.
  bench    llama-bench -p 0 -n N -r REPS -t THREADS (llama.cpp's standard tg figure: no prompt).
  spec     llama-speculative-simple (--spec-type draft-simple, p-min 0), target = cost-scaled
           Q4_0, draft = draft Q4_0, greedy: a sweep of --spec-n with --spec-sweep-reps
           repetitions, then the best draft length per thread count with --reps repetitions, each
           paired with a plain in-process run of the same target. -n N-1 gives N tokens (one run
           in a few gives N+1; counted, its text compared over N). tok/s = generated / (encode +
           decode seconds as it prints them); acceptance = n_accept / n_drafted.
  specdec  specdec CLI (`specdec generate --json`, one process per run) on the builder int4
           exports: target-only of both targets, scaled + draft at --specdec-gammas and the auto
           policy, --specdec-threads, --specdec-reps; tok/s from its total_ms (prefill included).
           (Superseded by h2h, which interleaves it with llama.cpp; not in the default parts.)
  h2h      head to head, all in every repetition (order rotated): llama.cpp plain (in-process) of
           both Q4_0 targets, llama.cpp speculative at the sweep's best length (or --h2h-spec-n),
           specdec target-only of both int4 targets and scaled + draft int4 at --specdec-gammas
           and auto; speed-ups over each engine's own scaled target-only and specdec/llama.cpp
           ratios, paired per repetition. specdec runs in-process (--h2h-specdec lib, default):
           libspecdec through ctypes as scripts/peer_bench.py drives it, each model loaded once,
           a generator per prompt, timed from creating the generator to the last token; at a
           thread count that reaches the physical cores it uses the library's default threading
           (intra-op threads 0: every model on the process's one shared ONNX Runtime pool, one
           thread per core), below that a pool of that many threads per model; the in-process
           configurations of both engines are warmed up once on the first prompt. --h2h-specdec
           cli keeps the earlier protocol (the CLI, one process per prompt, cold each time, with
           --threads/--draft-threads: a pool per model). Greedy check: every speculative run's
           output against the same engine's scaled target-only output.
  greedy   greedy token ids, 1 thread: llama.cpp (binding, argmax, EOS not masked) on the f32, Q4_0
           and Q4_0-pure GGUFs against specdec (--eos-ids "") on the builder fp32 and int4
           exports: leading tokens in agreement per prompt (different quantisations: differences
           expected) and llama.cpp's top-1 minus top-2 logit at the first difference.

Writes --out (default benches/results/peer-llamacpp.json) and a markdown report beside it (.md).
Measurements run un-niced; the JSON records the load average before and after.
"""
from __future__ import annotations

import argparse
import ctypes
import datetime as _dt
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

from specdec_ctypes import Specdec

ROOT = Path(__file__).resolve().parent.parent
LLAMA = ROOT / ".cache/llama.cpp"
BIN = LLAMA / "build/bin"
GGUF = ROOT / ".cache/gguf"
HF = ROOT / ".cache/builder-models/hf"
GENAI = ROOT / ".cache/builder-models/genai"
SPECDEC = ROOT / "target/release/specdec"
LIBSPECDEC = ROOT / "target/release/libspecdec.so"

# name -> (gguf stem, builder int4 export, builder fp32 export)
MODELS = {
    "target": ("demo-target", "demo-target-int4", "demo-target-fp32"),
    "scaled": ("demo-target-scaled", "demo-target-scaled-int4", None),
    "draft": ("demo-draft", "demo-draft-int4", "demo-draft-fp32"),
}
EXTRA_TEXTS = [
    "Hello world! It's 2024; naïve café — ünïcödé ✓ 日本語 🦙\t\ttabs  and   spaces\n\n\n",
    "x = {'a': [1, 2, 3], \"b\": (4.5e-3, -6)}  # comment\r\n\tif x: return None\n",
    "    def __init__(self, *args, **kwargs) -> None:\n        super().__init__()\n",
    "<|endoftext|>def f():\n    pass<|endoftext|>",
]


def log(msg: str) -> None:
    print(f"[peer_llamacpp {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def summary(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def fmt(s, digits=1, suffix=""):
    if not s or s.get("median") is None:
        return "–"
    f = f"{{:.{digits}f}}"
    if s["n"] == 1:
        return f.format(s["median"]) + suffix
    return f"{f.format(s['median'])}{suffix} ({f.format(s['min'])}–{f.format(s['max'])})"


def parse_int_list(text):
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-", 1)
            out.extend(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out


def first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def rel(p):
    try:
        return str(Path(p).resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def shell_cmd(cmd, env=None):
    out = [f"{k}={v}" for k, v in (env or {}).items()]
    for c in map(str, cmd):
        c = c.replace(str(ROOT) + "/", "")
        out.append(c if re.fullmatch(r"[\w@%+=:,./-]+", c) else json.dumps(c))
    return " ".join(out)


def loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# --------------------------------------------------------------------------------------------
# specdec's tokenizer (libspecdec) and CLI
# --------------------------------------------------------------------------------------------

class SpecdecTokenizer:
    def __init__(self, path: Path):
        L = ctypes.CDLL(str(LIBSPECDEC))
        V, E = ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)
        L.specdec_tokenizer_load.argtypes = [ctypes.c_char_p, ctypes.POINTER(V), E]
        L.specdec_tokenizer_encode.argtypes = [V, ctypes.c_char_p, ctypes.c_size_t,
                                               ctypes.POINTER(ctypes.c_uint32), ctypes.c_size_t,
                                               ctypes.POINTER(ctypes.c_size_t), E]
        L.specdec_error_message.argtypes = [V]
        L.specdec_error_message.restype = ctypes.c_char_p
        L.specdec_error_free.argtypes = [V]
        self.L = L
        self.tok = V()
        err = V()
        st = L.specdec_tokenizer_load(str(path).encode(), ctypes.byref(self.tok), ctypes.byref(err))
        if st:
            raise RuntimeError(f"specdec_tokenizer_load: status {st}: {self._msg(err)}")

    def _msg(self, err):
        if not err.value:
            return ""
        m = (self.L.specdec_error_message(err) or b"").decode(errors="replace")
        self.L.specdec_error_free(err)
        return m

    def encode(self, text: str):
        raw = text.encode()
        n = ctypes.c_size_t()
        err = ctypes.c_void_p()
        st = self.L.specdec_tokenizer_encode(self.tok, raw, len(raw), None, 0, ctypes.byref(n), ctypes.byref(err))
        if st not in (0, 7013):  # 7013: BUFFER_TOO_SMALL, the size query
            raise RuntimeError(f"specdec_tokenizer_encode: status {st}: {self._msg(err)}")
        self._msg(err)
        buf = (ctypes.c_uint32 * max(n.value, 1))()
        st = self.L.specdec_tokenizer_encode(self.tok, raw, len(raw), buf, n.value, ctypes.byref(n), ctypes.byref(err))
        if st:
            raise RuntimeError(f"specdec_tokenizer_encode: status {st}: {self._msg(err)}")
        return list(buf[: n.value])


def physical_cores():
    """Distinct (package, core) pairs in sysfs: what ONNX Runtime sizes a default pool by."""
    seen = set()
    for d in Path("/sys/devices/system/cpu").glob("cpu[0-9]*/topology"):
        try:
            seen.add(((d / "physical_package_id").read_text().strip(), (d / "core_id").read_text().strip()))
        except OSError:
            pass
    return len(seen) or os.cpu_count()


class SpecdecLib(Specdec):
    """specdec in this process through its C ABI (scripts/specdec_ctypes.py, as
    scripts/peer_bench.py drives it, on a private copy of target/release/libspecdec.so so that a
    rebuild during the run cannot pull the file from under it): models loaded once and kept, then
    per prompt a generator, timed from creating the generator to the last token."""

    def __init__(self, ort_path):
        super().__init__(LIBSPECDEC, str(ort_path) if ort_path else None, ROOT / "target/peer/.lib")
        self.models = {}

    def model(self, path, threads):
        """The model at `path` with `threads` intra-op threads (0: the library's default, the
        process's shared pool), loaded on first use and kept (one handle per file and setting,
        shared by every configuration that uses it, as one host process would)."""
        key = (str(path), threads)
        if key not in self.models:
            self.models[key] = self.load_model(path, threads)
        return self.models[key]

    def greedy(self, target, draft, ids, n, gamma=None, policy=None):
        """Greedy, exactly n new tokens (no EOS), as `specdec generate --eos-ids ''` does."""
        return self.generate(target, draft, ids, n, 0.0, 0, gamma, policy)

    def close(self):
        for h in self.models.values():
            self.L.specdec_model_free(h)
        self.models.clear()


def specdec_generate(target, prompt_ids, n, threads, draft=None, gamma=None, policy=None):
    cmd = [SPECDEC, "generate", "--target", target, "--prompt-ids", ",".join(map(str, prompt_ids)),
           "--max-new-tokens", str(n), "--json", "--eos-ids", "", "--threads", str(threads)]
    if draft:
        cmd += ["--draft", draft, "--draft-threads", str(threads)]
        if gamma:
            cmd += ["--gamma", str(gamma)]
        if policy:
            cmd += ["--draft-policy", policy]
    p = subprocess.run(list(map(str, cmd)), capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"{shell_cmd(cmd)} failed ({p.returncode}): {p.stderr[-2000:]}")
    return json.loads(p.stdout), cmd


# --------------------------------------------------------------------------------------------
# llama.cpp through the sdist's own ctypes binding
# --------------------------------------------------------------------------------------------

def load_binding():
    """llama_cpp/llama_cpp.py of the sdist, on build/bin/libllama.so, without the package's
    high-level modules (their dependencies are not needed)."""
    pkg_dir = next((LLAMA / "src").glob("llama_cpp_python-*/llama_cpp"))
    os.environ["LLAMA_CPP_LIB_PATH"] = str(BIN)
    pkg = types.ModuleType("llama_cpp")
    pkg.__path__ = [str(pkg_dir)]
    sys.modules["llama_cpp"] = pkg
    import importlib
    lc = importlib.import_module("llama_cpp.llama_cpp")

    @lc.llama_log_callback
    def _quiet(level, text, user_data):  # noqa: ARG001
        pass

    lc._peer_quiet = _quiet  # keep the callback alive
    lc.llama_log_set(_quiet, ctypes.c_void_p(0))
    lc.llama_backend_init()
    return lc


class LlamaModel:
    def __init__(self, lc, path: Path, threads: int = 1, n_ctx: int = 1024):
        import numpy as np
        self.np = np
        self.lc = lc
        mp = lc.llama_model_default_params()
        self.model = lc.llama_model_load_from_file(str(path).encode(), mp)
        if not self.model:
            raise RuntimeError(f"llama_model_load_from_file failed: {path}")
        cp = lc.llama_context_default_params()
        cp.n_ctx = n_ctx
        cp.n_batch = n_ctx
        cp.n_threads = threads
        cp.n_threads_batch = threads
        cp.no_perf = False
        self.ctx = lc.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise RuntimeError("llama_init_from_model failed")
        self.vocab = lc.llama_model_get_vocab(self.model)
        self.n_vocab = lc.llama_vocab_n_tokens(self.vocab)

    def tokenize(self, text: str, add_special=True, parse_special=True):
        raw = text.encode()
        cap = len(raw) + 8
        buf = (self.lc.llama_token * cap)()
        n = self.lc.llama_tokenize(self.vocab, raw, len(raw), buf, cap, add_special, parse_special)
        if n < 0:
            raise RuntimeError(f"llama_tokenize needs {-n} tokens")
        return list(buf[:n])

    def piece(self, tok):
        buf = ctypes.create_string_buffer(64)
        n = self.lc.llama_token_to_piece(self.vocab, tok, buf, 64, 0, False)
        return buf.raw[:n]

    def greedy(self, prompt_ids, n):
        """argmax continuation (EOS not masked); returns ids and top1-top2 margins per step."""
        lc, np = self.lc, self.np
        lc.llama_memory_clear(lc.llama_get_memory(self.ctx), True)
        arr = (lc.llama_token * len(prompt_ids))(*prompt_ids)
        if lc.llama_decode(self.ctx, lc.llama_batch_get_one(arr, len(prompt_ids))):
            raise RuntimeError("llama_decode (prompt) failed")
        out, margins = [], []
        one = (lc.llama_token * 1)()
        for _ in range(n):
            logits = np.ctypeslib.as_array(lc.llama_get_logits_ith(self.ctx, -1), shape=(self.n_vocab,))
            top2 = np.argsort(logits)[-2:]
            tok = int(top2[1])
            out.append(tok)
            margins.append(float(logits[top2[1]] - logits[top2[0]]))
            one[0] = tok
            if len(out) < n and lc.llama_decode(self.ctx, lc.llama_batch_get_one(one, 1)):
                raise RuntimeError("llama_decode (step) failed")
        return out, margins

    def set_threads(self, threads):
        self.lc.llama_set_n_threads(self.ctx, threads, threads)

    def timed_greedy(self, prompt_ids, n):
        """Plain greedy decoding of n tokens as llama-completion does it (the prompt in one batch,
        then one llama_decode per token; argmax, EOS not masked), timed by llama.cpp's own
        counters (time inside llama_decode up to the logits being ready) and by the wall clock
        around the whole loop (adds the Python/ctypes calls, about 20-40 us per token)."""
        lc, np = self.lc, self.np
        lc.llama_memory_clear(lc.llama_get_memory(self.ctx), True)
        arr = (lc.llama_token * len(prompt_ids))(*prompt_ids)
        one = (lc.llama_token * 1)()
        out = []
        lc.llama_perf_context_reset(self.ctx)
        t0 = time.perf_counter()
        if lc.llama_decode(self.ctx, lc.llama_batch_get_one(arr, len(prompt_ids))):
            raise RuntimeError("llama_decode (prompt) failed")
        while True:
            logits = np.ctypeslib.as_array(lc.llama_get_logits_ith(self.ctx, -1), shape=(self.n_vocab,))
            tok = int(logits.argmax())
            out.append(tok)
            if len(out) == n:
                break
            one[0] = tok
            if lc.llama_decode(self.ctx, lc.llama_batch_get_one(one, 1)):
                raise RuntimeError("llama_decode (step) failed")
        wall = time.perf_counter() - t0
        d = lc.llama_perf_context(self.ctx)
        return out, {"llama_ms": d.t_p_eval_ms + d.t_eval_ms, "wall_ms": 1000 * wall,
                     "prompt_eval_ms": d.t_p_eval_ms, "n_p_eval": d.n_p_eval,
                     "eval_ms": d.t_eval_ms, "n_eval": d.n_eval}

    def text(self, ids):
        return b"".join(self.piece(t) for t in ids).decode(errors="replace")

    def close(self):
        self.lc.llama_free(self.ctx)
        self.lc.llama_model_free(self.model)


# --------------------------------------------------------------------------------------------
# llama.cpp tools
# --------------------------------------------------------------------------------------------

RE_PE = re.compile(r"prompt eval time =\s*([\d.]+) ms /\s*(\d+) tokens")
RE_EV = re.compile(r"\s eval time =\s*([\d.]+) ms /\s*(\d+) runs")
RE_SM = re.compile(r"sampling time =\s*([\d.]+) ms")
RE_TOT = re.compile(r"total time =\s*([\d.]+) ms")
RE_NPROMPT = re.compile(r"number of tokens in prompt = (\d+)")
RE_PTOK = re.compile(r"^(?:[\d.]+ [A-Z] )?\s*(\d+) -> '", re.M)
TRIES = 10
# Environment of every llama.cpp tool run (set from --omp-wait in main). llama.cpp's CPU build uses
# OpenMP threads; with OMP_WAIT_POLICY unset they spin while waiting, and on a 2-core machine
# shared with other jobs two spinning threads lose most of their time (measured: 3.9 against 82
# tok/s for the scaled target at 2 threads). "passive" makes them sleep instead.
TOOL_ENV = dict(os.environ)


def omp_env():
    return {k: TOOL_ENV[k] for k in ("OMP_WAIT_POLICY",) if k in TOOL_ENV}


def run_tool(cmd, complete, fatal=True):
    """Run a llama.cpp tool; rerun it while its output lacks the closing lines (`complete`).

    llama.cpp's logger writes from a worker thread and is not flushed at exit (a known upstream
    limitation, see common/log.cpp common_log_main), so a run can lose the tail of its output,
    timings included. Everything it logs goes through one queue in order, so the presence of the
    last timing line means that the text before it is complete too."""
    for attempt in range(1, TRIES + 1):
        p = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, stdin=subprocess.DEVNULL,
                           env=TOOL_ENV)
        if p.returncode:
            raise RuntimeError(f"{shell_cmd(cmd)} failed ({p.returncode}): {p.stderr[-3000:]}")
        if complete(p.stderr):
            return p, attempt
    if not fatal:
        return None, TRIES
    raise RuntimeError(f"{shell_cmd(cmd)}: output incomplete {TRIES} times: {p.stderr[-3000:]}")


def prompt_ids_from_log(err: str):
    m = RE_NPROMPT.search(err)
    if not m:
        return None
    return [int(x) for x in RE_PTOK.findall(err[m.end():])][: int(m.group(1))]


def run_completion(gguf, prompt, n, threads, fatal=True):
    cmd = [BIN / "llama-completion", "-m", gguf, "-p", prompt, "--no-escape", "-n", str(n),
           "--temp", "0", "--ignore-eos", "-t", str(threads), "-tb", str(threads), "-c", "1024",
           "-no-cnv", "--no-display-prompt", "--verbose-prompt", "-s", "1",
           "--no-log-prefix", "--no-log-timestamps", "--log-colors", "off"]
    p, attempts = run_tool(cmd, lambda e: "unaccounted time" in e, fatal)
    if p is None:
        return None, cmd
    err = p.stderr
    pe, ev, sm = RE_PE.findall(err), RE_EV.findall(err), RE_SM.findall(err)
    if not (pe and ev and sm):
        raise RuntimeError(f"llama-completion: no timings in its output: {err[-3000:]}")
    r = {"prompt_eval_ms": float(pe[-1][0]), "prompt_tokens": int(pe[-1][1]),
         "eval_ms": float(ev[-1][0]), "eval_runs": int(ev[-1][1]), "sampling_ms": float(sm[-1]),
         "total_ms_llama": float(RE_TOT.findall(err)[-1]) if RE_TOT.findall(err) else None,
         "prompt_ids": prompt_ids_from_log(err), "text": p.stdout[:-2] if p.stdout.endswith("\n\n") else p.stdout,
         "attempts": attempts}
    r["gen_ms"] = r["prompt_eval_ms"] + r["eval_ms"] + r["sampling_ms"]
    return r, cmd


RE_ENC = re.compile(r"encoded\s+(\d+) tokens in\s+([\d.]+) seconds")
RE_DEC = re.compile(r"decoded\s+(\d+) tokens in\s+([\d.]+) seconds")
RE_KV = {k: re.compile(rf"{k}\s*=\s*(\d+)") for k in ("n_draft", "n_predict", "n_drafted", "n_accept")}


def run_speculative(target, draft, prompt, n, threads, n_max):
    cmd = [BIN / "llama-speculative-simple", "-m", target, "-md", draft, "-p", prompt, "--no-escape",
           "-n", str(n - 1), "--temp", "0", "--ignore-eos", "-t", str(threads), "-tb", str(threads),
           "-td", str(threads), "-tbd", str(threads), "-c", "1024", "--spec-draft-n-max", str(n_max),
           "--spec-type", "draft-simple", "--spec-draft-n-min", "0", "--spec-draft-p-min", "0", "-s", "1",
           "--no-log-prefix", "--no-log-timestamps", "--log-colors", "off"]
    p, attempts = run_tool(cmd, lambda e: "unaccounted time" in e)
    err, out = p.stderr, p.stdout
    enc, dec = RE_ENC.search(err + out), RE_DEC.search(err + out)
    if not (enc and dec):
        raise RuntimeError(f"llama-speculative-simple: no timings: {err[-3000:]}")
    r = {"encode_s": float(enc.group(2)), "decode_s": float(dec.group(2)), "decoded": int(dec.group(1)),
         "prompt_tokens": int(enc.group(1)), "attempts": attempts}
    for k, rx in RE_KV.items():
        m = rx.search(err + out)
        r[k] = int(m.group(1)) if m else None
    # stdout: "\n\n" + prompt pieces + generated pieces + "\n\n" (after the loop) + "\n\n" (at exit)
    text = out
    if text.startswith("\n\n"):
        text = text[2:]
    if text.startswith(prompt):
        text = text[len(prompt):]
    else:
        r["prompt_echo_mismatch"] = True
    if text.endswith("\n\n\n\n"):
        text = text[:-4]
    r["text"] = text
    r["gen_ms"] = 1000 * (r["encode_s"] + r["decode_s"])
    return r, cmd


def run_llama_bench(ggufs, n, reps, threads):
    cmd = [BIN / "llama-bench", "-m", ",".join(map(str, ggufs)), "-p", "0", "-n", str(n),
           "-r", str(reps), "-t", ",".join(map(str, threads)), "-o", "json"]
    p = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, stdin=subprocess.DEVNULL,
                       env=TOOL_ENV)
    if p.returncode:
        raise RuntimeError(f"llama-bench failed ({p.returncode}): {p.stderr[-3000:]}")
    return json.loads(p.stdout), cmd


# --------------------------------------------------------------------------------------------
# parts
# --------------------------------------------------------------------------------------------

def part_tok(lc, prompts, ours, res):
    m = LlamaModel(lc, GGUF / "demo-target-Q4_0.gguf")
    try:
        src = next((LLAMA / "src").glob("llama_cpp_python-*/vendor/llama.cpp"))
        sys.path.insert(0, str(ROOT / "scripts"))
        import make_gguf
        chktxt = make_gguf.chktxt_of(src)
        sd = SpecdecTokenizer(HF / "demo-target" / "tokenizer.json")
        try:
            import tokenizers
            hf = tokenizers.Tokenizer.from_file(str(HF / "demo-target" / "tokenizer.json"))
        except ImportError:
            hf = None
        rows = []
        texts = [("prompt", i, p) for i, p in enumerate(prompts)] + \
                [("converter chktxt", 0, chktxt)] + [("extra", i, t) for i, t in enumerate(EXTRA_TEXTS)]
        for kind, i, text in texts:
            a = ours[i] if kind == "prompt" else sd.encode(text)
            b = m.tokenize(text, True, True)
            b_plain = m.tokenize(text, False, False)
            row = {"kind": kind, "index": i, "chars": len(text), "specdec": len(a), "llama_cpp": len(b),
                   "equal": a == b, "equal_without_special": a == b_plain}
            if hf is not None:
                row["tokenizers_equal"] = hf.encode(text, add_special_tokens=False).ids == a
            if a != b:
                row["first_diff"] = first_diff(a, b)
                row["specdec_ids"], row["llama_cpp_ids"] = a, b
            rows.append(row)
        res["tokenization"] = {
            "what": "specdec tokenizer (libspecdec on hf/demo-target/tokenizer.json) vs llama_tokenize "
                    "(add_special=true, parse_special=true as llama.cpp's tools call it) on the Q4_0 "
                    "GGUF; 'equal_without_special' with both false",
            "rows": rows,
            "prompts_equal": all(r["equal"] for r in rows if r["kind"] == "prompt"),
        }
        log("tokenization: " + ", ".join(f"{r['kind']}[{r['index']}] {'=' if r['equal'] else 'DIFF'}"
                                         for r in rows))
    finally:
        m.close()


def part_plain(args, lc, ours, res, bound):
    """Plain greedy decoding in-process through libllama (bound: name -> LlamaModel), token ids fed
    as they are, --reps repetitions interleaved over models and thread counts."""
    runs = {}
    for name, m in bound.items():
        for th in args.threads:  # warm-up of every configuration
            m.set_threads(th)
            m.timed_greedy(ours[0], min(16, args.new_tokens))
    for rep in range(args.reps):
        t0 = time.time()
        for name, m in bound.items():
            for th in args.threads:
                m.set_threads(th)
                llama_ms = wall_ms = pe_ms = ev_ms = 0.0
                n_ev, ids_all = 0, []
                for ids in ours:
                    out, t = m.timed_greedy(ids, args.new_tokens)
                    llama_ms += t["llama_ms"]
                    wall_ms += t["wall_ms"]
                    pe_ms += t["prompt_eval_ms"]
                    ev_ms += t["eval_ms"]
                    n_ev += t["n_eval"]
                    ids_all.append(out)
                toks = args.new_tokens * len(ours)
                runs.setdefault((name, th), []).append({
                    "tok_s": 1000 * toks / llama_ms, "wall_tok_s": 1000 * toks / wall_ms,
                    "decode_tok_s": 1000 * n_ev / ev_ms, "prompt_eval_ms_mean": pe_ms / len(ours), "ids": ids_all})
        log(f"plain rep {rep + 1}/{args.reps} in {time.time() - t0:.1f} s: " + ", ".join(
            f"{k[0]}/{k[1]}t {v[-1]['tok_s']:.0f}" for k, v in runs.items()))
    out = []
    for (name, th), rs in runs.items():
        ids0 = rs[0]["ids"]
        out.append({"model": name, "file": rel(GGUF / f"{MODELS[name][0]}-{args.quant}.gguf"), "threads": th,
                    "tok_s": summary([r["tok_s"] for r in rs]),
                    "wall_tok_s": summary([r["wall_tok_s"] for r in rs]),
                    "decode_tok_s": summary([r["decode_tok_s"] for r in rs]),
                    "prompt_eval_ms_mean": summary([r["prompt_eval_ms_mean"] for r in rs]),
                    "per_rep_tok_s": [round(r["tok_s"], 2) for r in rs],
                    "ids_same_every_rep": all(r["ids"] == ids0 for r in rs),
                    "ids": ids0, "text": [bound[name].text(i) for i in ids0]})
    res["plain"] = {
        "rows": out, "env": omp_env(), "n_prompts": len(ours), "new_tokens": args.new_tokens, "reps": args.reps,
        "how": "in-process through libllama (the sdist's ctypes binding), one model and context per file, "
               "llama_set_n_threads per configuration, a warm-up run of each first; per prompt: memory "
               "cleared, the prompt ids in one llama_decode, then one llama_decode per new token, argmax",
        "timing": "tok/s = all new tokens of the prompts / the summed llama.cpp decode time (llama_perf_context: "
                  "prompt eval + eval, i.e. time inside llama_decode until the logits are ready), per repetition; "
                  "'wall' adds the Python loop around it (ctypes calls, argmax over 512 logits)"}
    return runs


def part_cli(args, prompts, ours, res, key, models, threads, reps, n_prompts, new_tokens, plain_rows):
    """llama-completion itself, one process per run (cross-check of the in-process figures).
    llama.cpp's logger can lose the tail of a run's output (timings included); such a run is
    retried up to TRIES times and then left out (counted)."""
    files = {name: GGUF / f"{MODELS[name][0]}-{args.quant}.gguf" for name in models}
    prompts, ours = prompts[:n_prompts], ours[:n_prompts]
    runs, tok_mismatch, reruns, lost = {}, [], 0, 0
    for rep in range(reps):
        t0 = time.time()
        for name, f in files.items():
            for th in threads:
                secs, toks, dec_ms, dec_runs, texts = 0.0, 0, 0.0, 0, []
                for i, prompt in enumerate(prompts):
                    r, cmd = run_completion(f, prompt, new_tokens, th, fatal=False)
                    res.setdefault("commands", {}).setdefault(f"{key} {name}", shell_cmd(cmd, omp_env()))
                    if r is None:
                        lost += 1
                        texts.append(None)
                        continue
                    reruns += r["attempts"] - 1
                    if r["prompt_ids"] != ours[i]:
                        tok_mismatch.append({"model": name, "threads": th, "rep": rep, "prompt": i,
                                             "llama_cpp": r["prompt_ids"], "specdec": ours[i]})
                    secs += r["gen_ms"] / 1000
                    toks += new_tokens
                    dec_ms += r["eval_ms"]
                    dec_runs += r["eval_runs"]
                    texts.append(r["text"])
                runs.setdefault((name, th), []).append({
                    "tok_s": toks / secs if secs else None, "decode_tok_s": 1000 * dec_runs / dec_ms if dec_ms else None,
                    "texts": texts, "runs": sum(t is not None for t in texts)})
        log(f"{key} rep {rep + 1}/{reps} in {time.time() - t0:.1f} s: " + ", ".join(
            f"{k[0]}/{k[1]}t {v[-1]['tok_s'] or 0:.0f}" for k, v in runs.items()))
    out = []
    for (name, th), rs in runs.items():
        ref = next((r for r in plain_rows if r["model"] == name and r["threads"] == th), None)
        eq = None
        if ref is not None and new_tokens == res["plain"]["new_tokens"]:
            eq = sum(t == ref["text"][i] for r in rs for i, t in enumerate(r["texts"]) if t is not None)
        out.append({"model": name, "file": rel(files[name]), "threads": th,
                    "tok_s": summary([r["tok_s"] for r in rs]), "decode_tok_s": summary([r["decode_tok_s"] for r in rs]),
                    "runs": sum(r["runs"] for r in rs), "text_equal_in_process": eq})
    res[key] = {"rows": out, "prompt_ids_mismatches": tok_mismatch, "reruns_for_lost_output": reruns,
                "runs_lost": lost, "env": omp_env(), "n_prompts": len(prompts), "new_tokens": new_tokens,
                "reps": reps,
                "timing": "llama-completion's own timers per run: prompt eval + eval + sampling (the warm-up "
                          "decode excluded, as llama.cpp resets its counters after it); tok/s = new tokens / the "
                          "summed times over the prompts of a repetition; one process per run, prompt given as "
                          "text (--no-escape) and tokenized by llama.cpp"}


def part_bench(args, res):
    files = [GGUF / f"{MODELS[n][0]}-{args.quant}.gguf" for n in args.plain_models]
    data, cmd = run_llama_bench(files, args.new_tokens, args.reps, args.threads)
    rows = [{"model": rel(d.get("model_filename", "")), "threads": d.get("n_threads"),
             "test": f"tg{d.get('n_gen')}", "avg_ts": d.get("avg_ts"), "stddev_ts": d.get("stddev_ts"),
             "samples_ts": d.get("samples_ts"), "model_size": d.get("model_size"),
             "model_type": d.get("model_type"), "build_commit": d.get("build_commit"),
             "cpu_info": d.get("cpu_info")} for d in data]
    res["llama_bench"] = {"command": shell_cmd(cmd, omp_env()), "rows": rows}
    log("llama-bench: " + ", ".join(f"{Path(r['model']).name}/{r['threads']}t {r['avg_ts']:.0f}" for r in rows))


def spec_pass(tgt, dft, prompts, n, th, nmax):
    """One repetition of llama-speculative-simple over all prompts."""
    secs, toks, drafted, accepted, texts, bad_n, reruns = 0.0, 0, 0, 0, [], 0, 0
    for prompt in prompts:
        r, cmd = run_speculative(tgt, dft, prompt, n, th, nmax)
        reruns += r["attempts"] - 1
        secs += r["gen_ms"] / 1000
        toks += r["n_predict"] or r["decoded"]
        bad_n += (r["n_predict"] != n)
        drafted += r["n_drafted"] or 0
        accepted += r["n_accept"] or 0
        texts.append(r["text"])
    return {"tok_s": toks / secs, "drafted": drafted, "accepted": accepted, "texts": texts,
            "runs_not_n_tokens": bad_n, "reruns": reruns}, cmd


def plain_pass(m, ours, n, th):
    """Plain decoding in-process (see part_plain), as the baseline of a speculative repetition."""
    m.set_threads(th)
    ms, texts = 0.0, []
    for ids in ours:
        out, t = m.timed_greedy(ids, n)
        ms += t["llama_ms"]
        texts.append(m.text(out))
    return {"tok_s": 1000 * n * len(ours) / ms, "texts": texts, "reruns": 0}


def spec_row(th, nmax, rs, base, n_prompts):
    # a run may generate one token more than asked (counted in runs_not_n_tokens): the texts are
    # then compared over the plain run's length
    plain_texts = base[0]["texts"] if base else None
    same = [t.startswith(p) for t, p in zip(rs[0]["texts"], plain_texts)] if plain_texts else []
    d = sum(r["drafted"] for r in rs)
    return {"threads": th, "draft_n_max": nmax, "tok_s": summary([r["tok_s"] for r in rs]),
            "speedup_vs_plain": summary([r["tok_s"] / b["tok_s"] for r, b in zip(rs, base)]) if base else None,
            "plain_tok_s": summary([b["tok_s"] for b in base]) if base else None,
            "acceptance": (sum(r["accepted"] for r in rs) / d) if d else None,
            "texts_equal_plain": sum(same) if same else None,
            "n_prompts": n_prompts, "reps": len(rs), "runs_not_n_tokens": sum(r["runs_not_n_tokens"] for r in rs),
            "first_text_diffs": [first_diff(t, p) for t, p in zip(rs[0]["texts"], plain_texts)
                                 if not t.startswith(p)] if plain_texts else None}


def part_spec(args, prompts, ours, res, m_plain):
    """Sweep the draft length with --spec-sweep-reps repetitions, then measure the best one per
    thread count with --reps repetitions, each paired with a plain run of the same target."""
    tgt = GGUF / f"demo-target-scaled-{args.quant}.gguf"
    dft = GGUF / f"demo-draft-{args.quant}.gguf"
    n = args.new_tokens
    sweep, reruns = {}, 0
    for rep in range(args.spec_sweep_reps):
        t0 = time.time()
        for th in args.threads:
            for nmax in args.spec_n:
                r, cmd = spec_pass(tgt, dft, prompts, n, th, nmax)
                reruns += r["reruns"]
                sweep.setdefault((th, nmax), []).append(r)
                res.setdefault("commands", {}).setdefault("speculative", shell_cmd(cmd, omp_env()))
        log(f"spec sweep rep {rep + 1}/{args.spec_sweep_reps} in {time.time() - t0:.1f} s: " + ", ".join(
            f"{k[0]}t/n{k[1]} {v[-1]['tok_s']:.0f}" for k, v in sweep.items()))
    best = {}
    for (th, nmax), rs in sweep.items():
        med = statistics.median(r["tok_s"] for r in rs)
        if th not in best or med > best[th][1]:
            best[th] = (nmax, med)
    final, base = {}, {}
    for rep in range(args.reps):
        t0 = time.time()
        for th in args.threads:
            b = plain_pass(m_plain, ours, n, th)
            r, _ = spec_pass(tgt, dft, prompts, n, th, best[th][0])
            reruns += r["reruns"] + b["reruns"]
            base.setdefault(th, []).append(b)
            final.setdefault(th, []).append(r)
        log(f"spec final rep {rep + 1}/{args.reps} in {time.time() - t0:.1f} s: " + ", ".join(
            f"{th}t n{best[th][0]} {final[th][-1]['tok_s']:.0f} vs plain {base[th][-1]['tok_s']:.0f}"
            for th in args.threads))
    res["speculative"] = {
        "target": rel(tgt), "draft": rel(dft), "env": omp_env(), "reruns_for_lost_output": reruns,
        "sweep": [spec_row(th, nmax, rs, None, len(prompts)) for (th, nmax), rs in sweep.items()],
        "sweep_reps": args.spec_sweep_reps,
        "best": {str(th): v[0] for th, v in best.items()},
        "rows": [spec_row(th, best[th][0], final[th], base[th], len(prompts)) for th in args.threads],
        "timing": "llama-speculative-simple's printed encode + decode seconds (model load and warm-up "
                  "excluded); generated tokens / time, summed over the prompts. Draft length swept with "
                  f"{args.spec_sweep_reps} repetition(s), best by median; that length then measured with "
                  f"{args.reps} repetitions, each right after plain decoding of the same target in-process "
                  "(as in the plain table; speed-up paired per repetition; text = plain compares with that "
                  "run's greedy text)"}


def part_specdec(args, ours, res):
    tgt = GENAI / "demo-target-scaled-int4"
    dft = GENAI / "demo-draft-int4"
    small = GENAI / "demo-target-int4"
    configs = [("target int4", small, None, None, None), ("scaled int4", tgt, None, None, None)]
    configs += [(f"scaled int4 + draft int4, gamma {g}", tgt, dft, g, None) for g in args.specdec_gammas]
    configs += [("scaled int4 + draft int4, auto", tgt, dft, None, "auto")]
    runs = {}
    for rep in range(args.specdec_reps):
        t0 = time.time()
        for th in args.specdec_threads:
            for label, t, d, g, pol in configs:
                secs, toks, acc, dr = 0.0, 0, 0, 0
                for ids in ours:
                    js, cmd = specdec_generate(t, ids, args.new_tokens, th, d, g, pol)
                    secs += js["stats"]["total_ms"] / 1000
                    toks += js["stats"]["new_tokens"]
                    acc += js["stats"].get("accepted", 0)
                    dr += js["stats"].get("drafted", 0)
                runs.setdefault((label, th), []).append({"tok_s": toks / secs, "accepted": acc, "drafted": dr})
                res.setdefault("commands", {}).setdefault(f"specdec {label}", shell_cmd(cmd))
        log(f"specdec rep {rep + 1}/{args.specdec_reps} in {time.time() - t0:.1f} s: " + ", ".join(
            f"{k[0]}/{k[1]}t {v[-1]['tok_s']:.0f}" for k, v in runs.items()))
    out = []
    for (label, th), rs in runs.items():
        base = runs.get(("scaled int4", th))
        d = sum(r["drafted"] for r in rs)
        out.append({"config": label, "threads": th, "tok_s": summary([r["tok_s"] for r in rs]),
                    "speedup_vs_scaled_target_only": summary([r["tok_s"] / b["tok_s"] for r, b in zip(rs, base)])
                    if "draft" in label else None,
                    "acceptance": (sum(r["accepted"] for r in rs) / d) if d else None})
    res["specdec"] = {"rows": out, "reps": args.specdec_reps,
                      "timing": "specdec generate --json total_ms per prompt (prefill included, model load "
                                f"excluded); one process per run; {args.specdec_reps} repetitions; ONNX Runtime's "
                                "intra-op spinning on (specdec's default; the generate CLI has no switch for it)"}


def specdec_pass(target, draft, ours, n, th, gamma=None, policy=None):
    """One repetition of `specdec generate --json` (one process per prompt) over all prompts."""
    secs, toks, acc, dr, ids_all = 0.0, 0, 0, 0, []
    for ids in ours:
        js, cmd = specdec_generate(target, ids, n, th, draft, gamma, policy)
        secs += js["stats"]["total_ms"] / 1000
        toks += js["stats"]["new_tokens"]
        acc += js["stats"].get("accepted", 0)
        dr += js["stats"].get("drafted", 0)
        ids_all.append(js.get("tokens"))
    return {"tok_s": toks / secs, "accepted": acc, "drafted": dr, "ids": ids_all}, cmd


def specdec_lib_threads(th, cores):
    """intra-op threads for the in-process specdec at llama.cpp's thread count `th`: 0 (the
    library's default: every model on the process's shared pool, which ONNX Runtime sizes to the
    physical cores) where th reaches the core count, else a pool of th threads per model."""
    return 0 if th >= cores else th


def specdec_lib_pass(sd, target, draft, ours, n, th, cores, gamma=None, policy=None):
    """One repetition of in-process specdec (SpecdecLib) over all prompts: models loaded once
    (outside the timing), a generator per prompt, timed from its creation to the last token."""
    threads = specdec_lib_threads(th, cores)
    t = sd.model(target, threads)
    d = sd.model(draft, threads) if draft else None
    secs, toks, acc, dr, ids_all = 0.0, 0, 0, 0, []
    for ids in ours:
        r = sd.greedy(t, d, ids, n, gamma, policy)
        secs += r["seconds"]
        toks += len(r["tokens"])
        acc += r["stats"]["accepted"]
        dr += r["stats"]["drafted"]
        ids_all.append(r["tokens"])
    what = (f"libspecdec in-process: target {os.path.relpath(target, ROOT)}"
            + (f", draft {os.path.relpath(draft, ROOT)}" if draft else "")
            + (f", gamma {gamma}" if gamma else "") + (f", draft policy {policy}" if policy else "")
            + f", {n} new tokens, greedy, no EOS, intra-op threads {threads}"
            + (" (the shared pool)" if threads == 0 else " per model"))
    return {"tok_s": toks / secs, "accepted": acc, "drafted": dr, "ids": ids_all,
            "intra_threads": threads}, what


def part_h2h(args, prompts, ours, res, bound):
    """Head to head, interleaved in every repetition (the order rotated per repetition): llama.cpp
    plain decoding (in-process) of the Q4_0 demo target and scaled target, llama.cpp speculative
    decoding (scaled + draft Q4_0, the draft length found by part spec or --h2h-spec-n), and
    specdec on the builder int4 exports: target-only of both targets, scaled + draft at
    --specdec-gammas and the auto policy. specdec runs in this process through its C ABI
    (--h2h-specdec lib, the default: models loaded once, a generator per prompt, the library's
    default threading where the thread count reaches the core count) or as the CLI, one process
    per prompt (--h2h-specdec cli, the earlier protocol, kept to reproduce its results)."""
    if args.h2h_spec_n:
        best = {int(a): int(b) for a, b in (x.split(":") for x in args.h2h_spec_n.split(","))}
    elif "speculative" in res:
        best = {int(k): v for k, v in res["speculative"]["best"].items()}
    elif args.merge and (ROOT / args.out).exists() and "speculative" in json.loads((ROOT / args.out).read_text()):
        best = {int(k): v for k, v in json.loads((ROOT / args.out).read_text())["speculative"]["best"].items()}
    else:
        sys.exit("peer_llamacpp: part h2h needs part spec or --h2h-spec-n THREADS:N,...")
    tgt_q = GGUF / f"demo-target-scaled-{args.quant}.gguf"
    dft_q = GGUF / f"demo-draft-{args.quant}.gguf"
    s_tgt, s_dft, s_small = GENAI / "demo-target-scaled-int4", GENAI / "demo-draft-int4", GENAI / "demo-target-int4"
    n = args.new_tokens
    lib = args.h2h_specdec == "lib"
    cores = physical_cores()
    sd = None
    if lib:
        ort = os.environ.get("ORT_DYLIB_PATH") or ROOT / ".deps/onnxruntime/libonnxruntime.so"
        sd = SpecdecLib(ort if Path(ort).exists() else None)

        def sp(target, draft, th, gamma=None, policy=None):
            return specdec_lib_pass(sd, target, draft, ours, n, th, cores, gamma, policy)
    else:
        def sp(target, draft, th, gamma=None, policy=None):
            return specdec_pass(target, draft, ours, n, th, gamma, policy)
    configs = []  # (engine, label, kind, fn(th))
    configs.append(("llama.cpp", "target Q4_0, plain", "target", lambda th: (plain_pass(bound["target"], ours, n, th), None)))
    configs.append(("llama.cpp", "scaled Q4_0, plain", "scaled", lambda th: (plain_pass(bound["scaled"], ours, n, th), None)))
    configs.append(("llama.cpp", "scaled + draft Q4_0, speculative", "spec",
                    lambda th: spec_pass(tgt_q, dft_q, prompts, n, th, best[th])))
    configs.append(("specdec", "target int4, target-only", "target", lambda th: sp(s_small, None, th)))
    configs.append(("specdec", "scaled int4, target-only", "scaled", lambda th: sp(s_tgt, None, th)))
    for g in args.specdec_gammas:
        configs.append(("specdec", f"scaled + draft int4, gamma {g}", "spec",
                        lambda th, g=g: sp(s_tgt, s_dft, th, g)))
    configs.append(("specdec", "scaled + draft int4, auto", "spec",
                    lambda th: sp(s_tgt, s_dft, th, None, "auto")))
    if lib:
        # In-process configurations (llama.cpp plain, specdec) run once on the first prompt before
        # the repetitions: the first calls on a model pay one-off costs (and specdec loads its
        # models then). llama-speculative-simple is a process per run and is not warmed.
        t0 = time.time()
        for th in args.threads:
            for engine, label, kind, fn in configs:
                if engine == "llama.cpp" and kind != "spec":
                    plain_pass(bound[kind], ours[:1], n, th)
                elif engine == "specdec":
                    target = s_small if kind == "target" else s_tgt
                    draft = s_dft if kind == "spec" else None
                    gamma = int(label.rsplit(" ", 1)[1]) if "gamma" in label else None
                    specdec_lib_pass(sd, target, draft, ours[:1], n, th, cores, gamma,
                                     "auto" if label.endswith("auto") else None)
        log(f"h2h warm-up (in-process configurations) in {time.time() - t0:.1f} s")
    runs = {}
    for rep in range(args.reps):
        t0 = time.time()
        order = configs[rep % len(configs):] + configs[: rep % len(configs)]
        for th in args.threads:
            for engine, label, kind, fn in order:
                r, cmd = fn(th)
                runs.setdefault((engine, label, th), []).append(r)
                if cmd is not None:
                    res.setdefault("commands", {}).setdefault(
                        f"h2h {engine} {label}" + (f" {th}t" if lib and engine == "specdec" else ""),
                        cmd if isinstance(cmd, str) else shell_cmd(cmd, omp_env() if engine == "llama.cpp" else None))
        log(f"h2h rep {rep + 1}/{args.reps} in {time.time() - t0:.1f} s: " + ", ".join(
            f"{k[0]} {k[1]}/{k[2]}t {v[-1]['tok_s']:.0f}" for k, v in runs.items()))
    kinds = {(e, l): k for e, l, k, _ in configs}
    # Greedy checks: every specdec speculative run's ids against specdec's scaled target-only ids
    # of the same repetition (the output must be the target's own), and llama.cpp's speculative
    # text against its plain scaled text (as part spec compares them; a run may give one token
    # more, so "starts with").
    checks = []
    for th in args.threads:
        for e, l, k, _ in configs:
            if k != "spec":
                continue
            base = runs[(e, "scaled int4, target-only" if e == "specdec" else "scaled Q4_0, plain", th)]
            same = total = 0
            first = []
            for r, b in zip(runs[(e, l, th)], base):
                if e == "specdec":
                    pairs = [(x, y) for x, y in zip(r["ids"], b["ids"]) if x is not None and y is not None]
                    eq = [x == y for x, y in pairs]
                    first += [first_diff(x, y) for x, y in pairs if x != y]
                else:
                    eq = [t.startswith(p) for t, p in zip(r["texts"], b["texts"])]
                same += sum(eq)
                total += len(eq)
            checks.append({"threads": th, "engine": e, "config": l, "equal": same, "runs": total,
                           "against": "scaled target-only ids" if e == "specdec" else "plain scaled text",
                           "first_diffs": first[:10]})
    bad = [c for c in checks if c["equal"] != c["runs"]]
    log("h2h greedy check: " + ("all equal" if not bad else
                                "; ".join(f"{c['engine']} {c['config']} {c['threads']}t {c['equal']}/{c['runs']}" for c in bad)))
    rows = []
    for (engine, label, th), rs in runs.items():
        base = runs[(engine, next(l for e, l, k, _ in configs if e == engine and k == "scaled"), th)]
        d = sum(r.get("drafted", 0) for r in rs)
        rows.append({"engine": engine, "config": label + (f" n-max {best[th]}" if engine == "llama.cpp" and kinds[(engine, label)] == "spec" else ""),
                     "kind": kinds[(engine, label)], "threads": th,
                     "specdec_intra_threads": specdec_lib_threads(th, cores) if lib and engine == "specdec" else None,
                     "tok_s": summary([r["tok_s"] for r in rs]),
                     "speedup_vs_own_scaled_plain": summary([r["tok_s"] / b["tok_s"] for r, b in zip(rs, base)])
                     if kinds[(engine, label)] == "spec" else None,
                     "acceptance": (sum(r.get("accepted", 0) for r in rs) / d) if d else None,
                     "per_rep_tok_s": [round(r["tok_s"], 2) for r in rs]})
    # specdec / llama.cpp, paired per repetition: same kind; for spec, each engine's best by median
    ratios = []
    for th in args.threads:
        for kind in ("target", "scaled", "spec"):
            def best_of(engine):
                cands = [(l, runs[(e, l, th)]) for e, l, k, _ in configs if e == engine and k == kind]
                return max(cands, key=lambda c: statistics.median(r["tok_s"] for r in c[1]))
            (sl, sr), (ll, lr) = best_of("specdec"), best_of("llama.cpp")
            ratios.append({"threads": th, "kind": kind, "specdec": sl, "llama_cpp": ll,
                           "ratio": summary([a["tok_s"] / b["tok_s"] for a, b in zip(sr, lr)])})
    if lib:
        specdec_timing = ("specdec: in-process through the C ABI (ctypes on libspecdec.so), models loaded once "
                          "and shared by the configurations that use them, a generator per prompt, timed from "
                          "creating the generator to the last token (prefill included), as scripts/peer_bench.py "
                          "times it; intra-op threads: the library's default (0: every model on the process's "
                          f"shared pool, which ONNX Runtime sizes to the {cores} physical cores; ONNX Runtime "
                          "spinning on, its default) where llama.cpp's thread count reaches the core count, else a "
                          "pool of that many threads per model (target and draft take turns); in-process "
                          "configurations of both engines warmed up once on the first prompt")
    else:
        specdec_timing = ("specdec: total_ms of `specdec generate --json`, one process per prompt, --threads and "
                          "--draft-threads as llama.cpp's (prefill included, ONNX Runtime spinning on, its default)")
    res["h2h"] = {"rows": rows, "ratios": ratios, "reps": args.reps, "n_prompts": len(ours), "new_tokens": n,
                  "llama_spec_n": {str(k): v for k, v in best.items()}, "env_llama_cpp": omp_env(),
                  "loadavg_after": loadavg(), "specdec_mode": args.h2h_specdec, "greedy_check": checks,
                  "specdec_threading": {str(th): (specdec_lib_threads(th, cores) if lib else th) for th in args.threads},
                  "physical_cores": cores,
                  "specdec_lib": {"version": sd.version, "sha256": sd.lib_sha256, "onnxruntime": str(sd.ort_path)}
                  if sd else None,
                  "timing": "llama.cpp plain: in-process, llama.cpp's decode timers (prefill included); llama.cpp "
                            "speculative: llama-speculative-simple's encode + decode seconds; " + specdec_timing +
                            "; model loading excluded everywhere; all configurations in every repetition, the order "
                            "rotated per repetition"}
    if sd:
        sd.close()


def part_greedy(lc, args, prompts, ours, res, plain_rows):
    rows = []
    quants = ["f32", args.quant, f"{args.quant}-pure"]
    for name, (stem, int4, fp32) in MODELS.items():
        refs = {}
        for exp in (int4, fp32):
            if exp and (GENAI / exp).exists():
                refs[exp] = [specdec_generate(GENAI / exp, ids, args.new_tokens, 1)[0]["tokens"] for ids in ours]
        for q in quants:
            f = GGUF / f"{stem}-{q}.gguf"
            if not f.exists():
                continue
            m = LlamaModel(lc, f)
            try:
                gens = [m.greedy(ids, args.new_tokens) for ids in ours]
            finally:
                m.close()
            # the same file's ids in the timed plain runs (other thread counts, argmax without the
            # margin computation): equal?
            timed = [r for r in plain_rows if r["file"] == rel(f)]
            timed_equal = {str(r["threads"]): sum(g[0] == i for g, i in zip(gens, r["ids"])) for r in timed} or None
            for exp, ref in refs.items():
                agree = [first_diff(g[0], r) for g, r in zip(gens, ref)]
                margins = [round(g[1][a], 4) if a < len(g[1]) else None for g, a in zip(gens, agree)]
                rows.append({"model": name, "gguf": f.name, "specdec_export": exp, "agreement": agree,
                             "full": sum(a == args.new_tokens for a in agree), "n_prompts": len(ours),
                             "mean_agreement": sum(agree) / len(agree),
                             "llama_margin_at_first_diff": margins,
                             "timed_runs_equal": timed_equal})
                log(f"greedy {f.name} vs specdec {exp}: agreement {agree}")
    res["greedy"] = {"rows": rows, "new_tokens": args.new_tokens,
                     "what": "number of leading new tokens on which llama.cpp's greedy ids (ctypes binding, "
                             "argmax, 1 thread) equal specdec's (specdec generate --eos-ids '' on the builder "
                             "export); margin = llama.cpp's top-1 minus top-2 logit at the first difference"}


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------

def markdown(res):
    L = []
    m = res["meta"]
    L += [f"# llama.cpp peer run ({m['date']})", "",
          f"Machine: {m['machine']}, {m['cpus']} CPUs, load average {m['loadavg_before']} before and "
          f"{m['loadavg_after']} after (a shared machine: other jobs were running; figures are noisy). "
          f"llama.cpp {m['llama_cpp']} (llama-cpp-python {m['sdist']} sdist), CPU build. "
          f"{m['n_prompts']} prompts of {m['prompts']}, {m['new_tokens']} new tokens, {m['reps']} repetitions, "
          f"greedy. Medians (min–max over repetitions).", ""]
    for r in m.get("merged_runs", []):
        L += [f"Merged from a later run ({r['date']}, `{' '.join(r['argv'])}`, load average {r['loadavg_before']} "
              f"before, {r['loadavg_after']} after): the parts it ran replace this run's.", ""]
    L += ["Files:", "", "| file | MB |", "|---|---|"]
    for k, v in m["files"].items():
        L.append(f"| {k} | {v / 1e6:.1f} |")
    L.append("")
    if "tokenization" in res:
        t = res["tokenization"]
        L += ["## Tokenization", "",
              f"Prompts equal (specdec vs llama.cpp ids): **{t['prompts_equal']}**. " + t["what"] + ".", "",
              "| text | chars | specdec ids | llama.cpp ids | equal | equal (no special) |" +
              (" tokenizers pkg equal |" if "tokenizers_equal" in t["rows"][0] else ""),
              "|---|---|---|---|---|---|" + ("---|" if "tokenizers_equal" in t["rows"][0] else "")]
        for r in t["rows"]:
            L.append(f"| {r['kind']} {r['index']} | {r['chars']} | {r['specdec']} | {r['llama_cpp']} | {r['equal']} | "
                     f"{r['equal_without_special']} |" + (f" {r['tokenizers_equal']} |" if "tokenizers_equal" in r else ""))
        for key in ("cli", "cli_spin"):
            if key in res:
                L += ["", f"Prompt ids printed by the llama-completion runs of `{key}` (--verbose-prompt; the "
                          f"prompt given as text) that differ from specdec's: {len(res[key]['prompt_ids_mismatches'])}."]
        L.append("")
    if "plain" in res:
        P = res["plain"]
        env = ", ".join(f"{k}={v}" for k, v in P["env"].items()) or "OMP_WAIT_POLICY unset"
        L += ["## llama.cpp plain decoding (libllama in-process, token ids fed)", "",
              f"{P['how']}. {P['timing']}. {env}; {P['n_prompts']} prompts, {P['new_tokens']} new tokens, "
              f"{P['reps']} repetitions.", "",
              "| model | file | threads | tok/s (prefill incl.) | wall tok/s (with the Python loop) | decode-only tok/s | prompt eval ms (mean) | ids same every rep |",
              "|---|---|---|---|---|---|---|---|"]
        for r in P["rows"]:
            L.append(f"| {r['model']} | {Path(r['file']).name} | {r['threads']} | {fmt(r['tok_s'])} | "
                     f"{fmt(r['wall_tok_s'])} | {fmt(r['decode_tok_s'])} | {fmt(r['prompt_eval_ms_mean'], 2)} | "
                     f"{r['ids_same_every_rep']} |")
        L.append("")
    for key, title in (("cli", "llama-completion, one process per run (cross-check)"),
                       ("cli_spin", "llama-completion with llama.cpp's default OpenMP wait policy (spinning)")):
        if key not in res:
            continue
        P = res[key]
        env = ", ".join(f"{k}={v}" for k, v in P["env"].items()) or "OMP_WAIT_POLICY unset"
        L += [f"## {title}", "", f"{P['timing']}. {env}; {P['n_prompts']} prompts, {P['new_tokens']} new tokens, "
              f"{P['reps']} repetitions. llama.cpp's logger lost the end of a run's output (timings included) "
              f"and the run was repeated {P['reruns_for_lost_output']} times; runs left out after "
              f"{TRIES} tries: {P['runs_lost']}.", "",
              "| model | file | threads | tok/s (prefill incl.) | decode-only tok/s | runs | text = in-process greedy |",
              "|---|---|---|---|---|---|---|"]
        for r in P["rows"]:
            eq = "–" if r["text_equal_in_process"] is None else f"{r['text_equal_in_process']}/{r['runs']}"
            L.append(f"| {r['model']} | {Path(r['file']).name} | {r['threads']} | {fmt(r['tok_s'])} | "
                     f"{fmt(r['decode_tok_s'])} | {r['runs']} | {eq} |")
        L.append("")
    if "llama_bench" in res:
        L += ["## llama-bench (tg: no prompt, random tokens)", "", f"`{res['llama_bench']['command']}`", "",
              "| file | threads | test | t/s (mean ± sd) |", "|---|---|---|---|"]
        for r in res["llama_bench"]["rows"]:
            L.append(f"| {Path(r['model']).name} | {r['threads']} | {r['test']} | {r['avg_ts']:.1f} ± {r['stddev_ts']:.1f} |")
        L.append("")
    if "speculative" in res:
        s = res["speculative"]
        env = ", ".join(f"{k}={v}" for k, v in s["env"].items()) or "OMP_WAIT_POLICY unset"
        L += ["## llama.cpp speculative decoding (llama-speculative-simple)", "",
              f"Target {Path(s['target']).name}, draft {Path(s['draft']).name}, greedy, --spec-type draft-simple, "
              f"p-min 0. {s['timing']}. {env}. Runs rerun for lost log output: {s['reruns_for_lost_output']}.", "",
              "| threads | draft n-max | tok/s | plain tok/s (same reps) | speed-up vs plain | acceptance | text = plain |",
              "|---|---|---|---|---|---|---|"]
        for r in s["rows"]:
            acc = f"{r['acceptance']:.3f}" if r["acceptance"] is not None else "–"
            eq = f"{r['texts_equal_plain']}/{r['n_prompts']}" if r["texts_equal_plain"] is not None else "–"
            L.append(f"| {r['threads']} | {r['draft_n_max']} | {fmt(r['tok_s'])} | {fmt(r['plain_tok_s'])} | "
                     f"{fmt(r['speedup_vs_plain'], 2, 'x')} | {acc} | {eq} |")
        L += ["", f"Draft-length sweep ({s['sweep_reps']} repetition(s); tok/s median (min–max), acceptance):", "",
              "| threads | " + " | ".join(f"n-max {n}" for n in sorted({r['draft_n_max'] for r in s['sweep']})) + " |",
              "|---|" + "---|" * len({r['draft_n_max'] for r in s['sweep']})]
        for th in sorted({r["threads"] for r in s["sweep"]}):
            cells = [f"{fmt(r['tok_s'])}, {r['acceptance']:.2f}" + (" **best**" if s["best"].get(str(th)) == r["draft_n_max"] else "")
                     for r in sorted((r for r in s["sweep"] if r["threads"] == th), key=lambda r: r["draft_n_max"])]
            L.append(f"| {th} | " + " | ".join(cells) + " |")
        L.append("")
    if "h2h" in res:
        H = res["h2h"]
        L += ["## Head to head, interleaved: llama.cpp (Q4_0) and specdec (builder int4) on the same checkpoints", "",
              f"{H['timing']}. {H['n_prompts']} prompts, {H['new_tokens']} new tokens, {H['reps']} repetitions; "
              f"llama.cpp draft n-max per threads {H['llama_spec_n']} (the sweep's best); llama.cpp "
              f"{', '.join(f'{k}={v}' for k, v in H['env_llama_cpp'].items()) or 'OMP_WAIT_POLICY unset'}; "
              f"load average at the end {H['loadavg_after']}.", ""]
        mode = H.get("specdec_mode", "cli")
        threading = ", ".join(f"{k} → {v or 'the shared pool'}" for k, v in H.get("specdec_threading", {}).items())
        L += [f"specdec: --h2h-specdec {mode}, "
              f"{'in-process through the C ABI' if mode == 'lib' else 'the CLI, one process per prompt'}"
              + (f"; its intra-op threads per llama.cpp thread count: {threading}" if mode == "lib" else "")
              + ".", ""]
        if H.get("greedy_check") is not None:
            bad = [c for c in H["greedy_check"] if c["equal"] != c["runs"]]
            L += ["Greedy check (speculative output against the same engine's scaled target-only output, every "
                  "prompt and repetition): " + ("all equal." if not bad else "; ".join(
                      f"{c['engine']} {c['config']} at {c['threads']} threads: {c['equal']}/{c['runs']} equal"
                      for c in bad) + "."), ""]
        L += ["| threads | engine | config | tok/s | speed-up vs own scaled target-only | acceptance |", "|---|---|---|---|---|---|"]
        for r in sorted(H["rows"], key=lambda r: (r["threads"], r["engine"])):
            acc = f"{r['acceptance']:.3f}" if r["acceptance"] is not None else "–"
            sp = fmt(r["speedup_vs_own_scaled_plain"], 2, "x") if r["speedup_vs_own_scaled_plain"] else "–"
            L.append(f"| {r['threads']} | {r['engine']} | {r['config']} | {fmt(r['tok_s'])} | {sp} | {acc} |")
        L += ["", "specdec / llama.cpp, paired per repetition (for speculative: each engine's best configuration by median):", "",
              "| threads | what | specdec | llama.cpp | ratio |", "|---|---|---|---|---|"]
        for r in H["ratios"]:
            L.append(f"| {r['threads']} | {r['kind']} | {r['specdec']} | {r['llama_cpp']} | {fmt(r['ratio'], 2, 'x')} |")
        L.append("")
    if "specdec" in res:
        L += ["## specdec on the builder int4 exports of the same checkpoints (same protocol)", "",
              res["specdec"]["timing"] + ".", "",
              "| config | threads | tok/s | speed-up vs scaled target-only | acceptance |", "|---|---|---|---|---|"]
        for r in res["specdec"]["rows"]:
            acc = f"{r['acceptance']:.3f}" if r["acceptance"] is not None else "–"
            L.append(f"| {r['config']} | {r['threads']} | {fmt(r['tok_s'])} | "
                     f"{fmt(r['speedup_vs_scaled_target_only'], 2, 'x') if r['speedup_vs_scaled_target_only'] else '–'} | {acc} |")
        L.append("")
    if "greedy" in res:
        g = res["greedy"]
        L += ["## Greedy agreement (token ids)", "", g["what"] + ".", "",
              "| model | GGUF | specdec on | agreement per prompt (of %d) | full | margin at 1st diff | = timed runs' ids (per threads) |" % g["new_tokens"],
              "|---|---|---|---|---|---|---|"]
        for r in g["rows"]:
            mg = ", ".join("–" if x is None else f"{x:.3g}" for x in r["llama_margin_at_first_diff"])
            te = "–" if not r["timed_runs_equal"] else ", ".join(f"{v}/{r['n_prompts']} ({k}t)" for k, v in r["timed_runs_equal"].items())
            L.append(f"| {r['model']} | {r['gguf']} | {r['specdec_export']} | {', '.join(map(str, r['agreement']))} | "
                     f"{r['full']}/{r['n_prompts']} | {mg} | {te} |")
        L.append("")
    L += ["## Commands", ""] + [f"- {k}: `{v}`" for k, v in res.get("commands", {}).items()] + [""]
    return "\n".join(L)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", default="benches/prompts.jsonl")
    ap.add_argument("--max-prompts", type=int, default=0)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--quant", default="Q4_0")
    ap.add_argument("--plain-models", default="target,scaled,draft")
    ap.add_argument("--spec-n", default="1-8", help="llama.cpp --spec-draft-n-max values of the sweep")
    ap.add_argument("--spec-sweep-reps", type=int, default=2, help="repetitions of the draft-length sweep")
    ap.add_argument("--specdec-reps", type=int, default=3)
    ap.add_argument("--specdec-threads", default="1,2")
    ap.add_argument("--specdec-gammas", default="3,5", help="specdec fixed gammas (plus the auto policy)")
    ap.add_argument("--parts", default="tok,plain,cli,spin,bench,spec,h2h,greedy")
    ap.add_argument("--cli-reps", type=int, default=2, help="part cli: repetitions of llama-completion runs")
    ap.add_argument("--h2h-spec-n", default="", help="part h2h: llama.cpp draft n-max per thread count, e.g. 1:7,2:3 "
                                                     "(default: the best of part spec in the same run)")
    ap.add_argument("--h2h-specdec", choices=("lib", "cli"), default="lib",
                    help="part h2h: specdec in this process through the C ABI (lib, default: models loaded "
                         "once, a generator per prompt, the library's shared thread pool where the thread "
                         "count reaches the core count) or the CLI, one process per prompt (cli: the "
                         "protocol of the earlier results)")
    ap.add_argument("--merge", action="store_true", help="update --out (JSON and markdown) with the parts run now, "
                                                          "keeping the others")
    ap.add_argument("--omp-wait", default="passive",
                    help="OMP_WAIT_POLICY for llama.cpp's runs (passive|active|default = unset)")
    ap.add_argument("--spin-prompts", type=int, default=2,
                    help="part spin: plain decoding with OMP_WAIT_POLICY unset (llama.cpp's default, "
                         "spinning), on the first N prompts ...")
    ap.add_argument("--spin-new-tokens", type=int, default=32, help="... N new tokens ...")
    ap.add_argument("--spin-reps", type=int, default=3, help="... and N repetitions (slow on a loaded machine)")
    ap.add_argument("--out", default="benches/results/peer-llamacpp.json")
    ap.add_argument("--quick", action="store_true", help="smoke test: 1 rep, 2 prompts, 16 tokens, n-max 2,4")
    args = ap.parse_args()
    if args.quick:
        args.reps, args.max_prompts, args.new_tokens, args.spec_n = 1, 2, 16, "2,4"
        args.specdec_gammas, args.spec_sweep_reps, args.specdec_reps = "3", 1, 1
    args.threads = parse_int_list(args.threads)
    args.spec_n = parse_int_list(args.spec_n)
    args.specdec_gammas = parse_int_list(args.specdec_gammas)
    args.specdec_threads = parse_int_list(args.specdec_threads)
    args.plain_models = [m for m in args.plain_models.split(",") if m]
    parts = set(args.parts.split(","))

    prompts = [json.loads(l) for l in Path(ROOT / args.prompts).read_text().splitlines() if l.strip()]
    if args.max_prompts:
        prompts = prompts[: args.max_prompts]
    for b in ["llama-completion", "llama-speculative-simple", "llama-bench", "libllama.so"]:
        if not (BIN / b).exists():
            sys.exit(f"peer_llamacpp: {BIN / b} missing; run scripts/setup-llamacpp.sh")
    sd_tok = SpecdecTokenizer(HF / "demo-target" / "tokenizer.json")
    ours = [sd_tok.encode(p) for p in prompts]

    info_path = LLAMA / "build-info.json"
    binfo = json.loads(info_path.read_text()) if info_path.exists() else {}
    files = {}
    for stem in ("demo-target", "demo-target-scaled", "demo-draft"):
        for q in ("f32", args.quant, f"{args.quant}-pure"):
            f = GGUF / f"{stem}-{q}.gguf"
            if f.exists():
                files[f.name] = f.stat().st_size
        for suffix in ("int4", "fp32"):
            d = GENAI / f"{stem}-{suffix}"
            if d.exists():
                files[f"genai/{d.name}/model.onnx.data"] = (d / "model.onnx.data").stat().st_size
    res = {"meta": {
        "date": _dt.datetime.now().isoformat(timespec="seconds"), "machine": platform.processor() or platform.machine(),
        "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), None),
        "cpus": os.cpu_count(), "loadavg_before": loadavg(), "python": sys.version.split()[0],
        "llama_cpp": binfo.get("version") or binfo.get("llama_cpp_commit"), "sdist": binfo.get("llama_cpp_python_sdist"),
        "prompts": args.prompts, "n_prompts": len(prompts), "prompt_tokens": [len(i) for i in ours],
        "new_tokens": args.new_tokens, "reps": args.reps, "threads": args.threads, "quant": args.quant,
        "argv": sys.argv[1:], "files": files, "niced": False,
    }}
    res["meta"]["machine"] = res["meta"]["cpu"] or res["meta"]["machine"]
    if args.omp_wait != "default":
        TOOL_ENV["OMP_WAIT_POLICY"] = args.omp_wait
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait  # the in-process libllama (read when libgomp loads)
    res["meta"]["llama_cpp_env"] = omp_env()
    t_all = time.time()
    lc = load_binding()
    bound = {name: LlamaModel(lc, GGUF / f"{MODELS[name][0]}-{args.quant}.gguf", threads=args.threads[0])
             for name in dict.fromkeys(args.plain_models + ["scaled", "target"])} if parts & {"plain", "spec", "h2h"} else {}
    if "tok" in parts:
        part_tok(lc, prompts, ours, res)
    if "plain" in parts:
        part_plain(args, lc, ours, res, {k: v for k, v in bound.items() if k in args.plain_models})
    plain_rows = res.get("plain", {}).get("rows", [])
    if "cli" in parts:
        part_cli(args, prompts, ours, res, "cli", args.plain_models, args.threads, args.cli_reps,
                 len(prompts), args.new_tokens, plain_rows)
    if "spin" in parts:
        policy = TOOL_ENV.pop("OMP_WAIT_POLICY", None)
        part_cli(args, prompts, ours, res, "cli_spin", args.plain_models, args.threads, args.spin_reps,
                 args.spin_prompts, min(args.spin_new_tokens, args.new_tokens), plain_rows)
        if policy:
            TOOL_ENV["OMP_WAIT_POLICY"] = policy
    if "bench" in parts:
        part_bench(args, res)
    if "spec" in parts:
        part_spec(args, prompts, ours, res, bound["scaled"])
    if "specdec" in parts:
        part_specdec(args, ours, res)
    if "h2h" in parts:
        part_h2h(args, prompts, ours, res, bound)
    if "greedy" in parts:
        part_greedy(lc, args, prompts, ours, res, res.get("plain", {}).get("rows", []))
    res["meta"]["loadavg_after"] = loadavg()
    res["meta"]["seconds"] = seconds = round(time.time() - t_all, 1)
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.merge and out.exists():
        old = json.loads(out.read_text())
        runs = old["meta"].get("merged_runs", [])
        runs.append({k: res["meta"][k] for k in ("date", "argv", "loadavg_before", "loadavg_after", "seconds")})
        cmds = {**old.get("commands", {}), **res.get("commands", {})}
        old.update({k: v for k, v in res.items() if k not in ("meta", "commands")})
        old["meta"]["merged_runs"] = runs
        old["commands"] = cmds
        res = old
    out.write_text(json.dumps(res, indent=1) + "\n")
    md = markdown(res)
    out.with_suffix(".md").write_text(md)
    print(md)
    log(f"done in {seconds} s: {rel(out)} and {rel(out.with_suffix('.md'))}")


if __name__ == "__main__":
    main()
