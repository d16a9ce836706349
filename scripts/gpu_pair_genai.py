#!/usr/bin/env python3
"""Target-only greedy tokens/s of onnxruntime-genai on a builder folder, for scripts/gpu_scaled_check.py.

    PYTHON scripts/gpu_pair_genai.py FOLDER --prompt-ids 1,2,3 [--prompt-ids ...] --new-tokens N
                                     [--device cpu|cuda] [--reps R]

PYTHON has onnxruntime-genai 0.18 (onnxruntime-genai-cuda for --device cuda). Each prompt runs R times
after one warm-up; the time runs from creating the generator to the last token (prefill included).
genai cannot switch EOS off, so search min_length = max_length keeps it generating (under greedy that
changes nothing unless EOS is the argmax). Prints one JSON object: tokens/s, seconds, and each
prompt's tokens (to compare with specdec's).
"""
import argparse
import json
import time

import numpy as np
import onnxruntime_genai as og


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    ap.add_argument("--prompt-ids", action="append", required=True)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()
    config = og.Config(args.folder)
    if args.device == "cpu":
        config.clear_providers()
    else:  # the builder's genai_config.json names cuda already; say it again in case it does not
        config.clear_providers()
        config.append_provider("cuda")
    model = og.Model(config)
    prompts = [[int(t) for t in p.split(",")] for p in args.prompt_ids]

    def one(ids):
        params = og.GeneratorParams(model)
        n = len(ids) + args.new_tokens
        params.set_search_options(do_sample=False, max_length=n, min_length=n)
        t0 = time.perf_counter()
        gen = og.Generator(model, params)
        gen.append_tokens(np.asarray(ids, dtype=np.int32))
        while not gen.is_done():
            gen.generate_next_token()
        seconds = time.perf_counter() - t0
        return [int(t) for t in gen.get_sequence(0)][len(ids):], seconds

    for ids in prompts:  # warm-up
        one(ids)
    total_tokens, total_seconds, tokens = 0, 0.0, []
    for _ in range(args.reps):
        tokens = []
        for ids in prompts:
            out, s = one(ids)
            tokens.append(out)
            total_tokens += len(out)
            total_seconds += s
    print(json.dumps({"engine": f"onnxruntime-genai {og.__version__}", "device": args.device,
                      "tokens_per_second": total_tokens / total_seconds, "seconds": total_seconds,
                      "new_tokens": total_tokens, "reps": args.reps, "tokens": tokens}))


if __name__ == "__main__":
    main()
