#!/usr/bin/env python3
"""Make onnxruntime-genai model-builder exports (and related layouts) of specdec's demo models.

Everything is derived from the committed ONNX files in models/demo/{target,draft} (and, for stage
fixtures, models/fixtures/*): no training and no downloaded weights. Outputs go to a cache folder outside git (default .cache/builder-models/, which
gets its own `*` .gitignore). Pinned versions: scripts/requirements-builder.txt, in a venv of its own
(the builder needs transformers 5.x; make_models.py pins 4.57):

    python3 -m venv .venv-builder && .venv-builder/bin/pip install -r scripts/requirements-builder.txt
    .venv-builder/bin/python scripts/make_builder_models.py [--stage all|...] [--cache DIR]

Stages (`all` runs them in this order; each is resumable and skips outputs that exist):
  recover    HF checkpoints (LlamaForCausalLM, safetensors) of the demo target and draft rebuilt from
             the Optimum graphs' initializers -> CACHE/hf/demo-{target,draft}; the torch logits must
             match onnxruntime's on a few prompts (max abs diff < 1e-3) or the stage fails
  build      `python -m onnxruntime_genai.models.builder -i HF -o OUT -p fp32|int4 -e cpu -c TMP`
             -> CACHE/genai/demo-{target,draft}-{fp32,int4}; each folder's file list, genai_config.json
             and graph I/O go to CACHE/genai/layouts.json
  check      onnxruntime-genai greedy (og.Generator, do_sample False) on the builder fp32 target must equal
             transformers greedy on the recovered checkpoint; ids -> CACHE/genai/greedy_expectations.json
             (also recorded: the draft and the int4 exports, whose agreement is reported, not required);
             then the builder graph driven by plain onnxruntime (growing past, fixed buffer, IoBinding
             shared buffer, rollback, ragged batch) -> CACHE/genai/gqa_probe.json
  scaled     a >=250M-parameter Llama computing the demo target's function (DESIGN.md section 11): zero
             o_proj/down_proj layers, zero-padded widths and heads, RMSNorm weights and eps rescaled;
             logits checked against the original (< 1e-3) -> CACHE/hf/demo-target-scaled, exported int4
             by the builder -> CACHE/genai/demo-target-scaled-int4
  qwen       a random Qwen2 (vocab 151936, hidden 256, 2 layers) with the 512-token tokenizer, builder
             fp32 -> CACHE/genai/qwen2-random-fp32 (tokenizer smaller than the logits), and its draft
             (64 wide, 1 layer) -> CACHE/genai/qwen2-random-draft-fp32
  community  an onnx-community-style folder of the Optimum demo target: config, generation config and
             tokenizer at the root; onnx/model.onnx, onnx/model_fp16.onnx (fp16 I/O and KV cache),
             onnx/model_q4.onnx (MatMulNBits, block 32), onnx/model_quantized.onnx (dynamic int8)
             -> CACHE/onnx-community/demo-target
  vocab32k   (not part of `all`; writes committed files) a random Llama with a 32,000-entry vocabulary
             (hidden 32, 1 layer, tied embeddings; final norm weight scaled so that distributions are peaked)
             and a draft of it (the same weights plus noise, so that acceptance is partial), with the
             512-token tokenizer, exported fp32 by the builder -> models/builder/vocab32k-{target,draft}/;
             genai greedy must equal transformers greedy; continuations -> models/builder/expectations.json;
             acceptance under the sampling test's transforms -> CACHE/vocab32k.json; MANIFEST entries
  gpu-pair   (not part of `all`) the demo target and the demo draft padded as in `scaled` to GPU scale: a
             Llama-3.2-1B body (hidden 2048, 16 layers, 32/8 heads, MLP 8192) and a 0.13B draft (hidden 384,
             8 layers), both with the vocabulary padded to 151,936 (padded logits forced ~50+ under every real
             one, see scale_up_padded); fp32 logits checked against the originals (< 1e-3) -> CACHE/hf/demo-
             {target,draft}-gpu (fp16), exported fp16 for CUDA by the builder -> CACHE/genai/demo-{target,draft}-
             gpu-fp16; build record -> benches/results/gpu-pair-build.json. scripts/gpu_pair_check.py then
             checks the exports against the demo pair through specdec (benches/results/gpu-pair-check.*)
  fixtures   (not part of `all`; writes committed files) models/fixtures/{llama,qwen2,draft} and the demo
             draft (fp32 and int4 each) and the demo target (int4) recovered and exported by the builder
             into models/builder/<name>-<precision>/, exactly as it emits them; genai greedy must equal
             transformers greedy for fp32 (int4 reported) -> CACHE/fixture-check.json; genai's greedy
             continuations (32 tokens, no EOS stop) -> models/builder/expectations.json, checked against
             specdec by tests/genai/check_genai_parity.py; the onnx-community folder of
             models/fixtures/llama (model.onnx, model_fp16.onnx, model_q4.onnx) -> models/community/llama;
             entries builder/* and community/llama in models/MANIFEST.json. Outputs that exist are kept:
             delete a folder to rebuild it.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EOS = "<|endoftext|>"
PROMPTS = [
    "def main():\n    ",
    "import os\nimport sys\n\n\nclass ",
    "    for i in range(len(self.",
]
GREEDY_NEW_TOKENS = 32
TOL = 1e-3
DEMO = {"target": ROOT / "models" / "demo" / "target", "draft": ROOT / "models" / "demo" / "draft"}
# The cost-scaled target: the demo target (hidden 384, 6 layers, 6 heads / 2 kv heads of 64, MLP 1024)
# padded into this shape. About 272M parameters, the size DESIGN.md section 12 measured.
SCALED = dict(hidden=1024, layers=24, heads=16, kv_heads=4, inter=2816)
QWEN = dict(vocab=151936, hidden=256, layers=2, heads=4, kv_heads=2, inter=704, ctx=1024)
# Its draft for the large-vocabulary pair (issue 16's time outside ONNX Runtime): the same vocabulary,
# a quarter of the width, one layer (10M parameters, most of them the tied embedding). Both are
# random, so their rows are nearly flat: top-p 0.9 keeps most of the vocabulary, sampling's worst case.
QWEN_DRAFT = dict(vocab=151936, hidden=64, layers=1, heads=2, kv_heads=1, inter=176, ctx=1024)
# Committed builder fixtures (stage fixtures): models/builder/<name>-<precision>/, exactly as the builder
# emits them, from these Optimum folders; expectations in models/builder/expectations.json.
FIXTURES = [
    ("llama", ROOT / "models" / "fixtures" / "llama", ["fp32", "int4"]),
    ("qwen2", ROOT / "models" / "fixtures" / "qwen2", ["fp32", "int4"]),
    ("draft", ROOT / "models" / "fixtures" / "draft", ["fp32", "int4"]),
    ("demo-draft", DEMO["draft"], ["fp32", "int4"]),
    ("demo-target", DEMO["target"], ["int4"]),
]
BUILDER_DIR = ROOT / "models" / "builder"
# The large-vocabulary pair for tests/sampling_exactness.rs (stage vocab32k): the shape of
# models/fixtures/draft with a real vocabulary size. With tied embeddings a random one-layer model mostly
# predicts its input token again (the residual stream is that token's embedding): `mix` scales o_proj and
# down_proj so that the layer's output outweighs it. `logit_std` sets the final norm weight so that the
# logits' spread over the vocabulary is about that (a random init gives nearly flat distributions); `noise`
# is the draft's perturbation, relative to each weight tensor's spread (acceptance ~2/3 under the test's
# transforms, ~25 tokens kept per position).
VOCAB32K = dict(vocab=32000, hidden=32, layers=1, heads=2, kv_heads=1, inter=86, ctx=512, seed=32000,
                mix=10.0, logit_std=2.0, noise=0.2)
# The transforms tests/sampling_exactness.rs samples the pair with (for the acceptance report).
VOCAB32K_SAMPLING = dict(temperature=0.8, top_k=50, top_p=0.9)
COMMUNITY_FIXTURE = ("llama", ROOT / "models" / "fixtures" / "llama", ROOT / "models" / "community" / "llama")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Stage:
    """Logs the start and the wall time of a stage."""

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        self.t0 = time.time()
        log(f"== stage {self.name}")
        return self

    def __exit__(self, *exc):
        log(f"== stage {self.name}: {time.time() - self.t0:.1f} s" + (" (failed)" if exc[0] else ""))


def encode(tokenizer_json, text):
    from tokenizers import Tokenizer
    return Tokenizer.from_file(str(tokenizer_json)).encode(text).ids


def write_tokenizer_files(out, tokenizer_json, max_len):
    """tokenizer.json plus a tokenizer_config.json that transformers 5 and the builder accept."""
    shutil.copy(tokenizer_json, out / "tokenizer.json")
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": EOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS,
        "add_bos_token": False, "add_eos_token": False,
        "clean_up_tokenization_spaces": False, "model_max_length": max_len,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    (out / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": EOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}, indent=2) + "\n")


def file_list(folder):
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------------------
# recover


def recover_state_dict(onnx_path, config):
    """The LlamaForCausalLM state dict held by an Optimum export: named initializers as they are,
    MatMul weights (stored [in, out], i.e. transposed) named after the MatMul node that consumes them,
    or failing that assigned in graph order by shape."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    H, L = config["hidden_size"], config["num_hidden_layers"]
    nh, nkv = config["num_attention_heads"], config["num_key_value_heads"]
    hd = config.get("head_dim") or H // nh
    inter, vocab = config["intermediate_size"], config["vocab_size"]
    projections = [("self_attn", "q_proj", (nh * hd, H)), ("self_attn", "k_proj", (nkv * hd, H)),
                   ("self_attn", "v_proj", (nkv * hd, H)), ("self_attn", "o_proj", (H, nh * hd)),
                   ("mlp", "gate_proj", (inter, H)), ("mlp", "up_proj", (inter, H)), ("mlp", "down_proj", (H, inter))]
    expected = {"model.embed_tokens.weight": (vocab, H), "model.norm.weight": (H,)}
    order = []  # HF names of the MatMul weights in graph order
    for i in range(L):
        expected[f"model.layers.{i}.input_layernorm.weight"] = (H,)
        expected[f"model.layers.{i}.post_attention_layernorm.weight"] = (H,)
        for blk, proj, shape in projections:
            name = f"model.layers.{i}.{blk}.{proj}.weight"
            expected[name] = shape
            order.append(name)
        if config.get("model_type") == "qwen2" or config.get("attention_bias"):  # named initializers
            for proj, n in [("q_proj", nh), ("k_proj", nkv), ("v_proj", nkv)]:
                expected[f"model.layers.{i}.self_attn.{proj}.bias"] = (n * hd,)
    if not config.get("tie_word_embeddings"):
        expected["lm_head.weight"] = (vocab, H)
        order.append("lm_head.weight")

    sd = {}
    for name, t in inits.items():
        if name in expected:
            sd[name] = numpy_helper.to_array(t)
    matmul_weights = []  # (node name, initializer name) in graph order
    for n in g.node:
        if n.op_type == "MatMul" and n.input[1] in inits:
            matmul_weights.append((n.name, n.input[1]))
        elif n.op_type == "Gather" and n.input[0] in inits and "model.embed_tokens.weight" not in sd:
            a = numpy_helper.to_array(inits[n.input[0]])
            if a.shape == (vocab, H):
                sd["model.embed_tokens.weight"] = a
    pat = re.compile(r"/model/layers\.(\d+)/(self_attn|mlp)/(\w+_proj)/MatMul")
    by_name = {}
    for node, init in matmul_weights:
        m = pat.fullmatch(node)
        if m:
            by_name[f"model.layers.{m[1]}.{m[2]}.{m[3]}.weight"] = init
        elif node == "/lm_head/MatMul":
            by_name["lm_head.weight"] = init
    if len(by_name) == len(order):
        how = "MatMul node names"
        pairs = [(k, by_name[k]) for k in order]
    elif len(matmul_weights) == len(order):
        how = "graph order"
        pairs = list(zip(order, (init for _, init in matmul_weights)))
    else:
        sys.exit(f"{onnx_path}: {len(matmul_weights)} MatMul weights, expected {len(order)}")
    for hf_name, init in pairs:
        sd[hf_name] = np.ascontiguousarray(numpy_helper.to_array(inits[init]).T)
    missing = [k for k in expected if k not in sd]
    bad = [(k, sd[k].shape, v) for k, v in expected.items() if k in sd and tuple(sd[k].shape) != v]
    if missing or bad:
        sys.exit(f"{onnx_path}: missing {missing}, wrong shapes {bad}")
    return {k: sd[k] for k in expected}, how


