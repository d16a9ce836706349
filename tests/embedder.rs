//! What an embedder needs beyond generation: a clean finish at the context limit, room checks,
//! log-probabilities equal to target-only decoding's, rewinding, new settings between turns,
//! forks that reuse a prefix's KV, model metadata, loading from memory, and timings.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use specdec::{
    ContextLimitSource, DraftSource, ElemType, Error, FinishReason, GenerationConfig, Generator, Model, ModelOptions,
    NGramConfig, SamplingConfig, TokenLogprob,
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

/// A prompt of exactly `n` tokens of code-like text.
fn long_prompt(n: usize) -> Vec<u32> {
    let text = PROMPTS.iter().cycle().take(12).copied().collect::<Vec<_>>().join("\n");
    let ids = tokenizer().encode(&text).unwrap();
    assert!(ids.len() >= n, "{} tokens of text, {n} wanted", ids.len());
    ids[..n].to_vec()
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

/// What target-only decoding reports at every position of `tokens` after `prompt`: the target
/// alone, fed the same sequence one token at a time (rewinding away its own pick each time), listing
/// the most alternatives it can. Entry i: the alternatives at the position of `tokens[i]`.
fn target_only_logprobs(target: &Arc<Model>, cfg: &GenerationConfig, prompt: &[u32], tokens: &[u32]) -> Vec<Vec<TokenLogprob>> {
    let cfg = GenerationConfig { logprobs: specdec::generator::MAX_LOGPROBS, max_new_tokens: 1, ..cfg.clone() };
    let mut g = Generator::new(target.clone(), None, cfg).unwrap();
    g.append_tokens(prompt).unwrap();
    let mut out = Vec::new();
    for &t in tokens {
        let at = g.tokens().len();
        assert_eq!(g.step().unwrap().len(), 1);
        let lp = g.logprobs();
        assert_eq!(lp.len(), 1);
        out.push(lp.top(0).to_vec());
        g.rewind(at).unwrap();
        g.append_tokens(&[t]).unwrap();
    }
    out
}

fn close(a: f32, b: f32) -> bool {
    (a == f32::NEG_INFINITY && b == f32::NEG_INFINITY) || (a - b).abs() <= 2e-3
}

/// Speculative decoding with log-probabilities on: the same tokens as with them off, and at every
/// position the token's and its alternatives' log-probabilities equal target-only decoding's.
fn check_logprobs(target: &Arc<Model>, draft: &Arc<Model>, cfg: GenerationConfig, what: &str) {
    const TOP: usize = 5;
    let p = prompt(0);
    let off = run(&mut Generator::new(target.clone(), Some(draft.clone()), cfg.clone()).unwrap(), &p);
    let on_cfg = GenerationConfig { logprobs: TOP, ..cfg.clone() };
    let mut g = Generator::new(target.clone(), Some(draft.clone()), on_cfg).unwrap();
    let on = run(&mut g, &p);
    assert_eq!(on, off, "{what}: turning log-probabilities on changed the tokens");
    assert!(g.stats().accepted > 0, "{what}: no proposal accepted: the speculative rows went untested");
    let lp = g.logprobs();
    assert_eq!((lp.len(), lp.top_n()), (on.len(), TOP));
    let reference = target_only_logprobs(target, &cfg, &p, &on);
    let mut worst = 0.0f32;
    for (i, (&t, all)) in on.iter().zip(&reference).enumerate() {
        let find = |x: u32| {
            all.iter()
                .find(|r| r.token == x)
                .copied()
                .unwrap_or_else(|| panic!("{what}: token {x} not in the reference's top list"))
        };
        let mine = lp.chosen()[i];
        let want = find(t);
        assert_eq!(mine.token, t);
        assert!(
            close(mine.logprob, want.logprob) && close(mine.raw_logprob, want.raw_logprob),
            "{what}: token {i} ({t}): {mine:?}, target-only {want:?}"
        );
        if mine.raw_logprob.is_finite() {
            worst = worst.max((mine.raw_logprob - want.raw_logprob).abs());
        }
        // The alternatives: target-only's own values, most likely first.
        for (j, alt) in lp.top(i).iter().enumerate() {
            let want = find(alt.token);
            assert!(
                close(alt.logprob, want.logprob) && close(alt.raw_logprob, want.raw_logprob),
                "{what}: token {i} alternative {j}"
            );
            assert!(close(alt.raw_logprob, reference[i][j].raw_logprob), "{what}: token {i}: alternative {j} out of order");
        }
        // Greedy samples from a point mass: 0 for the pick; sampling with top-k cuts the tail.
        if cfg.sampling.is_greedy() {
            assert_eq!(mine.logprob, 0.0);
        } else {
            assert_eq!(reference[i].iter().filter(|r| r.logprob.is_finite()).count(), cfg.sampling.top_k);
        }
    }
    println!(
        "{what}: {} tokens, log-probabilities equal to target-only decoding's (largest raw difference {worst:.2e})",
        on.len()
    );
}

#[test]
fn logprobs_equal_target_only_decoding_on_the_demo_pair() {
    let (target, draft) = (load(demo("target")), load(demo("draft")));
    check_logprobs(&target, &draft, greedy(32), "demo pair, greedy");
    check_logprobs(&target, &draft, sampled(32, 11), "demo pair, sampled");
}

#[test]
fn logprobs_equal_target_only_decoding_on_two_fixtures() {
    let draft = load(fixture("draft"));
    for arch in ["llama", "gpt2"] {
        let target = load(fixture(arch));
        check_logprobs(&target, &draft, greedy(32), &format!("{arch}, greedy"));
        check_logprobs(&target, &draft, sampled(32, 5), &format!("{arch}, sampled"));
    }
}

#[test]
fn logprobs_cover_the_current_generation_and_follow_rewinds_and_settings() {
    let target = load(fixture("llama"));
    let cfg = GenerationConfig { logprobs: 3, ..greedy(10) };
    let mut g = Generator::new(target.clone(), Some(load(fixture("draft"))), cfg.clone()).unwrap();
    assert!(g.logprobs().is_empty());
    run(&mut g, &prompt(1));
    assert_eq!(g.logprobs().len(), 10);
    g.rewind(g.tokens().len() - 4).unwrap();
    assert_eq!(g.logprobs().len(), 6, "records follow the rewind");
    g.generate(|_| true).unwrap();
    assert_eq!(g.logprobs().len(), 10);
    run(&mut g, &[1, 2]);
    assert_eq!(g.logprobs().len(), 10, "a new prompt starts a new generation");
    g.set_config(GenerationConfig { logprobs: 0, ..cfg.clone() }).unwrap();
    assert!(g.logprobs().is_empty());
    run(&mut g, &[3]);
    assert!(g.logprobs().is_empty(), "off means none");
    assert!(matches!(
        Generator::new(target, None, GenerationConfig { logprobs: 257, ..cfg }),
        Err(Error::InvalidArgument(m)) if m.contains("logprobs")
    ));
}

// ---------------------------------------------------------------------------------------------
// Rewind and settings between turns

#[test]
fn rewinding_continues_and_retries_exactly() {
    let target = load(fixture("llama"));
    let draft = load(fixture("draft"));
    let p = prompt(0);
    // Greedy: rewinding into the generation and going on gives the uninterrupted output.
    let mut g = Generator::new(target.clone(), Some(draft.clone()), greedy(24)).unwrap();
    let want = run(&mut g, &p);
    g.rewind(p.len() + 10).unwrap();
    assert_eq!(g.finish_reason(), None);
    assert_eq!(g.generate(|_| true).unwrap(), FinishReason::MaxTokens);
    assert_eq!(&g.tokens()[p.len()..], want.as_slice(), "continuing after a rewind into the generation");
    // Rewinding into the prompt starts a fresh generation after the kept tokens.
    g.rewind(p.len() - 3).unwrap();
    g.append_tokens(&p[p.len() - 3..]).unwrap();
    g.generate(|_| true).unwrap();
    assert_eq!(&g.tokens()[p.len()..], want.as_slice(), "the prompt edited back to itself");
    // Bad input changes nothing.
    let len = g.tokens().len();
    assert!(matches!(g.rewind(len + 1), Err(Error::InvalidArgument(m)) if m.contains("rewind")));
    assert_eq!(g.tokens().len(), len);
    g.rewind(len).unwrap();
    assert_eq!(g.tokens().len(), len, "rewinding to the length is a no-op on the tokens");

    // Sampled retries: the seed set again restarts the random stream, so a retry repeats the
    // first answer; another seed gives another.
    let cfg = sampled(24, 3);
    let mut g = Generator::new(target.clone(), Some(draft.clone()), cfg.clone()).unwrap();
    let first = run(&mut g, &p);
    g.rewind(p.len()).unwrap();
    g.set_config(cfg.clone()).unwrap();
    g.generate(|_| true).unwrap();
    assert_eq!(&g.tokens()[p.len()..], first.as_slice(), "a retry with the same seed");
    g.rewind(p.len()).unwrap();
    g.set_config(GenerationConfig { seed: 4, ..cfg }).unwrap();
    g.generate(|_| true).unwrap();
    assert_ne!(&g.tokens()[p.len()..], first.as_slice(), "another seed, another answer");
    // Rewinding to nothing empties the generator; it needs a prompt again.
    g.rewind(0).unwrap();
    assert!(g.tokens().is_empty());
    assert!(matches!(g.step(), Err(Error::InvalidArgument(_))));
}

#[test]
fn settings_change_between_turns() {
    let target = load(fixture("llama"));
    let mut g = Generator::new(target.clone(), Some(load(fixture("draft"))), greedy(16)).unwrap();
    let first = run(&mut g, &prompt(0));
    assert_eq!(first.len(), 16);
    // A shorter budget and the sampled settings of a fresh generator for the next turn.
    let next = GenerationConfig { max_new_tokens: 5, ..sampled(5, 9) };
    g.set_config(next.clone()).unwrap();
    assert_eq!(g.config(), &next);
    let second = run(&mut g, &prompt(1));
    assert_eq!(second.len(), 5);
    // Refused settings leave the old ones.
    let bad = GenerationConfig { eos_ids: Some(vec![512]), ..next.clone() };
    assert!(matches!(g.set_config(bad), Err(Error::TokenOutOfRange { id: 512, .. })));
    let bad = GenerationConfig { gamma: 0, ..next.clone() };
    assert!(matches!(g.set_config(bad), Err(Error::InvalidArgument(_))));
    assert_eq!(g.config(), &next);
    // Lowering max_new_tokens below what the generation already has finishes it.
    g.append_tokens(&[7]).unwrap();
    g.step().unwrap();
    let produced = g.tokens().len();
    g.set_config(GenerationConfig { max_new_tokens: 1, ..next }).unwrap();
    assert!(g.step().unwrap().is_empty());
    assert_eq!((g.finish_reason(), g.tokens().len()), (Some(FinishReason::MaxTokens), produced));
}

// ---------------------------------------------------------------------------------------------
// Forks

fn min_time(n: usize, mut f: impl FnMut() -> Duration) -> Duration {
    (0..n).map(|_| f()).min().unwrap()
}

#[test]
fn a_fork_after_a_200_token_prompt_is_exact_and_cheap() {
    let (target, draft) = (load(demo("target")), load(demo("draft")));
    let p = long_prompt(200);
    // Warm-up: a session's first calls allocate and plan.
    run(&mut Generator::new(target.clone(), Some(draft.clone()), greedy(8)).unwrap(), &p);
    for d in [Some(draft.clone()), None] {
        let what = if d.is_some() { "speculative" } else { "target-only" };
        let fresh = run(&mut Generator::new(target.clone(), d.clone(), greedy(48)).unwrap(), &p);
        let mut prefill = Duration::MAX;
        let mut source = None;
        for _ in 0..2 {
            let mut g = Generator::new(target.clone(), d.clone(), greedy(48)).unwrap();
            g.append_tokens(&p).unwrap();
            let t = Instant::now();
            g.prefill().unwrap();
            prefill = prefill.min(t.elapsed());
            source = Some(g);
        }
        let source = source.unwrap();
        let fork_time = min_time(3, || {
            let t = Instant::now();
            let f = source.fork(200).unwrap();
            let took = t.elapsed();
            drop(f);
            took
        });
        let ratio = fork_time.as_secs_f64() / prefill.as_secs_f64();
        println!(
            "{what}: prefill of 200 tokens {:.2} ms, fork {:.3} ms ({:.2}% of the prefill)",
            prefill.as_secs_f64() * 1e3,
            fork_time.as_secs_f64() * 1e3,
            100.0 * ratio
        );
        assert!(ratio < 0.10, "{what}: a fork costs {:.1}% of the prefill it saves", 100.0 * ratio);
        let mut f = source.fork(200).unwrap();
        assert_eq!(f.tokens(), p.as_slice());
        assert_eq!(f.stats().target_calls, 0);
        f.generate(|_| true).unwrap();
        assert_eq!(&f.tokens()[200..], fresh.as_slice(), "{what}: the fork's output");
        assert_eq!(f.stats().target_calls, f.stats().rounds, "{what}: the fork never prefilled");
        let mut source = source;
        source.generate(|_| true).unwrap();
        assert_eq!(&source.tokens()[200..], fresh.as_slice(), "{what}: the source after forking");
    }
}

#[test]
fn forks_of_any_state_and_their_bad_input() {
    let target = load(fixture("llama"));
    let draft = load(fixture("draft"));
    let p = prompt(2);
    let mut g = Generator::new(target.clone(), Some(draft.clone()), greedy(20)).unwrap();
    let want = run(&mut g, &p);
    assert_eq!(g.finish_reason(), Some(FinishReason::MaxTokens));
    // A finished generator forks; the fork is ready to continue from any point of it.
    for n in [p.len(), p.len() + 7, g.tokens().len()] {
        let mut f = g.fork(n).unwrap();
        assert_eq!(f.finish_reason(), None);
        assert_eq!(f.tokens(), &g.tokens()[..n]);
        f.generate(|_| true).unwrap();
        let mut r = Generator::new(target.clone(), Some(draft.clone()), greedy(20)).unwrap();
        r.append_tokens(&g.tokens()[..n]).unwrap();
        r.generate(|_| true).unwrap();
        assert_eq!(f.tokens(), r.tokens(), "fork at {n} against recomputation");
        if n == p.len() {
            assert_eq!(&f.tokens()[n..], want.as_slice());
        }
    }
    // A follow-up prompt on a fork, with its own settings.
    let mut f = g.fork_with_config(p.len(), greedy(6)).unwrap();
    assert_eq!(run(&mut f, &[10, 11]).len(), 6);
    // Bad input: past the end; no room; over the memory budget.
    assert!(matches!(g.fork(g.tokens().len() + 1), Err(Error::InvalidArgument(m)) if m.contains("fork")));
    let e = g.fork(0).unwrap();
    assert!(e.tokens().is_empty());
    let tiny = GenerationConfig { kv_memory_limit: Some(1000), ..greedy(20) };
    assert!(matches!(g.fork_with_config(p.len(), tiny), Err(Error::MemoryBudget { .. })));
    let limit = target.info().context_limit;
    let mut full =
        Generator::new(target.clone(), None, GenerationConfig { finish_at_context_limit: true, ..greedy(600) }).unwrap();
    full.append_tokens(&vec![9; limit - 2]).unwrap();
    assert_eq!(full.generate(|_| true).unwrap(), FinishReason::Length);
    assert!(matches!(full.fork(limit), Err(Error::ContextLimit { .. })));
    assert!(full.fork(limit - 1).is_ok());
}

#[test]
fn forks_of_every_drafter_kind_and_of_a_device_cache() {
    let target = load(fixture("llama"));
    let p = prompt(0);
    let want = run(&mut Generator::new(target.clone(), None, greedy(24)).unwrap(), &p);
    let sources = [
        DraftSource::Model(load(fixture("draft"))),
        DraftSource::NGram(NGramConfig::default()),
        DraftSource::Counts { order: 2, table: None },
    ];
    for s in &sources {
        let mut g = Generator::from_source(target.clone(), Some(s), greedy(24)).unwrap();
        g.append_tokens(&p).unwrap();
        g.prefill().unwrap();
        let mut f = g.fork(p.len()).unwrap();
        assert_eq!(f.drafter_name(), g.drafter_name());
        f.generate(|_| true).unwrap();
        assert_eq!(&f.tokens()[p.len()..], want.as_slice(), "{s:?}");
    }
    // The IoBinding path (the CUDA code path, on the CPU): the fork's KV is gathered on the device,
    // never copied through host memory.
    let options = ModelOptions { intra_threads: 1, io_binding: true, ..Default::default() };
    let bound = Arc::new(Model::load(fixture("llama"), &options).unwrap());
    let draft = Arc::new(Model::load(fixture("draft"), &options).unwrap());
    let mut g = Generator::new(bound.clone(), Some(draft.clone()), greedy(24)).unwrap();
    g.append_tokens(&p).unwrap();
    g.prefill().unwrap();
    let mut f = g.fork(p.len()).unwrap();
    f.generate(|_| true).unwrap();
    assert_eq!(&f.tokens()[p.len()..], want.as_slice());
    assert_eq!((bound.kv_copy_stats().host_copies, draft.kv_copy_stats().host_copies), (0, 0));
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
