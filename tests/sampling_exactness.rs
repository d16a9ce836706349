//! Speculative sampling must reproduce the target's own distribution. The first two generated
//! tokens of many seeded runs are compared with their exact probabilities (chain rule over the
//! target's logits, with the same sampling transforms) in a G-test; a deliberately wrong
//! acceptance rule must fail the same test.

mod common;

use specdec::DecoderState;
use std::collections::HashMap;
use std::sync::Arc;

use common::*;
use specdec::sampling::{distribution, Dist, DistBuf, History};
use specdec::{DraftPolicy, DraftSource, GenerationConfig, Generator, Model, NGramConfig, SamplingConfig};

const SAMPLES: u64 = 20_000;
const GAMMA: usize = 4;
/// Cells expected to hold fewer samples than this are pooled, as the G-test's approximation needs.
const MIN_EXPECTED: f64 = 5.0;

/// Exact probability of every (first, second) generated pair with positive probability.
fn exact_pairs(target: &Arc<Model>, prompt: &[u32], sampling: &SamplingConfig) -> HashMap<(u32, u32), f64> {
    let vocab = target.info().vocab_size;
    // The next-token distribution after the prompt and the tokens `generated` after it.
    let probs = |generated: &[u32]| -> Vec<f32> {
        let seq = [prompt, generated].concat();
        let mut cache = DecoderState::new(target.clone()).unwrap();
        let mut row = Vec::new();
        cache.forward(&seq, 1, &mut row).unwrap();
        let mut history = History::new(vocab);
        prompt.iter().for_each(|&t| history.push(t));
        generated.iter().for_each(|&t| history.push_generated(t));
        let mut buf = DistBuf::new();
        match distribution(&row, &history, &[], sampling, &mut buf) {
            Dist::Point(_) => panic!("sampling test needs temperature > 0"),
            d => d.to_dense(vocab),
        }
    };
    let p1 = probs(&[]);
    let mut out = HashMap::new();
    for (t1, &a) in p1.iter().enumerate().filter(|(_, &a)| a > 0.0) {
        let p2 = probs(&[t1 as u32]);
        for (t2, &b) in p2.iter().enumerate().filter(|(_, &b)| b > 0.0) {
            out.insert((t1 as u32, t2 as u32), a as f64 * b as f64);
        }
    }
    out
}

/// Counts of the first two generated tokens over SAMPLES seeds, and the stats summed over them;
/// `make` builds a generator for a configuration.
fn sampled_pairs(
    prompt: &[u32],
    sampling: &SamplingConfig,
    sabotage: bool,
    make: &dyn Fn(GenerationConfig) -> Generator,
) -> (HashMap<(u32, u32), u64>, Totals) {
    let mut counts = HashMap::new();
    let mut totals = Totals::default();
    for seed in 0..SAMPLES {
        // γ + 1 new tokens: one full round, so both tokens come out of the acceptance rule.
        let cfg = GenerationConfig {
            gamma: GAMMA,
            seed,
            max_new_tokens: GAMMA + 1,
            eos_ids: Some(vec![]),
            sampling: sampling.clone(),
            ..Default::default()
        };
        let mut g = make(cfg);
        if sabotage {
            g.debug_always_accept();
        }
        g.append_tokens(prompt).unwrap();
        g.generate(|_| true).unwrap();
        let new = &g.tokens()[prompt.len()..];
        *counts.entry((new[0], new[1])).or_insert(0) += 1;
        totals.accepted += g.stats().accepted;
        totals.drafted += g.stats().drafted;
        totals.draft_calls += g.stats().draft_calls;
    }
    assert!(totals.drafted > 0, "nothing was drafted: the test would not test speculation");
    (counts, totals)
}

/// Stats summed over a test's generators.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    pub accepted: u64,
    pub drafted: u64,
    /// Guesses asked of the drafter, proposed or not.
    pub draft_calls: u64,
}