def ort_logits(onnx_path, ids):
    """Logits of an Optimum decoder graph for one prompt, no past."""
    import numpy as np
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    feeds = {}
    n = len(ids)
    for i in sess.get_inputs():
        if i.name == "input_ids":
            feeds[i.name] = np.asarray([ids], dtype=np.int64)
        elif i.name == "attention_mask":
            feeds[i.name] = np.ones((1, n), dtype=np.int64)
        elif i.name == "position_ids":
            feeds[i.name] = np.arange(n, dtype=np.int64)[None]
        elif i.name.startswith("past_key_values"):
            kv, hd = i.shape[1], i.shape[3]
            dt = np.float16 if "float16" in i.type else np.float32
            feeds[i.name] = np.zeros((1, kv, 0, hd), dtype=dt)
        else:
            sys.exit(f"{onnx_path}: unexpected input {i.name}")
    return sess.run(["logits"], feeds)[0][0].astype(np.float32)


def torch_logits(model, ids):
    import torch
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0].float().numpy()


def load_hf(path):
    import torch
    from transformers import AutoModelForCausalLM
    torch.set_num_threads(1)
    return AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()


ARCHS = {"llama": ("LlamaConfig", "LlamaForCausalLM"), "qwen2": ("Qwen2Config", "Qwen2ForCausalLM")}


def recover_checkpoint(src, out):
    """Rebuild the HF checkpoint (LlamaForCausalLM or Qwen2ForCausalLM) held by the Optimum graph
    src/model.onnx into out, with generation config and tokenizer files; fails unless the torch logits
    match onnxruntime's on PROMPTS. Returns the recover.json record (skips if out has one)."""
    import numpy as np
    import torch
    import transformers
    from transformers import GenerationConfig

    if (out / "recover.json").exists():
        log(f"recover: {out} exists, skipped")
        return json.loads((out / "recover.json").read_text())
    t0 = time.time()
    config = json.loads((src / "config.json").read_text())
    if config.get("model_type") not in ARCHS:
        sys.exit(f"recover {src}: model_type {config.get('model_type')!r} not handled (only {sorted(ARCHS)})")
    cfg_cls, model_cls = (getattr(transformers, n) for n in ARCHS[config["model_type"]])
    sd, how = recover_state_dict(src / "model.onnx", config)
    cfg = cfg_cls(**{k: v for k, v in config.items() if k not in ("architectures", "transformers_version")})
    cfg.architectures = [model_cls.__name__]
    model = model_cls(cfg).eval()
    result = model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in sd.items()}, strict=False)
    unexpected_missing = [k for k in result.missing_keys if "rotary" not in k]
    if unexpected_missing or result.unexpected_keys:
        sys.exit(f"recover {src}: missing {unexpected_missing}, unexpected {result.unexpected_keys}")
    diffs = []
    for prompt in PROMPTS:
        ids = encode(src / "tokenizer.json", prompt)
        d = float(np.abs(torch_logits(model, ids) - ort_logits(src / "model.onnx", ids)).max())
        diffs.append(d)
        log(f"recover {src.name}: prompt {prompt!r} ({len(ids)} tokens): max |torch - onnxruntime| = {d:.2e}")
    if max(diffs) >= TOL:
        sys.exit(f"recover {src}: logits differ by {max(diffs):.2e} >= {TOL}")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp, safe_serialization=True)
    gen = json.loads((src / "generation_config.json").read_text()) if (src / "generation_config.json").exists() else {}
    eos = gen.get("eos_token_id", config.get("eos_token_id", 0))
    GenerationConfig(bos_token_id=gen.get("bos_token_id", eos), eos_token_id=eos, pad_token_id=eos).save_pretrained(tmp)
    write_tokenizer_files(tmp, src / "tokenizer.json", config["max_position_embeddings"])
    info = {"source": str(src.relative_to(ROOT) / "model.onnx"), "architecture": model_cls.__name__,
            "matched_by": how, "parameters": sum(p.numel() for p in model.parameters()),
            "max_abs_logit_diff": max(diffs), "seconds": round(time.time() - t0, 1)}
    (tmp / "recover.json").write_text(json.dumps(info, indent=1) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    log(f"recover {src.name}: {info['parameters']} parameters, matched by {how}, max diff {max(diffs):.2e} -> {out}")
    return info


def recover(cache):
    return {name: recover_checkpoint(src, cache / "hf" / f"demo-{name}") for name, src in DEMO.items()}


# ---------------------------------------------------------------------------------------------------
# build


def run_builder(hf_dir, out, precision, cache, extra=(), logf=None, ep="cpu"):
    if (out / "genai_config.json").exists():
        log(f"build: {out} exists, skipped")
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf_dir), "-o", str(tmp),
           "-p", precision, "-e", ep, "-c", str(cache / "builder-tmp"), *extra]
    log("build: " + " ".join(cmd))
    t0 = time.time()
    logf = logf or out.with_name(out.name + ".log")
    logf.parent.mkdir(parents=True, exist_ok=True)
    # The builder stamps producer_version "0.18.0+<commit>" with `git rev-parse HEAD` run four folders
    # above its own file: inside .venv-builder that is specdec's repository, so each specdec commit
    # would change model.onnx. GIT_DIR=/dev/null makes it fall back to the wheel's own commit.
    env = {**os.environ, "GIT_DIR": os.devnull}
    with open(logf, "w") as f:
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    seconds = time.time() - t0
    if r.returncode != 0 or not (tmp / "genai_config.json").exists():
        sys.exit(f"build: failed ({r.returncode}) after {seconds:.0f} s, see {logf}")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    log(f"build: {out.name} in {seconds:.1f} s")
    return round(seconds, 1)


