//! Device reductions (`ModelOptions::device_reductions`): logits reduced where the model wrote them
//! (a TopK helper session over IoBinding), so that only the argmax (greedy) or the k best logits
//! (top-k sampling) of each row cross to the host. On a GPU that saves a vocabulary's worth of
//! device-to-host copy per row; here the same code runs on the CPU, turned on by the option, and
//! must give the tokens the full-row path gives: the same logits and the same tie-break make the
//! same choices, and the same candidates summed in the same order make the same probabilities, so
//! the same seed draws the same tokens.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use specdec::{GenerationConfig, Generator, Model, ModelOptions, SamplingConfig, Stats};

fn load_with(path: impl AsRef<Path>, reductions: Option<bool>) -> Arc<Model> {
    specdec::runtime::init(None).expect("ONNX Runtime (run scripts/setup.sh or set ORT_DYLIB_PATH)");
    let options = ModelOptions { intra_threads: 1, device_reductions: reductions, ..Default::default() };
    Arc::new(Model::load(path.as_ref(), &options).unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display())))
}

/// (target, draft) pairs: the demo pair, a fixture pair, and builder exports (the 32,000-entry
/// vocabulary pair, and the builder demo draft as a target for the fixture-sized one).
fn pairs() -> Vec<(PathBuf, PathBuf)> {
    let b = models_dir().join("builder");
    let mut v = vec![
        (fixture("llama"), fixture("draft")),
        (b.join("vocab32k-target"), b.join("vocab32k-draft")),
        (b.join("demo-draft-fp32"), b.join("draft-fp32")),
    ];
    let (t, d) = (models_dir().join("demo/target"), models_dir().join("demo/draft"));
    assert!(t.join("model.onnx").exists(), "demo pair missing: run scripts/make_models.py");
    v.push((t, d));
    v
}

fn run(
    target: &Arc<Model>,
    draft: Option<&Arc<Model>>,
    prompt: &[u32],
    gamma: usize,
    cfg: GenerationConfig,
) -> (Vec<u32>, Stats) {
    let cfg = GenerationConfig { gamma, eos_ids: Some(vec![]), ..cfg };
    let mut g = Generator::new(target.clone(), draft.cloned(), cfg).unwrap();
    g.append_tokens(prompt).unwrap();
    g.generate(|_| true).unwrap();
    (g.tokens()[prompt.len()..].to_vec(), *g.stats())
}

#[test]
fn reductions_are_off_on_the_cpu_unless_asked_for() {
    let path = fixture("draft");
    let plain = load_with(&path, None);
    assert!(!plain.device_reductions() && !plain.uses_io_binding(), "the CPU default changed");
    let off = load_with(&path, Some(false));
    assert!(!off.device_reductions() && !off.uses_io_binding());
    let on = load_with(&path, Some(true));
    assert!(on.device_reductions() && on.uses_io_binding(), "reductions run on the IoBinding path");
    assert_eq!(on.reduced_rows(), 0);
}

/// Greedy output with reductions on equals the full-row path's, token for token (the same floats
/// decide: no near-tie allowance), target-only and speculative at several γ, with either model or
/// both reducing; and the reductions were used (rows were reduced, not read whole).
#[test]
fn greedy_with_reductions_equals_greedy_without() {
    let tok = tokenizer();
    let cfg = GenerationConfig { max_new_tokens: 48, ..Default::default() };
    for (tp, dp) in pairs() {
        let (t_off, d_off) = (load_with(&tp, None), load_with(&dp, None));
        let (t_on, d_on) = (load_with(&tp, Some(true)), load_with(&dp, Some(true)));
        let mut accepted = (0, 0);
        for text in PROMPTS {
            let prompt = tok.encode(text).unwrap();
            let (want, _) = run(&t_off, None, &prompt, 1, cfg.clone());
            let (got, _) = run(&t_on, None, &prompt, 1, cfg.clone());
            assert_eq!(got, want, "{}: target-only greedy changed with reductions ({text:?})", tp.display());
            for gamma in [1, 3, 8] {
                let (spec_off, _) = run(&t_off, Some(&d_off), &prompt, gamma, cfg.clone());
                assert_eq!(spec_off, want, "{} + {}: gamma {gamma} without reductions", tp.display(), dp.display());
                for (t, d, what) in [(&t_on, &d_on, "both"), (&t_on, &d_off, "target"), (&t_off, &d_on, "draft")] {
                    let (got, st) = run(t, Some(d), &prompt, gamma, cfg.clone());
                    assert_eq!(got, want, "{} + {}: gamma {gamma}, reductions on {what}: ({text:?})", tp.display(), dp.display());
                    accepted.0 += st.accepted;
                    accepted.1 += st.drafted;
                }
            }
        }
        println!(
            "{} + {}: greedy identical with reductions (target rows reduced {}, draft rows reduced {}); acceptance {}/{}",
            tp.display(),
            dp.display(),
            t_on.reduced_rows(),
            d_on.reduced_rows(),
            accepted.0,
            accepted.1
        );
        assert!(t_on.reduced_rows() > 0 && d_on.reduced_rows() > 0, "the reductions went unused");
        assert_eq!((t_off.reduced_rows(), d_off.reduced_rows()), (0, 0));
        assert!(accepted.0 > 0 && accepted.0 < accepted.1, "accept and reject paths both needed");
    }
}