/// G statistic and its p-value against `exact`, pooling small cells.
fn g_test(counts: &HashMap<(u32, u32), u64>, exact: &HashMap<(u32, u32), f64>) -> (f64, usize, f64) {
    let n = SAMPLES as f64;
    let (mut cells, mut pooled_o, mut pooled_e) = (Vec::new(), 0.0, 0.0);
    for (pair, &p) in exact {
        let o = counts.get(pair).copied().unwrap_or(0) as f64;
        if p * n >= MIN_EXPECTED {
            cells.push((o, p * n));
        } else {
            pooled_o += o;
            pooled_e += p * n;
        }
    }
    // A sampled pair the target gives probability 0 is impossible: one is proof enough (G = inf,
    // p = 0), as when a wrong rule emits a token the target's truncation dropped.
    let impossible: u64 = counts.iter().filter(|(k, _)| !exact.contains_key(k)).map(|(_, &c)| c).sum();
    if impossible > 0 {
        println!("sampled {impossible} pairs that have probability 0 under the target");
        return (f64::INFINITY, 0, 0.0);
    }
    cells.push((pooled_o, pooled_e));
    let g: f64 = 2.0 * cells.iter().filter(|(o, _)| *o > 0.0).map(|(o, e)| o * (o / e).ln()).sum::<f64>();
    let df = cells.len() - 1;
    (g, df, chi2_sf(g, df as f64))
}

/// Upper tail of the chi-square distribution: Q(df/2, x/2), by series or continued fraction.
fn chi2_sf(x: f64, df: f64) -> f64 {
    let (a, x) = (df / 2.0, x / 2.0);
    if x <= 0.0 {
        return 1.0;
    }
    let ln_front = a * x.ln() - x - ln_gamma(a);
    if x < a + 1.0 {
        let (mut sum, mut term, mut ap) = (1.0 / a, 1.0 / a, a);
        for _ in 0..10_000 {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * 1e-15 {
                break;
            }
        }
        1.0 - sum * ln_front.exp()
    } else {
        // Lentz's continued fraction for Q.
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..10_000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-15 {
                break;
            }
        }
        ln_front.exp() * h
    }
}

fn ln_gamma(x: f64) -> f64 {
    // Lanczos approximation (g = 7, n = 9).
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let s = C[1..].iter().enumerate().fold(C[0], |s, (i, c)| s + c / (x + i as f64 + 1.0));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + s.ln()
}

/// The p-value of the G-test for generators made by `make` (given the target) on a code prompt.
pub fn check_with(sampling: SamplingConfig, sabotage: bool, make: impl Fn(&Arc<Model>, GenerationConfig) -> Generator) -> f64 {
    check_with_totals(sampling, sabotage, make).0
}

/// [`check_with`], also returning the summed stats.
fn check_with_totals(
    sampling: SamplingConfig,
    sabotage: bool,
    make: impl Fn(&Arc<Model>, GenerationConfig) -> Generator,
) -> (f64, Totals) {
    check_on(&fixture("llama"), sampling, sabotage, make)
}

/// [`check_with_totals`] on the target at `target_path`.
fn check_on(
    target_path: &std::path::Path,
    sampling: SamplingConfig,
    sabotage: bool,
    make: impl Fn(&Arc<Model>, GenerationConfig) -> Generator,
) -> (f64, Totals) {
    let target = load(target_path);
    let prompt = tokenizer().encode(PROMPTS[2]).unwrap();
    let exact = exact_pairs(&target, &prompt, &sampling);
    let total: f64 = exact.values().sum();
    assert!((total - 1.0).abs() < 1e-3, "exact probabilities sum to {total}");
    let (counts, totals) = sampled_pairs(&prompt, &sampling, sabotage, &|cfg| make(&target, cfg));
    let (g, df, p) = g_test(&counts, &exact);
    let acceptance = totals.accepted as f64 / totals.drafted as f64;
    println!("{sampling:?} sabotage={sabotage}: {SAMPLES} samples, {} distinct pairs, acceptance {:.1}%, {totals:?}, G = {g:.1}, df = {df}, p = {p:.4}", counts.len(), 100.0 * acceptance);
    (p, totals)
}