def describe(folder):
    """File list, genai_config.json and the graph's I/O, op counts and initializer bytes."""
    import onnx
    from collections import Counter

    info = {"files": file_list(folder)}
    if (folder / "genai_config.json").exists():
        info["genai_config"] = json.loads((folder / "genai_config.json").read_text())
    graphs = {}
    for p in sorted(folder.rglob("*.onnx")):
        m = onnx.load(str(p), load_external_data=False)

        def io(vs):
            rows = []
            for v in vs:
                t = v.type.tensor_type
                dims = [d.dim_param or d.dim_value for d in t.shape.dim]
                rows.append([v.name, onnx.TensorProto.DataType.Name(t.elem_type).lower(), dims])
            return rows

        ops = Counter((n.domain or "ai.onnx") + ":" + n.op_type for n in m.graph.node)
        gqa = [n for n in m.graph.node if n.op_type == "GroupQueryAttention"][:1]
        graphs[str(p.relative_to(folder))] = {
            "opsets": {o.domain or "ai.onnx": o.version for o in m.opset_import},
            "inputs": io(m.graph.input), "outputs": io(m.graph.output),
            "nodes": len(m.graph.node), "ops": dict(sorted(ops.items())),
            "first_gqa": [{"inputs": list(n.input), "outputs": list(n.output),
                           "attributes": {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}}
                          for n in gqa],
        }
    info["graphs"] = graphs
    return info


def record_layout(cache, name, seconds=None):
    path = cache / "genai" / "layouts.json"
    layouts = json.loads(path.read_text()) if path.exists() else {}
    entry = describe(cache / "genai" / name)
    old = layouts.get(name, {})
    entry["build_seconds"] = seconds if seconds is not None else old.get("build_seconds")
    layouts[name] = json.loads(json.dumps(entry, default=str))
    path.write_text(json.dumps(layouts, indent=1) + "\n")


def build(cache):
    for name in DEMO:
        hf = cache / "hf" / f"demo-{name}"
        if not (hf / "recover.json").exists():
            sys.exit(f"build: {hf} missing (run --stage recover first)")
        for precision in ["fp32", "int4"]:
            out_name = f"demo-{name}-{precision}"
            seconds = run_builder(hf, cache / "genai" / out_name, precision, cache)
            record_layout(cache, out_name, seconds)


# ---------------------------------------------------------------------------------------------------
# check


def genai_greedy(folder, ids, new_tokens):
    """Greedy continuation by onnxruntime-genai, and the logits of the prompt's last position."""
    import numpy as np
    import onnxruntime_genai as og

    config = og.Config(str(folder))
    config.clear_providers()
    model = og.Model(config)
    params = og.GeneratorParams(model)
    params.set_search_options(do_sample=False, max_length=len(ids) + new_tokens)
    gen = og.Generator(model, params)
    gen.append_tokens(np.asarray(ids, dtype=np.int32))
    first = np.asarray(gen.get_logits(), dtype=np.float32).reshape(-1)
    while not gen.is_done():
        gen.generate_next_token()
    return [int(t) for t in gen.get_sequence(0)][len(ids):], first


def genai_greedy_no_eos(folder, ids, new_tokens):
    """onnxruntime-genai greedy for exactly new_tokens tokens, EOS treated as an ordinary token.

    genai 0.18 cannot switch EOS off: the overlay refuses an eos_token_id outside [0, vocab) and ignores
    [], and search min_length masks EOS out of the logits (which changes the greedy choice). So when
    the generator stops on an EOS it picked (get_next_tokens() is the EOS, which get_sequence() leaves
    out), the EOS is appended with append_tokens and generation goes on. Returns (ids, eos_at):
    eos_at lists the indices at which plain genai would have stopped."""
    import numpy as np
    import onnxruntime_genai as og

    config = og.Config(str(folder))
    config.clear_providers()
    model = og.Model(config)
    params = og.GeneratorParams(model)
    params.set_search_options(do_sample=False, max_length=len(ids) + new_tokens)
    gen = og.Generator(model, params)
    gen.append_tokens(np.asarray(ids, dtype=np.int32))
    out, eos_at = [], []
    while len(out) < new_tokens:
        if gen.is_done():
            raise RuntimeError(f"genai stopped after {len(out)} tokens without an EOS")
        gen.generate_next_token()
        t = int(gen.get_next_tokens()[0])
        out.append(t)
        if gen.is_done() and len(out) < new_tokens:
            if gen.token_count() != len(ids) + len(out) - 1:  # not an EOS stop
                raise RuntimeError(f"genai stopped after {len(out)} tokens, sequence length {gen.token_count()}")
            eos_at.append(len(out) - 1)
            gen.append_tokens(np.asarray([t], dtype=np.int32))
    seq = [int(v) for v in gen.get_sequence(0)][len(ids):]
    if seq != out[:len(seq)] or len(seq) < new_tokens - 1:
        raise RuntimeError(f"genai sequence {seq} differs from the tokens picked {out}")
    return out, eos_at


def torch_greedy_no_eos(model, ids, new_tokens):
    """argmax of the full-sequence logits, new_tokens times (no EOS stop)."""
    seq = list(ids)
    for _ in range(new_tokens):
        seq.append(int(torch_logits(model, seq)[-1].argmax()))
    return seq[len(ids):]


def torch_greedy(model, ids, new_tokens):
    import torch
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             do_sample=False, max_new_tokens=new_tokens, eos_token_id=0, pad_token_id=0)
    return [int(t) for t in out[0, len(ids):]]


def genai_tokenizer_ids(folder, text):
    import onnxruntime_genai as og
    try:
        tok = og.Tokenizer(og.Model(str(folder)))
        return [int(t) for t in tok.encode(text)]
    except Exception as e:  # recorded, not fatal: specdec tokenizes with tokenizer.json itself
        return f"error: {e}"


