#!/usr/bin/env python3
"""Make specdec's own models: a tokenizer, tiny fixtures of several architectures, and a demo pair.

No pretrained weights can be downloaded here, so everything is trained from the Python standard
library's sources (present on any machine with Python 3). Pinned versions: scripts/requirements-models.txt.

Stages (run in order by `all`; each is resumable and skips work whose output exists):
  tokenizer  byte-level BPE, vocab 512, on the corpus
  fixtures   tiny Llama (GQA), Qwen2, GPT-2 targets and a smaller Llama draft, briefly trained,
             plus an untrained model with another vocabulary (for mismatch tests)
  demo       the demo pair: ~10M-parameter Llama target, ~0.7M Llama draft (long: background it)
  distill    the shipped demo draft: hf/demo-draft fine-tuned on KL(p_target || q_draft) at
             temperature 1 for 16M tokens (~22 minutes on 2 cores), written to hf/demo-draft-kd.
             It raises the acceptance rate at T = 1 (validation Σ min(p, q)) from 0.58 to 0.72 at the
             same step cost; plain training for as long reaches 0.68. Export one model alone with
             `--stage export --only demo-draft-kd --to target/kd-draft` (models/ untouched)
  export     optimum-cli export onnx --task text-generation-with-past into models/

Usage: python scripts/make_models.py [--stage all|tokenizer|fixtures|demo|distill|export] [--work DIR]
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EOS = "<|endoftext|>"
VOCAB = 512
SEED = 1234

# Architectures of the fixtures. Tiny, but trained a little so that their distributions are peaked
# (random weights give near-uniform logits whose argmax ties would make greedy tests meaningless).
FIXTURES = {
    "llama": dict(arch="llama", hidden=64, layers=2, heads=4, kv_heads=2, inter=172, ctx=512, steps=300),
    "qwen2": dict(arch="qwen2", hidden=64, layers=2, heads=4, kv_heads=2, inter=172, ctx=512, steps=300),
    "gpt2": dict(arch="gpt2", hidden=64, layers=2, heads=4, kv_heads=4, inter=256, ctx=512, steps=300),
    "draft": dict(arch="llama", hidden=32, layers=1, heads=2, kv_heads=1, inter=86, ctx=512, steps=300),
}
# The demo pair. A 3M target costs only ~3.6x its draft per step on 2 cores and shows no gain;
# ~10M against a ~0.7M draft leaves room for speculation to pay off.
DEMO = {
    "draft": dict(arch="llama", hidden=128, layers=3, heads=4, kv_heads=2, inter=384, ctx=1024),
    "target": dict(arch="llama", hidden=384, layers=6, heads=6, kv_heads=2, inter=1024, ctx=1024),
}


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def corpus_files():
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(
        p for p in stdlib.rglob("*.py")
        if "site-packages" not in p.parts and "dist-packages" not in p.parts
    )
    if not files:
        sys.exit(f"no Python sources under {stdlib}")
    return files


def read_corpus():
    """Documents of the corpus, split into train and validation (every 50th file)."""
    train, valid = [], []
    for i, p in enumerate(corpus_files()):
        text = p.read_bytes().decode("utf-8", errors="replace")
        (valid if i % 50 == 0 else train).append(text)
    return train, valid


def make_tokenizer(work):
    out = work / "tokenizer.json"
    if out.exists():
        return
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    train, _ = read_corpus()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(train, trainer=trainer)
    assert tok.get_vocab_size() == VOCAB and tok.token_to_id(EOS) == 0, tok.get_vocab_size()
    tok.save(str(out))
    log(f"tokenizer: vocab {tok.get_vocab_size()} -> {out}")


def token_arrays(work):
    """The corpus as token ids (cached), documents separated by EOS."""
    import numpy as np
    cache = work / "tokens.npz"
    if cache.exists():
        z = np.load(cache)
        return z["train"], z["valid"]
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(work / "tokenizer.json"))
    eos = tok.token_to_id(EOS)
    train, valid = read_corpus()

    def encode(docs):
        ids = []
        for enc in tok.encode_batch(docs):
            ids.extend(enc.ids)
            ids.append(eos)
        return np.asarray(ids, dtype=np.int32)

    t, v = encode(train), encode(valid)
    np.savez(cache, train=t, valid=v)
    log(f"corpus: {len(t)} train tokens, {len(v)} validation tokens")
    return t, v


def build_model(spec, vocab=VOCAB):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(SEED)
    eos = 0  # EOS is the first special token, so id 0
    if spec["arch"] == "gpt2":
        cfg = GPT2Config(vocab_size=vocab, n_embd=spec["hidden"], n_layer=spec["layers"], n_head=spec["heads"],
                         n_inner=spec["inter"], n_positions=spec["ctx"], bos_token_id=eos, eos_token_id=eos)
        return GPT2LMHeadModel(cfg)
    common = dict(vocab_size=vocab, hidden_size=spec["hidden"], num_hidden_layers=spec["layers"],
                  num_attention_heads=spec["heads"], num_key_value_heads=spec["kv_heads"],
                  intermediate_size=spec["inter"], max_position_embeddings=spec["ctx"],
                  bos_token_id=eos, eos_token_id=eos, tie_word_embeddings=False)
    if spec["arch"] == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(**common))
    return LlamaForCausalLM(LlamaConfig(**common))


def evaluate(model, data, seq, batches=20):
    import numpy as np
    import torch
    rng = np.random.default_rng(0)
    model.eval()
    losses = []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for _ in range(batches):
            starts = rng.integers(0, len(data) - seq - 1, size=8)
            x = torch.from_numpy(np.stack([data[s:s + seq + 1] for s in starts]).astype("int64"))
            losses.append(model(input_ids=x[:, :-1], labels=x[:, :-1].clone()).loss.item())
    model.train()
    return float(np.mean(losses))


def random_batch(ids, seed, batch, seq):
    """`batch` windows of `seq` tokens at random offsets of `ids`, drawn from `seed`."""
    import numpy as np
    import torch
    starts = np.random.default_rng(seed).integers(0, len(ids) - seq - 1, size=batch)
    return torch.from_numpy(np.stack([ids[s:s + seq] for s in starts]).astype("int64"))


def set_lr(opt, lr, step, steps, warmup):
    """Linear warm-up, then cosine decay to 5% of `lr`."""
    scale = min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, step / steps)))
    for g in opt.param_groups:
        g["lr"] = lr * max(scale, 0.05)


def optimizer_step(model, opt, loss):
    """Backward, gradient norm clipped at 1, one optimizer step."""
    import torch
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()


def train(name, spec, work, steps, batch, seq, lr):
    """Train with bf16 autocast, checkpointing so a stopped run resumes where it left off."""
    import numpy as np
    import torch

    out = work / "hf" / name
    if (out / "config.json").exists():
        return json.loads((out / "train_log.json").read_text())
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    train_ids, valid_ids = token_arrays(work)
    model = build_model(spec)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    ckpt = work / "ckpt" / f"{name}.pt"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    step = 0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
        log(f"{name}: resumed at step {step}")
    log(f"{name}: {params / 1e6:.2f}M parameters, {steps} steps of {batch}x{seq} tokens")
    warmup = max(1, steps // 20)
    t0 = time.time()
    while step < steps:
        x = random_batch(train_ids, SEED + step, batch, seq)
        set_lr(opt, lr, step, steps, warmup)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=x, labels=x.clone()).loss
        optimizer_step(model, opt, loss)
        step += 1
        if step % 50 == 0 or step == steps:
            rate = (step * batch * seq) / max(1e-9, time.time() - t0)
            log(f"{name}: step {step}/{steps} loss {loss.item():.3f} ({rate:.0f} tok/s)")
        if step % 200 == 0 or step == steps:
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step}, ckpt)
    valid_loss = evaluate(model, valid_ids, seq)
    info = {"name": name, "parameters": params, "steps": steps, "tokens": steps * batch * seq,
            "valid_loss": round(valid_loss, 4), "train_seconds": round(time.time() - t0, 1)}
    save_hf(model, out, work)
    (out / "train_log.json").write_text(json.dumps(info, indent=1))
    log(f"{name}: validation loss {valid_loss:.3f}")
    return info


def pair_metrics(student, teacher, data, seq, batches=20):
    """Held-out agreement of a draft with the target, per position: cross-entropy on the data,
    KL(p || q), the T = 1 acceptance probability sum_x min(p, q) and the greedy (argmax) agreement."""
    import numpy as np
    import torch
    rng = np.random.default_rng(0)
    was_training = student.training
    student.eval()
    sums = dict(ce=0.0, kl=0.0, accept_t1=0.0, greedy_agree=0.0)
    n = 0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for _ in range(batches):
            starts = rng.integers(0, len(data) - seq - 1, size=8)
            x = torch.from_numpy(np.stack([data[s:s + seq + 1] for s in starts]).astype("int64"))
            logp = torch.log_softmax(teacher(input_ids=x[:, :-1]).logits.float(), -1)
            logq = torch.log_softmax(student(input_ids=x[:, :-1]).logits.float(), -1)
            p = logp.exp()
            sums["ce"] += -logq.gather(-1, x[:, 1:, None]).sum().item()
            sums["kl"] += (p * (logp - logq)).sum().item()
            sums["accept_t1"] += torch.minimum(p, logq.exp()).sum().item()
            sums["greedy_agree"] += (logp.argmax(-1) == logq.argmax(-1)).sum().item()
            n += x[:, 1:].numel()
    student.train(was_training)
    return {k: round(v / n, 4) for k, v in sums.items()}


def distill(work, tokens, batch, seq, lr, ce_weight):
    """Fine-tune the demo draft towards the demo target: loss KL(p_target || q_draft) at T = 1 on
    every position (+ ce_weight x cross-entropy on the data), target logits computed on the fly.
    Same conventions as train(): bf16 autocast, cosine lr, a checkpoint every 200 steps."""
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    name = "demo-draft-kd"
    out = work / "hf" / name
    if (out / "config.json").exists():
        return json.loads((out / "train_log.json").read_text())
    for src in ["demo-draft", "demo-target"]:
        if not (work / "hf" / src / "config.json").exists():
            sys.exit(f"distill: {work / 'hf' / src} missing (run --stage demo first)")
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    torch.manual_seed(SEED)
    train_ids, valid_ids = token_arrays(work)
    teacher = AutoModelForCausalLM.from_pretrained(work / "hf" / "demo-target", dtype=torch.float32).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    model = AutoModelForCausalLM.from_pretrained(work / "hf" / "demo-draft", dtype=torch.float32)
    model.train()
    params = sum(p.numel() for p in model.parameters())
    steps = max(1, tokens // (batch * seq))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    ckpt = work / "ckpt" / f"{name}.pt"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    step, before, elapsed = 0, None, 0.0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, before, elapsed = state["step"], state["before"], state["seconds"]
        log(f"{name}: resumed at step {step}")
    if before is None:
        before = pair_metrics(model, teacher, valid_ids, seq)
        log(f"{name}: before (demo-draft) {before}")
    log(f"{name}: {params / 1e6:.2f}M parameters from demo-draft, {steps} steps of {batch}x{seq} tokens, "
        f"lr {lr}, ce weight {ce_weight}")
    warmup = max(1, steps // 20)
    t0 = time.time() - elapsed
    t_start, step0 = time.time(), step
    while step < steps:
        # Other batches than the draft's own training saw (train() seeds with SEED + step).
        x = random_batch(train_ids, SEED + 1_000_003 + step, batch, seq)
        set_lr(opt, lr, step, steps, warmup)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            logp = torch.log_softmax(teacher(input_ids=x).logits.float(), -1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(input_ids=x).logits
        logq = torch.log_softmax(logits.float(), -1)
        kl = (logp.exp() * (logp - logq)).sum(-1).mean()
        loss = kl
        if ce_weight > 0:
            ce = -logq[:, :-1].gather(-1, x[:, 1:, None]).mean()
            loss = kl + ce_weight * ce
        optimizer_step(model, opt, loss)
        step += 1
        if step % 25 == 0 or step == steps:
            rate = ((step - step0) * batch * seq) / max(1e-9, time.time() - t_start)
            log(f"{name}: step {step}/{steps} kl {kl.item():.4f} loss {loss.item():.4f} ({rate:.0f} tok/s)")
        if step % 200 == 0 or step == steps:
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "before": before,
                        "seconds": time.time() - t0}, ckpt)
    seconds = time.time() - t0
    after = pair_metrics(model, teacher, valid_ids, seq)
    info = {"name": name, "parameters": params, "init": "demo-draft", "teacher": "demo-target",
            "loss": f"KL(p_target || q_draft) at T=1 + {ce_weight} x CE", "lr": lr, "steps": steps,
            "tokens": steps * batch * seq, "valid_loss": after["ce"], "train_seconds": round(seconds, 1),
            "valid_before": before, "valid_after": after}
    save_hf(model, out, work)
    (out / "train_log.json").write_text(json.dumps(info, indent=1))
    log(f"{name}: before {before}")
    log(f"{name}: after  {after}")
    return info


def save_hf(model, out, work):
    from transformers import GenerationConfig, PreTrainedTokenizerFast
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    GenerationConfig(bos_token_id=0, eos_token_id=0).save_pretrained(out)
    tok = PreTrainedTokenizerFast(tokenizer_file=str(work / "tokenizer.json"), eos_token=EOS, bos_token=EOS)
    tok.save_pretrained(out)


def make_fixtures(work):
    for name, spec in FIXTURES.items():
        train(name, spec, work, steps=spec["steps"], batch=16, seq=128, lr=3e-3)
    # A decoder with a different vocabulary: the engine must refuse it as a draft.
    out = work / "hf" / "vocab600"
    if not (out / "config.json").exists():
        model = build_model(dict(FIXTURES["draft"]), vocab=600)
        save_hf(model, out, work)
        (out / "train_log.json").write_text(json.dumps({"name": "vocab600", "untrained": True}))


def make_demo(work, target_tokens):
    batch, seq = 32, 256
    train("demo-draft", DEMO["draft"], work, steps=max(1, 10_000_000 // (batch * seq)), batch=batch, seq=seq, lr=2e-3)
    train("demo-target", DEMO["target"], work, steps=max(1, target_tokens // (batch * seq)), batch=batch, seq=seq,
          lr=1e-3)


def export_one(work, name, final):
    """Export hf/NAME with Optimum (cached in onnx/NAME) and copy what the engine reads into final/."""
    src = work / "hf" / name
    tmp = work / "onnx" / name
    onnx = tmp / "model.onnx"
    if not onnx.exists() or onnx.stat().st_mtime < (src / "model.safetensors").stat().st_mtime:
        shutil.rmtree(tmp, ignore_errors=True)
        cli = Path(sys.executable).parent / "optimum-cli"  # the running venv's, even if not activated
        subprocess.run([str(cli) if cli.exists() else "optimum-cli", "export", "onnx", "--model", str(src), "--task",
                        "text-generation-with-past", "--opset", "18", str(tmp)], check=True)
    if (tmp / "model.onnx_data").exists():
        sys.exit(f"{name}: external data file unexpected for so small a model")
    shutil.rmtree(final, ignore_errors=True)
    final.mkdir(parents=True)
    for f in ["model.onnx", "config.json", "generation_config.json", "tokenizer.json"]:
        shutil.copy(tmp / f, final / f)
    log(f"export: {name} -> {final} ({(final / 'model.onnx').stat().st_size / 1e6:.1f} MB)")


def export(work, only=None, to=None):
    """Export with Optimum into models/, keeping only what the engine reads. With `only` and `to`:
    that one model into the folder `to`, models/ and its manifest untouched."""
    if only:
        if not (work / "hf" / only / "config.json").exists():
            sys.exit(f"export: {work / 'hf' / only} not trained yet")
        export_one(work, only, Path(to))
        return
    destinations = {f"fixtures/{n}": n for n in [*FIXTURES, "vocab600"]}
    destinations.update({"demo/draft": "demo-draft-kd", "demo/target": "demo-target"})
    summary = {}
    for dest, name in destinations.items():
        src = work / "hf" / name
        if not src.exists():
            log(f"export: {name} not trained yet, skipped")
            continue
        export_one(work, name, ROOT / "models" / dest)
        summary[dest] = json.loads((src / "train_log.json").read_text())
    manifest = ROOT / "models" / "MANIFEST.json"
    old = json.loads(manifest.read_text()) if manifest.exists() else {}
    old.update(summary)
    manifest.write_text(json.dumps(old, indent=1, sort_keys=True) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", default="all", choices=["all", "tokenizer", "fixtures", "demo", "export", "distill"])
    ap.add_argument("--work", default=str(ROOT / "target" / "model-work"), help="scratch folder (checkpoints)")
    ap.add_argument("--target-tokens", type=int, default=16_000_000, help="training tokens for the demo target")
    ap.add_argument("--distill-tokens", type=int, default=16_000_000,
                    help="training tokens for the distilled draft (about 22 minutes on 2 cores)")
    ap.add_argument("--distill-lr", type=float, default=1e-3, help="peak learning rate of the distillation")
    ap.add_argument("--distill-ce", type=float, default=0.0, help="weight of data cross-entropy added to the KL")
    ap.add_argument("--only", help="export stage: just this trained model (a folder name under WORK/hf)")
    ap.add_argument("--to", help="export stage with --only: destination folder (instead of models/)")
    args = ap.parse_args()
    if bool(args.only) != bool(args.to):
        ap.error("--only and --to go together")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    stages = ["tokenizer", "fixtures", "demo", "distill", "export"] if args.stage == "all" else [args.stage]
    for stage in stages:
        if stage != "tokenizer":
            make_tokenizer(work)
        {"tokenizer": lambda: make_tokenizer(work), "fixtures": lambda: make_fixtures(work),
         "demo": lambda: make_demo(work, args.target_tokens), "export": lambda: export(work, args.only, args.to),
         "distill": lambda: distill(work, args.distill_tokens, batch=32, seq=256, lr=args.distill_lr,
                                    ce_weight=args.distill_ce)}[stage]()


if __name__ == "__main__":
    main()
