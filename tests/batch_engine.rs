//! The batch engine: every sequence's output in a batch equals its batch-1 output (a Generator
//! with the same config), greedy token for token and sampled (fixed policy, same seed) token for
//! token, with sequences joining and leaving mid-run, on Optimum graphs (one batched call) and
//! GroupQueryAttention graphs (a call per row); cancellation, removal, admission and budgets.

mod common;

use std::sync::Arc;

use common::*;
use specdec::{Admission, Engine, EngineOptions, FinishReason, GenerationConfig, Generator, Model, SamplingConfig, SeqState};

fn config(gamma: usize, max_new_tokens: usize, sampling: SamplingConfig, seed: u64) -> GenerationConfig {
    GenerationConfig { gamma, max_new_tokens, sampling, seed, eos_ids: Some(vec![]), ..Default::default() }
}

/// The batch-1 reference: a generator with the same config, prefilled as the engine does.
fn reference(target: &Arc<Model>, draft: Option<&Arc<Model>>, prompt: &[u32], cfg: &GenerationConfig) -> Vec<u32> {
    let mut g = Generator::new(target.clone(), draft.cloned(), cfg.clone()).unwrap();
    g.append_tokens(prompt).unwrap();
    g.prefill().unwrap();
    g.generate(|_| true).unwrap();
    g.tokens()[prompt.len()..].to_vec()
}

/// Prompts of different lengths: the fixture prompts and prefixes of them.
fn prompts(n: usize) -> Vec<Vec<u32>> {
    let tok = tokenizer();
    (0..n)
        .map(|i| {
            let p = tok.encode(PROMPTS[i % PROMPTS.len()]).unwrap();
            let keep = (p.len() - (i / PROMPTS.len()) * 3).max(2);
            p[..keep].to_vec()
        })
        .collect()
}

/// Drive `engine` until every sequence ends, adding `late` sequences after `after` rounds and
/// cancelling nothing; returns each sequence's tokens by id.
fn drain(engine: &Engine, ids: &[u64]) -> Vec<Vec<u32>> {
    let mut out = vec![Vec::new(); ids.len()];
    loop {
        let left = engine.step().unwrap();
        for (i, &id) in ids.iter().enumerate() {
            engine.poll(id, &mut out[i], usize::MAX).unwrap();
        }
        if left == 0 {
            return out;
        }
    }
}

/// Each sequence's tokens equal its reference's; a difference reports the target's top-2 margin
/// there (batched arithmetic can move a near-tie).
fn check_same(target: &Arc<Model>, what: &str, prompt: &[u32], want: &[u32], got: &[u32]) {
    if let Some(i) = want.iter().zip(got).position(|(a, b)| a != b) {
        let prefix = [prompt, &want[..i]].concat();
        panic!(
            "{what}: first difference at new token {i} ({} vs {}); target top-2 logit margin there {:.3e}",
            want[i],
            got[i],
            top2_margin(target, &prefix)
        );
    }
    assert_eq!(want.len(), got.len(), "{what}: lengths differ");
}

/// Sequences with their own gamma, length, sampling and seed, some added while others run.
fn check_batch(target: &Arc<Model>, draft: Option<&Arc<Model>>, sampling: SamplingConfig, label: &str) {
    let prompts = prompts(10);
    let cfgs: Vec<GenerationConfig> =
        (0..prompts.len()).map(|i| config(1 + i % 6, 24 + 7 * (i % 4), sampling.clone(), 1000 + i as u64)).collect();
    let engine = Engine::new(target.clone(), draft.cloned(), EngineOptions { max_batch: 6, ..Default::default() }).unwrap();
    let mut ids = Vec::new();
    let mut out = vec![Vec::new(); prompts.len()];
    for (p, c) in prompts.iter().zip(&cfgs).take(5) {
        ids.push(engine.add(p, c.clone()).unwrap());
    }
    let mut rounds = 0;
    loop {
        if rounds == 3 {
            // Joining mid-run; with max_batch 6 some wait for others to leave.
            for (p, c) in prompts.iter().zip(&cfgs).skip(5) {
                ids.push(engine.add(p, c.clone()).unwrap());
            }
        }
        let left = engine.step().unwrap();
        rounds += 1;
        for (i, &id) in ids.iter().enumerate() {
            engine.poll(id, &mut out[i], usize::MAX).unwrap();
        }
        if left == 0 && rounds > 3 {
            break;
        }
    }
    for (i, (p, c)) in prompts.iter().zip(&cfgs).enumerate() {
        let want = reference(target, draft, p, c);
        check_same(target, &format!("{label}, sequence {i} (gamma {})", c.gamma), p, &want, &out[i]);
        let poll = engine.poll(ids[i], &mut Vec::new(), 0).unwrap();
        assert_eq!(poll.state, SeqState::Finished);
        assert_eq!(poll.reason, Some(FinishReason::MaxTokens));
    }
    let s = engine.stats();
    assert_eq!(s.new_tokens as usize, out.iter().map(Vec::len).sum::<usize>());
    assert_eq!((s.active, s.waiting, s.finished), (0, 0, prompts.len() as u64));
    if draft.is_some() {
        assert!(s.accepted > 0 && s.accepted < s.drafted, "{label}: accepted {} of {}", s.accepted, s.drafted);
    }
    println!("{label}: {} sequences identical to batch 1 in {} rounds", prompts.len(), s.rounds);
}

