#!/usr/bin/env python3
"""Peer benchmark: specdec against onnxruntime-genai on the same ONNX target/draft pair.

Both engines run in this one process, on the same ONNX Runtime library (the `onnxruntime` wheel
that onnxruntime-genai loads; specdec is initialised with the same file), interleaved per
repetition after a warm-up:

  genai    target-only, and speculative with speculative.max_draft_tokens = K for each --ks
  specdec  target-only, and speculative with gamma = γ for each --gammas (through the C ABI,
           target/release/libspecdec.so, with ctypes), plus `auto` rows when the library
           exports specdec_gen_config_set_gamma_policy

at temperature 0 (greedy) and temperature 1 (the same seed per repetition and prompt for every
configuration of both engines). Sampling at T > 0 draws from the full distribution by default;
--top-p P (< 1) makes both engines sample from the nucleus instead: specdec with
specdec_gen_config_set_top_p(P), genai with top_p P and top_k 0 (its nucleus-only path; see
"Top-p" below). --target-only (or --ks none --gammas none) runs the target-only
rows alone and loads no draft, e.g. for a big-vocabulary model, where sampling itself is much of
the cost; a target folder may also be an onnxruntime-genai model builder export (genai_config.json
and no config.json). Every run feeds the prompt as token ids and generates exactly --new-tokens
tokens (EOS off on both sides; see EOS below), so both engines do the same work; a list of
lengths (--new-tokens 32,128) measures each of them in the same repetitions. Time per prompt runs
from creating the generator to the last token (prefill included, tokenization and freeing
excluded); tokens/s of a configuration in one repetition = all new tokens of all prompts / the sum
of those times.

EOS: specdec takes an empty EOS list (specdec_gen_config_set_eos_ids with 0 ids). genai 0.18
cannot switch EOS off: an empty `eos_token_id` array in genai_config.json is ignored (it still
stops on the model's EOS), and an id outside the vocabulary is refused. So genai runs with
search.min_length = max_length, which keeps it from stopping by masking the EOS logits until
max_length. Under greedy decoding that changes nothing unless EOS is the argmax (the greedy
check below would show it); under sampling genai draws from the distribution without EOS.

Top-p: specdec sorts the tokens by logit (ties: lower id first) and keeps the smallest prefix
whose probability reaches P. genai 0.18 (ComputeSampledCategorical / FindNucleus in
src/sampling_distribution.h, used by its standard and its speculative path) partial-sorts by
logit (ties in no set order) and stops at the first position where the prefix is at least P of
prefix + an upper bound of the unsorted tail ((tokens left) × the current token's weight); for a
vocabulary over 64 tokens that bound is all it checks, so its kept set is a superset of the exact
nucleus (the same where the distribution is peaked, larger where it is flat), and the tokens are
then drawn from that set renormalised. Measured on the demo target (512 tokens; one prompt, 400
seeds, P = 0.9): the exact nucleus held 62 tokens (mass 0.902), genai's set 142 (mass 0.991);
genai drew 35 of 400 tokens from outside the exact nucleus (39 expected without truncation),
none outside its own set; specdec none outside the exact nucleus. On the random-weight builder
export qwen2-random-fp32 (151,936 tokens, a nearly flat distribution; 200 seeds) the exact
nucleus held 126,386 tokens, genai's set 129,294 (mass 0.913). So at P < 1 genai samples a
wider distribution than specdec on the same logits (both engines apply the same truncation to
the draft's distribution as to the target's). Its standard and speculative paths share the code.

Greedy check: at temperature 0 every configuration's tokens are compared with specdec's
target-only tokens for every prompt and repetition; where genai's target-only output differs,
the first differing position's top-2 logit margin is computed with plain onnxruntime.

Writes JSON (--out, default target/peer/peer.json) and a markdown table beside it (.md), and
prints the table. Run through scripts/peer-bench.sh, which makes the .venv-bench virtualenv.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# onnxruntime-genai first: its import loads the onnxruntime wheel's libonnxruntime.so and sets
# ORT_LIB_PATH; specdec is then initialised with that same library, so one ONNX Runtime serves both.
try:
    import numpy as np
    import onnxruntime_genai as og
except ImportError as e:  # pragma: no cover - environment problem
    sys.exit(f"peer_bench: {e}; run it through scripts/peer-bench.sh (makes .venv-bench)")

# specdec through its C ABI, shared with scripts/peer_llamacpp.py (loads nothing until used).
from specdec_ctypes import Specdec  # noqa: E402


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------

def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def summary(xs: list[float]) -> dict:
    xs = [x for x in xs if x is not None]
    if not xs:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def fmt_range(s: dict, digits: int = 1, suffix: str = "") -> str:
    if not s or s.get("median") is None:
        return "–"
    f = f"{{:.{digits}f}}"
    if s["n"] == 1:
        return f.format(s["median"]) + suffix
    return f"{f.format(s['median'])}{suffix} ({f.format(s['min'])}–{f.format(s['max'])})"


def parse_int_list(text: str) -> list[int]:
    """'1-8', '2,4' or 'none' (the empty list)."""
    out: list[int] = []
    if text.strip().lower() in ("none", "-"):
        return out
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


def first_diff(a: list[int], b: list[int]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def git_state() -> dict:
    def run(*args):
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except Exception:
            return None
    return {"commit": run("rev-parse", "HEAD"),
            "dirty_files": len((run("status", "--porcelain", "--untracked-files=no") or "").splitlines())}


# --------------------------------------------------------------------------------------------
# genai model folders
# --------------------------------------------------------------------------------------------

# genai model types that are plain decoder-only models with Optimum-style IO; anything else is
# described as "llama" (the type only picks the decoder-only state class for these models).
GENAI_DECODER_TYPES = {"llama", "mistral", "qwen2", "qwen3", "phi", "phi3", "gemma", "gemma2",
                       "granite", "olmo", "smollm3", "nemotron"}


def link_or_copy(src: Path, dst: Path) -> str:
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    try:
        os.link(src, dst)
        return "hardlink"
    except OSError:
        shutil.copy2(src, dst)
        return "copy"


def model_io(onnx_path: Path) -> tuple[list[str], list[str]]:
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    return [i.name for i in s.get_inputs()], [o.name for o in s.get_outputs()]


def builder_config(model_dir: Path) -> dict | None:
    """genai_config.json of an onnxruntime-genai model builder export (no config.json), if any."""
    if (model_dir / "genai_config.json").exists() and not (model_dir / "config.json").exists():
        return json.loads((model_dir / "genai_config.json").read_text())
    return None


def decoder_block(model_dir: Path, filename: str, threads: int) -> dict:
    """genai's model.decoder description of an Optimum text-generation-with-past export, or of a
    model builder export (its own genai_config.json's, with the file name and threads set)."""
    built = builder_config(model_dir)
    if built is not None:
        block = json.loads(json.dumps(built["model"]["decoder"]))
        block["filename"] = filename
        so = block.setdefault("session_options", {})
        so["log_id"] = f"peer-{model_dir.name}"
        so.setdefault("provider_options", [])
        so.pop("intra_op_num_threads", None)
        if threads > 0:
            so["intra_op_num_threads"] = threads
        return block
    cfg = json.loads((model_dir / "config.json").read_text())
    heads = cfg["num_attention_heads"]
    head_size = cfg.get("head_dim") or cfg["hidden_size"] // heads
    ins, outs = model_io(model_dir / "model.onnx")
    need_in = ["input_ids", "attention_mask", "past_key_values.0.key", "past_key_values.0.value"]
    need_out = ["logits", "present.0.key", "present.0.value"]
    missing = [n for n in need_in if n not in ins] + [n for n in need_out if n not in outs]
    if missing:
        sys.exit(f"peer_bench: {model_dir}/model.onnx lacks the Optimum decoder IO {missing}")
    inputs = {"input_ids": "input_ids", "attention_mask": "attention_mask",
              "past_key_names": "past_key_values.%d.key",
              "past_value_names": "past_key_values.%d.value"}
    if "position_ids" in ins:
        inputs["position_ids"] = "position_ids"
    session_options = {"log_id": f"peer-{model_dir.name}", "provider_options": []}
    if threads > 0:
        session_options["intra_op_num_threads"] = threads
    return {
        "session_options": session_options,
        "filename": filename,
        "head_size": head_size,
        "hidden_size": cfg["hidden_size"],
        "num_attention_heads": heads,
        "num_key_value_heads": cfg.get("num_key_value_heads", heads),
        "num_hidden_layers": cfg["num_hidden_layers"],
        "inputs": inputs,
        "outputs": {"logits": "logits",
                    "present_key_names": "present.%d.key",
                    "present_value_names": "present.%d.value"},
    }


def model_fields(target_dir: Path) -> dict:
    built = builder_config(target_dir)
    if built is not None:
        m = built["model"]
        return {"vocab_size": m["vocab_size"], "context_length": m["context_length"],
                "bos_token_id": m.get("bos_token_id", 0), "eos_token_id": m["eos_token_id"],
                "pad_token_id": m.get("pad_token_id", m["eos_token_id"]),
                "model_type": m.get("type", "llama")}
    cfg = json.loads((target_dir / "config.json").read_text())
    gen = {}
    if (target_dir / "generation_config.json").exists():
        gen = json.loads((target_dir / "generation_config.json").read_text())
    eos = gen.get("eos_token_id", cfg.get("eos_token_id", 0))
    if isinstance(eos, list) and len(eos) == 1:
        eos = eos[0]
    bos = gen.get("bos_token_id", cfg.get("bos_token_id", 0))
    pad = gen.get("pad_token_id", cfg.get("pad_token_id"))
    if pad is None:
        pad = eos[0] if isinstance(eos, list) else eos
    return {
        "vocab_size": cfg["vocab_size"],
        "context_length": cfg.get("max_position_embeddings", 2048),
        "bos_token_id": bos,
        "eos_token_id": eos,
        "pad_token_id": pad,
        "model_type": cfg.get("model_type", "llama"),
    }


def link_model_files(src_dir: Path, dst_dir: Path) -> str:
    """Hard-link (or copy) model.onnx, any external-data files and tokenizer files."""
    dst_dir.mkdir(parents=True, exist_ok=True)
    how = "hardlink"
    for f in sorted(src_dir.iterdir()):
        if not f.is_file():
            continue
        if f.suffix == ".json" and not f.name.startswith("tokenizer"):
            continue  # config.json / generation_config.json / genai_config.json: written anew
        if link_or_copy(f, dst_dir / f.name) == "copy":
            how = "copy"
    return how


def build_genai_folders(target_dir: Path, draft_dir: Path | None, out_dir: Path, k_default: int,
                        threads: int, draft_threads: int) -> dict:
    """target/peer/<pair>/{target,speculative}/ with genai_config.json; genai refuses model
    files outside its folder, so the ONNX files are hard-linked (or copied) in. Without a draft
    (target-only runs) only target/."""
    fields = model_fields(target_dir)
    gtype = fields.pop("model_type")
    gtype = gtype if gtype in GENAI_DECODER_TYPES else "llama"

    tdir = out_dir / "target"
    how = link_model_files(target_dir, tdir)
    target_cfg = {
        "model": {"type": gtype, **fields, "decoder": decoder_block(target_dir, "model.onnx", threads)},
        "search": {"max_length": fields["context_length"], "do_sample": False},
    }
    built = builder_config(target_dir)
    if built is not None and "past_present_share_buffer" in built.get("search", {}):
        # a builder export's KV-cache layout choice (one buffer for past and present), kept
        target_cfg["search"]["past_present_share_buffer"] = built["search"]["past_present_share_buffer"]
    (tdir / "genai_config.json").write_text(json.dumps(target_cfg, indent=2) + "\n")
    if draft_dir is None:
        return {"target": str(tdir), "speculative": None, "files": how,
                "target_config": target_cfg, "speculative_config": None}

    sdir = out_dir / "speculative"
    link_model_files(target_dir, sdir / "target")
    link_model_files(draft_dir, sdir / "draft")
    for tok in target_dir.glob("tokenizer*"):
        link_or_copy(tok, sdir / tok.name)
    spec_cfg = {
        "model": {
            "type": "speculative",
            **fields,
            "decoder": decoder_block(target_dir, "target/model.onnx", threads),
            "draft": decoder_block(draft_dir, "draft/model.onnx", draft_threads),
        },
        "search": {"max_length": fields["context_length"], "do_sample": False},
        "speculative": {"max_draft_tokens": k_default},
    }
    (sdir / "genai_config.json").write_text(json.dumps(spec_cfg, indent=2) + "\n")
    return {"target": str(tdir), "speculative": str(sdir), "files": how,
            "target_config": target_cfg, "speculative_config": spec_cfg}




# --------------------------------------------------------------------------------------------
# onnxruntime-genai
# --------------------------------------------------------------------------------------------

GENAI_STAT_KEYS = ("rounds", "draft_tokens_proposed", "draft_tokens_evaluated",
                   "draft_tokens_accepted", "correction_tokens", "bonus_tokens",
                   "draft_forward_passes", "target_forward_passes", "total_draft_ms",
                   "total_target_ms", "full_accept_rounds", "zero_accept_rounds")


def genai_generate(model, ids: list[int], new_tokens: int, temperature: float, seed: int,
                   k: int | None, top_p: float = 1.0) -> dict:
    total = len(ids) + new_tokens
    opts = {"max_length": total, "min_length": total}
    if temperature > 0:
        # top_k 0 with top_p 1.0 is genai's full-distribution sampling (its defaults are
        # top_k 50 and top_p 0); top_k 0 with top_p < 1 is nucleus sampling alone.
        opts.update(do_sample=True, temperature=float(temperature), top_k=0, top_p=float(top_p),
                    random_seed=int(seed))
    else:
        opts.update(do_sample=False)
    arr = np.asarray([ids], dtype=np.int32)
    t0 = time.perf_counter()
    params = og.GeneratorParams(model)
    params.set_search_options(**opts)
    if k:
        params.set_speculative_options(max_draft_tokens=int(k))
    gen = og.Generator(model, params)
    gen.append_tokens(arr)
    while not gen.is_done():
        gen.generate_next_token()
    seconds = time.perf_counter() - t0
    tokens = [int(t) for t in gen.get_sequence(0)][len(ids):]
    stats = None
    if k:
        raw = gen.get_speculative_stats()
        stats = {key: raw.get(key) for key in GENAI_STAT_KEYS}
    del gen, params
    return {"tokens": tokens, "seconds": seconds, "stats": stats}


# --------------------------------------------------------------------------------------------
# Diagnostics for greedy mismatches
# --------------------------------------------------------------------------------------------

def greedy_margin(model_dir: Path, ids: list[int]) -> dict:
    """Top-2 logits of the target's next-token distribution after `ids` (plain onnxruntime,
    one full forward pass, empty past)."""
    import onnxruntime as ort
    sess = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    feeds = {}
    n = len(ids)
    for i in sess.get_inputs():
        if i.name == "input_ids":
            feeds[i.name] = np.asarray([ids], dtype=np.int64)
        elif i.name == "attention_mask":
            feeds[i.name] = np.ones((1, n), dtype=np.int64)
        elif i.name == "position_ids":
            feeds[i.name] = np.arange(n, dtype=np.int64)[None, :]
        elif i.name.startswith("past_key_values"):
            shape = [1 if d == "batch_size" else (0 if not isinstance(d, int) else d) for d in i.shape]
            built = builder_config(model_dir)
            if built is not None:  # named dims there: (batch, kv heads, past length, head size)
                dec = built["model"]["decoder"]
                shape = [1, dec["num_key_value_heads"], 0, dec["head_size"]]
            feeds[i.name] = np.zeros(shape, dtype=np.float16 if "float16" in i.type else np.float32)
    logits = sess.run(["logits"], feeds)[0][0, -1].astype(np.float32)
    top = np.argsort(-logits)[:2]
    return {"top1": int(top[0]), "top2": int(top[1]),
            "margin": float(logits[top[0]] - logits[top[1]])}


# --------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="models/demo/target")
    ap.add_argument("--draft", default="models/demo/draft",
                    help="draft model folder (not used, and not needed, with --target-only)")
    ap.add_argument("--name", help="pair name for target/peer/<name>/ (default: from the paths)")
    ap.add_argument("--prompts", default="benches/prompts.jsonl",
                    help="JSON lines, one prompt string per line")
    ap.add_argument("--max-prompts", type=int, default=0, help="use only the first N prompts")
    ap.add_argument("--new-tokens", "--max-new-tokens", dest="new_tokens", default="128",
                    help="new tokens per prompt; a list (e.g. 32,128) measures every length in "
                         "the same repetitions, interleaved")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1,
                    help="warm-up runs of each configuration on the first prompt")
    ap.add_argument("--ks", default="1-8",
                    help="genai max_draft_tokens values, e.g. 1-8 or 2,4; 'none' for no genai "
                         "speculative rows")
    ap.add_argument("--gammas", default="1-8", help="specdec gamma values ('none': no fixed-gamma rows)")
    ap.add_argument("--target-only", action="store_true",
                    help="target-only rows only (= --ks none --gammas none, which drops the policy "
                         "rows too): no draft is loaded")
    ap.add_argument("--temperatures", default="0,1")
    ap.add_argument("--top-p", type=float, default=1.0,
                    help="at T > 0, nucleus sampling with this top-p in both engines (specdec "
                         "set_top_p; genai top_p with top_k 0); 1 (default) samples the full "
                         "distribution")
    ap.add_argument("--threads", type=int, default=1,
                    help="ONNX Runtime intra-op threads per model, both engines (0: ORT decides)")
    ap.add_argument("--genai-threads", type=int, default=None,
                    help="override --threads for genai's sessions")
    ap.add_argument("--draft-threads", type=int, default=None,
                    help="intra-op threads of the draft model, both engines (default: as the target)")
    ap.add_argument("--seed", type=int, default=1, help="base of the per-rep, per-prompt seeds")
    ap.add_argument("--lib", default="target/release/libspecdec.so")
    ap.add_argument("--no-policies", action="store_true", help="skip specdec gamma-policy rows")
    ap.add_argument("--out", default="target/peer/peer.json")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 1 rep, 2 prompts, 16 new tokens")
    args = ap.parse_args()
    if not 0.0 < args.top_p <= 1.0:
        sys.exit("peer_bench: --top-p must be in (0, 1]")
    if args.target_only:
        args.ks, args.gammas, args.no_policies = "none", "none", True
    if args.quick:
        args.reps, args.max_prompts, args.new_tokens = 1, 2, "16"
    ns = parse_int_list(args.new_tokens)
    if not ns or min(ns) < 1:
        sys.exit("peer_bench: --new-tokens needs positive lengths")

    os.chdir(ROOT)
    ks, gammas = parse_int_list(args.ks), parse_int_list(args.gammas)
    # No K and no γ: target-only comparisons, no policy rows and no draft at all.
    speculative = bool(ks or gammas)
    if not speculative:
        args.no_policies = True
    target_dir = Path(args.target).resolve()
    draft_dir = Path(args.draft).resolve() if speculative else None
    if args.name:
        pair = args.name
    elif draft_dir is None:
        pair = f"{target_dir.name}-target-only"
    elif target_dir.parent == draft_dir.parent:
        pair = target_dir.parent.name
    else:
        pair = f"{target_dir.name}__{draft_dir.name}"
    temps = [float(t) for t in args.temperatures.split(",") if t.strip()]
    genai_threads = args.threads if args.genai_threads is None else args.genai_threads
    draft_threads = args.draft_threads

    prompts = [json.loads(line) for line in Path(args.prompts).read_text().splitlines() if line.strip()]
    if args.max_prompts:
        prompts = prompts[: args.max_prompts]

    # --- engines ---
    ort_path = os.environ.get("ORT_LIB_PATH")
    sd = Specdec(Path(args.lib).resolve(), ort_path, ROOT / "target" / "peer" / ".lib")
    log(f"specdec {sd.version} ({args.lib}, sha256 {sd.lib_sha256[:12]}); onnxruntime-genai "
        f"{og.__version__}; ONNX Runtime {ort_path}")
    folders = build_genai_folders(target_dir, draft_dir, ROOT / "target" / "peer" / pair,
                                  max(ks) if ks else 4, genai_threads,
                                  genai_threads if draft_threads is None else draft_threads)
    log(f"genai folders: {folders['target']}"
        + (f" and {folders['speculative']}" if folders["speculative"] else "") + f" ({folders['files']})")

    prompt_ids = [sd.encode(target_dir / "tokenizer.json", p) for p in prompts]
    tokenizer_check = None
    try:
        from tokenizers import Tokenizer
        hf = Tokenizer.from_file(str(target_dir / "tokenizer.json"))
        tokenizer_check = all(hf.encode(p, add_special_tokens=False).ids == ids
                              for p, ids in zip(prompts, prompt_ids))
    except ImportError:
        pass
    ctx = model_fields(target_dir)["context_length"]
    for ids in prompt_ids:
        if len(ids) + max(ns) > ctx:
            sys.exit(f"peer_bench: a prompt of {len(ids)} tokens + {max(ns)} exceeds {ctx}")

    t_load = time.perf_counter()
    sd_target = sd.load_model(target_dir, args.threads)
    sd_draft = None
    if draft_dir is not None:
        sd_draft = sd.load_model(draft_dir, args.threads if draft_threads is None else draft_threads)
    g_target = og.Model(folders["target"])
    g_spec = {}
    for k in ks:
        c = og.Config(folders["speculative"])
        c.overlay(json.dumps({"speculative": {"max_draft_tokens": k}}))
        g_spec[k] = og.Model(c)
    log(f"models loaded in {time.perf_counter() - t_load:.1f} s")

    policies = [] if args.no_policies or sd_draft is None else sd.policies()
    configs = [("genai", "target-only", None)] + [("genai", f"K={k}", k) for k in ks]
    sconfigs = ([("specdec", "target-only", None)] + [("specdec", f"γ={g}", g) for g in gammas]
                + [("specdec", p, p) for p in policies])

    def run(cfg, ids, temperature, seed, n):
        engine, label, x = cfg
        if engine == "genai":
            model = g_target if x is None else g_spec[x]
            return genai_generate(model, ids, n, temperature, seed, x, args.top_p)
        gamma = x if isinstance(x, int) else None
        policy = x if isinstance(x, str) else None
        draft = None if x is None else sd_draft
        return sd.generate(sd_target, draft, ids, n, temperature, seed, gamma, policy, args.top_p)

    # Interleave the engines: genai tt, specdec tt, genai K1, specdec γ1, ...; each repetition
    # starts one place later so no configuration always runs first.
    order = []
    for i in range(max(len(configs), len(sconfigs))):
        if i < len(configs):
            order.append(configs[i])
        if i < len(sconfigs):
            order.append(sconfigs[i])

    def seed_of(rep, p):
        return args.seed + 1000 * rep + p

    # --- warm-up ---
    t_start = time.perf_counter()
    for _ in range(args.warmup):
        for t in temps:
            for cfg in order:
                run(cfg, prompt_ids[0], t, seed_of(0, 0), max(ns))
    log(f"warm-up done in {time.perf_counter() - t_start:.1f} s")

    # --- measurement ---
    # results[(engine, label, T, n)] = list over reps of {"tokens", "seconds", per-prompt, stats}
    results: dict = {}
    greedy: dict = {}
    length_errors = []
    for rep in range(args.reps):
        t_rep = time.perf_counter()
        rot = rep % len(order)
        rep_order = order[rot:] + order[:rot]
        for n, t in [(n, t) for n in ns for t in temps]:
            outputs = {}
            for cfg in rep_order:
                secs, toks, per_prompt, stats_list = 0.0, 0, [], []
                for p, ids in enumerate(prompt_ids):
                    r = run(cfg, ids, t, seed_of(rep, p), n)
                    if len(r["tokens"]) != n:
                        length_errors.append({"config": cfg[:2], "T": t, "new_tokens": n,
                                              "rep": rep, "prompt": p, "tokens": len(r["tokens"])})
                    secs += r["seconds"]
                    toks += len(r["tokens"])
                    per_prompt.append(round(r["seconds"], 6))
                    stats_list.append(r["stats"])
                    outputs[(cfg[0], cfg[1], p)] = r["tokens"]
                results.setdefault((cfg[0], cfg[1], t, n), []).append(
                    {"tokens": toks, "seconds": secs, "tps": toks / secs,
                     "prompt_seconds": per_prompt, "stats": stats_list})
            if t == 0:
                for cfg in order:
                    for p in range(len(prompt_ids)):
                        ref = outputs[("specdec", "target-only", p)]
                        got = outputs[(cfg[0], cfg[1], p)]
                        d = first_diff(got, ref)
                        entry = greedy.setdefault(f"{cfg[0]} {cfg[1]}", {"runs": 0, "mismatches": []})
                        entry["runs"] += 1
                        if d is not None and len(entry["mismatches"]) < 20:
                            entry["mismatches"].append({"rep": rep, "new_tokens": n, "prompt": p,
                                                        "first_diff": d,
                                                        "got": got[d:d + 5], "specdec": ref[d:d + 5]})
        log(f"rep {rep + 1}/{args.reps} done in {time.perf_counter() - t_rep:.1f} s")
    elapsed = time.perf_counter() - t_start

    # Margins where genai's target-only greedy output differs from specdec's.
    mism = greedy.get("genai target-only", {}).get("mismatches", [])
    seen = set()
    for m in mism:
        if (m["prompt"], m["first_diff"]) in seen:
            continue
        seen.add((m["prompt"], m["first_diff"]))
        # the common prefix is specdec's tokens up to the first difference
        ref = run(("specdec", "target-only", None), prompt_ids[m["prompt"]], 0.0, 0,
                  m["new_tokens"])["tokens"]
        try:
            m["margin"] = greedy_margin(target_dir, prompt_ids[m["prompt"]] + ref[: m["first_diff"]])
        except Exception as e:  # e.g. a builder export's inputs this plain run does not feed
            m["margin"] = {"error": str(e)[:300]}

    report = analyse(args, results, temps, ns, configs, sconfigs)
    meta = {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "host": {"cpus": os.cpu_count(), "machine": platform.machine(),
                 "loadavg_at_end": os.getloadavg()},
        "pair": pair, "target": str(target_dir),
        "draft": str(draft_dir) if draft_dir is not None else None,
        "prompts": args.prompts, "n_prompts": len(prompts),
        "prompt_tokens": [len(i) for i in prompt_ids],
        "tokenizer_matches_hf_tokenizers": tokenizer_check,
        "new_tokens": ns[0] if len(ns) == 1 else ns, "reps": args.reps, "warmup": args.warmup,
        "temperatures": temps, "ks": ks, "gammas": gammas, "policies": policies,
        "seeds": f"seed = {args.seed} + 1000*rep + prompt index, same for every configuration",
        "threads": {"specdec_intra_op_per_model": args.threads,
                    "genai_intra_op_per_session": genai_threads,
                    "draft_intra_op": draft_threads},
        "eos": {"specdec": "specdec_gen_config_set_eos_ids(cfg, NULL, 0): no EOS",
                "genai": "search.min_length = max_length = prompt + new_tokens (EOS masked)"},
        "top_p": args.top_p,
        "sampling": sampling_meta(args.top_p),
        "timing": "generator creation to the last token, prefill included; tok/s = all new "
                  "tokens / summed seconds over the prompts of one repetition",
        "versions": {"specdec": sd.version, "specdec_lib": sd.lib_path,
                     "specdec_lib_sha256": sd.lib_sha256, "onnxruntime_genai": og.__version__,
                     "onnxruntime_lib": ort_path, "python": platform.python_version(),
                     "git": git_state()},
        "genai_folders": {"target": folders["target"], "speculative": folders["speculative"],
                          "files": folders["files"]},
        "elapsed_seconds": round(elapsed, 1),
    }
    out = {"meta": meta, "greedy_check": greedy, "length_errors": length_errors, **report,
           "raw": [{"engine": e, "config": c, "temperature": t, "new_tokens": n, "reps": v}
                   for (e, c, t, n), v in results.items()]}
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    md = markdown(out)
    out_path.with_suffix(".md").write_text(md)
    print(md)
    log(f"wrote {out_path} and {out_path.with_suffix('.md')} ({elapsed:.0f} s measured)")
    return 0


