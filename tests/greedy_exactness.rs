//! Greedy speculative output equals target-only greedy output token for token, for every γ,
//! every fixture architecture as target, several prompts, 64+ new tokens.

mod common;

use std::sync::Arc;

use common::*;
use specdec::{Model, SamplingConfig};

const NEW_TOKENS: usize = 64;

fn run(
    target: &Arc<Model>,
    draft: Option<&Arc<Model>>,
    prompt: &[u32],
    gamma: usize,
    sampling: &SamplingConfig,
) -> (Vec<u32>, specdec::Stats) {
    generate_n(target, draft, prompt, gamma, NEW_TOKENS, sampling)
}

fn check_pair(target_path: std::path::PathBuf, draft_path: std::path::PathBuf, sampling: SamplingConfig) {
    let tok = tokenizer();
    let target = load(&target_path);
    let draft = load(&draft_path);
    let mut accepted = (0u64, 0u64);
    for prompt_text in PROMPTS {
        let prompt = tok.encode(prompt_text).unwrap();
        let (want, _) = run(&target, None, &prompt, 1, &sampling);
        assert_eq!(want.len(), NEW_TOKENS);
        for gamma in 1..=8 {
            let (got, stats) = run(&target, Some(&draft), &prompt, gamma, &sampling);
            accepted.0 += stats.accepted;
            accepted.1 += stats.drafted;
            if let Some(i) = want.iter().zip(&got).position(|(a, b)| a != b) {
                let prefix = [prompt.as_slice(), &want[..i]].concat();
                panic!(
                    "{} + {}, gamma {gamma}, prompt {prompt_text:?}: first difference at new token {i} ({} vs {}); target top-2 logit margin there {:.3e}",
                    target_path.display(),
                    draft_path.display(),
                    want[i],
                    got[i],
                    top2_margin(&target, &prefix)
                );
            }
            assert_eq!(got.len(), want.len());
        }
    }
    println!(
        "{} + {}: identical for gamma 1..=8 on {} prompts; acceptance {:.1}%",
        target_path.display(),
        draft_path.display(),
        PROMPTS.len(),
        100.0 * accepted.0 as f64 / accepted.1 as f64
    );
    assert!(accepted.0 > 0, "the draft never agreed: the accept path went untested");
    assert!(accepted.0 < accepted.1, "the draft always agreed: the reject path went untested");
}

#[test]
fn llama_target() {
    check_pair(fixture("llama"), fixture("draft"), SamplingConfig::default());
}

#[test]
fn qwen2_target() {
    check_pair(fixture("qwen2"), fixture("draft"), SamplingConfig::default());
}

#[test]
fn gpt2_target() {
    check_pair(fixture("gpt2"), fixture("draft"), SamplingConfig::default());
}

#[test]
fn another_architecture_as_draft() {
    check_pair(fixture("qwen2"), fixture("gpt2"), SamplingConfig::default());
}

#[test]
fn with_repetition_penalty() {
    check_pair(fixture("llama"), fixture("draft"), SamplingConfig { repetition_penalty: 1.3, ..Default::default() });
}

#[test]
fn demo_pair() {
    let (t, d) = (models_dir().join("demo/target"), models_dir().join("demo/draft"));
    if !t.join("model.onnx").exists() {
        panic!("demo pair missing: run scripts/make_models.py");
    }
    check_pair(t, d, SamplingConfig::default());
}
