//! Every draft source and draft-length policy keeps greedy output identical to the target's own.

mod common;

use specdec::DecoderState;
use std::sync::Arc;

use common::*;
use specdec::drafter::CountTable;
use specdec::{DraftPolicy, DraftSource, GenerationConfig, Generator, Model, NGramConfig};

const NEW_TOKENS: usize = 64;

fn run(
    target: &Arc<Model>,
    source: Option<&DraftSource>,
    prompt: &[u32],
    edit: &dyn Fn(&mut GenerationConfig),
) -> (Vec<u32>, specdec::Stats) {
    let mut cfg = GenerationConfig { max_new_tokens: NEW_TOKENS, eos_ids: Some(vec![]), ..Default::default() };
    edit(&mut cfg);
    let mut g = Generator::from_source(target.clone(), source, cfg).unwrap();
    g.append_tokens(prompt).unwrap();
    g.generate(|_| true).unwrap();
    (g.tokens()[prompt.len()..].to_vec(), *g.stats())
}

/// Greedy output with `source` equals target-only output on every prompt; both the accept and
/// the reject path ran.
fn check(name: &str, source: DraftSource, edit: &dyn Fn(&mut GenerationConfig)) -> specdec::Stats {
    let target = load(fixture("llama"));
    let tok = tokenizer();
    let mut total = specdec::Stats::default();
    for text in PROMPTS {
        let prompt = tok.encode(text).unwrap();
        let (want, _) = run(&target, None, &prompt, &|_| {});
        let (got, s) = run(&target, Some(&source), &prompt, edit);
        assert_eq!(got, want, "{name}: output differs on {text:?}");
        total.drafted += s.drafted;
        total.accepted += s.accepted;
        total.rounds += s.rounds;
        total.new_tokens += s.new_tokens;
    }
    println!(
        "{name}: identical on {} prompts; drafted {}, accepted {}, {:.2} tokens per target call",
        PROMPTS.len(),
        total.drafted,
        total.accepted,
        total.tokens_per_target_call()
    );
    assert!(total.accepted > 0, "{name}: nothing accepted, the accept path went untested");
    assert!(total.accepted < total.drafted, "{name}: nothing rejected, the reject path went untested");
    total
}

#[test]
fn ngram_lookup() {
    for (n_min, n_max) in [(1, 1), (1, 3), (2, 4)] {
        let s =
            check(&format!("ngram {n_min}..={n_max}"), DraftSource::NGram(NGramConfig { n_min, n_max, max_proposal: 6 }), &|c| {
                c.gamma = 6
            });
        // The fixtures repeat themselves: matched lookups must pay for themselves.
        assert!(s.tokens_per_target_call() > 1.0);
    }
}

#[test]
fn unigram_and_bigram_from_the_sequence_and_from_a_file() {
    check("unigram", DraftSource::Counts { order: 1, table: None }, &|_| {});
    check("bigram", DraftSource::Counts { order: 2, table: None }, &|_| {});
    let tok = tokenizer();
    let corpus: Vec<u32> = PROMPTS.iter().flat_map(|p| tok.encode(p).unwrap()).collect();
    let path = std::env::temp_dir().join(format!("specdec-drafters-{}.counts", std::process::id()));
    CountTable::from_tokens(&corpus).save(&path).unwrap();
    let table = Arc::new(CountTable::load(&path).unwrap());
    std::fs::remove_file(&path).ok();
    check("bigram from file", DraftSource::Counts { order: 2, table: Some(table) }, &|_| {});
}

#[test]
fn host_callback() {
    // Proposes the target's own greedy continuation for even positions and a wrong token for odd
    // ones, so both paths run.
    let target = load(fixture("llama"));
    let oracle_target = target.clone();
    let cb = move |tokens: &[u32], max: usize, out: &mut Vec<u32>, _: &mut Vec<f32>| -> specdec::Result<()> {
        let mut seq = tokens.to_vec();
        for _ in 0..max.min(4) {
            let mut cache = DecoderState::new(oracle_target.clone())?;
            let mut row = Vec::new();
            cache.forward(&seq, 1, &mut row)?;
            let best = specdec::sampling::argmax(&row);
            let t = if seq.len() % 2 == 0 { best } else { (best + 1) % 512 };
            out.push(t);
            seq.push(t);
        }
        Ok(())
    };
    check("callback", DraftSource::Callback(Arc::new(cb)), &|_| {});
}

#[test]
fn policies_with_the_model_draft() {
    let draft = DraftSource::Model(load(fixture("draft")));
    check("heuristic", draft.clone(), &|c| c.draft_policy = DraftPolicy::Heuristic);
    check("auto", draft.clone(), &|c| c.draft_policy = DraftPolicy::Auto);
    check("confidence stop 0.1", draft.clone(), &|c| {
        c.gamma = 8;
        c.confidence_stop = 0.1;
    });
}

