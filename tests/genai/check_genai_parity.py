#!/usr/bin/env python3
"""specdec vs onnxruntime-genai on the committed builder fixtures (models/builder/<name>-<precision>/).

For every folder holding a genai_config.json, and each prompt recorded for it in
models/builder/expectations.json (made by `scripts/make_builder_models.py --stage fixtures`):
  1. onnxruntime-genai greedy, run live (og.Model / og.Generator, do_sample False, 32 new tokens,
     EOS treated as an ordinary token, see genai_greedy), must equal the recorded genai_ids, so that
     a changed onnxruntime-genai or a changed folder is noticed;
  2. specdec's CLI, target-only greedy on the same prompt ids with no EOS stop
     (`specdec generate --target DIR --prompt-ids ... --max-new-tokens 32 --json --eos-ids ""`),
     must equal genai's live output token for token.
Prints one row per (folder, prompt) and a last line `N passed, M failed`; exit status 1 on any failure.

Needs Python 3, numpy and onnxruntime-genai only (no torch, no tokenizers), e.g.
    python3 -m venv /tmp/venv-genai && /tmp/venv-genai/bin/pip install -r scripts/requirements-genai.txt
    /tmp/venv-genai/bin/python tests/genai/check_genai_parity.py [--specdec target/release/specdec]
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def genai_greedy(model, ids, new_tokens):
    """onnxruntime-genai greedy for exactly new_tokens tokens, EOS treated as an ordinary token.

    genai 0.18 cannot switch EOS off (an overlay eos_token_id must lie in [0, vocab) and [] is ignored;
    search min_length masks EOS out of the logits, which changes the greedy choice). So when the
    generator stops on an EOS it picked (get_next_tokens() holds it, get_sequence() leaves it out),
    the EOS is appended with append_tokens and generation goes on. Same logic as
    scripts/make_builder_models.py genai_greedy_no_eos. Returns (ids, eos_at)."""
    import numpy as np
    import onnxruntime_genai as og

    params = og.GeneratorParams(model)
    params.set_search_options(do_sample=False, max_length=len(ids) + new_tokens)
    gen = og.Generator(model, params)
    gen.append_tokens(np.asarray(ids, dtype=np.int32))
    out, eos_at = [], []
    while len(out) < new_tokens:
        if gen.is_done():
            raise RuntimeError(f"genai stopped after {len(out)} tokens without an EOS")
        gen.generate_next_token()
        out.append(int(gen.get_next_tokens()[0]))
        if gen.is_done() and len(out) < new_tokens:
            if gen.token_count() != len(ids) + len(out) - 1:
                raise RuntimeError(f"genai stopped after {len(out)} tokens, sequence length {gen.token_count()}")
            eos_at.append(len(out) - 1)
            gen.append_tokens(np.asarray(out[-1:], dtype=np.int32))
    return out, eos_at


def load_genai(folder):
    import onnxruntime_genai as og

    config = og.Config(str(folder))
    config.clear_providers()  # CPU
    return og.Model(config)


def run_specdec(specdec, folder, ids, new_tokens, threads, timeout):
    """specdec's target-only greedy ids, or an error string."""
    cmd = [str(specdec), "generate", "--target", str(folder), "--prompt-ids", ",".join(map(str, ids)),
           "--max-new-tokens", str(new_tokens), "--json", "--eos-ids", "", "--threads", str(threads)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout} s"
    except OSError as e:
        return f"cannot run {specdec}: {e}"
    if r.returncode != 0:
        lines = (r.stderr.strip() or r.stdout.strip() or "no output").splitlines()
        return f"exit {r.returncode}: {lines[-1][:200]}"
    try:
        return [int(t) for t in json.loads(r.stdout)["tokens"]]
    except (ValueError, KeyError, TypeError) as e:
        return f"unreadable JSON ({e}): {r.stdout[:200]!r}"


