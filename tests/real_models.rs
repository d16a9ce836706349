//! Real ONNX LLM layouts as their tools emit them: onnxruntime-genai builder exports
//! (GroupQueryAttention, genai_config.json, external data, fp32 and int4) and onnx-community
//! folders (graphs under onnx/, one per variant). Fixtures: models/builder/ and models/community/,
//! made by `scripts/make_builder_models.py --stage fixtures` from the committed Optimum exports.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use specdec::{DecoderState, Error, GenerationConfig, Generator, Model, ModelOptions, SamplingConfig, Tokenizer};

fn builder(name: &str) -> PathBuf {
    models_dir().join("builder").join(name)
}

fn community() -> PathBuf {
    models_dir().join("community").join("llama")
}

fn load_with(path: &Path, options: ModelOptions) -> specdec::Result<Model> {
    specdec::runtime::init(None).expect("ONNX Runtime");
    Model::load(path, &ModelOptions { intra_threads: 1, ..options })
}

fn greedy() -> SamplingConfig {
    SamplingConfig::default()
}

fn prompt() -> Vec<u32> {
    tokenizer().encode(PROMPTS[1]).unwrap()
}

/// Builder exports of the fixtures beside the Optimum export of the same weights.
const SAME_WEIGHTS: [(&str, &str); 3] = [("llama-fp32", "llama"), ("qwen2-fp32", "qwen2"), ("draft-fp32", "draft")];

#[test]
fn builder_folders_load_with_no_file_added() {
    for name in ["llama-fp32", "llama-int4", "qwen2-fp32", "qwen2-int4", "draft-fp32", "demo-target-int4"] {
        let path = builder(name);
        assert!(!path.join("config.json").exists(), "{name}: the fixture must be as the builder emits it");
        let model = load(&path);
        let info = model.info();
        println!("{name}: {info:?}, shared KV buffer {}", model.layout().shared_buffer);
        assert!(model.layout().shared_buffer, "{name}: genai asks for past_present_share_buffer");
        assert!(model.layout().position_ids.is_none());
        assert!(info.head_dim > 0 && info.kv_heads > 0 && info.layers > 0);
    }
    // The head size comes from genai_config.json (the graph leaves it symbolic).
    let llama = load(builder("llama-fp32"));
    let optimum = load(fixture("llama"));
    assert_eq!(
        (llama.info().head_dim, llama.info().kv_heads, llama.info().layers, llama.info().vocab_size),
        (optimum.info().head_dim, optimum.info().kv_heads, optimum.info().layers, optimum.info().vocab_size)
    );
}

#[test]
fn builder_and_optimum_exports_of_the_same_weights_agree() {
    let prompt = prompt();
    for (built, original) in SAME_WEIGHTS {
        let (b, o) = (load(builder(built)), load(fixture(original)));
        let (got, _) = generate_n(&b, None, &prompt, 1, 48, &greedy());
        let (want, _) = generate_n(&o, None, &prompt, 1, 48, &greedy());
        match got.iter().zip(&want).position(|(a, b)| a != b) {
            None => println!("{built} vs {original}: 48 greedy tokens identical"),
            Some(i) => {
                let prefix = [prompt.clone(), want[..i].to_vec()].concat();
                let margin = top2_margin(&o, &prefix);
                println!("{built} vs {original}: first difference at token {i}, Optimum top-2 margin {margin:.3e}");
                assert!(margin < 1e-3, "{built} and {original} differ at token {i} away from a near-tie ({margin})");
            }
        }
    }
}

#[test]
fn greedy_output_equals_onnxruntime_genai_on_the_builder_files() {
    let text = std::fs::read_to_string(builder("expectations.json")).unwrap();
    let expectations: serde_json::Value = serde_json::from_str(&text).unwrap();
    let folders = expectations.as_object().expect("{folder: [cases]}");
    assert!(folders.len() >= 9, "{} folders", folders.len());
    let mut compared = 0;
    for (folder, cases) in folders {
        let model = load(builder(folder));
        for case in cases.as_array().unwrap() {
            let ids =
                |key: &str| -> Vec<u32> { case[key].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect() };
            let (prompt, want) = (ids("prompt_ids"), ids("genai_ids"));
            let (got, _) = generate_n(&model, None, &prompt, 1, want.len(), &greedy());
            assert_eq!(got, want, "{folder}: specdec's greedy output differs from onnxruntime-genai's on {prompt:?}");
            compared += 1;
        }
    }
    println!("{compared} continuations equal to onnxruntime-genai's");
}