def sampling_meta(top_p: float) -> dict:
    """What T > 0 means on each side (the JSON's "sampling" entry)."""
    if top_p >= 1.0:
        return {"top_p": 1.0, "summary": "full distribution (no top-k, no top-p)",
                "specdec": "temperature T, top-k/top-p/min-p off",
                "genai": "do_sample, temperature T, top_k 0, top_p 1.0, random_seed"}
    return {"top_p": top_p, "summary": f"nucleus, top-p {top_p:g} (no top-k)",
            "specdec": f"temperature T, top_p {top_p:g} (specdec_gen_config_set_top_p: sorted by "
                       "logit, ties by lower id, the smallest prefix whose mass reaches p), "
                       "top-k/min-p off",
            "genai": f"do_sample, temperature T, top_k 0, top_p {top_p:g}, random_seed (0.18 "
                     "FindNucleus: stops where a bound on the unsorted tail says p is reached, a "
                     "superset of the exact nucleus for vocabularies over 64 tokens)"}


def sampling_label(m: dict) -> str:
    s = m.get("sampling", {})
    p = s.get("top_p", m.get("top_p", 1.0)) if isinstance(s, dict) else 1.0
    return "full distribution" if p is None or p >= 1.0 else f"top-p {p:g}, no top-k"


def analyse(args, results, temps, ns, configs, sconfigs) -> dict:
    rows = []
    paired = []
    tt_ratios = []
    for n, t in [(n, t) for n in ns for t in temps]:
        sr, gr = results[("specdec", "target-only", t, n)], results[("genai", "target-only", t, n)]
        tt_ratios.append({"temperature": t, "new_tokens": n,
                          "ratio": summary([a["tps"] / b["tps"] for a, b in zip(sr, gr)])})
        by_engine = {}
        for engine, cfgs in (("genai", configs), ("specdec", sconfigs)):
            base = results[(engine, "target-only", t, n)]
            for cfg in cfgs:
                reps = results[(cfg[0], cfg[1], t, n)]
                tps = [r["tps"] for r in reps]
                speedup = [r["tps"] / b["tps"] for r, b in zip(reps, base)]
                row = {"engine": engine, "config": cfg[1], "temperature": t, "new_tokens": n,
                       "draft_tokens": cfg[2] if isinstance(cfg[2], int) else None,
                       "tps": summary(tps), "speedup": summary(speedup)}
                row.update(engine_figures(engine, reps, base, cfg))
                rows.append(row)
                by_engine.setdefault(engine, []).append(row)
        # Best speculative configuration of each engine by median tok/s, then paired per rep.
        best = {}
        for engine in ("genai", "specdec"):
            cands = [r for r in by_engine[engine] if r["draft_tokens"]]
            if cands:
                best[engine] = max(cands, key=lambda r: r["tps"]["median"])
        if len(best) == 2:
            s, g = best["specdec"], best["genai"]
            sr, gr = results[("specdec", s["config"], t, n)], results[("genai", g["config"], t, n)]
            ratio = [a["tps"] / b["tps"] for a, b in zip(sr, gr)]
            entry = {"temperature": t, "new_tokens": n, "specdec": s["config"], "genai": g["config"],
                     "ratio": summary(ratio),
                     "specdec_fraction_of_paper_limit": s.get("fraction_of_paper_limit"),
                     "specdec_fraction_of_measured_limit": s.get("fraction_of_measured_limit"),
                     "specdec_fraction_of_ort_limit": s.get("fraction_of_ort_limit")}
            for pol in [c for c in sconfigs if isinstance(c[2], str)]:
                pr = results[("specdec", pol[1], t, n)]
                entry[f"ratio_{pol[1]}"] = summary([a["tps"] / b["tps"] for a, b in zip(pr, gr)])
            paired.append(entry)
    return {"rows": rows, "paired": paired, "target_only_ratios": tt_ratios}


