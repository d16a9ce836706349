//! What an embedder needs beyond generation: a clean finish at the context limit, room checks,
//! log-probabilities equal to target-only decoding's, model metadata, loading from memory, and
//! timings.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use specdec::{
    ContextLimitSource, ElemType, Error, FinishReason, GenerationConfig, Generator, Model, ModelOptions, SamplingConfig,
};

fn demo(name: &str) -> std::path::PathBuf {
    models_dir().join("demo").join(name)
}

fn greedy(max_new_tokens: usize) -> GenerationConfig {
    GenerationConfig { max_new_tokens, eos_ids: Some(vec![]), ..Default::default() }
}

fn sampled(max_new_tokens: usize, seed: u64) -> GenerationConfig {
    GenerationConfig {
        sampling: SamplingConfig { temperature: 0.8, top_k: 40, ..Default::default() },
        seed,
        ..greedy(max_new_tokens)
    }
}

fn prompt(i: usize) -> Vec<u32> {
    tokenizer().encode(PROMPTS[i]).unwrap()
}

fn run(g: &mut Generator, prompt: &[u32]) -> Vec<u32> {
    let before = g.tokens().len();
    g.append_tokens(prompt).unwrap();
    g.generate(|_| true).unwrap();
    g.tokens()[before + prompt.len()..].to_vec()
}

fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("specdec-embedder-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---------------------------------------------------------------------------------------------
// Finish reasons and room in the context

#[test]
fn a_full_context_ends_the_generation_with_length_when_asked() {
    let target = load(fixture("llama"));
    let draft = load(fixture("draft"));
    let limit = target.info().context_limit;
    let filler: Vec<u32> = (0..limit - 20).map(|i| (i * 7 % 500) as u32 + 1).collect();
    for d in [None, Some(draft.clone())] {
        // The default (ABI 1): the step after the context is full fails.
        let mut g = Generator::new(target.clone(), d.clone(), greedy(100)).unwrap();
        g.append_tokens(&filler).unwrap();
        assert!(matches!(g.generate(|_| true), Err(Error::ContextLimit { .. })));
        let errored = g.tokens().to_vec();
        assert_eq!(errored.len(), limit);
        assert_eq!(g.finish_reason(), None);
        // Asked for: the same tokens, then a clean finish that stays finished.
        let cfg = GenerationConfig { finish_at_context_limit: true, ..greedy(100) };
        let mut g = Generator::new(target.clone(), d.clone(), cfg).unwrap();
        g.append_tokens(&filler).unwrap();
        assert_eq!(g.generate(|_| true).unwrap(), FinishReason::Length);
        assert_eq!(g.tokens(), errored.as_slice());
        assert_eq!((g.finish_reason(), g.context_room()), (Some(FinishReason::Length), 0));
        assert!(g.step().unwrap().is_empty());
        assert_eq!(FinishReason::Length.as_str(), "length");
        // The budget wins when both end the generation at the same token.
        let cfg = GenerationConfig { finish_at_context_limit: true, ..greedy(20) };
        let mut g = Generator::new(target.clone(), d, cfg).unwrap();
        g.append_tokens(&filler).unwrap();
        assert_eq!(g.generate(|_| true).unwrap(), FinishReason::MaxTokens);
    }
}

#[test]
fn room_for_max_new_tokens_is_checked_only_when_asked_and_says_what_fits() {
    let target = load(fixture("llama"));
    let limit = target.info().context_limit;
    let filler = vec![5u32; limit - 20];
    let mut g = Generator::new(target.clone(), None, greedy(100)).unwrap();
    assert_eq!(g.context_room(), limit);
    g.append_tokens(&filler).unwrap();
    assert_eq!(g.context_room(), 20);

    let cfg = GenerationConfig { reserve_max_new_tokens: true, ..greedy(100) };
    let mut g = Generator::new(target.clone(), None, cfg).unwrap();
    let e = g.append_tokens(&filler).unwrap_err();
    assert!(
        matches!(e, Error::ContextRoom { prompt, fits: 20, max_new_tokens: 100, limit: l } if prompt == limit - 20 && l == limit)
    );
    assert_eq!(e.code(), 7008, "the status is SPECDEC_STATUS_CONTEXT_LIMIT");
    assert!(e.to_string().contains("20 new tokens fit"), "{e}");
    assert!(g.tokens().is_empty(), "a refused prompt changes nothing");
    // 100 tokens of room: accepted.
    g.append_tokens(&filler[..limit - 100]).unwrap();
    assert_eq!(g.context_room(), 100);
}

// ---------------------------------------------------------------------------------------------
// Log-probabilities

#[test]
fn logprobs_of_speculative_decoding_equal_target_only_decodings() {
    let pairs =
        [("demo pair", load(demo("target")), load(demo("draft"))), ("llama", load(fixture("llama")), load(fixture("draft")))];
    for (what, target, draft) in pairs {
        let p = prompt(0);
        let cfg = GenerationConfig { logprobs: 5, ..greedy(32) };
        let mut base = Generator::new(target.clone(), None, cfg.clone()).unwrap();
        let want = run(&mut base, &p);
        let mut spec = Generator::new(target.clone(), Some(draft.clone()), cfg).unwrap();
        assert_eq!(run(&mut spec, &p), want, "{what}: greedy tokens");
        assert_eq!(run(&mut Generator::new(target.clone(), Some(draft.clone()), greedy(32)).unwrap(), &p), want);
        let (a, b) = (base.logprobs(), spec.logprobs());
        assert_eq!((a.len(), b.len(), b.top_n()), (32, 32, 5));
        for i in 0..32 {
            let (x, y) = (a.chosen()[i], b.chosen()[i]);
            assert_eq!((x.token, x.logprob, y.logprob), (y.token, 0.0, 0.0), "{what}: greedy picks from a point mass");
            assert!((x.raw_logprob - y.raw_logprob).abs() < 2e-3, "{what}: token {i}: {x:?} vs {y:?}");
            for (u, v) in a.top(i).iter().zip(b.top(i)) {
                assert!((u.raw_logprob - v.raw_logprob).abs() < 2e-3, "{what}: token {i}: alternatives {u:?} vs {v:?}");
            }
        }
        // Sampled: turning them on changes no token.
        let off = run(&mut Generator::new(target.clone(), Some(draft.clone()), sampled(32, 3)).unwrap(), &p);
        let on = GenerationConfig { logprobs: 3, ..sampled(32, 3) };
        assert_eq!(run(&mut Generator::new(target.clone(), Some(draft.clone()), on).unwrap(), &p), off, "{what}: sampled tokens");
    }
}

// ---------------------------------------------------------------------------------------------
// Metadata, context limits, loading from memory

#[test]
fn models_describe_themselves() {
    let m = load(demo("target"));
    let info = m.info();
    assert_eq!((info.bos_id, info.pad_id, info.eos_ids.as_slice()), (Some(0), None, &[0u32][..]));
    assert_eq!(info.architecture.as_deref(), Some("LlamaForCausalLM"));
    assert_eq!((info.layers, info.kv_heads, info.head_dim), (6, 2, 64));
    assert_eq!((info.context_limit, info.context_limit_source), (1024, ContextLimitSource::Config));
    assert_eq!((m.kv_type(), m.kv_type().name()), (ElemType::F32, "float32"));
    assert_eq!(m.device().to_string(), "cpu");
    assert_eq!(load(fixture("gpt2")).info().architecture.as_deref(), Some("GPT2LMHeadModel"));
}

/// A folder holding only `name`'s model.onnx (no config.json).
fn bare_copy(name: &str) -> std::path::PathBuf {
    let dir = scratch_dir(&format!("bare-{name}"));
    std::fs::copy(fixture(name).join("model.onnx"), dir.join("model.onnx")).unwrap();
    dir
}

#[test]
fn the_context_limit_comes_from_the_graph_without_config_json() {
    // GPT-2 learns a table of 512 positions: without config.json that is the limit, and
    // generation stops there instead of failing inside ONNX Runtime at token 513.
    let gpt2 = load(bare_copy("gpt2"));
    assert_eq!((gpt2.info().context_limit, gpt2.info().context_limit_source), (512, ContextLimitSource::Graph));
    let cfg = GenerationConfig { finish_at_context_limit: true, ..greedy(64) };
    let mut g = Generator::new(gpt2.clone(), None, cfg).unwrap();
    g.append_tokens(&vec![3; 500]).unwrap();
    assert_eq!(g.generate(|_| true).unwrap(), FinishReason::Length);
    assert_eq!(g.tokens().len(), 512);
    // Rotary models have no table: the default, said so (a warning, see tests/logging.rs).
    let llama = load(bare_copy("llama"));
    assert_eq!(
        (llama.info().context_limit, llama.info().context_limit_source),
        (specdec::model::DEFAULT_CONTEXT_LIMIT, ContextLimitSource::Default)
    );
    // The caller's value wins.
    let options = ModelOptions { context_limit: Some(300), ..Default::default() };
    let m = Model::load(bare_copy("llama"), &options).unwrap();
    assert_eq!((m.info().context_limit, m.info().context_limit_source), (300, ContextLimitSource::Options));
    let options = ModelOptions { context_limit: Some(0), ..Default::default() };
    assert!(matches!(Model::load(fixture("llama"), &options), Err(Error::InvalidArgument(_))));
}

#[test]
fn a_model_loads_from_memory() {
    let dir = fixture("llama");
    let bytes = std::fs::read(dir.join("model.onnx")).unwrap();
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let generation = std::fs::read_to_string(dir.join("generation_config.json")).unwrap();
    let options = ModelOptions { intra_threads: 1, ..Default::default() };
    let m = Arc::new(Model::load_from_memory(&bytes, Some(&config), Some(&generation), &options).unwrap());
    drop(bytes);
    let file = load(&dir);
    assert_eq!(m.path().to_str(), Some("<memory>"));
    assert_eq!(m.info().tokenizer_fingerprint, None);
    assert_eq!(
        (m.info().vocab_size, m.info().context_limit, &m.info().eos_ids),
        (file.info().vocab_size, file.info().context_limit, &file.info().eos_ids)
    );
    let p = prompt(1);
    let want = run(&mut Generator::new(file, None, greedy(24)).unwrap(), &p);
    assert_eq!(run(&mut Generator::new(m, Some(load(fixture("draft"))), greedy(24)).unwrap(), &p), want);
    // Without config files the graph's facts suffice here; bad bytes and bad JSON are refused.
    let bytes = std::fs::read(fixture("gpt2").join("model.onnx")).unwrap();
    let bare = Model::load_from_memory(&bytes, None, None, &options).unwrap();
    assert_eq!((bare.info().context_limit, bare.info().context_limit_source), (512, ContextLimitSource::Graph));
    assert!(matches!(Model::load_from_memory(b"not a model", None, None, &options), Err(Error::InvalidModel { .. })));
    assert!(matches!(Model::load_from_memory(&bytes, Some("{"), None, &options), Err(Error::Io { .. })));
}

// ---------------------------------------------------------------------------------------------
// Timings

#[test]
fn time_to_first_token_and_rounds_are_recorded_per_generation() {
    let target = load(fixture("llama"));
    let mut g = Generator::new(target, Some(load(fixture("draft"))), greedy(32)).unwrap();
    assert_eq!(g.stats().time_to_first_token, Duration::ZERO);
    run(&mut g, &prompt(0));
    let (s, rounds) = (*g.stats(), g.rounds().to_vec());
    assert!(s.time_to_first_token > Duration::ZERO && s.time_to_first_token <= s.total_time);
    assert_eq!(rounds.len() as u64, s.rounds);
    assert_eq!(rounds[0].end, s.time_to_first_token, "the first round brings the first token");
    assert_eq!(rounds.iter().map(|r| r.emitted).sum::<usize>(), 32);
    assert_eq!(rounds.iter().map(|r| r.accepted as u64).sum::<u64>(), s.accepted);
    assert_eq!(rounds.iter().map(|r| r.proposed as u64).sum::<u64>(), s.drafted);
    for w in rounds.windows(2) {
        assert!(w[0].start <= w[0].end && w[0].end <= w[1].start, "{w:?}");
    }
    assert!(rounds.iter().all(|r| r.target_time <= r.end - r.start));
    // A new prompt: a new timeline.
    g.append_tokens(&[1]).unwrap();
    assert!(g.rounds().is_empty());
    g.step().unwrap();
    assert_eq!(g.rounds().len(), 1);
    assert_eq!(g.rounds()[0].start, Duration::ZERO);
    assert_eq!(g.stats().time_to_first_token, g.rounds()[0].end);
}