/// Pairs of builder exports (and one mixed pair: a builder target with an Optimum draft).
fn builder_pairs() -> Vec<(PathBuf, PathBuf)> {
    vec![
        (builder("llama-fp32"), builder("draft-fp32")),
        (builder("llama-int4"), builder("draft-int4")),
        (builder("demo-target-int4"), builder("demo-draft-int4")),
        (builder("demo-target-int4"), models_dir().join("demo").join("draft")),
        (builder("vocab32k-target"), builder("vocab32k-draft")),
    ]
}

/// A divergence from target-only greedy at a top-2 margin below this is reported, not failed:
/// fp32 graphs differ between call shapes by float rounding (~1e-6); int4 `MatMulNBits` at
/// accuracy level 4 quantizes activations to int8 per block, so a k-token verification call and
/// k one-token calls round differently, by ~1e-3 in the logits (measured: a 1.1e-3 near-tie on
/// the demo int4 pair).
fn near_tie(target: &Path) -> f32 {
    if target.to_string_lossy().contains("int4") {
        1e-2
    } else {
        1e-3
    }
}

#[test]
fn speculative_greedy_equals_target_only_on_builder_pairs_without_kv_copies() {
    let tok = tokenizer();
    let mut near_ties = Vec::new();
    for (t, d) in builder_pairs() {
        let (target, draft) = (load(&t), load(&d));
        let mut rejected = 0;
        for text in &PROMPTS[..3] {
            let prompt = tok.encode(text).unwrap();
            let (want, _) = generate_n(&target, None, &prompt, 1, 64, &greedy());
            for gamma in 1..=8 {
                let (got, stats) = generate_n(&target, Some(&draft), &prompt, gamma, 64, &greedy());
                let what = format!("{} + {} at gamma {gamma}", t.display(), d.display());
                if let Some(m) = compare(near_tie(&t), &what, &target, &prompt, &want, &got, false) {
                    let at = want.iter().zip(&got).position(|(a, b)| a != b).unwrap_or(0);
                    near_ties.push((t.clone(), text.to_string(), at, m));
                }
                rejected += stats.rejected;
            }
        }
        let kv = target.kv_copy_stats();
        println!("{} + {}: gamma 1..8 checked; {rejected} rejections; target KV {kv:?}", t.display(), d.display());
        assert!(rejected > 0, "no rejection: rollback went untested");
        assert_eq!((kv.host_copies, kv.compactions), (0, 0), "a shared-buffer cache copied KV data");
    }
    // The same tie shows at every gamma (a verification call rounds differently from the
    // one-token calls of target-only decoding); count the distinct places.
    let mut places: Vec<_> = near_ties.iter().map(|(t, p, at, _)| (t.clone(), p.clone(), *at)).collect();
    places.dedup();
    println!("{} of 96 comparisons diverged at a reported near-tie, at {} distinct places", near_ties.len(), places.len());
    assert!(places.len() <= 2, "too many near-ties to be ties: {near_ties:?}");
}