/// Top-k sampling (alone, then with top-p, then with min-p) draws the same tokens for the same seed
/// with reductions as without: target-only and speculative.
#[test]
fn top_k_sampling_with_reductions_draws_the_same_tokens() {
    let tok = tokenizer();
    let samplings = [
        SamplingConfig { temperature: 1.0, top_k: 40, ..Default::default() },
        SamplingConfig { temperature: 0.8, top_k: 50, top_p: 0.9, ..Default::default() },
        SamplingConfig { temperature: 1.2, top_k: 20, min_p: 0.05, ..Default::default() },
    ];
    for (tp, dp) in pairs() {
        let (t_off, d_off) = (load_with(&tp, None), load_with(&dp, None));
        let (t_on, d_on) = (load_with(&tp, Some(true)), load_with(&dp, Some(true)));
        let mut compared = 0;
        for sampling in &samplings {
            for (i, text) in PROMPTS.iter().enumerate().take(2) {
                let prompt = tok.encode(text).unwrap();
                for seed in 0..3u64 {
                    let cfg = GenerationConfig {
                        max_new_tokens: 32,
                        seed: seed + 10 * i as u64,
                        sampling: sampling.clone(),
                        ..Default::default()
                    };
                    let (want, _) = run(&t_off, None, &prompt, 1, cfg.clone());
                    let (got, _) = run(&t_on, None, &prompt, 1, cfg.clone());
                    assert_eq!(got, want, "{}: target-only {sampling:?}, seed {}", tp.display(), cfg.seed);
                    let (want, _) = run(&t_off, Some(&d_off), &prompt, 4, cfg.clone());
                    let (got, _) = run(&t_on, Some(&d_on), &prompt, 4, cfg.clone());
                    assert_eq!(got, want, "{} + {}: gamma 4, {sampling:?}, seed {}", tp.display(), dp.display(), cfg.seed);
                    compared += 2;
                }
            }
        }
        println!(
            "{} + {}: {compared} sampled runs identical with reductions (rows reduced: target {}, draft {})",
            tp.display(),
            dp.display(),
            t_on.reduced_rows(),
            d_on.reduced_rows()
        );
        assert!(t_on.reduced_rows() > 0 && d_on.reduced_rows() > 0, "the reductions went unused");
    }
}

/// Where the transforms need whole rows (penalties, bias, top-p or min-p without top-k, plain
/// temperature, log-probabilities, a greedy draft's confidence) a reducing model still hands them
/// over whole, and the tokens are the full-row path's.
#[test]
fn whole_rows_where_the_transforms_need_them() {
    let tok = tokenizer();
    let (tp, dp) = (fixture("llama"), fixture("draft"));
    let (t_off, d_off) = (load_with(&tp, None), load_with(&dp, None));
    let (t_on, d_on) = (load_with(&tp, Some(true)), load_with(&dp, Some(true)));
    let prompt = tok.encode(PROMPTS[0]).unwrap();
    let base = GenerationConfig { max_new_tokens: 24, seed: 7, ..Default::default() };
    // Each with whether the target's and the draft's rows are reduced (beyond the prefill's one
    // unused row each): log-probabilities need the target's rows only, a greedy draft's
    // confidence the draft's only.
    let sampled = |sampling| GenerationConfig { sampling, ..base.clone() };
    let cases = [
        (sampled(SamplingConfig { repetition_penalty: 1.3, ..Default::default() }), false, false),
        (sampled(SamplingConfig { temperature: 1.0, top_k: 40, logit_bias: vec![(5, 2.0)], ..Default::default() }), false, false),
        (sampled(SamplingConfig { temperature: 0.9, top_p: 0.8, ..Default::default() }), false, false),
        (sampled(SamplingConfig { temperature: 1.0, min_p: 0.1, ..Default::default() }), false, false),
        (sampled(SamplingConfig { temperature: 1.0, ..Default::default() }), false, false),
        (GenerationConfig { logprobs: 3, ..base.clone() }, false, true),
        (GenerationConfig { confidence_stop: 0.3, ..base.clone() }, true, false),
    ];
    for (cfg, target_reduces, draft_reduces) in cases {
        let before = (t_on.reduced_rows(), d_on.reduced_rows());
        let (want, _) = run(&t_off, Some(&d_off), &prompt, 4, cfg.clone());
        let (got, _) = run(&t_on, Some(&d_on), &prompt, 4, cfg.clone());
        assert_eq!(got, want, "{cfg:?}");
        let after = (t_on.reduced_rows(), d_on.reduced_rows());
        let reduced = (after.0 - before.0 > 1, after.1 - before.1 > 1);
        assert_eq!(reduced, (target_reduces, draft_reduces), "{cfg:?}: rows reduced {before:?} -> {after:?}");
    }
}
