#!/usr/bin/env python3
"""Draft-length policies simulated on an acceptance trace, under a benchmark's measured costs.

    cargo run --release --example acceptance_trace > trace.txt
    python3 scripts/policy_sim.py trace.txt target/bench/bench.json

Each traced sequence is decoded again in rounds: a proposal at position t is accepted with
probability β_t (Σ min(p, q) there; 0 or 1 at T = 0), a round costs its draft steps (the first
priced cold, the rest warm) plus T(k) for its k verified tokens, all taken from bench.json. It
prints the speed-up over target-only (T₀ per token) for fixed γ = 1..8, `auto` as the closed form
alone (γ from α̂ each round), `auto` with its within-round stopping (a Python twin of
src/policy.rs), the same carrying its record from sequence to sequence, and an oracle that stops
knowing every β exactly (what no policy can beat with the same costs). Acceptance outcomes are
random: several passes with a fixed seed.
"""
import collections
import json
import random
import sys

BUCKETS, BUCKET_PRIOR, MEMORY_WEIGHT, MAX_GAMMA, DECAY = 5, 3.0, 30.0, 16, 0.99
PROBE_FIRST, PROBE_MAX = 8, 32


def load(trace_path, bench_path):
    seqs = collections.defaultdict(list)
    with open(trace_path) as f:
        for line in f:
            t, p, s, _, beta, conf = line.split()
            seqs[(float(t), int(p), int(s))].append((float(beta), float(conf)))
    bench = json.load(open(bench_path))
    t0 = bench["target_only_step_seconds"]
    verify = [None] + [v * t0 for v in bench["verification_cost"]]
    return seqs, t0, bench["draft_step_seconds"]["cold"], bench["draft_step_seconds"]["warm"], verify


class Sim:
    def __init__(self, t0, cold, warm, verify):
        self.t0, self.cold, self.warm, self.verify = t0, cold, warm, verify

    def T(self, k):
        if k < len(self.verify):
            return self.verify[k]
        slope = self.verify[-1] - self.verify[-2]
        return self.verify[-1] + slope * (k - len(self.verify) + 1)

    def draft_time(self, g):
        return 0.0 if g == 0 else self.cold + (g - 1) * self.warm

    def best(self, alpha):
        a = min(max(alpha, 0.0), 0.999)
        rate = lambda g: (1 - a ** (g + 1)) / (1 - a) / (self.draft_time(g) + self.T(g + 1))
        return max((rate(g), g) for g in range(MAX_GAMMA + 1))


class Controller:
    def __init__(self, carry=None):
        self.acc, self.ver = 3.0, 6.0
        self.bb, self.bc = [0.0] * BUCKETS, [0.0] * BUCKETS
        self.idle, self.probe_every = 0, PROBE_FIRST
        if carry:
            self.acc, self.ver, self.bb, self.bc = carry

    def alpha(self):
        return self.acc / self.ver

    def choose(self, sim):
        """(r*, γ) for the next round, γ = 0 with probes of one proposal now and then."""
        rate, g = sim.best(self.alpha())
        if g > 0:
            self.idle, self.probe_every = 0, PROBE_FIRST
            return rate, g
        self.idle += 1
        if self.idle >= self.probe_every:
            self.idle, self.probe_every = 0, min(self.probe_every * 2, PROBE_MAX)
            return 0.0, 1
        return rate, 0

    def bucket_alpha(self, conf, a):
        b = min(int(conf * BUCKETS), BUCKETS - 1)
        return (self.bb[b] + BUCKET_PRIOR * a) / (self.bc[b] + BUCKET_PRIOR)

    def record(self, beta, conf):
        self.acc, self.ver = self.acc * DECAY + beta, self.ver * DECAY + 1
        b = min(int(conf * BUCKETS), BUCKETS - 1)
        self.bb[b], self.bc[b] = self.bb[b] * DECAY + beta, self.bc[b] * DECAY + 1

    def snapshot(self):
        w = min(1.0, MEMORY_WEIGHT / self.ver)
        return (self.acc * w, self.ver * w, [x * w for x in self.bb], [x * w for x in self.bc])


def decode(sim, seq, mode, rng, ctl=None, gamma=0):
    """Seconds to emit len(seq) tokens under `mode`: fixed, auto, stop or oracle."""
    t, n, time = 0, len(seq), 0.0
    while t < n:
        if mode == "fixed":
            g, rate = gamma, 0.0
        else:
            rate, g = ctl.choose(sim)
        stopping = mode in ("stop", "oracle") and g > 0 and rate > 0
        if stopping:
            g = MAX_GAMMA
        g = min(g, n - t - 1)
        drafts, steps, P = [], 0, 1.0
        a = min(max(ctl.alpha(), 0.0), 0.999) if ctl else 0.0
        for j in range(1, g + 1):
            steps += 1
            beta, conf = seq[t + j - 1]
            if stopping:
                w = P * (beta if mode == "oracle" else ctl.bucket_alpha(conf, a))
                value = lambda d, pl, m: sum(pl * a ** i for i in range(1, m + 1)) - rate * (m * sim.warm + sim.T(d + m + 1))
                drop = value(j - 1, P, 0)
                keep, more = max((w + value(j, w, m), m) for m in range(0, MAX_GAMMA - j + 1))
                if drop > keep:
                    break
                drafts.append((beta, conf))
                P = w
                if more == 0:
                    break
            else:
                drafts.append((beta, conf))
        time += sim.draft_time(steps) + sim.T(len(drafts) + 1)
        accepted = 0
        for beta, conf in drafts:
            if ctl:
                ctl.record(beta, conf)
            if rng.random() < beta:
                accepted += 1
            else:
                break
        t += accepted + 1
    return time


def speedup(sim, seqs, temperature, mode, passes, gamma=0, carry=False):
    rng = random.Random(1)
    tokens, seconds, memory = 0, 0.0, None
    for key, seq in seqs.items():
        if key[0] != temperature:
            continue
        for _ in range(passes):
            ctl = None if mode == "fixed" else Controller(memory if carry else None)
            seconds += decode(sim, seq, mode, rng, ctl, gamma)
            tokens += len(seq)
            if ctl:
                memory = ctl.snapshot()
    return tokens / seconds * sim.t0


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    seqs, t0, cold, warm, verify = load(sys.argv[1], sys.argv[2])
    sim = Sim(t0, cold, warm, verify)
    print("| T | " + " | ".join(f"γ={g}" for g in range(1, 9)) + " | auto (closed form) | auto (stopping) | auto (stopping + memory) | oracle stopping + memory |")
    print("|---" * 13 + "|")
    for temperature in sorted({k[0] for k in seqs}):
        passes = 1 if temperature == 0 else 5
        row = [speedup(sim, seqs, temperature, "fixed", passes, gamma=g) for g in range(1, 9)]
        row += [speedup(sim, seqs, temperature, m, passes, carry=c) for m, c in (("auto", False), ("stop", False), ("stop", True), ("oracle", True))]
        print(f"| {temperature:g} | " + " | ".join(f"{x:.2f}x" for x in row) + " |")


if __name__ == "__main__":
    main()