#[test]
fn a_rolled_back_shared_buffer_gives_the_logits_of_a_fresh_one() {
    let model = load(builder("llama-fp32"));
    let tok = tokenizer();
    let prompt = tok.encode(PROMPTS[0]).unwrap();
    let junk = tok.encode(" junk tokens that get rejected").unwrap();
    let cont = tok.encode(" the real continuation").unwrap();
    let mut fresh = DecoderState::new(model.clone()).unwrap();
    let mut want = Vec::new();
    fresh.forward(&[prompt.clone(), cont.clone()].concat(), cont.len(), &mut want).unwrap();
    let mut state = DecoderState::new(model.clone()).unwrap();
    let mut got = Vec::new();
    state.forward(&prompt, 1, &mut got).unwrap();
    for round in 0..3 {
        state.forward(&junk[..4 - round], 1, &mut got).unwrap();
        state.rewind(prompt.len()).unwrap();
    }
    state.forward(&cont, cont.len(), &mut got).unwrap();
    let diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    println!("rolled back vs fresh: max |diff| {diff:.2e}; cache shared {}", state.cache().is_shared_buffer());
    assert!(state.cache().is_shared_buffer());
    assert!(diff < 1e-4, "{diff}");
    assert_eq!(state.cache().compactions(), 0);
    // A prompt longer than one chunk (256 tokens) goes in several calls on the same buffer.
    let long = tok.encode(&PROMPTS.concat().repeat(4)).unwrap();
    let mut one = DecoderState::new(model.clone()).unwrap();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    one.forward(&long[..300], 1, &mut a).unwrap();
    let mut steps = DecoderState::new(model).unwrap();
    steps.forward(&long[..150], 1, &mut b).unwrap();
    steps.forward(&long[150..300], 1, &mut b).unwrap();
    let diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
    assert!(diff < 1e-4, "chunked prompt: {diff}");
}

#[test]
fn onnx_community_variants_load_by_name() {
    let path = community();
    // Several graphs and no choice: an error naming them.
    let e = load_with(&path, ModelOptions::default()).err().expect("several variants without a choice");
    let msg = e.to_string();
    println!("{msg}");
    assert!(msg.contains("default") && msg.contains("fp16") && msg.contains("q4"), "{msg}");
    let e = load_with(&path, ModelOptions { variant: Some("q8".into()), ..Default::default() }).err().unwrap();
    assert!(e.to_string().contains("q8") && e.to_string().contains("q4"), "{e}");
    let prompt = prompt();
    let mut outputs = Vec::new();
    for variant in ["default", "fp16", "q4"] {
        let model = Arc::new(load_with(&path, ModelOptions { variant: Some(variant.into()), ..Default::default() }).unwrap());
        assert_eq!(model.info().vocab_size, 512);
        let (got, _) = generate_n(&model, None, &prompt, 1, 24, &greedy());
        let (spec, _) = generate_n(&model, Some(&load(fixture("draft"))), &prompt, 4, 24, &greedy());
        assert_eq!(spec, got, "{variant}: speculative greedy differs from target-only");
        println!("{variant}: {:?} (kv {:?})", &got[..8], model.layout().kv_type);
        outputs.push(got);
    }
    // The default graph is the Optimum export of the llama fixture.
    let (want, _) = generate_n(&load(fixture("llama")), None, &prompt, 1, 24, &greedy());
    assert_eq!(outputs[0], want);
}