fn check(sampling: SamplingConfig, sabotage: bool) -> f64 {
    let draft = load(fixture("draft"));
    check_with(sampling, sabotage, |target, cfg| Generator::new(target.clone(), Some(draft.clone()), cfg).unwrap())
}

#[test]
fn chi2_tail_is_right() {
    // Reference values of the chi-square survival function.
    assert!((chi2_sf(3.841_458_8, 1.0) - 0.05).abs() < 1e-6);
    assert!((chi2_sf(124.342, 100.0) - 0.05).abs() < 1e-4);
    assert!((chi2_sf(10.0, 20.0) - 0.968_171_9).abs() < 1e-6);
}

#[test]
fn temperature_one_matches_the_target() {
    let p = check(SamplingConfig { temperature: 1.0, ..Default::default() }, false);
    assert!(p > 0.001, "speculative samples do not follow the target distribution (p = {p})");
}

#[test]
fn top_k_and_top_p_match_the_target() {
    let p = check(SamplingConfig { temperature: 0.8, top_k: 40, top_p: 0.9, ..Default::default() }, false);
    assert!(p > 0.001, "p = {p}");
}

#[test]
fn min_p_and_repetition_penalty_match_the_target() {
    let p = check(SamplingConfig { temperature: 1.2, min_p: 0.02, repetition_penalty: 1.2, ..Default::default() }, false);
    assert!(p > 0.001, "p = {p}");
}

#[test]
fn presence_and_frequency_penalties_and_logit_bias_match_the_target() {
    // The bias lifts two tokens enough that the second token often repeats the first, where the
    // penalties (counted over generated tokens, draft guesses included) change the distribution.
    let sampling = SamplingConfig {
        temperature: 1.0,
        presence_penalty: 0.7,
        frequency_penalty: 0.9,
        repetition_penalty: 1.1,
        logit_bias: vec![(10, 4.0), (20, 3.5), (30, -8.0)],
        ..Default::default()
    };
    let p = check(sampling, false);
    assert!(p > 0.001, "p = {p}");
}

#[test]
fn a_builder_pair_matches_the_target() {
    // onnxruntime-genai builder exports (GroupQueryAttention, one KV buffer shared by past and
    // present, rollback by a shorter mask) of the llama fixture and the draft.
    let builder = models_dir().join("builder");
    let draft = load(builder.join("draft-fp32"));
    let sampling = SamplingConfig { temperature: 0.9, top_p: 0.95, ..Default::default() };
    let (p, _) = check_on(&builder.join("llama-fp32"), sampling, false, |target, cfg| {
        Generator::new(target.clone(), Some(draft.clone()), cfg).unwrap()
    });
    assert!(p > 0.001, "p = {p}");
}

/// The check on the 32,000-entry pair (scripts/make_builder_models.py --stage vocab32k: a random
/// Llama with peaked distributions and a noisy copy of it as the draft, builder fp32 exports), where
/// truncation keeps a few dozen of 32,000 tokens: sparse distributions, the residual over their
/// kept tokens, and the selection and threshold passes at a real vocabulary size.
fn check_vocab32k(sampling: SamplingConfig, sabotage: bool) -> f64 {
    let builder = models_dir().join("builder");
    let draft = load(builder.join("vocab32k-draft"));
    assert_eq!(draft.info().vocab_size, 32_000);
    let (p, totals) = check_on(&builder.join("vocab32k-target"), sampling, sabotage, |target, cfg| {
        Generator::new(target.clone(), Some(draft.clone()), cfg).unwrap()
    });
    let acceptance = totals.accepted as f64 / totals.drafted as f64;
    assert!(sabotage || (0.2..0.95).contains(&acceptance), "acceptance {acceptance}: the pair must disagree sometimes");
    p
}