fn sampled() -> SamplingConfig {
    SamplingConfig { temperature: 0.9, top_p: 0.95, ..Default::default() }
}

#[test]
fn greedy_batches_equal_batch_one_on_optimum_graphs() {
    let (target, draft) = (load(fixture("llama")), load(fixture("draft")));
    assert!(target.batches_rows() && draft.batches_rows());
    check_batch(&target, Some(&draft), SamplingConfig::default(), "fixtures greedy");
    check_batch(&target, None, SamplingConfig::default(), "fixtures greedy target-only");
    let (target, draft) = (load(models_dir().join("demo/target")), load(models_dir().join("demo/draft")));
    check_batch(&target, Some(&draft), SamplingConfig::default(), "demo greedy");
}

#[test]
fn sampled_batches_equal_batch_one_with_the_same_seed() {
    let (target, draft) = (load(fixture("llama")), load(fixture("draft")));
    check_batch(&target, Some(&draft), sampled(), "fixtures sampled");
    let (target, draft) = (load(models_dir().join("demo/target")), load(models_dir().join("demo/draft")));
    check_batch(&target, Some(&draft), sampled(), "demo sampled");
}

#[test]
fn group_query_attention_graphs_run_row_by_row_and_stay_exact() {
    let (target, draft) = (load(models_dir().join("builder/llama-fp32")), load(models_dir().join("builder/draft-fp32")));
    assert!(!target.batches_rows(), "a GroupQueryAttention graph must fall back to a call per row");
    check_batch(&target, Some(&draft), SamplingConfig::default(), "builder greedy");
    check_batch(&target, Some(&draft), sampled(), "builder sampled");
}

#[test]
fn cancel_remove_and_errors() {
    let (target, draft) = (load(fixture("llama")), load(fixture("draft")));
    let engine = Engine::new(target.clone(), Some(draft), EngineOptions::default()).unwrap();
    let prompts = prompts(3);
    let cfg = config(4, 200, SamplingConfig::default(), 0);
    let ids: Vec<u64> = prompts.iter().map(|p| engine.add(p, cfg.clone()).unwrap()).collect();
    assert_eq!(engine.poll(ids[0], &mut Vec::new(), 0).unwrap().state, SeqState::Waiting);
    engine.step().unwrap();
    let mut got = Vec::new();
    let p = engine.poll(ids[0], &mut got, 1).unwrap();
    assert_eq!((p.state, got.len()), (SeqState::Running, 1));
    assert!(p.pending > 0);
    engine.cancel(ids[0]).unwrap();
    engine.remove(ids[1]).unwrap();
    assert!(engine.poll(ids[1], &mut got, 0).is_err(), "a removed sequence is forgotten");
    assert_eq!(engine.step().unwrap(), 1);
    let p = engine.poll(ids[0], &mut got, usize::MAX).unwrap();
    assert_eq!((p.state, p.reason), (SeqState::Finished, Some(FinishReason::Cancelled)));
    assert_eq!(engine.stats().active, 1);
    assert!(matches!(engine.cancel(999), Err(specdec::Error::InvalidArgument(_))));
    assert!(matches!(engine.add(&[], cfg.clone()), Err(specdec::Error::InvalidArgument(_))));
    assert!(matches!(engine.add(&[100_000], cfg.clone()), Err(specdec::Error::TokenOutOfRange { .. })));
    let long = vec![5u32; target.info().context_limit];
    assert!(matches!(engine.add(&long, cfg.clone()), Err(specdec::Error::ContextLimit { .. })));
    let texts = GenerationConfig { stop_texts: vec!["x".into()], ..cfg.clone() };
    assert!(matches!(engine.add(&prompts[0], texts), Err(specdec::Error::InvalidArgument(_))));
}