def first_diff(a, b):
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=str(ROOT / "models" / "builder"), help="folder of builder folders")
    ap.add_argument("--expectations", help="default: MODELS/expectations.json")
    ap.add_argument("--specdec", default=str(ROOT / "target" / "release" / "specdec"), help="the specdec CLI")
    ap.add_argument("--no-specdec", action="store_true", help="only genai live vs expectations.json")
    ap.add_argument("--only", action="append", help="just this folder name (repeatable)")
    ap.add_argument("--threads", type=int, default=1, help="specdec --threads")
    ap.add_argument("--timeout", type=float, default=120, help="seconds per specdec call")
    args = ap.parse_args()

    try:
        import onnxruntime_genai as og
    except ImportError as e:
        sys.exit(f"check_genai_parity: onnxruntime_genai missing ({e}); pip install -r scripts/requirements-genai.txt")
    models = Path(args.models).resolve()
    exp_path = Path(args.expectations) if args.expectations else models / "expectations.json"
    expectations = json.loads(exp_path.read_text())
    folders = sorted(p.parent.name for p in models.glob("*/genai_config.json"))
    names = sorted(set(folders) | set(expectations))
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            sys.exit(f"check_genai_parity: unknown --only {unknown}; folders: {names}")
        names = [n for n in names if n in args.only]
    specdec = Path(args.specdec)
    print(f"onnxruntime-genai {og.__version__}; folders under {models}; expectations {exp_path}; "
          f"specdec {'skipped' if args.no_specdec else specdec}", flush=True)

    rows = []  # (folder, prompt index, genai vs expected, specdec vs genai, ok, note)
    t0 = time.time()
    for name in names:
        folder = models / name
        if name not in folders:
            rows.append((name, "-", "-", "-", False, "in expectations.json but no genai_config.json"))
            continue
        if name not in expectations:
            rows.append((name, "-", "-", "-", False, "no entry in expectations.json"))
            continue
        try:
            model = load_genai(folder)
        except Exception as e:
            rows.append((name, "-", "error", "-", False, f"genai cannot load: {str(e)[:200]}"))
            continue
        for i, case in enumerate(expectations[name]):
            ids, expected = case["prompt_ids"], case["genai_ids"]
            notes = []
            try:
                live, eos_at = genai_greedy(model, ids, len(expected))
            except Exception as e:
                rows.append((name, i, "error", "-", False, f"genai: {str(e)[:200]}"))
                continue
            if eos_at:
                notes.append(f"genai picked EOS at {eos_at}")
            g_ok = live == expected
            g_col = "same" if g_ok else f"differs at {first_diff(live, expected)}"
            if not g_ok:
                notes.append(f"genai live {live}")
            if args.no_specdec:
                s_ok, s_col = True, "skipped"
            else:
                got = run_specdec(specdec, folder, ids, len(expected), args.threads, args.timeout)
                if isinstance(got, str):
                    s_ok, s_col = False, "error"
                    notes.append(f"specdec: {got}")
                else:
                    s_ok = got == live
                    s_col = "same" if s_ok else f"differs at {first_diff(got, live)}"
                    if not s_ok:
                        notes.append(f"specdec {got}")
            rows.append((name, i, g_col, s_col, g_ok and s_ok, "; ".join(notes)))

    head = ("folder", "prompt", "genai vs expected", "specdec vs genai", "result", "note")
    table = [head] + [(r[0], str(r[1]), r[2], r[3], "pass" if r[4] else "FAIL", r[5]) for r in rows]
    widths = [max(len(t[c]) for t in table) for c in range(5)]
    for t in table:
        print("  ".join(t[c].ljust(widths[c]) for c in range(5)) + "  " + t[5])
    passed = sum(r[4] for r in rows)
    failed = len(rows) - passed
    print(f"({time.time() - t0:.1f} s)")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed or not rows else 0)


if __name__ == "__main__":
    main()