#[test]
fn a_32k_vocabulary_pair_matches_the_target() {
    // Top-k then top-p (selection on the logits), and top-p with min-p (threshold passes over the
    // row's exps).
    for sampling in [
        SamplingConfig { temperature: 0.8, top_k: 50, top_p: 0.9, ..Default::default() },
        SamplingConfig { temperature: 1.0, top_p: 0.8, min_p: 0.05, ..Default::default() },
    ] {
        let p = check_vocab32k(sampling.clone(), false);
        assert!(p > 0.001, "{sampling:?}: p = {p}");
    }
}

#[test]
fn a_wrong_acceptance_rule_is_rejected_at_32k() {
    let p = check_vocab32k(SamplingConfig { temperature: 0.8, top_k: 50, top_p: 0.9, ..Default::default() }, true);
    assert!(p < 0.001, "the G-test failed to notice an always-accept rule at 32k (p = {p})");
}

fn t1() -> SamplingConfig {
    SamplingConfig { temperature: 1.0, ..Default::default() }
}

fn check_source(source: DraftSource, cfg_edit: impl Fn(&mut GenerationConfig)) -> f64 {
    check_with(t1(), false, |target, mut cfg| {
        cfg_edit(&mut cfg);
        Generator::from_source(target.clone(), Some(&source), cfg).unwrap()
    })
}

#[test]
fn ngram_drafts_match_the_target() {
    let p = check_source(DraftSource::NGram(NGramConfig { n_min: 1, n_max: 3, max_proposal: 4 }), |_| {});
    assert!(p > 0.001, "p = {p}");
}

#[test]
fn unigram_and_bigram_drafts_match_the_target() {
    for order in [1, 2] {
        let p = check_source(DraftSource::Counts { order, table: None }, |_| {});
        assert!(p > 0.001, "order {order}: p = {p}");
    }
}

#[test]
fn host_drafts_match_the_target_as_points_and_as_distributions() {
    // Fixed proposals: whatever followed the last token before, else token 1.
    let points = |tokens: &[u32], max: usize, out: &mut Vec<u32>, _: &mut Vec<f32>| -> specdec::Result<()> {
        let last = *tokens.last().unwrap();
        let next = tokens.windows(2).find(|w| w[0] == last).map_or(1, |w| w[1]);
        out.extend(std::iter::repeat_n(next, max.min(3)));
        Ok(())
    };
    let p = check_source(DraftSource::Callback(Arc::new(points)), |_| {});
    assert!(p > 0.001, "point proposals: p = {p}");

    // Proposals sampled from the host's own distribution (uniform over 16 low ids), given as q.
    let rng = std::sync::Mutex::new(0x9e37_79b9_7f4a_7c15u64);
    let sampled = move |_: &[u32], max: usize, out: &mut Vec<u32>, probs: &mut Vec<f32>| -> specdec::Result<()> {
        let mut state = rng.lock().unwrap();
        for _ in 0..max.min(2) {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            out.push((*state % 16) as u32);
            probs.extend((0..512).map(|i| if i < 16 { 1.0 / 16.0 } else { 0.0 }));
        }
        Ok(())
    };
    let p = check_source(DraftSource::Callback(Arc::new(sampled)), |_| {});
    assert!(p > 0.001, "sampled proposals: p = {p}");
}

#[test]
fn draft_length_policies_match_the_target() {
    let draft = DraftSource::Model(load(fixture("draft")));
    for (policy, stop) in [(DraftPolicy::Heuristic, 0.0), (DraftPolicy::Auto, 0.0), (DraftPolicy::Fixed, 0.3)] {
        let p = check_source(draft.clone(), |c| {
            c.draft_policy = policy;
            c.confidence_stop = stop;
        });
        assert!(p > 0.001, "{policy:?} confidence stop {stop}: p = {p}");
    }
}