#[test]
fn broken_builder_folders_get_clear_errors_and_leave_other_handles_usable() {
    let good = load(builder("llama-fp32"));
    let dir = std::env::temp_dir().join(format!("specdec-real-models-{}", std::process::id()));
    let copy = |name: &str, skip: &str| -> PathBuf {
        let to = dir.join(name);
        std::fs::create_dir_all(&to).unwrap();
        for entry in std::fs::read_dir(builder("llama-fp32")).unwrap() {
            let entry = entry.unwrap();
            if entry.file_name() != skip {
                std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            }
        }
        to
    };
    // Without its external data.
    let no_data = copy("no-data", "model.onnx.data");
    let e = load_with(&no_data, ModelOptions::default()).err().expect("a graph without its weights");
    println!("without model.onnx.data: {e}");
    assert!(matches!(e, Error::InvalidModel { .. }) && e.to_string().contains("model.onnx.data"), "{e}");
    // Head counts that contradict the graph.
    let wrong = copy("wrong-heads", "");
    let config_path = wrong.join("genai_config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    let kv = config["model"]["decoder"]["num_key_value_heads"].as_u64().unwrap();
    config["model"]["decoder"]["num_key_value_heads"] = (kv + 1).into();
    std::fs::write(&config_path, config.to_string()).unwrap();
    let e = load_with(&wrong, ModelOptions::default()).err().expect("contradicting head counts");
    println!("wrong KV heads: {e}");
    assert!(matches!(e, Error::UnsupportedLayout { .. }) && e.to_string().contains("KV head count"), "{e}");
    // A variant asked of a folder that has none of that name.
    let e = load_with(&builder("llama-fp32"), ModelOptions { variant: Some("q4".into()), ..Default::default() }).err().unwrap();
    assert!(e.to_string().contains("q4"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
    // The model loaded before still generates.
    let (out, _) = generate_n(&good, None, &prompt(), 1, 8, &greedy());
    assert_eq!(out.len(), 8);
}

#[test]
fn ids_the_tokenizer_lacks_neither_crash_decoding_nor_stop_generation() {
    // A tokenizer of 8 tokens on a 512-token model: almost every generated id is unknown to it.
    let json = r#"{"version":"1.0","model":{"type":"WordLevel","vocab":{"a":0,"b":1,"c":2,"d":3,"e":4,"f":5,"g":6,"h":7},"unk_token":"a"},"pre_tokenizer":{"type":"Whitespace"},"decoder":null,"added_tokens":[],"normalizer":null,"post_processor":null}"#;
    let small = Arc::new(Tokenizer::from_json_bytes(json.as_bytes()).unwrap());
    assert_eq!(small.decode_known(&[1, 300, 2]).unwrap(), "b c");
    assert!(matches!(small.decode(&[300]), Err(Error::TokenOutOfRange { .. })), "plain decode stays strict");
    let target = load(builder("llama-fp32"));
    let cfg =
        GenerationConfig { max_new_tokens: 16, eos_ids: Some(vec![]), stop_texts: vec!["zzz".into()], ..Default::default() };
    let mut g = Generator::new(target, None, cfg).unwrap();
    g.set_tokenizer(small);
    g.append_tokens(&prompt()).unwrap();
    g.generate(|_| true).expect("text stop sequences with ids the tokenizer lacks");
    assert_eq!(g.tokens().len(), prompt().len() + 16);
}

#[test]
fn forks_and_rewinds_on_shared_buffers_are_exact() {
    // A fork copies the prefix into a buffer of its own (same capacity); a rewind only shortens
    // the mask. Both must continue exactly as a generator that computed everything itself.
    let (target, draft) = (load(builder("llama-fp32")), load(builder("draft-fp32")));
    let prompt = prompt();
    let cfg = GenerationConfig { gamma: 3, max_new_tokens: 32, eos_ids: Some(vec![]), ..Default::default() };
    let run = |g: &mut Generator| -> Vec<u32> {
        g.generate(|_| true).unwrap();
        g.tokens().to_vec()
    };
    let mut fresh = Generator::new(target.clone(), Some(draft.clone()), cfg.clone()).unwrap();
    fresh.append_tokens(&prompt).unwrap();
    let want = run(&mut fresh);
    let mut source = Generator::new(target.clone(), Some(draft.clone()), cfg.clone()).unwrap();
    source.append_tokens(&prompt).unwrap();
    source.prefill().unwrap();
    let mut fork = source.fork(prompt.len()).unwrap();
    assert_eq!(run(&mut fork), want, "a fork of a shared-buffer generator");
    assert_eq!(run(&mut source), want, "the fork's source");
    // Rewind into the generated part and generate again: the same continuation.
    source.rewind(prompt.len() + 5).unwrap();
    let mut again = Generator::new(target, Some(draft), cfg).unwrap();
    again.append_tokens(&want[..prompt.len() + 5]).unwrap();
    let want_again = run(&mut again);
    let got_again = run(&mut source);
    println!("after a rewind to {}: {} tokens, recomputed: {}", prompt.len() + 5, got_again.len(), want_again.len());
    assert!(got_again.len() > prompt.len() + 5, "nothing generated after the rewind");
    let n = want_again.len().min(got_again.len());
    assert_eq!(got_again[..n], want_again[..n], "a rewound shared-buffer generator continues as a recomputed one");
}
