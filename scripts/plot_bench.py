#!/usr/bin/env python3
"""Plot a `specdec bench` result: speed-up over target-only against gamma, measured (median with
min-max bars) beside the prediction from the measured alpha, c and verification cost, one panel
per temperature, with the auto policy as a horizontal band. Usage:
    plot_bench.py target/bench/bench.json target/bench/speedup.png
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src, dst):
    data = json.load(open(src))
    rows = data["rows"]
    temps = sorted({r["temperature"] for r in rows})
    fig, axes = plt.subplots(1, len(temps), figsize=(5.5 * len(temps), 4.2), squeeze=False, sharey=True)
    for ax, t in zip(axes[0], temps):
        fixed = [r for r in rows if r["temperature"] == t and r["predicted_speedup"] is not None]
        fixed.sort(key=lambda r: r["gamma"])
        g = [r["gamma"] for r in fixed]
        med = [r["speedup"]["median"] for r in fixed]
        lo = [r["speedup"]["median"] - r["speedup"]["min"] for r in fixed]
        hi = [r["speedup"]["max"] - r["speedup"]["median"] for r in fixed]
        ax.errorbar(g, med, yerr=[lo, hi], fmt="o-", capsize=3, label="measured (median, min-max)")
        ax.plot(g, [r["predicted_speedup"] for r in fixed], "s--", label="predicted (measured α, c, T(k))")
        for r in rows:
            if r["temperature"] == t and r["policy"] == "Auto" and "model" in r["variant"]:
                ax.axhspan(r["speedup"]["min"], r["speedup"]["max"], color="tab:green", alpha=0.15)
                ax.axhline(r["speedup"]["median"], color="tab:green", label="auto (median, min-max)")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_title(f"temperature {t:g}")
        ax.set_xlabel("draft length γ")
        ax.set_xticks(g)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("speed-up over target-only")
    axes[0][0].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"specdec bench: {data['prompts']} prompts × {data['new_tokens_per_prompt']} tokens, {data['repetitions']} repetitions, {data['cpus']} CPUs", fontsize=10)
    fig.tight_layout()
    fig.savefig(dst, dpi=110)
    print(f"wrote {dst}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