def engine_figures(engine, reps, base, cfg) -> dict:
    """Acceptance and cost figures per configuration (sums over the prompts of a rep)."""
    if cfg[2] is None:
        return {}
    out = {}
    if engine == "genai":
        acc, tpr = [], []
        for r in reps:
            s = [x for x in r["stats"] if x]
            ev = sum(x["draft_tokens_evaluated"] or 0 for x in s)
            ac = sum(x["draft_tokens_accepted"] or 0 for x in s)
            rounds = sum(x["rounds"] or 0 for x in s)
            acc.append(ac / ev if ev else None)
            tpr.append(r["tokens"] / rounds if rounds else None)
        out["acceptance"] = summary(acc)
        out["tokens_per_round"] = summary(tpr)
        out["acceptance_definition"] = "genai: draft_tokens_accepted / draft_tokens_evaluated"
        return out
    acc, tpr, paper, frac_paper, ort, frac_ort = [], [], [], [], [], []
    alphas, measured, frac_measured, draft_step, verify = [], [], [], [], []
    for r, b in zip(reps, base):
        s = r["stats"]
        drafted = sum(x["drafted"] for x in s)
        accepted = sum(x["accepted"] for x in s)
        rounds = sum(x["rounds"] for x in s)
        dcalls = sum(x["draft_calls"] for x in s)
        tcalls = sum(x["target_calls"] for x in s)
        dsec = sum(x["draft_seconds"] for x in s)
        tsec = sum(x["target_seconds"] for x in s)
        rejected = [x.get("rejected") for x in s]
        acc.append(accepted / drafted if drafted else None)
        tokens_per_round = r["tokens"] / rounds if rounds else None
        tpr.append(tokens_per_round)
        # The paper's ideal bound (2211.17192 §3.4) with this run's α and c: tokens per round /
        # (γ·c + 1) times target-only speed, c = draft call cost / target-only step cost. The
        # "+ 1" is the paper's idealisation that verifying γ + 1 tokens costs one target step.
        bt = sum(x["target_seconds"] for x in b["stats"]) / max(1, sum(x["target_calls"] for x in b["stats"]))
        gamma = cfg[2] if isinstance(cfg[2], int) else None
        if gamma and dcalls and tokens_per_round:
            c = (dsec / dcalls) / bt
            lim = b["tps"] * tokens_per_round / (gamma * c + 1)
            paper.append(lim)
            frac_paper.append(r["tps"] / lim)
        # The measured limit: the same formula with measured figures in place of the ideal ones,
        # in tokens per second of ONNX Runtime time, so no orchestration and no idealisation:
        #   expected tokens per round (1 − α^(γ+1)) / (1 − α) from the measured α (accepted /
        #   (accepted + rejected), per verified position; the realised tokens per round where
        #   the library predates the rejected count), over one round's cost
        #   γ · (draft step) + (verification of γ + 1 tokens), with
        #   draft step   = draft_seconds / draft_calls of this speculative run, and
        #   verification = target_seconds / target_calls of this speculative run: its own mean
        #                  target call, each of which verifies γ + 1 tokens.
        # The verification cost comes from the run itself rather than from a separate T(γ+1)
        # timing because it is then taken under the conditions of the tokens/s it bounds (the
        # same contexts, the target's weights just evicted by draft steps, the same threads),
        # and the C ABI has no bare forward call to time. Its one bias: the first call of each
        # prompt also prefills the prompt, which lifts the mean by roughly (prefill cost /
        # verification cost − 1) / rounds, a few percent at 128 new tokens (the draft's first
        # call likewise), so the limit errs low by about as much.
        if gamma and dcalls and tcalls and rounds:
            if None not in rejected and accepted + sum(rejected) > 0:
                alpha = accepted / (accepted + sum(rejected))
                expected = gamma + 1 if alpha >= 1 else (1 - alpha ** (gamma + 1)) / (1 - alpha)
            else:
                alpha, expected = None, tokens_per_round
            t_draft, t_verify = dsec / dcalls, tsec / tcalls
            lim = expected / (gamma * t_draft + t_verify)
            alphas.append(alpha)
            draft_step.append(t_draft)
            verify.append(t_verify)
            measured.append(lim)
            frac_measured.append(r["tps"] / lim)
        # Time inside ONNX Runtime alone: the speed with zero orchestration overhead.
        if dsec + tsec > 0:
            ort.append(r["tokens"] / (dsec + tsec))
            frac_ort.append(r["tps"] / ort[-1])
    out.update(acceptance=summary(acc), tokens_per_round=summary(tpr),
               acceptance_definition="specdec: accepted / drafted",
               alpha=summary(alphas),
               alpha_definition="specdec: accepted / (accepted + rejected), per verified position",
               paper_limit_tps=summary(paper), fraction_of_paper_limit=summary(frac_paper),
               paper_limit_definition="target-only tok/s × tokens per round / (γ·c + 1): the "
                                      "paper's ideal verification cost of one target step",
               measured_limit_tps=summary(measured),
               fraction_of_measured_limit=summary(frac_measured),
               measured_limit_definition="(1 − α^(γ+1)) / (1 − α) / (γ·draft step + mean target "
                                         "call), α and both costs measured in this run",
               draft_step_seconds=summary(draft_step), verify_seconds=summary(verify),
               ort_limit_tps=summary(ort), fraction_of_ort_limit=summary(frac_ort))
    return out