/// `Auto`'s within-round stopping, with its costs pinned as on a CPU (a draft step a tenth of a
/// target step, each verified token 0.3 of one more) so that it drafts: a host drafter proposes
/// either from the target's own distribution (always accepted) or sure of a token the target
/// seldom wants (0.97 on token 3). Learning, carried from seed to seed, that its sure guesses
/// fail, `Auto` drops them; that, and rounds cut short, must leave the distribution alone.
#[test]
fn auto_round_stopping_matches_the_target() {
    let oracle = load(fixture("llama"));
    let state = std::sync::Mutex::new(0x2545_f491_4f6c_dd1du64);
    let mixed = move |tokens: &[u32], max: usize, out: &mut Vec<u32>, probs: &mut Vec<f32>| -> specdec::Result<()> {
        let mut x = state.lock().unwrap();
        let mut next = || {
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            *x
        };
        let mut seq = tokens.to_vec();
        for _ in 0..max {
            let row: Vec<f32> = if next() % 2 == 0 {
                out.push(if next() % 100 < 97 { 3 } else { 16 + (next() % 16) as u32 });
                (0..512)
                    .map(|i| {
                        if i == 3 {
                            0.97
                        } else if (16..32).contains(&i) {
                            0.03 / 16.0
                        } else {
                            0.0
                        }
                    })
                    .collect()
            } else {
                let (mut cache, mut logits, mut buf) = (DecoderState::new(oracle.clone())?, Vec::new(), DistBuf::new());
                cache.forward(&seq, 1, &mut logits)?;
                let p = distribution(&logits, &History::new(512), &[], &t1(), &mut buf).to_dense(512);
                let u = (next() >> 11) as f64 / (1u64 << 53) as f64;
                let mut acc = 0.0;
                out.push(
                    p.iter()
                        .position(|&w| {
                            acc += w as f64;
                            acc > u
                        })
                        .unwrap_or(511) as u32,
                );
                p
            };
            probs.extend(row);
            seq.push(*out.last().unwrap());
        }
        Ok(())
    };
    let source = DraftSource::Callback(Arc::new(mixed));
    let (p, totals) = check_with_totals(t1(), false, |target, mut cfg| {
        cfg.draft_policy = DraftPolicy::Auto;
        let mut g = Generator::from_source(target.clone(), Some(&source), cfg).unwrap();
        g.debug_pin_costs(0.1, 0.3);
        g
    });
    assert!(p > 0.001, "p = {p}");
    assert!(totals.draft_calls > totals.drafted, "no guess was ever dropped: {totals:?}");
}

#[test]
fn a_wrong_acceptance_rule_is_rejected() {
    let p = check(SamplingConfig { temperature: 1.0, ..Default::default() }, true);
    assert!(p < 0.001, "the G-test failed to notice an always-accept rule (p = {p})");
}

/// A host drafter written against the C ABI: proposes whatever followed the last token earlier
/// (else token 1), as fixed tokens; with `probs`, draws from a uniform distribution over 16 ids
/// (a xorshift stream in `user_data`) and reports it.
unsafe extern "C" fn c_drafter(
    user_data: *mut std::ffi::c_void,
    tokens: *const u32,
    n: usize,
    max: usize,
    vocab: usize,
    out: *mut u32,
    probs: *mut f32,
) -> i32 {
    let tokens = std::slice::from_raw_parts(tokens, n);
    let k = max.min(3);
    if probs.is_null() {
        let last = tokens[n - 1];
        let next = tokens.windows(2).find(|w| w[0] == last).map_or(1, |w| w[1]);
        (0..k).for_each(|i| *out.add(i) = next);
    } else {
        let state = &*(user_data as *const std::sync::atomic::AtomicU64);
        let probs = std::slice::from_raw_parts_mut(probs, max * vocab);
        for i in 0..k {
            let mut x = state.load(std::sync::atomic::Ordering::Relaxed);
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            state.store(x, std::sync::atomic::Ordering::Relaxed);
            *out.add(i) = (x % 16) as u32;
            let row = &mut probs[i * vocab..(i + 1) * vocab];
            row.iter_mut().enumerate().for_each(|(t, p)| *p = if t < 16 { 1.0 / 16.0 } else { 0.0 });
        }
    }
    k as i32
}