def probe_gqa(cache, name="demo-target-fp32"):
    """How a builder graph behaves when driven by plain onnxruntime (as specdec will): growing past
    (past = previous present), a fixed-size shared-style past buffer, multi-token verify calls with a
    past, and rolling back by shortening the mask. Logits are compared with the recovered torch model."""
    import numpy as np
    import onnxruntime as ort

    folder = cache / "genai" / name
    cfg = json.loads((folder / "genai_config.json").read_text())["model"]["decoder"]
    L, kv, hd = cfg["num_hidden_layers"], cfg["num_key_value_heads"], cfg["head_size"]
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(folder / "model.onnx"), so, providers=["CPUExecutionProvider"])
    out_names = [o.name for o in sess.get_outputs()]
    torch_model = load_hf(cache / "hf" / name.rsplit("-", 1)[0])
    ids = encode(DEMO["target"] / "tokenizer.json", PROMPTS[1])
    ext = [221, 48, 89, 51]  # four more tokens, verified in one call
    full = torch_logits(torch_model, ids + ext)

    def call(tokens, mask_len, past):
        feeds = {"input_ids": np.asarray([tokens], dtype=np.int64),
                 "attention_mask": np.ones((1, mask_len), dtype=np.int64)}
        for i in range(L):
            feeds[f"past_key_values.{i}.key"], feeds[f"past_key_values.{i}.value"] = past[i]
        res = dict(zip(out_names, sess.run(None, feeds)))
        presents = [(res[f"present.{i}.key"], res[f"present.{i}.value"]) for i in range(L)]
        return res["logits"][0], presents

    report = {"model": name, "input_order": [i.name for i in sess.get_inputs()], "output_order": out_names}
    n = len(ids)
    # 1. growing past: first call with past length 0, then past = present (length n), 4 tokens at once
    empty = [(np.zeros((1, kv, 0, hd), np.float32),) * 2 for _ in range(L)]
    lg1, pres = call(ids, n, empty)
    lg2, pres2 = call(ext, n + 4, pres)
    report["grow"] = {"present_shape_after_prompt": list(pres[0][0].shape),
                      "present_shape_after_verify": list(pres2[0][0].shape),
                      "prompt_logits_max_diff": float(np.abs(lg1 - full[:n]).max()),
                      "verify4_logits_max_diff": float(np.abs(lg2 - full[n:]).max())}
    # 2. fixed buffer of M positions (what past_present_share_buffer uses): mask width = valid length
    M = 64
    buf = [(np.zeros((1, kv, M, hd), np.float32),) * 2 for _ in range(L)]
    lg1, pres = call(ids, n, buf)
    lg2, pres2 = call(ext, n + 4, pres)
    # rollback: keep n + 1 tokens (the first ext token), feed another token with mask width n + 2
    alt = 300
    lg3, _ = call([alt], n + 2, pres2)
    ref3 = torch_logits(torch_model, ids + ext[:1] + [alt])[-1]
    report["buffer"] = {"past_shape": [1, kv, M, hd], "present_shape_after_prompt": list(pres[0][0].shape),
                        "prompt_logits_max_diff": float(np.abs(lg1 - full[:n]).max()),
                        "verify4_logits_max_diff": float(np.abs(lg2 - full[n:]).max()),
                        "rollback_then_step_logits_max_diff": float(np.abs(lg3[-1] - ref3).max())}
    # 3. the same rollback with a growing past: slice presents to n + 1 positions
    cut = [(k[:, :, :n + 1], v[:, :, :n + 1]) for k, v in call(ext, n + 4, call(ids, n, empty)[1])[1]]
    lg4, _ = call([alt], n + 2, cut)
    report["grow"]["rollback_by_slicing_logits_max_diff"] = float(np.abs(lg4[-1] - ref3).max())
    # 3b. a true shared buffer: IoBinding binds present.N to the very OrtValue bound as past.N; GQA
    #     writes the new positions in place, and rolling back is only a narrower mask next call
    bufs = [tuple(ort.OrtValue.ortvalue_from_numpy(np.zeros((1, kv, M, hd), np.float32)) for _ in range(2))
            for _ in range(L)]

    def bound(tokens, mask_len):
        io = sess.io_binding()
        io.bind_cpu_input("input_ids", np.asarray([tokens], dtype=np.int64))
        io.bind_cpu_input("attention_mask", np.ones((1, mask_len), dtype=np.int64))
        for i, (k, v) in enumerate(bufs):
            io.bind_ortvalue_input(f"past_key_values.{i}.key", k)
            io.bind_ortvalue_input(f"past_key_values.{i}.value", v)
            io.bind_ortvalue_output(f"present.{i}.key", k)
            io.bind_ortvalue_output(f"present.{i}.value", v)
        io.bind_output("logits")
        sess.run_with_iobinding(io)
        return io.get_outputs()[-1].numpy()[0]

    lg1, lg2 = bound(ids, n), bound(ext, n + 4)
    filled = int((np.abs(bufs[0][0].numpy()[0, 0]).sum(-1) > 0).sum())
    lg3 = bound([alt], n + 2)
    report["iobinding_shared"] = {"buffer_positions": M, "positions_written_after_prompt_and_verify": filled,
                                  "prompt_logits_max_diff": float(np.abs(lg1 - full[:n]).max()),
                                  "verify4_logits_max_diff": float(np.abs(lg2 - full[n:]).max()),
                                  "rollback_then_step_logits_max_diff": float(np.abs(lg3[-1] - ref3).max())}
    # 4. two rows of different lengths (per-row length = mask sum; rows right-padded in the cache):
    #    prompt call with right padding, then 1 token, then 3 tokens per row
    a, b = ids, encode(DEMO["target"] / "tokenizer.json", PROMPTS[0])
    la, lb = len(a), len(b)
    T = max(la, lb)

    def call_b(tokens, masks, past):
        feeds = {"input_ids": np.asarray(tokens, dtype=np.int64), "attention_mask": np.asarray(masks, dtype=np.int64)}
        for i in range(L):
            feeds[f"past_key_values.{i}.key"], feeds[f"past_key_values.{i}.value"] = past[i]
        res = dict(zip(out_names, sess.run(None, feeds)))
        return res["logits"], [(res[f"present.{i}.key"], res[f"present.{i}.value"]) for i in range(L)]

    for mode in ["grow", "buffer"]:
        past = [(np.zeros((2, kv, 0 if mode == "grow" else M, hd), np.float32),) * 2 for _ in range(L)]
        toks = [a + [0] * (T - la), b + [0] * (T - lb)]
        masks = [[1] * la + [0] * (T - la), [1] * lb + [0] * (T - lb)]
        lg, past = call_b(toks, masks, past)
        diffs = [float(np.abs(lg[0, :la] - torch_logits(torch_model, a)).max()),
                 float(np.abs(lg[1, :lb] - torch_logits(torch_model, b)).max())]
        steps = [[221], [48, 89, 51]]
        ha, hb = list(a), list(b)
        for st in steps:
            S = len(st)
            W = max(len(ha), len(hb)) + S
            masks = [[1] * (len(ha) + S) + [0] * (W - len(ha) - S), [1] * (len(hb) + S) + [0] * (W - len(hb) - S)]
            try:
                lg, past = call_b([st, st], masks, past)
            except Exception as e:  # ORT 1.32 CPU GQA: no multi-token step with a past at batch > 1
                diffs.append(f"{S} tokens per row: " + str(e).split("Status Message: ")[-1].strip())
                break
            ha, hb = ha + st, hb + st
            diffs.append(float(np.abs(lg[0] - torch_logits(torch_model, ha)[-S:]).max()))
            diffs.append(float(np.abs(lg[1] - torch_logits(torch_model, hb)[-S:]).max()))
        report[f"batch2_ragged_{mode}"] = {"row_lengths": [la, lb], "max_diffs": diffs}
    (cache / "genai" / "gqa_probe.json").write_text(json.dumps(report, indent=1) + "\n")
    log(f"probe {name}: {json.dumps({k: v for k, v in report.items() if k != 'input_order' and k != 'output_order'})}")
    return report


def check(cache, names=None, strict=("demo-target-fp32",)):
    import numpy as np

    out_path = cache / "genai" / "greedy_expectations.json"
    result = json.loads(out_path.read_text()) if out_path.exists() else {}
    tokenizer_json = DEMO["target"] / "tokenizer.json"
    names = names or [f"demo-{m}-{p}" for m in DEMO for p in ["fp32", "int4"]]
    torch_models = {}
    for name in names:
        folder = cache / "genai" / name
        if not (folder / "genai_config.json").exists():
            sys.exit(f"check: {folder} missing (run --stage build first)")
        if name in result and result[name].get("prompts"):
            log(f"check: {name} recorded, skipped")
            continue
        hf_name = name.rsplit("-", 1)[0]
        if hf_name not in torch_models:
            torch_models[hf_name] = load_hf(cache / "hf" / hf_name)
        rows = []
        for prompt in PROMPTS:
            ids = encode(tokenizer_json, prompt)
            t0 = time.time()
            g, first = genai_greedy(folder, ids, GREEDY_NEW_TOKENS)
            t_genai = time.time() - t0
            t = torch_greedy(torch_models[hf_name], ids, GREEDY_NEW_TOKENS)
            ref = torch_logits(torch_models[hf_name], ids)[-1]
            diff = float(np.abs(first - ref).max())
            agree = next((i for i, (a, b) in enumerate(zip(g, t)) if a != b), min(len(g), len(t)))
            same = g == t
            rows.append({"prompt": prompt, "prompt_ids": ids, "genai_greedy_ids": g, "torch_greedy_ids": t,
                         "equal": same, "common_prefix": agree,
                         "max_abs_last_logit_diff_vs_torch": diff, "genai_seconds": round(t_genai, 2)})
            log(f"check {name}: {prompt!r}: genai == torch: {same} (common prefix {agree}/{len(t)}), "
                f"last-position logits max diff {diff:.2e}")
        entry = {"new_tokens": GREEDY_NEW_TOKENS, "eos_token_id": 0, "prompts": rows,
                 "genai_tokenizer_ids_of_prompt0": genai_tokenizer_ids(folder, PROMPTS[0])}
        result[name] = entry
        out_path.write_text(json.dumps(result, indent=1) + "\n")
        if name in strict and not all(r["equal"] for r in rows):
            sys.exit(f"check: {name}: onnxruntime-genai greedy differs from transformers greedy")
    if "demo-target-fp32" in names:
        probe_gqa(cache)
    return result


# ---------------------------------------------------------------------------------------------------
# scaled


