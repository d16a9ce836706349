#!/usr/bin/env python3
"""Check the GPU-scale pair (scripts/make_builder_models.py --stage gpu-pair) against the demo pair it
was padded from, through specdec itself: greedy target-only output token for token, speculative output
and acceptance at gamma 4, greedy and at temperature 1 (same seeds). Runs on any device specdec runs
on (default the CPU, where the 1.6B fp16 target takes about half a second a token on one thread).

    python3 scripts/gpu_pair_check.py [--device cpu|cuda] [--new-tokens 32] [--out benches/results/gpu-pair-check]

Writes OUT.json and OUT.md; exits 1 when a greedy target-only output differs from the original's (the
fp16 graphs against the fp32 original could differ at a near-tie: the position is then recorded).
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "builder-models" / "genai"
PROMPTS = ["def main():\n    ", "import os\nimport sys\n\n\nclass ", "    for i in range(len(self."]


def run(bin_, target, draft, prompt, new_tokens, device, temperature=0.0, seed=0, gamma=4):
    cmd = [str(bin_), "generate", "--target", str(target), "--max-new-tokens", str(new_tokens), "--json",
           "--threads", "1", "--device", device, "--temperature", str(temperature), "--seed", str(seed),
           "--prompt", prompt]
    if draft:
        cmd += ["--draft", str(draft), "--gamma", str(gamma)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)}: exit {r.returncode}\n{r.stderr[-2000:]}")
    return json.loads([l for l in r.stdout.splitlines() if l.startswith("{")][-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--seeds", type=int, default=3, help="seeds at temperature 1 per prompt")
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "specdec"))
    ap.add_argument("--out", default=str(ROOT / "benches" / "results" / "gpu-pair-check"))
    args = ap.parse_args()
    orig = (ROOT / "models" / "demo" / "target", ROOT / "models" / "demo" / "draft")
    big = (CACHE / "demo-target-gpu-fp16", CACHE / "demo-draft-gpu-fp16")
    for p in big:
        if not p.exists():
            sys.exit(f"{p} missing: run .venv-builder/bin/python scripts/make_builder_models.py --stage gpu-pair")
    rows, bad = [], 0
    acc = {k: [0, 0] for k in ["orig_t0", "big_t0", "orig_t1", "big_t1"]}
    for prompt in PROMPTS:
        a = run(args.bin, orig[0], None, prompt, args.new_tokens, "cpu")
        b = run(args.bin, big[0], None, prompt, args.new_tokens, args.device)
        sa = run(args.bin, orig[0], orig[1], prompt, args.new_tokens, "cpu")
        sb = run(args.bin, big[0], big[1], prompt, args.new_tokens, args.device)
        diff = next((i for i, (x, y) in enumerate(zip(a["tokens"], b["tokens"])) if x != y), None)
        bad += diff is not None or len(a["tokens"]) != len(b["tokens"])
        row = {"prompt": prompt, "target_only_equal": a["tokens"] == b["tokens"], "first_difference": diff,
               "speculative_equal_target_only": sb["tokens"] == b["tokens"] and sa["tokens"] == a["tokens"],
               "orig_acceptance_t0": sa["stats"]["acceptance_rate"], "scaled_acceptance_t0": sb["stats"]["acceptance_rate"],
               "orig_tokens": a["tokens"], "scaled_tokens": b["tokens"]}
        for k, s in [("orig_t0", sa), ("big_t0", sb)]:
            acc[k][0] += s["stats"]["accepted"]
            acc[k][1] += s["stats"]["drafted"]
        same_sampled = 0
        for seed in range(args.seeds):
            ta = run(args.bin, orig[0], orig[1], prompt, args.new_tokens, "cpu", temperature=1.0, seed=seed)
            tb = run(args.bin, big[0], big[1], prompt, args.new_tokens, args.device, temperature=1.0, seed=seed)
            same_sampled += ta["tokens"] == tb["tokens"]
            for k, s in [("orig_t1", ta), ("big_t1", tb)]:
                acc[k][0] += s["stats"]["accepted"]
                acc[k][1] += s["stats"]["drafted"]
        row["t1_same_tokens_for_same_seed"] = f"{same_sampled}/{args.seeds}"
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if not k.endswith("_tokens")}), flush=True)
    alpha = {k: (v[0] / v[1] if v[1] else float("nan"), v[0], v[1]) for k, v in acc.items()}
    result = {"device": args.device, "new_tokens": args.new_tokens, "gamma": 4, "seeds_at_t1": args.seeds,
              "prompts": rows,
              "acceptance": {k: {"rate": r, "accepted": x, "drafted": n} for k, (r, x, n) in alpha.items()}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")

    def fmt(k):
        return f"{alpha[k][0]:.3f} ({alpha[k][1]}/{alpha[k][2]})"

    md = [f"# GPU-scale pair against the demo pair ({args.device}, {args.new_tokens} new tokens, gamma 4)", "",
          "Written by scripts/gpu_pair_check.py. Original: models/demo/{target,draft} (fp32, Optimum). Scaled:",
          "the builder fp16 exports of make_builder_models.py --stage gpu-pair (1.6B target, 0.13B draft,",
          "vocabulary padded to 151,936; build record in gpu-pair-build.json).", "",
          "| prompt | greedy target-only equal | first difference | speculative = target-only | same T=1 tokens per seed |",
          "|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {json.dumps(r['prompt'])} | {r['target_only_equal']} | {r['first_difference']} | "
                  f"{r['speculative_equal_target_only']} | {r['t1_same_tokens_for_same_seed']} |")
    md += ["", "| acceptance (drafted tokens accepted) | original pair | scaled pair |", "|---|---|---|",
           f"| T=0 | {fmt('orig_t0')} | {fmt('big_t0')} |", f"| T=1 | {fmt('orig_t1')} | {fmt('big_t1')} |", ""]
    out.with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