def markdown(out: dict) -> str:
    m = out["meta"]
    lengths = m["new_tokens"] if isinstance(m["new_tokens"], list) else [m["new_tokens"]]
    # A "new" column (new tokens per prompt) only when the run measured several lengths.
    multi = len(lengths) > 1
    col = (lambda r: f"{r['new_tokens']} | ") if multi else (lambda r: "")
    head, rule = ("new | ", "---|") if multi else ("", "")
    samp = sampling_label(m)
    target_only = not out["paired"] and all(r["config"] == "target-only" for r in out["rows"])
    lines = [
        f"## Peer benchmark: specdec {m['versions']['specdec']} vs onnxruntime-genai "
        f"{m['versions']['onnxruntime_genai']} ({m['pair']}; T > 0: {samp})"
        + (", target-only" if target_only else ""),
        "",
        f"{m['n_prompts']} prompts from {m['prompts']}, {', '.join(map(str, lengths))} new tokens "
        f"each, {m['reps']} repetitions (median, min–max), {m['host']['cpus']} CPUs, intra-op "
        f"threads per model: specdec {m['threads']['specdec_intra_op_per_model']}, genai "
        f"{m['threads']['genai_intra_op_per_session']}"
        + (f" (the draft {m['threads']['draft_intra_op']} in both)" if m['threads'].get('draft_intra_op') is not None else "")
        + f". {m['date']}.",
        "",
        "Sampling at T > 0: " + (m["sampling"]["summary"] + "; specdec: " + m["sampling"]["specdec"]
                                 + "; genai: " + m["sampling"]["genai"]
                                 if isinstance(m.get("sampling"), dict) and "summary" in m["sampling"]
                                 else samp) + ".",
        "",
        f"Per configuration (T > 0: {samp}):",
        "",
        f"| {head}T | engine | config | tok/s | vs own target-only | acceptance | tokens/round | "
        "of measured limit |",
        f"|{rule}---|---|---|---|---|---|---|---|",
    ]
    for r in out["rows"]:
        lines.append(
            f"| {col(r)}{r['temperature']:g} | {r['engine']} | {r['config']} | "
            f"{fmt_range(r['tps'])} | {fmt_range(r['speedup'], 2, 'x')} | "
            f"{fmt_range(r.get('acceptance'), 2)} | {fmt_range(r.get('tokens_per_round'), 2)} | "
            f"{fmt_range(r.get('fraction_of_measured_limit'), 2)} |")
    lines += ["", f"specdec / genai target-only, paired per repetition (T > 0: {samp}):", "",
              f"| {head}T | specdec / genai |", f"|{rule}---|---|"]
    for r in out.get("target_only_ratios", []):
        lines.append(f"| {col(r)}{r['temperature']:g} | {fmt_range(r['ratio'], 2, 'x')} |")
    if not target_only:
        lines += ["", "Best speculative configuration of each engine, paired per repetition "
                  f"(T > 0: {samp}):", "",
                  f"| {head}T | specdec best | genai best | specdec / genai (paired per rep) | "
                  "specdec / paper ideal limit | specdec / measured limit | specdec / ORT-only limit |",
                  f"|{rule}---|---|---|---|---|---|---|"]
        for p in out["paired"]:
            lines.append(f"| {col(p)}{p['temperature']:g} | {p['specdec']} | {p['genai']} | "
                         f"{fmt_range(p['ratio'], 2, 'x')} | "
                         f"{fmt_range(p.get('specdec_fraction_of_paper_limit'), 2)} | "
                         f"{fmt_range(p.get('specdec_fraction_of_measured_limit'), 2)} | "
                         f"{fmt_range(p.get('specdec_fraction_of_ort_limit'), 2)} |")
            for key, val in p.items():
                if key.startswith("ratio_"):
                    lines.append(f"| {col(p)}{p['temperature']:g} | {key[6:]} | {p['genai']} | "
                                 f"{fmt_range(val, 2, 'x')} | | | |")
        lines += ["", "Limits (specdec tok/s as a fraction of each): *paper ideal*: the paper's "
                  "bound with verification of γ + 1 tokens costing one target step, target-only "
                  "tok/s × tokens per round / (γc + 1); *measured*: the paper's formula with measured "
                  "figures, (1 − α^(γ+1)) / (1 − α) tokens per round (α = accepted / (accepted + "
                  "rejected)) over γ × (mean draft call) + (mean target call of the same run, each "
                  "verifying γ + 1 tokens); *ORT-only*: new tokens / time inside ONNX Runtime, i.e. "
                  "no orchestration. All costs come from the same run."]
    g = out["greedy_check"]
    bad = {k: v for k, v in g.items() if v["mismatches"]}
    lines += ["", "Greedy check (T=0, every prompt and rep, against specdec target-only): " +
              ("not run (no T=0)." if not g else "all identical." if not bad else
               "; ".join(f"{k}: {len(v['mismatches'])} of {v['runs']} differ" for k, v in bad.items()))]
    if out["length_errors"]:
        lines.append(f"Runs with the wrong number of new tokens: {len(out['length_errors'])}.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