def scale_up(model, spec):
    """A wider, deeper LlamaForCausalLM computing the same function as `model` (DESIGN.md section 11).

    - hidden H -> H': embeddings, norms and every weight touching the residual stream are zero-padded,
      so the residual stream's extra coordinates stay exactly 0. RMSNorm then sees mean(x^2) scaled by
      r = H/H' (the extra coordinates add 0 to the sum but count in the mean), so its rms is sqrt(r)
      times smaller; norm weights times sqrt(r) and eps times r give exactly the old output:
      x / sqrt(r m + r eps) * sqrt(r) w = x / sqrt(m + eps) * w.
    - heads: the original query heads are placed so that each still reads its own kv head (head j of
      kv group k goes to position k * g' + j % g); extra q/k/v rows are zero and the o_proj columns
      of every extra head are zero, so extra heads add nothing.
    - MLP width I -> I': extra gate/up rows and down_proj columns are zero (silu(0) * 0 = 0).
    - extra layers: random q/k/v/gate/up (so that the work is real), zero o_proj and down_proj:
      identity residual blocks.
    """
    import math
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    c = model.config
    H, L, nh, nkv, I = c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads, c.intermediate_size
    hd = c.head_dim
    H2, L2, nh2, nkv2, I2 = spec["hidden"], spec["layers"], spec["heads"], spec["kv_heads"], spec["inter"]
    g, g2 = nh // nkv, nh2 // nkv2
    assert H2 >= H and L2 >= L and nkv2 >= nkv and g2 >= g and I2 >= I and nh2 * hd == H2
    r = H / H2
    cfg = LlamaConfig(**{**c.to_dict(), "hidden_size": H2, "num_hidden_layers": L2, "num_attention_heads": nh2,
                         "num_key_value_heads": nkv2, "intermediate_size": I2, "head_dim": hd,
                         "rms_norm_eps": c.rms_norm_eps * r})
    cfg.architectures = ["LlamaForCausalLM"]
    torch.manual_seed(1234)
    big = LlamaForCausalLM(cfg).eval()
    old = {k: v.detach() for k, v in model.state_dict().items()}
    new = {k: torch.zeros_like(v) for k, v in big.state_dict().items()}
    s = math.sqrt(r)
    new["model.embed_tokens.weight"][:, :H] = old["model.embed_tokens.weight"]
    new["lm_head.weight"][:, :H] = old["lm_head.weight"]
    new["model.norm.weight"][:H] = old["model.norm.weight"] * s
    qpos = [(j // g) * g2 + j % g for j in range(nh)]  # new position of original query head j
    gen = torch.Generator().manual_seed(1234)

    def rnd(*shape):
        return torch.randn(*shape, generator=gen) * 0.02

    for i in range(L2):
        p, q = f"model.layers.{i}.", f"model.layers.{i}."
        if i < L:
            new[p + "input_layernorm.weight"][:H] = old[q + "input_layernorm.weight"] * s
            new[p + "post_attention_layernorm.weight"][:H] = old[q + "post_attention_layernorm.weight"] * s
            wq, wo = old[q + "self_attn.q_proj.weight"], old[q + "self_attn.o_proj.weight"]
            for j, pos in enumerate(qpos):
                new[p + "self_attn.q_proj.weight"][pos * hd:(pos + 1) * hd, :H] = wq[j * hd:(j + 1) * hd]
                new[p + "self_attn.o_proj.weight"][:H, pos * hd:(pos + 1) * hd] = wo[:, j * hd:(j + 1) * hd]
            for w in ["k_proj", "v_proj"]:
                new[p + f"self_attn.{w}.weight"][:nkv * hd, :H] = old[q + f"self_attn.{w}.weight"]
            new[p + "mlp.gate_proj.weight"][:I, :H] = old[q + "mlp.gate_proj.weight"]
            new[p + "mlp.up_proj.weight"][:I, :H] = old[q + "mlp.up_proj.weight"]
            new[p + "mlp.down_proj.weight"][:H, :I] = old[q + "mlp.down_proj.weight"]
        else:  # identity block: real work, zero output projections
            new[p + "input_layernorm.weight"][:] = 1.0
            new[p + "post_attention_layernorm.weight"][:] = 1.0
            for w in ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.gate_proj", "mlp.up_proj"]:
                new[p + w + ".weight"] = rnd(*new[p + w + ".weight"].shape)
    big.load_state_dict(new, strict=True)
    return big


def scaled(cache):
    import numpy as np

    hf = cache / "hf" / "demo-target-scaled"
    src = cache / "hf" / "demo-target"
    if not (src / "recover.json").exists():
        sys.exit(f"scaled: {src} missing (run --stage recover first)")
    if not (hf / "scaled.json").exists():
        t0 = time.time()
        small = load_hf(src)
        big = scale_up(small, SCALED)
        params = sum(p.numel() for p in big.parameters())
        log(f"scaled: {params / 1e6:.1f}M parameters, checking logits")
        diffs = []
        for prompt in PROMPTS:
            ids = encode(src / "tokenizer.json", prompt)
            d = float(np.abs(torch_logits(big, ids) - torch_logits(small, ids)).max())
            diffs.append(d)
            log(f"scaled: {prompt!r}: max |scaled - original| = {d:.2e}")
        if max(diffs) >= TOL:
            sys.exit(f"scaled: logits differ by {max(diffs):.2e} >= {TOL}")
        tmp = hf.with_name(hf.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        big.save_pretrained(tmp, safe_serialization=True)
        for f in ["generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]:
            shutil.copy(src / f, tmp / f)
        info = {"from": "demo-target", "shape": SCALED, "parameters": params, "max_abs_logit_diff": max(diffs),
                "seconds": round(time.time() - t0, 1)}
        (tmp / "scaled.json").write_text(json.dumps(info, indent=1) + "\n")
        shutil.rmtree(hf, ignore_errors=True)
        tmp.rename(hf)
        del big, small
    name = "demo-target-scaled-int4"
    seconds = run_builder(hf, cache / "genai" / name, "int4", cache)
    record_layout(cache, name, seconds)
    check(cache, [name], strict=())


# ---------------------------------------------------------------------------------------------------
# gpu-pair


def scale_up_padded(model, spec, vocab, const):
    """scale_up's construction at GPU scale, edited in place (a 1.6B-parameter model in fp32 fits once,
    not twice), with the vocabulary padded to `vocab` entries whose logits are far below every real one.

    The padded logits need a direction that is the same for every token: one extra residual coordinate
    c (the first past the original width) holds `const` for every token (its embedding column; nothing
    writes to it, as the output projections' extra rows are zero). Every RMSNorm then sees
    (sum of the real x^2 + const^2) / H' + eps' = r (m + eps) with eps' = r eps - const^2 / H', which
    needs const^2 < H eps; so the real coordinates come out exactly as in scale_up. After the final norm
    c holds const / sqrt(r (m + eps)) > 0, and every padded lm_head row is -1 at c and 0 elsewhere, so
    a padded logit is -const / sqrt(r (m + eps)): negative, the same for every padded token, and scaled
    by the same 1/rms as the real logits; `pad_scale` (the padded rows' weight, set by the caller after
    measuring) makes it far below them. Padded tokens' embeddings are zero apart from c (never fed).
    Returns the model and the eps it was given."""
    import math
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    c = model.config
    H, L, nh, nkv, I = c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads, c.intermediate_size
    V = c.vocab_size
    hd = c.head_dim
    H2, L2, nh2, nkv2, I2 = spec["hidden"], spec["layers"], spec["heads"], spec["kv_heads"], spec["inter"]
    g, g2 = nh // nkv, nh2 // nkv2
    assert H2 > H and L2 >= L and nkv2 >= nkv and g2 >= g and I2 >= I and nh2 * hd == H2 and vocab >= V
    assert const * const < H * c.rms_norm_eps, "const^2 must be under H * eps (eps' > 0)"
    r = H / H2
    eps2 = c.rms_norm_eps * r - const * const / H2
    cfg = LlamaConfig(**{**c.to_dict(), "hidden_size": H2, "num_hidden_layers": L2, "num_attention_heads": nh2,
                         "num_key_value_heads": nkv2, "intermediate_size": I2, "head_dim": hd,
                         "rms_norm_eps": eps2, "vocab_size": vocab})
    cfg.architectures = ["LlamaForCausalLM"]
    torch.manual_seed(1234)
    big = LlamaForCausalLM(cfg).eval()
    old = {k: v.detach() for k, v in model.state_dict().items()}
    new = dict(big.state_dict())
    s = math.sqrt(r)
    gen = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for v in new.values():
            v.zero_()
        new["model.embed_tokens.weight"][:V, :H] = old["model.embed_tokens.weight"]
        new["model.embed_tokens.weight"][:, H] = const
        new["lm_head.weight"][:V, :H] = old["lm_head.weight"]
        new["lm_head.weight"][V:, H] = -1.0
        new["model.norm.weight"][:H] = old["model.norm.weight"] * s
        new["model.norm.weight"][H] = 1.0
        qpos = [(j // g) * g2 + j % g for j in range(nh)]
        for i in range(L2):
            p = f"model.layers.{i}."
            if i < L:
                for n in ["input_layernorm", "post_attention_layernorm"]:
                    new[p + n + ".weight"][:H] = old[p + n + ".weight"] * s
                wq, wo = old[p + "self_attn.q_proj.weight"], old[p + "self_attn.o_proj.weight"]
                for j, pos in enumerate(qpos):
                    new[p + "self_attn.q_proj.weight"][pos * hd:(pos + 1) * hd, :H] = wq[j * hd:(j + 1) * hd]
                    new[p + "self_attn.o_proj.weight"][:H, pos * hd:(pos + 1) * hd] = wo[:, j * hd:(j + 1) * hd]
                for w in ["k_proj", "v_proj"]:
                    new[p + f"self_attn.{w}.weight"][:nkv * hd, :H] = old[p + f"self_attn.{w}.weight"]
                new[p + "mlp.gate_proj.weight"][:I, :H] = old[p + "mlp.gate_proj.weight"]
                new[p + "mlp.up_proj.weight"][:I, :H] = old[p + "mlp.up_proj.weight"]
                new[p + "mlp.down_proj.weight"][:H, :I] = old[p + "mlp.down_proj.weight"]
            else:  # identity block: real work, zero output projections
                new[p + "input_layernorm.weight"][:] = 1.0
                new[p + "post_attention_layernorm.weight"][:] = 1.0
                for w in ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.gate_proj", "mlp.up_proj"]:
                    t = new[p + w + ".weight"]
                    t.copy_(torch.randn(*t.shape, generator=gen) * 0.02)
    return big


# The GPU-scale pair (stage gpu-pair, not part of `all`): the demo target and the demo draft padded into
# a Llama-3.2-1B body (hidden 2048, 16 layers, 32 query / 8 kv heads of 64, MLP 8192: 0.97B parameters
# outside the embeddings) and a 0.13B draft, both with Qwen2's vocabulary size (151,936, untied
# embeddings: the lm_head is 0.31B of the target's 1.6B parameters and most of the draft), exported fp16
# for CUDA by the builder. `const` is the padded logits' coordinate (see scale_up_padded).
GPU_PAIR = {
    "draft": dict(src="demo-draft", hidden=384, layers=8, heads=12, kv_heads=3, inter=1024, const=0.008),
    "target": dict(src="demo-target", hidden=2048, layers=16, heads=32, kv_heads=8, inter=8192, const=0.008),
}
GPU_VOCAB = 151936
# Padded logits are set this far (in logits) under the lowest real logit at the checked position where
# they come closest, measured on the prompts plus their greedy continuations.
GPU_PAD_MARGIN = 50.0


def gpu_pair(cache):
    """Build, check and export the GPU-scale pair -> CACHE/hf/demo-{target,draft}-gpu (fp16 checkpoints)
    and CACHE/genai/demo-{target,draft}-gpu-fp16 (builder, -p fp16 -e cuda); the checks go to
    CACHE/genai/gpu-pair.json and benches/results/gpu-pair-build.json."""
    import numpy as np
    import torch

    report_path = ROOT / "benches" / "results" / "gpu-pair-build.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    for name, spec in GPU_PAIR.items():
        src = cache / "hf" / spec["src"]
        hf = cache / "hf" / f"{spec['src']}-gpu"
        if not (src / "recover.json").exists():
            sys.exit(f"gpu-pair: {src} missing (run --stage recover first)")
        if not (hf / "scaled.json").exists():
            t0 = time.time()
            torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
            small = load_hf(src)
            big = scale_up_padded(small, spec, GPU_VOCAB, spec["const"])
            V = small.config.vocab_size
            params = sum(p.numel() for p in big.parameters())
            embed = 2 * GPU_VOCAB * spec["hidden"]
            log(f"gpu-pair {name}: {params / 1e6:.1f}M parameters ({(params - embed) / 1e6:.1f}M outside embeddings)")
            # Where the padded logits come out with weight -1, against the real logits, over the prompts
            # and their greedy continuations (the original model's).
            diffs, rows = [], []
            for prompt in PROMPTS:
                ids = encode(src / "tokenizer.json", prompt)
                seq = ids + torch_greedy_no_eos(small, ids, GREEDY_NEW_TOKENS)
                a, b = torch_logits(small, seq), torch_logits(big, seq)
                diffs.append(float(np.abs(a - b[:, :V]).max()))
                rows.append((b[:, :V].min(axis=1), b[:, V:].max(axis=1)))
                log(f"gpu-pair {name}: {prompt!r}: max |scaled - original| over {len(seq)} positions = {diffs[-1]:.2e}")
            if max(diffs) >= TOL:
                sys.exit(f"gpu-pair {name}: logits differ by {max(diffs):.2e} >= {TOL}")
            lo = np.concatenate([r[0] for r in rows])
            unit = np.concatenate([r[1] for r in rows])  # negative: -const / sqrt(r (m + eps))
            # pad * unit <= lo - margin at every position: pad >= (margin - lo) / -unit.
            pad = float(np.max((GPU_PAD_MARGIN - lo) / -unit))
            pad = float(np.float16(pad * 1.01))
            with torch.no_grad():
                big.lm_head.weight[V:, small.config.hidden_size] = -pad
            check_rows = [torch_logits(big, encode(src / "tokenizer.json", p)) for p in PROMPTS]
            gap = min(float(x[:, :V].min(axis=1).min() - x[:, V:].max()) for x in check_rows)
            padded_range = [float(pad * unit.min()), float(pad * unit.max())]
            log(f"gpu-pair {name}: padded rows' weight -{pad:.1f}: padded logits in {padded_range}, "
                f"lowest real logit - highest padded logit >= {gap:.1f} on the prompts")
            tmp = hf.with_name(hf.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            big.half().save_pretrained(tmp, safe_serialization=True)
            for f in ["generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]:
                shutil.copy(src / f, tmp / f)
            info = {"from": spec["src"], "shape": {k: v for k, v in spec.items() if k != "src"}, "vocab": GPU_VOCAB,
                    "parameters": params, "parameters_outside_embeddings": params - embed,
                    "max_abs_logit_diff_fp32": max(diffs), "padded_row_weight": -pad,
                    "padded_logits_range": padded_range, "min_real_minus_max_padded_on_prompts": gap,
                    "rms_norm_eps": big.config.rms_norm_eps, "seconds": round(time.time() - t0, 1)}
            (tmp / "scaled.json").write_text(json.dumps(info, indent=1) + "\n")
            shutil.rmtree(hf, ignore_errors=True)
            tmp.rename(hf)
            del big, small
        info = json.loads((hf / "scaled.json").read_text())
        out_name = f"{spec['src']}-gpu-fp16"
        seconds = run_builder(hf, cache / "genai" / out_name, "fp16", cache, ep="cuda")
        if seconds is not None:
            info["builder_seconds"] = seconds
        report[name] = {**info, "export": f"CACHE/genai/{out_name} (builder -p fp16 -e cuda)"}
        report_path.write_text(json.dumps(report, indent=1) + "\n")


# ---------------------------------------------------------------------------------------------------
# qwen


def qwen(cache):
    for hf_name, name, spec, seed in [("qwen2-random", "qwen2-random-fp32", QWEN, 1234),
                                      ("qwen2-random-draft", "qwen2-random-draft-fp32", QWEN_DRAFT, 4321)]:
        hf = cache / "hf" / hf_name
        if not (hf / "config.json").exists():
            make_random_qwen2(hf, spec, seed)
        seconds = run_builder(hf, cache / "genai" / name, "fp32", cache)
        record_layout(cache, name, seconds)
        check(cache, [name], strict=(name,))


def make_random_qwen2(hf, s, seed):
    """A randomly initialised Qwen2 of shape `s` (the demo tokenizer, Qwen2's vocabulary size) -> hf."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=s["vocab"], hidden_size=s["hidden"], num_hidden_layers=s["layers"],
                      num_attention_heads=s["heads"], num_key_value_heads=s["kv_heads"],
                      intermediate_size=s["inter"], max_position_embeddings=s["ctx"], tie_word_embeddings=True,
                      bos_token_id=0, eos_token_id=0, rms_norm_eps=1e-6, rope_theta=1000000.0)
    cfg.architectures = ["Qwen2ForCausalLM"]
    model = Qwen2ForCausalLM(cfg).eval()
    with torch.no_grad():  # non-zero biases, so that the q/k/v bias path is exercised
        for n, p in model.named_parameters():
            if n.endswith("bias"):
                p.normal_(0, 0.02)
    tmp = hf.with_name(hf.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp, safe_serialization=True)
    GenerationConfig(bos_token_id=0, eos_token_id=0, pad_token_id=0).save_pretrained(tmp)
    write_tokenizer_files(tmp, DEMO["target"] / "tokenizer.json", s["ctx"])
    shutil.rmtree(hf, ignore_errors=True)
    tmp.rename(hf)
    log(f"qwen: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters -> {hf}")


# ---------------------------------------------------------------------------------------------------
# vocab32k (committed)


def transformed_probs(logits, temperature, top_k, top_p):
    """specdec's transforms on one logits row (float64): temperature, top-k, then top-p on the kept
    probabilities (ties by lower id), renormalised."""
    import numpy as np
    z = logits.astype(np.float64) / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    order = np.lexsort((np.arange(len(p)), -p))
    keep = order[:top_k]
    cum = np.cumsum(p[keep]) / p[keep].sum()
    keep = keep[:int(np.searchsorted(cum, top_p) + 1)]
    out = np.zeros_like(p)
    out[keep] = p[keep] / p[keep].sum()
    return out


def vocab32k(cache):
    """models/builder/vocab32k-{target,draft}: see VOCAB32K and the module docstring."""
    import numpy as np
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    s = VOCAB32K
    tok = ROOT / "models" / "fixtures" / "draft" / "tokenizer.json"
    hf = {name: cache / "hf" / f"vocab32k-{name}" for name in ["target", "draft"]}
    if not all((h / "config.json").exists() for h in hf.values()):
        torch.manual_seed(s["seed"])
        cfg = LlamaConfig(vocab_size=s["vocab"], hidden_size=s["hidden"], num_hidden_layers=s["layers"],
                          num_attention_heads=s["heads"], num_key_value_heads=s["kv_heads"],
                          head_dim=s["hidden"] // s["heads"], intermediate_size=s["inter"],
                          max_position_embeddings=s["ctx"], tie_word_embeddings=True, bos_token_id=0,
                          eos_token_id=0, rms_norm_eps=1e-6)
        cfg.architectures = ["LlamaForCausalLM"]
        target = LlamaForCausalLM(cfg).eval()
        with torch.no_grad():
            # Non-trivial norms, then the final norm scaled until the logits' spread is logit_std.
            for n, p in target.named_parameters():
                if n.endswith("norm.weight"):
                    p.copy_(1.0 + 0.1 * torch.randn_like(p))
                if n.endswith("o_proj.weight") or n.endswith("down_proj.weight"):
                    p.mul_(s["mix"])
            ids = encode(tok, PROMPTS[2])
            for _ in range(3):
                spread = float(target(torch.tensor([ids])).logits[0].std(dim=-1).mean())
                target.model.norm.weight.mul_(s["logit_std"] / spread)
            draft = LlamaForCausalLM(cfg).eval()
            draft.load_state_dict(target.state_dict())
            gen = torch.Generator().manual_seed(s["seed"] + 1)
            for n, p in draft.named_parameters():
                p.add_(s["noise"] * p.std() * torch.randn(p.shape, generator=gen) if p.numel() > 1 else 0)
        for name, model in [("target", target), ("draft", draft)]:
            tmp = hf[name].with_name(hf[name].name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            model.save_pretrained(tmp, safe_serialization=True)
            GenerationConfig(bos_token_id=0, eos_token_id=0, pad_token_id=0).save_pretrained(tmp)
            write_tokenizer_files(tmp, tok, s["ctx"])
            shutil.rmtree(hf[name], ignore_errors=True)
            tmp.rename(hf[name])
        log(f"vocab32k: {sum(p.numel() for p in target.parameters()) / 1e6:.2f}M parameters each -> {hf['target'].parent}")
    models = {name: load_hf(h) for name, h in hf.items()}
    # Acceptance under the test's transforms along the target's own greedy continuation of each prompt.
    alphas, sizes = [], []
    for prompt in PROMPTS:
        ids = encode(tok, prompt)
        seq = ids + torch_greedy_no_eos(models["target"], ids, 8)
        lp, lq = (torch_logits(m, seq)[len(ids) - 1:] for m in (models["target"], models["draft"]))
        for a, b in zip(lp, lq):
            p, q = (transformed_probs(x, **VOCAB32K_SAMPLING) for x in (a, b))
            alphas.append(float(np.minimum(p, q).sum()))
            sizes.append(int((p > 0).sum()))
    info = {"spec": s, "sampling": VOCAB32K_SAMPLING, "mean_acceptance": float(np.mean(alphas)),
            "kept_tokens_median": float(np.median(sizes)), "positions": len(alphas)}
    log(f"vocab32k: acceptance {info['mean_acceptance']:.2f} under {VOCAB32K_SAMPLING}, "
        f"median kept tokens {info['kept_tokens_median']:.0f}")
    exp_path = BUILDER_DIR / "expectations.json"
    expectations = json.loads(exp_path.read_text()) if exp_path.exists() else {}
    failures, report = [], {}
    for name in ["target", "draft"]:
        folder_name = f"vocab32k-{name}"
        folder = BUILDER_DIR / folder_name
        run_builder(hf[name], folder, "fp32", cache, logf=cache / "fixture-logs" / f"{folder_name}.log")
        rows = []
        for prompt in PROMPTS:
            ids = encode(folder / "tokenizer.json", prompt)
            g, eos_at = genai_greedy_no_eos(folder, ids, GREEDY_NEW_TOKENS)
            t = torch_greedy_no_eos(models[name], ids, GREEDY_NEW_TOKENS)
            rows.append({"prompt": prompt, "prompt_ids": ids, "genai_ids": g, "genai_eos_at": eos_at})
            log(f"vocab32k {folder_name}: {prompt!r}: genai == torch: {g == t}")
            if g != t:
                failures.append(folder_name)
        expectations[folder_name] = rows
        report[folder_name] = {"files": file_list(folder), "equal": folder_name not in failures}
    exp_path.write_text(json.dumps(dict(sorted(expectations.items())), indent=1) + "\n")
    info["folders"] = report
    (cache / "vocab32k.json").write_text(json.dumps(info, indent=1) + "\n")
    import onnxruntime_genai as og
    manifest = ROOT / "models" / "MANIFEST.json"
    entries = json.loads(manifest.read_text()) if manifest.exists() else {}
    for name in ["target", "draft"]:
        folder = f"vocab32k-{name}"
        entries[f"builder/{folder}"] = {
            "from": "random LlamaForCausalLM (seed %d)%s" % (s["seed"], "" if name == "target" else " plus noise"),
            "made_by": "scripts/make_builder_models.py --stage vocab32k",
            "builder": f"onnxruntime_genai.models.builder {og.__version__} -p fp32 -e cpu",
            "architecture": "LlamaForCausalLM",
            "parameters": sum(p.numel() for p in models[name].parameters()),
            "bytes": sum(file_list(BUILDER_DIR / folder).values()),
            "genai_greedy_equals_transformers": "%d/%d" % (0 if folder in failures else len(PROMPTS), len(PROMPTS)),
            "acceptance_under_test_sampling": round(info["mean_acceptance"], 3),
            "expectations": "builder/expectations.json"}
    manifest.write_text(json.dumps(entries, indent=1, sort_keys=True) + "\n")
    mb = sum(sum(r["files"].values()) for r in report.values()) / 1e6
    log(f"vocab32k: {mb:.2f} MB under models/builder")
    if failures:
        sys.exit(f"vocab32k: onnxruntime-genai greedy differs from transformers greedy for {sorted(set(failures))}")


# ---------------------------------------------------------------------------------------------------
# community


COMMUNITY_VARIANTS = ["model_fp16.onnx", "model_q4.onnx", "model_quantized.onnx"]


def community(cache, src=DEMO["target"], out=None, recovered=None, variants=COMMUNITY_VARIANTS, layout_name="demo-target"):
    """An onnx-community-style folder of the Optimum graph src/model.onnx: config, generation config and
    tokenizer at the root, onnx/model.onnx and the chosen variants under onnx/; the variants are
    compared with model.onnx and the layout goes to CACHE/onnx-community/<layout_name>.layout.json."""
    import numpy as np
    import onnx

    out = out or cache / "onnx-community" / "demo-target"
    recovered = recovered or cache / "hf" / "demo-target"
    (out / "onnx").mkdir(parents=True, exist_ok=True)
    for f in ["config.json", "generation_config.json", "tokenizer.json"]:
        shutil.copy(src / f, out / f)
    for f in ["tokenizer_config.json", "special_tokens_map.json"]:
        if (recovered / f).exists():
            shutil.copy(recovered / f, out / f)
        else:
            write_tokenizer_files(out, src / "tokenizer.json",
                                  json.loads((src / "config.json").read_text())["max_position_embeddings"])
    base = out / "onnx" / "model.onnx"
    if not base.exists():
        shutil.copy(src / "model.onnx", base)
    made = {}
    fp16 = out / "onnx" / "model_fp16.onnx"
    if "model_fp16.onnx" in variants and not fp16.exists():
        t0 = time.time()
        from onnxruntime.transformers.float16 import convert_float_to_float16
        m = convert_float_to_float16(onnx.load(str(base)), keep_io_types=False, disable_shape_infer=False)
        onnx.save(m, str(fp16))
        made["model_fp16.onnx"] = round(time.time() - t0, 1)
    q4 = out / "onnx" / "model_q4.onnx"
    if "model_q4.onnx" in variants and not q4.exists():
        t0 = time.time()
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
        q = MatMulNBitsQuantizer(onnx.load(str(base)), block_size=32, is_symmetric=True)
        q.process()
        q.model.save_model_to_file(str(q4), use_external_data_format=False)
        made["model_q4.onnx"] = round(time.time() - t0, 1)
    q8 = out / "onnx" / "model_quantized.onnx"
    if "model_quantized.onnx" in variants and not q8.exists():
        t0 = time.time()
        from onnxruntime.quantization import QuantType, quantize_dynamic
        quantize_dynamic(str(base), str(q8), weight_type=QuantType.QInt8)
        made["model_quantized.onnx"] = round(time.time() - t0, 1)
    for v, s in made.items():
        log(f"community: {v} made in {s} s")
    # Each variant against model.onnx on the prompts: logits difference and argmax agreement.
    ref = {p: ort_logits(base, encode(src / "tokenizer.json", p)) for p in PROMPTS}
    report = {}
    for v in variants:
        try:
            diffs, agree, total = [], 0, 0
            for p in PROMPTS:
                lg = ort_logits(out / "onnx" / v, encode(src / "tokenizer.json", p))
                diffs.append(float(np.abs(lg - ref[p]).max()))
                agree += int((lg.argmax(-1) == ref[p].argmax(-1)).sum())
                total += len(lg)
            report[v] = {"max_abs_logit_diff": max(diffs), "argmax_agreement": f"{agree}/{total}"}
        except Exception as e:
            report[v] = {"error": str(e)[:500]}
        log(f"community: {v}: {report[v]}")
    info = describe(out)
    info["variants_vs_model_onnx"] = report
    (cache / "onnx-community").mkdir(parents=True, exist_ok=True)
    (cache / "onnx-community" / f"{layout_name}.layout.json").write_text(json.dumps(info, indent=1, default=str) + "\n")


# ---------------------------------------------------------------------------------------------------
# fixtures (committed)


def fixtures(cache):
    """Committed builder fixtures: each FIXTURES entry recovered to CACHE/hf/fixture-<name> (the demo ones
    reuse CACHE/hf/demo-*), exported by the builder into models/builder/<name>-<precision>/ exactly as
    it emits them (build logs in CACHE/fixture-logs); genai greedy checked against transformers greedy
    (fp32 must match, int4 reported) -> CACHE/fixture-check.json; genai's greedy continuations (no EOS
    stop) -> models/builder/expectations.json; and the onnx-community folder models/community/llama."""
    import numpy as np

    report_path = cache / "fixture-check.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    exp_path = BUILDER_DIR / "expectations.json"
    expectations = json.loads(exp_path.read_text()) if exp_path.exists() else {}
    failures = []
    for name, src, precisions in FIXTURES:
        hf = cache / "hf" / (name if name.startswith("demo-") else f"fixture-{name}")
        recover_checkpoint(src, hf)
        torch_model = None
        for precision in precisions:
            folder_name = f"{name}-{precision}"
            folder = BUILDER_DIR / folder_name
            seconds = run_builder(hf, folder, precision, cache, logf=cache / "fixture-logs" / f"{folder_name}.log")
            if folder_name in expectations and folder_name in report and seconds is None:
                log(f"fixtures: {folder_name} checked, skipped")
                continue
            torch_model = torch_model or load_hf(hf)
            rows, exp_rows = [], []
            for prompt in PROMPTS:
                ids = encode(folder / "tokenizer.json", prompt)  # the builder's own tokenizer.json (qwen2: rewritten)
                t0 = time.time()
                g, eos_at = genai_greedy_no_eos(folder, ids, GREEDY_NEW_TOKENS)
                t_genai = time.time() - t0
                t = torch_greedy_no_eos(torch_model, ids, GREEDY_NEW_TOKENS)
                agree = next((i for i, (a, b) in enumerate(zip(g, t)) if a != b), len(t))
                rows.append({"prompt": prompt, "prompt_ids": ids, "genai_ids": g, "torch_ids": t, "equal": g == t,
                             "common_prefix": agree, "genai_eos_at": eos_at,
                             "src_tokenizer_ids": encode(src / "tokenizer.json", prompt),
                             "genai_tokenizer_ids": genai_tokenizer_ids(folder, prompt),
                             "genai_seconds": round(t_genai, 2)})
                exp_rows.append({"prompt": prompt, "prompt_ids": ids, "genai_ids": g, "genai_eos_at": eos_at})
                log(f"fixtures {folder_name}: {prompt!r}: genai == torch: {g == t} (common prefix {agree}/{len(t)})"
                    + (f", genai picked EOS at {eos_at}" if eos_at else ""))
            report[folder_name] = {"source": str(src.relative_to(ROOT)), "build_seconds": seconds,
                                   "files": file_list(folder), "prompts": rows}
            report_path.write_text(json.dumps(report, indent=1) + "\n")
            expectations[folder_name] = exp_rows
            exp_path.write_text(json.dumps(dict(sorted(expectations.items())), indent=1) + "\n")
            if precision == "fp32" and not all(r["equal"] for r in rows):
                failures.append(folder_name)
        del torch_model
    name, src, out = COMMUNITY_FIXTURE
    community(cache, src=src, out=out, recovered=cache / "hf" / f"fixture-{name}",
              variants=["model_fp16.onnx", "model_q4.onnx"], layout_name=f"fixture-{name}")
    write_manifest(cache, report, out, f"fixture-{name}")
    sizes = {str(p.relative_to(ROOT)): p.stat().st_size
             for d in [BUILDER_DIR, out] for p in sorted(d.rglob("*")) if p.is_file()}
    log(f"fixtures: {len(sizes)} files, {sum(sizes.values()) / 1e6:.2f} MB under models/builder and {out.relative_to(ROOT)}")
    if failures:
        sys.exit(f"fixtures: onnxruntime-genai greedy differs from transformers greedy for {failures}")


def write_manifest(cache, report, community_out, community_layout):
    """models/MANIFEST.json entries builder/<folder> and community/<name> (merged, like make_models.py)."""
    import onnxruntime_genai as og

    entries = {}
    for name, src, precisions in FIXTURES:
        hf = cache / "hf" / (name if name.startswith("demo-") else f"fixture-{name}")
        rec = json.loads((hf / "recover.json").read_text())
        for precision in precisions:
            folder = f"{name}-{precision}"
            rows = report[folder]["prompts"]
            entries[f"builder/{folder}"] = {
                "from": str(src.relative_to(ROOT / "models")),
                "made_by": "scripts/make_builder_models.py --stage fixtures",
                "builder": f"onnxruntime_genai.models.builder {og.__version__} -p {precision} -e cpu",
                "architecture": rec.get("architecture", "LlamaForCausalLM"), "parameters": rec["parameters"],
                "bytes": sum(file_list(BUILDER_DIR / folder).values()),
                "genai_greedy_equals_transformers": f"{sum(r['equal'] for r in rows)}/{len(rows)}",
                "expectations": "builder/expectations.json"}
    layout = json.loads((cache / "onnx-community" / f"{community_layout}.layout.json").read_text())
    entries[f"community/{community_out.name}"] = {
        "from": str(COMMUNITY_FIXTURE[1].relative_to(ROOT / "models")),
        "made_by": "scripts/make_builder_models.py --stage fixtures",
        "files": layout["files"], "variants_vs_model_onnx": layout["variants_vs_model_onnx"]}
    manifest = ROOT / "models" / "MANIFEST.json"
    old = json.loads(manifest.read_text()) if manifest.exists() else {}
    old.update(entries)
    manifest.write_text(json.dumps(old, indent=1, sort_keys=True) + "\n")


# ---------------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    stages = ["recover", "build", "check", "scaled", "qwen", "community"]
    ap.add_argument("--stage", default="all", choices=["all", *stages, "fixtures", "vocab32k", "gpu-pair"],
                    help="all = the cache stages; fixtures (models/builder, models/community/llama) and vocab32k "
                         "(models/builder/vocab32k-*) only when named")
    ap.add_argument("--cache", default=str(ROOT / ".cache" / "builder-models"), help="output folder (outside git)")
    args = ap.parse_args()
    cache = Path(args.cache).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    dot_cache = ROOT / ".cache"
    if cache.is_relative_to(dot_cache) and not (dot_cache / ".gitignore").exists():
        (dot_cache / ".gitignore").write_text("*\n")
    t0 = time.time()
    fns = {"recover": recover, "build": build, "check": check, "scaled": scaled, "qwen": qwen,
           "community": community, "fixtures": fixtures, "vocab32k": vocab32k, "gpu-pair": gpu_pair}
    for stage in stages if args.stage == "all" else [args.stage]:
        with Stage(stage):
            fns[stage](cache)
    log(f"done in {time.time() - t0:.1f} s; outputs under {cache}")


if __name__ == "__main__":
    main()
