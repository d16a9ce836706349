#!/usr/bin/env python3
"""The GPU-scale pair's part of scripts/gpu-check.sh: what the cost-scaled 1.6B/0.13B fp16 builder pair
(scripts/make_builder_models.py --stage gpu-pair) does on a device.

    python3 scripts/gpu_scaled_check.py --device cuda:0 [--small] [--out benches/results/gpu-scaled]

  1. check     scripts/gpu_pair_check.py on the device: greedy output = the demo pair's (fp32, CPU),
               speculative = target-only, acceptance at gamma 4
  2. target    specdec target-only tokens/s, device reductions on and off (`generate --samples`,
               the models loaded once; the first sample is a warm-up and not counted)
  3. genai     onnxruntime-genai target-only tokens/s on the same fp16 files, and whether its greedy
               tokens equal specdec's (needs a Python with onnxruntime-genai(-cuda) 0.18:
               $SPECDEC_GENAI_PYTHON, else .venv-genai-cuda/bin/python (device) or .venv-genai/bin/python
               (cpu); skipped, and said so, without one)
  4. bench     `specdec bench` with the pair, gamma 1..8 at T = 0 and 1: measured alpha, c, T(k)/T(1),
               predicted and measured speed-up (its bench.md is copied into the results)
  5. memory    device memory (nvidia-smi; on the CPU the process's resident set) after the first and
               after the 100th of 100 generations in one process

--small shrinks every count (a CPU dry run that proves the script works: `scripts/gpu-check.sh --cpu`).
Writes OUT/summary.json, OUT/summary.md and OUT/bench.{md,json}; exits 1 when a check fails.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENAI = ROOT / ".cache" / "builder-models" / "genai"
TARGET, DRAFT = GENAI / "demo-target-gpu-fp16", GENAI / "demo-draft-gpu-fp16"
# The demo tokenizer's ids of make_builder_models.py's PROMPTS (models/builder/expectations.json).
PROMPT_IDS = [[270, 70, 343, 65, 264, 8, 289, 260],
              [73, 431, 316, 83, 199, 73, 431, 300, 470, 199, 199, 199, 457, 221],
              [259, 382, 287, 323, 413, 291, 330, 8, 280, 78, 8, 266, 14]]


def log(msg):
    print(f"[gpu-scaled {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def specdec_json_lines(cmd, timeout):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))}: exit {r.returncode}: {r.stderr[-1500:]}")
    return [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]


def target_only(bin_, device, samples, new_tokens, reductions, timeout):
    """tokens/s over `samples` greedy generations per prompt after one warm-up, in one process per prompt
    (ONNX Runtime's own thread count, as onnxruntime-genai's default)."""
    tokens, seconds, outs, reduced = 0, 0.0, [], 0
    for ids in PROMPT_IDS:
        cmd = [bin_, "generate", "--target", TARGET, "--device", device, "--max-new-tokens", str(new_tokens),
               "--eos-ids", "", "--prompt-ids", ",".join(map(str, ids)), "--samples", str(samples + 1), "--json",
               "--device-reductions", reductions, "--threads", "0"]
        lines = specdec_json_lines(list(map(str, cmd)), timeout)
        outs.append(lines[-1]["tokens"])
        for l in lines[1:]:
            tokens += l["stats"]["new_tokens"]
            seconds += l["stats"]["total_ms"] / 1000
        reduced = lines[-1].get("rows_reduced", {}).get("target", 0)
    return {"tokens_per_second": tokens / seconds, "new_tokens": tokens, "seconds": seconds,
            "rows_reduced_last_prompt": reduced, "tokens": outs}


def device_memory_mib(device, pid):
    if device == "cpu":
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None
    index = device.split(":")[1] if ":" in device else "0"
    r = subprocess.run(["nvidia-smi", "-i", index, "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                       capture_output=True, text=True)
    try:
        return float(r.stdout.strip().splitlines()[0])
    except (ValueError, IndexError):
        return None


def memory_over_generations(bin_, device, n, new_tokens, timeout):
    """Memory after the first and after the last of n sampled speculative generations in one process."""
    before = device_memory_mib(device, os.getpid()) if device != "cpu" else None
    cmd = [bin_, "generate", "--target", TARGET, "--draft", DRAFT, "--device", device, "--max-new-tokens",
           str(new_tokens), "--temperature", "1", "--top-k", "50", "--prompt-ids", ",".join(map(str, PROMPT_IDS[1])),
           "--samples", str(n), "--json"]
    p = subprocess.Popen(list(map(str, cmd)), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    timer = threading.Timer(timeout, p.kill)
    timer.start()
    seen, first, last = 0, None, None
    for line in p.stdout:
        if not line.startswith("{"):
            continue
        seen += 1
        if seen == 1:
            first = device_memory_mib(device, p.pid)
        if seen == n:
            last = device_memory_mib(device, p.pid)
    p.wait()
    timer.cancel()
    return {"generations": seen, "new_tokens_each": new_tokens, "unit": "MiB " + ("resident set" if device == "cpu" else "GPU used"),
            "before_process": before, "after_first": first, "after_last": last,
            "growth": (last - first) if first is not None and last is not None else None}


def genai_python(device):
    if os.environ.get("SPECDEC_GENAI_PYTHON"):
        return os.environ["SPECDEC_GENAI_PYTHON"]
    venv = ROOT / (".venv-genai" if device == "cpu" else ".venv-genai-cuda") / "bin" / "python"
    return str(venv) if venv.exists() else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--small", action="store_true", help="tiny counts: a dry run")
    ap.add_argument("--bin", default=os.environ.get("SPECDEC_BIN", str(ROOT / "target" / "release" / "specdec")))
    ap.add_argument("--out", default=str(ROOT / "benches" / "results" / "gpu-scaled"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dev, small = args.device, args.small
    for p in (TARGET, DRAFT):
        if not (p / "model.onnx").exists():
            sys.exit(f"{p} missing: run .venv-builder/bin/python scripts/make_builder_models.py --stage gpu-pair "
                     "(or bring .cache/builder-models/genai/demo-{target,draft}-gpu-fp16 here)")
    n_new = 8 if small else 128
    result = {"device": dev, "small": small, "target": str(TARGET.relative_to(ROOT)), "draft": str(DRAFT.relative_to(ROOT)),
              "build_record": "benches/results/gpu-pair-build.json", "steps": {}}
    failed = []

    def step(name, fn):
        t0 = time.time()
        log(f"{name} ...")
        try:
            result["steps"][name] = {"ok": True, **fn()}
        except Exception as e:  # recorded; the other steps still run
            result["steps"][name] = {"ok": False, "error": str(e)[-2000:]}
            failed.append(name)
        result["steps"][name]["wall_seconds"] = round(time.time() - t0, 1)
        log(f"{name}: {'ok' if result['steps'][name]['ok'] else 'FAILED'} in {result['steps'][name]['wall_seconds']} s")
        (out / "summary.json").write_text(json.dumps(result, indent=1) + "\n")

    def check():
        r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_pair_check.py"), "--device", dev,
                            "--new-tokens", str(8 if small else 32), "--seeds", "0", "--bin", args.bin,
                            "--out", str(out / "check")], capture_output=True, text=True, timeout=300)
        d = json.loads((out / "check.json").read_text())
        if r.returncode != 0:
            raise RuntimeError("greedy output differs from the demo pair's: " + r.stdout[-1500:])
        return {"greedy_equal": all(p["target_only_equal"] for p in d["prompts"]),
                "speculative_equal": all(p["speculative_equal_target_only"] for p in d["prompts"]),
                "acceptance_t0": d["acceptance"]}

    samples = 1 if small else 3
    step("target-reductions-on", lambda: target_only(args.bin, dev, samples, n_new, "on", 300))
    step("target-reductions-off", lambda: target_only(args.bin, dev, samples, n_new, "off", 300))
    on, off = result["steps"]["target-reductions-on"], result["steps"]["target-reductions-off"]
    if on["ok"] and off["ok"] and on["tokens"] != off["tokens"]:
        failed.append("reductions changed the greedy tokens")
        on["ok"] = False

    def genai():
        py = genai_python(dev)
        if not py:
            return {"skipped": "no Python with onnxruntime-genai (set SPECDEC_GENAI_PYTHON, or make .venv-genai-cuda "
                               "with pip install onnxruntime-genai-cuda==0.18.0)"}
        cmd = [py, str(ROOT / "scripts" / "gpu_pair_genai.py"), str(TARGET), "--new-tokens", str(n_new),
               "--device", "cpu" if dev == "cpu" else "cuda", "--reps", str(samples)]
        for ids in PROMPT_IDS:
            cmd += ["--prompt-ids", ",".join(map(str, ids))]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise RuntimeError(f"genai: exit {r.returncode}: {r.stderr[-1500:]}")
        g = json.loads(r.stdout.strip().splitlines()[-1])
        if off["ok"]:
            g["tokens_equal_specdec"] = g["tokens"] == off["tokens"]
            g["specdec_over_genai"] = off["tokens_per_second"] / g["tokens_per_second"]
        return g

    step("genai-target-only", genai)
    step("check", check)

    def bench():
        prompts = ROOT / "benches" / "prompts.jsonl"
        cmd = [args.bin, "bench", "--target", TARGET, "--draft", DRAFT, "--device", dev, "--variants", "target,gammas",
               "--temperatures", "0,1", "--repeats", "1", "--out", out / "bench-run"]
        if small:
            tmp = out / "bench-prompts.jsonl"
            tmp.write_text(prompts.read_text().splitlines()[0] + "\n")
            cmd += ["--prompts", tmp, "--gammas", "1-2", "--max-new-tokens", "4", "--cost-reps", "1"]
        else:
            cmd += ["--prompts", prompts, "--gammas", "1-8", "--max-new-tokens", "64"]
        r = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=420)
        if r.returncode != 0:
            raise RuntimeError(f"bench: exit {r.returncode}: {r.stderr[-1500:]}")
        for f in ["bench.md", "bench.json"]:
            shutil.copy(out / "bench-run" / f, out / f)
        shutil.rmtree(out / "bench-run", ignore_errors=True)
        (out / "bench-prompts.jsonl").unlink(missing_ok=True)
        b = json.loads((out / "bench.json").read_text())
        rows = [{k: row.get(k) for k in ["temperature", "variant", "gamma", "alpha", "predicted_speedup", "measured_over_predicted"]}
                | {"tokens_per_second": row["tokens_per_second"]["median"], "speedup": row["speedup"]["median"]}
                for row in b["rows"]]
        return {"c": b["c"], "verification_cost": b["verification_cost"], "target_call_seconds_k1":
                b["target_call_seconds"][0], "rows": rows}

    step("bench", bench)
    step("memory", lambda: memory_over_generations(args.bin, dev, 5 if small else 100, 8 if small else 32, 400))

    md = [f"# GPU-scale pair on {dev}{' (small dry run: counts too small to quote)' if small else ''}", "",
          *(["A dry run proves the script, not a speed: a few tokens per prompt on a shared CPU, with fp16 graphs made",
             "for CUDA (which ONNX Runtime's CPU provider runs through inserted casts).", ""] if small else []),
          "Written by scripts/gpu_scaled_check.py (scripts/gpu-check.sh). The pair: the demo target padded into a",
          "Llama-3.2-1B body with a 151,936-entry vocabulary (1.6B parameters) and the demo draft padded to 0.13B,",
          "computing the demo pair's functions (benches/results/gpu-pair-build.json); builder fp16 exports.", ""]
    s = result["steps"]
    for name, st in s.items():
        md.append(f"- **{name}**: {'ok' if st['ok'] else 'FAILED'} ({st['wall_seconds']} s)"
                  + (f": {st['error'][:300]}" if not st["ok"] else ""))
    if s["target-reductions-on"]["ok"] and s["target-reductions-off"]["ok"]:
        md += ["", "| target-only, greedy | tokens/s |", "|---|---|",
               f"| specdec, device reductions on | {s['target-reductions-on']['tokens_per_second']:.1f} |",
               f"| specdec, device reductions off | {s['target-reductions-off']['tokens_per_second']:.1f} |"]
        g = s.get("genai-target-only", {})
        if g.get("ok") and "tokens_per_second" in g:
            md.append(f"| {g['engine']} | {g['tokens_per_second']:.1f} (tokens equal specdec's: {g.get('tokens_equal_specdec')}) |")
        elif g.get("skipped"):
            md.append(f"| onnxruntime-genai | skipped: {g['skipped']} |")
    if s.get("check", {}).get("ok"):
        md += ["", f"Greedy output = the demo pair's: {s['check']['greedy_equal']}; speculative = target-only: "
               f"{s['check']['speculative_equal']}."]
    m = s.get("memory", {})
    if m.get("ok"):
        md += ["", f"Memory ({m['unit']}): before the process {m['before_process']}, after generation 1 {m['after_first']}, "
               f"after generation {m['generations']} {m['after_last']} (growth {m['growth']})."]
    if (out / "bench.md").exists():
        md += ["", "## specdec bench (alpha, c, T(k)/T(1), predicted and measured speed-up)", "",
               (out / "bench.md").read_text()]
    (out / "summary.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    if failed:
        log(f"FAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