/// Sampling through the C ABI end to end (drafter handle, config setters, generator) with the
/// host drafter above, as fixed tokens and as sampled proposals with their distribution.
#[test]
fn host_callback_through_the_c_abi_matches_the_target() {
    use specdec::ffi::*;
    use std::ptr;
    let target = load(fixture("llama"));
    let prompt = tokenizer().encode(PROMPTS[2]).unwrap();
    let sampling = t1();
    let exact = exact_pairs(&target, &prompt, &sampling);
    let state = std::sync::atomic::AtomicU64::new(0x9e37_79b9_7f4a_7c15);
    let path = std::ffi::CString::new(fixture("llama").to_str().unwrap()).unwrap();
    for with_probs in [false, true] {
        let mut counts = HashMap::new();
        let mut drafted = 0u64;
        unsafe {
            let (mut model, mut drafter, mut e) = (ptr::null_mut(), ptr::null_mut(), ptr::null_mut());
            assert_eq!(specdec_model_load(path.as_ptr(), ptr::null(), &mut model, &mut e), specdec_status::Ok);
            let user = &state as *const _ as *mut std::ffi::c_void;
            assert_eq!(specdec_drafter_new_callback(Some(c_drafter), user, with_probs, &mut drafter, &mut e), specdec_status::Ok);
            for seed in 0..SAMPLES {
                let cfg = specdec_gen_config_new();
                assert_eq!(specdec_gen_config_set_gamma(cfg, GAMMA as u32, &mut e), specdec_status::Ok);
                assert_eq!(specdec_gen_config_set_temperature(cfg, 1.0, &mut e), specdec_status::Ok);
                assert_eq!(specdec_gen_config_set_seed(cfg, seed, &mut e), specdec_status::Ok);
                assert_eq!(specdec_gen_config_set_max_new_tokens(cfg, GAMMA as u32 + 1, &mut e), specdec_status::Ok);
                assert_eq!(specdec_gen_config_set_eos_ids(cfg, ptr::null(), 0, &mut e), specdec_status::Ok);
                let mut g = ptr::null_mut();
                assert_eq!(specdec_generator_new_with_drafter(model, drafter, cfg, &mut g, &mut e), specdec_status::Ok);
                specdec_gen_config_free(cfg);
                assert_eq!(specdec_generator_append_tokens(g, prompt.as_ptr(), prompt.len(), &mut e), specdec_status::Ok);
                let mut reason = specdec_finish_reason::None;
                assert_eq!(specdec_generator_generate(g, None, ptr::null_mut(), &mut reason, &mut e), specdec_status::Ok);
                let (mut toks, mut n) = (ptr::null(), 0usize);
                assert_eq!(specdec_generator_tokens(g, &mut toks, &mut n, &mut e), specdec_status::Ok);
                let new = &std::slice::from_raw_parts(toks, n)[prompt.len()..];
                *counts.entry((new[0], new[1])).or_insert(0) += 1;
                let mut stats: specdec_stats = std::mem::zeroed();
                stats.struct_size = std::mem::size_of::<specdec_stats>();
                assert_eq!(specdec_generator_stats(g, &mut stats, &mut e), specdec_status::Ok);
                drafted += stats.drafted;
                specdec_generator_free(g);
            }
            specdec_drafter_free(drafter);
            specdec_model_free(model);
        }
        assert!(drafted > 0);
        let (g, df, p) = g_test(&counts, &exact);
        println!("C ABI host drafter (probs: {with_probs}): G = {g:.1}, df = {df}, p = {p:.4}");
        assert!(p > 0.001, "with_probs {with_probs}: p = {p}");
    }
}