#[test]
fn memory_budget_waits_or_refuses() {
    let (target, draft) = (load(fixture("llama")), load(fixture("draft")));
    let prompts = vec![prompts(1)[0].clone(); 4];
    let cfg = config(4, 40, SamplingConfig::default(), 0);
    let per_token = target.kv_bytes_per_token() + draft.kv_bytes_per_token();
    // Room for two sequences of these lengths at most.
    let one = (prompts[0].len() + 40 + 4) * per_token;
    let limit = 2 * one + one / 2;
    let opts = |admission| EngineOptions { kv_memory_limit: Some(limit), admission, ..Default::default() };

    let engine = Engine::new(target.clone(), Some(draft.clone()), opts(Admission::Wait)).unwrap();
    let ids: Vec<u64> = prompts.iter().map(|p| engine.add(p, cfg.clone()).unwrap()).collect();
    engine.step().unwrap();
    let s = engine.stats();
    assert_eq!((s.active, s.waiting), (2, 2), "two fit, two wait");
    assert!(s.kv_bytes_used > 0 && s.kv_bytes_used <= s.kv_bytes_limit);
    let out = drain(&engine, &ids);
    assert!(out.iter().all(|o| o.len() == 40));

    let engine = Engine::new(target.clone(), Some(draft.clone()), opts(Admission::Refuse)).unwrap();
    engine.add(&prompts[0], cfg.clone()).unwrap();
    let second = engine.add(&prompts[1], cfg.clone()).unwrap();
    assert!(matches!(engine.add(&prompts[2], cfg.clone()), Err(specdec::Error::MemoryBudget { .. })));
    engine.cancel(second).unwrap();
    engine.step().unwrap();
    engine.add(&prompts[2], cfg.clone()).unwrap();
    let huge = GenerationConfig { max_new_tokens: 400, ..cfg };
    assert!(matches!(engine.add(&prompts[3], huge), Err(specdec::Error::MemoryBudget { .. })), "can never fit");
}

#[test]
fn concurrent_steps_are_busy_and_polls_do_not_wait() {
    let (target, draft) = (load(fixture("llama")), load(fixture("draft")));
    let engine = Arc::new(Engine::new(target, Some(draft), EngineOptions::default()).unwrap());
    let prompts = prompts(4);
    let ids: Vec<u64> = prompts.iter().map(|p| engine.add(p, config(4, 60, SamplingConfig::default(), 0)).unwrap()).collect();
    let stepper = {
        let engine = engine.clone();
        std::thread::spawn(move || while engine.step().unwrap_or(1) > 0 {})
    };
    let mut busy = 0;
    let mut got = vec![Vec::new(); ids.len()];
    while !stepper.is_finished() {
        if matches!(engine.step(), Err(specdec::Error::Busy(_))) {
            busy += 1;
        }
        for (i, &id) in ids.iter().enumerate() {
            engine.poll(id, &mut got[i], usize::MAX).unwrap();
        }
        engine.stats();
    }
    stepper.join().unwrap();
    for (i, &id) in ids.iter().enumerate() {
        engine.poll(id, &mut got[i], usize::MAX).unwrap();
    }
    assert!(got.iter().all(|g| g.len() == 60));
    println!("{busy} concurrent steps were refused as busy");
}

/// A batch whose rows stay the same feeds each call's presents back as they are: no KV copy
/// per call (target-only: none at all after the first gather; speculative: a gather only now
/// and then, when rolled-back proposals and padding pile up).
#[test]
fn steady_batches_feed_their_presents_back_without_copies() {
    let (target, draft) = (load(fixture("llama")), load(fixture("draft")));
    let prompts = vec![prompts(1)[0].clone(); 4];
    for speculative in [false, true] {
        let engine = Engine::new(target.clone(), speculative.then(|| draft.clone()), EngineOptions::default()).unwrap();
        for p in &prompts {
            engine.add(p, config(3, 100, SamplingConfig::default(), 0)).unwrap();
        }
        engine.step().unwrap();
        engine.step().unwrap();
        let before = target.kv_copy_stats().host_copies;
        let rounds = 20;
        for _ in 0..rounds {
            engine.step().unwrap();
        }
        // One gather copies each row's 2 x layers tensors.
        let gathers = (target.kv_copy_stats().host_copies - before) / (4 * 2 * target.info().layers as u64);
        println!("speculative {speculative}: {gathers} target gathers in {rounds} rounds");
        if speculative {
            assert!(gathers <= rounds / 4, "{gathers} gathers in {rounds} rounds");
        } else {
            assert_eq!(gathers, 0);
        }
    }
}

/// Adds, cancels and removals from another thread while one steps: the counters stay consistent
/// (debug builds would trap an underflow) and every kept sequence ends.
#[test]
fn counters_stay_consistent_under_concurrent_adds_cancels_and_removals() {
    let (target, draft) = (load(fixture("llama")), load(fixture("draft")));
    let engine = Arc::new(Engine::new(target, Some(draft), EngineOptions { max_batch: 5, ..Default::default() }).unwrap());
    let prompts = prompts(6);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stepper = {
        let (engine, stop) = (engine.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let _ = engine.step();
            }
        })
    };
    let mut kept = Vec::new();
    for i in 0..60usize {
        let id = engine.add(&prompts[i % prompts.len()], config(1 + i % 4, 5 + i % 17, sampled(), i as u64)).unwrap();
        match i % 4 {
            0 => engine.cancel(id).unwrap(),
            1 => engine.remove(id).unwrap(),
            _ => kept.push(id),
        }
        if i % 7 == 0 {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
    while engine.stats().active + engine.stats().waiting > 0 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    stepper.join().unwrap();
    let s = engine.stats();
    assert_eq!(s.finished, 45, "{s:?}");
    for id in kept {
        let p = engine.poll(id, &mut Vec::new(), 0).unwrap();
        assert_eq!(p.state, SeqState::Finished);
    }
}