#[test]
fn bad_host_proposals_are_errors_and_the_generator_recovers() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let target = load(fixture("llama"));
    let prompt = tokenizer().encode(PROMPTS[0]).unwrap();
    let misbehave = Arc::new(AtomicBool::new(true));
    let flag = misbehave.clone();
    let cb = move |_: &[u32], max: usize, out: &mut Vec<u32>, probs: &mut Vec<f32>| -> specdec::Result<()> {
        if flag.load(Ordering::SeqCst) {
            out.push(100_000); // outside the vocabulary
        } else {
            out.extend(std::iter::repeat_n(1, max));
        }
        probs.clear();
        Ok(())
    };
    let mut g = Generator::from_source(
        target.clone(),
        Some(&DraftSource::Callback(Arc::new(cb))),
        GenerationConfig { eos_ids: Some(vec![]), max_new_tokens: 16, ..Default::default() },
    )
    .unwrap();
    g.append_tokens(&prompt).unwrap();
    let err = g.step().unwrap_err();
    assert_eq!(err.code(), 7007, "{err}");
    assert_eq!(g.tokens(), prompt.as_slice(), "a failed round must not commit anything");
    // Once the callback behaves, the same generator produces the target's own output.
    misbehave.store(false, Ordering::SeqCst);
    g.generate(|_| true).unwrap();
    let (want, _) = run(&target, None, &prompt, &|c| c.max_new_tokens = 16);
    assert_eq!(&g.tokens()[prompt.len()..], want.as_slice());

    let too_many = |_: &[u32], max: usize, out: &mut Vec<u32>, _: &mut Vec<f32>| -> specdec::Result<()> {
        out.extend(std::iter::repeat_n(1, max + 1));
        Ok(())
    };
    let mut g2 =
        Generator::from_source(target.clone(), Some(&DraftSource::Callback(Arc::new(too_many))), GenerationConfig::default())
            .unwrap();
    g2.append_tokens(&prompt).unwrap();
    assert_eq!(g2.step().unwrap_err().code(), 7001);
    let bad_probs = |_: &[u32], _: usize, out: &mut Vec<u32>, probs: &mut Vec<f32>| -> specdec::Result<()> {
        out.push(3);
        probs.extend(std::iter::repeat_n(0.5, 512)); // sums to 256
        Ok(())
    };
    let mut g3 =
        Generator::from_source(target, Some(&DraftSource::Callback(Arc::new(bad_probs))), GenerationConfig::default()).unwrap();
    g3.append_tokens(&prompt).unwrap();
    assert_eq!(g3.step().unwrap_err().code(), 7001);
}

#[test]
fn kv_memory_budget_refuses_requests_that_cannot_fit() {
    let target = load(fixture("llama"));
    let draft = load(fixture("draft"));
    let per_token = target.kv_bytes_per_token() + draft.kv_bytes_per_token();
    let prompt = tokenizer().encode(PROMPTS[1]).unwrap();
    let cfg = |limit| GenerationConfig {
        kv_memory_limit: Some(limit),
        max_new_tokens: 32,
        gamma: 4,
        eos_ids: Some(vec![]),
        ..Default::default()
    };
    let fits = (prompt.len() + 32 + 4) * per_token;
    let mut g = Generator::new(target.clone(), Some(draft.clone()), cfg(fits - 1)).unwrap();
    let err = g.append_tokens(&prompt).unwrap_err();
    assert_eq!(err.code(), 7016, "{err}");
    // Nothing was taken: a shorter request still fits on the same generator.
    g.append_tokens(&prompt[..prompt.len() - 1]).unwrap();
    g.generate(|_| true).unwrap();
    let mut ok = Generator::new(target, Some(draft), cfg(fits)).unwrap();
    ok.append_tokens(&prompt).unwrap();
    ok.generate(|_| true).unwrap();
    assert_eq!(ok.tokens().len(), prompt.len() + 32);
}

/// `Auto` starts a sequence from what earlier ones with the same loaded draft and sampling
/// settings learnt; another draft instance or another setting starts from the prior.
#[test]
fn auto_carries_its_record_to_the_next_sequence() {
    let target = load(fixture("llama"));
    let draft = load(fixture("draft"));
    let prompt = tokenizer().encode(PROMPTS[0]).unwrap();
    let cfg = GenerationConfig {
        max_new_tokens: NEW_TOKENS,
        eos_ids: Some(vec![]),
        draft_policy: DraftPolicy::Auto,
        ..Default::default()
    };
    let new =
        |draft: &Arc<Model>, cfg: &GenerationConfig| Generator::new(target.clone(), Some(draft.clone()), cfg.clone()).unwrap();
    const PRIOR: f64 = 0.5;
    // A generator that verified nothing leaves nothing behind.
    drop(new(&draft, &cfg));
    assert_eq!(new(&draft, &cfg).alpha_estimate(), PRIOR);
    let mut g = new(&draft, &cfg);
    g.append_tokens(&prompt).unwrap();
    g.generate(|_| true).unwrap();
    let learnt = g.alpha_estimate();
    assert!(g.stats().drafted > 0 && learnt != PRIOR, "alpha {learnt}");
    drop(g);
    // The record comes back scaled down, so the ratio only to rounding.
    let inherited = new(&draft, &cfg).alpha_estimate();
    assert!((inherited - learnt).abs() < 1e-12, "inherited {inherited}, learnt {learnt}");
    assert_eq!(new(&load(fixture("draft")), &cfg).alpha_estimate(), PRIOR);
    let mut sampled = cfg.clone();
    sampled.sampling.temperature = 1.0;
    assert_eq!(new(&draft, &sampled).alpha_estimate(), PRIOR);
}