/// The batch engine's sampling: SAMPLES counted sequences (the G-test's prompt, seeds 0..,
/// draft lengths 1..=6, 2..=8 new tokens) join a running engine a few per round beside other
/// sequences (other prompts, temperatures, greedy) that join and leave too; counted sequences
/// leave by finishing or by a cancellation once their first two tokens are in. Every row of
/// every batched call then sits beside a changing set of others.
#[test]
fn batch_engine_sampling_with_joins_and_leaves_matches_the_target() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use specdec::{Engine, EngineOptions, SeqState};

    let (target, draft) = (load(fixture("llama")), load(fixture("draft")));
    let tok = tokenizer();
    let prompt = tok.encode(PROMPTS[2]).unwrap();
    let others: Vec<Vec<u32>> = [0, 1, 3].iter().map(|&i| tok.encode(PROMPTS[i]).unwrap()).collect();
    let sampling = SamplingConfig { top_k: 50, ..t1() };
    let exact = exact_pairs(&target, &prompt, &sampling);
    let engine = Engine::new(target, Some(draft), EngineOptions { max_batch: 24, ..Default::default() }).unwrap();
    let mut rng = StdRng::seed_from_u64(17);
    let cfg = |gamma, seed, max_new_tokens, sampling: SamplingConfig| GenerationConfig {
        gamma,
        seed,
        max_new_tokens,
        eos_ids: Some(vec![]),
        sampling,
        ..Default::default()
    };
    // Counted sequences by id: their tokens so far and whether their pair is recorded.
    let mut counted: HashMap<u64, (Vec<u32>, bool)> = HashMap::new();
    let mut distractors: Vec<u64> = Vec::new();
    let (mut next_seed, mut recorded, mut counts) = (0u64, 0u64, HashMap::new());
    let (mut rounds, mut max_rows, mut cancelled) = (0u64, 0u64, 0u64);
    while recorded < SAMPLES {
        for _ in 0..rng.random_range(0..=8) {
            if next_seed < SAMPLES {
                let c = cfg(rng.random_range(1..=6), next_seed, rng.random_range(2..=8), sampling.clone());
                counted.insert(engine.add(&prompt, c).unwrap(), (Vec::new(), false));
                next_seed += 1;
            }
        }
        if rng.random_bool(0.3) {
            let s = if rng.random_bool(0.5) { SamplingConfig::default() } else { SamplingConfig { temperature: 0.7, ..t1() } };
            let c = cfg(rng.random_range(1..=6), rng.random(), rng.random_range(1..=20), s);
            distractors.push(engine.add(&others[rng.random_range(0..others.len())], c).unwrap());
        }
        engine.step().unwrap();
        rounds += 1;
        max_rows = max_rows.max(engine.stats().active);
        let mut gone = Vec::new();
        for (&id, (tokens, done)) in counted.iter_mut() {
            let poll = engine.poll(id, tokens, usize::MAX).unwrap();
            assert!(poll.error.is_none() && poll.state != SeqState::Failed);
            if !*done && tokens.len() >= 2 {
                *counts.entry((tokens[0], tokens[1])).or_insert(0u64) += 1;
                (*done, recorded) = (true, recorded + 1);
                if poll.state == SeqState::Running && rng.random_bool(0.2) {
                    engine.cancel(id).unwrap();
                    cancelled += 1;
                }
            }
            if poll.state == SeqState::Finished {
                assert!(*done, "a counted sequence ended before its second token");
                gone.push(id);
            }
        }
        for id in gone {
            counted.remove(&id);
            engine.remove(id).unwrap();
        }
        distractors.retain(|&id| {
            let poll = engine.poll(id, &mut Vec::new(), usize::MAX).unwrap();
            if poll.state == SeqState::Finished || rng.random_bool(0.05) {
                engine.remove(id).unwrap();
                return false;
            }
            true
        });
    }
    let s = engine.stats();
    let (g, df, p) = g_test(&counts, &exact);
    println!(
        "batch engine {sampling:?}: {SAMPLES} samples in {rounds} rounds (up to {max_rows} rows, {cancelled} cancelled after their pair), acceptance {:.1}%, G = {g:.1}, df = {df}, p = {p:.4}",
        100.0 * s.accepted as f64 / s.drafted as f64
    );
    assert!(s.accepted > 0 && s.accepted < s.drafted);
    assert!(max_rows > 8, "the batches stayed small ({max_rows} rows)");
    assert!(p > 0.001, "batched sampling differs from the target's distribution (p = {p})");
}
