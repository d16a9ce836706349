//! Per-position acceptance trace of a draft/target pair, for studying draft-length policies
//! offline (`scripts/policy_sim.py`): target samples are generated after each prompt, then both
//! models score the whole sequence, and every position gives β = Σ min(p, q) (the probability that
//! a draft proposal there is accepted) and the draft's top probability (what `auto` sees before
//! deciding). Sequences sampled from the target are what speculative decoding emits, so the trace
//! follows the positions a real run visits.
//!
//! cargo run --release --example acceptance_trace -- [--target DIR] [--draft DIR]
//!     [--prompts FILE.jsonl] [--seeds N] [--new-tokens N] > trace.txt
//! Output lines: temperature prompt seed position beta confidence.

use std::sync::Arc;

use specdec::acceptance::overlap;
use specdec::sampling::{distribution, DistBuf, History};
use specdec::{DecoderState, GenerationConfig, Generator, Model, ModelOptions, SamplingConfig, Tokenizer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let (mut target, mut draft) = (root.join("models/demo/target"), root.join("models/demo/draft"));
    let mut prompts_file = root.join("benches/prompts.jsonl");
    let (mut seeds, mut new_tokens) = (8u64, 128usize);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--target" => target = value.into(),
            "--draft" => draft = value.into(),
            "--prompts" => prompts_file = value.into(),
            "--seeds" => seeds = value.parse().expect("--seeds N"),
            "--new-tokens" => new_tokens = value.parse().expect("--new-tokens N"),
            _ => panic!("unknown argument {flag}"),
        }
    }
    assert!((1..=256).contains(&new_tokens), "--new-tokens must be 1..=256 (one scoring call)");
    specdec::runtime::init(None)?;
    let options = ModelOptions { intra_threads: 1, ..Default::default() };
    let target = Arc::new(Model::load(&target, &options)?);
    let draft = Arc::new(Model::load(&draft, &options)?);
    let tokenizer = Tokenizer::load(target.path().parent().unwrap_or(root))?;
    let mut prompts = Vec::new();
    for line in std::fs::read_to_string(&prompts_file)?.lines().filter(|l| !l.trim().is_empty()) {
        prompts.push(tokenizer.encode(&serde_json::from_str::<String>(line)?)?);
    }
    let vocab = target.info().vocab_size;
    let history = History::new(vocab);
    for temperature in [0.0f32, 1.0] {
        let sampling = SamplingConfig { temperature, ..Default::default() };
        // Greedy gives one sequence per prompt whatever the seed.
        let seeds = if temperature == 0.0 { 1 } else { seeds };
        for (index, prompt) in prompts.iter().enumerate() {
            for seed in 0..seeds {
                let cfg = GenerationConfig {
                    max_new_tokens: new_tokens,
                    eos_ids: Some(vec![]),
                    sampling: sampling.clone(),
                    seed,
                    ..Default::default()
                };
                let mut g = Generator::new(target.clone(), None, cfg)?;
                g.append_tokens(prompt)?;
                g.generate(|_| true)?;
                let sequence = &g.tokens()[..g.tokens().len() - 1];
                let (mut p_rows, mut q_rows) = (Vec::new(), Vec::new());
                DecoderState::new(target.clone())?.forward(sequence, new_tokens, &mut p_rows)?;
                DecoderState::new(draft.clone())?.forward(sequence, new_tokens, &mut q_rows)?;
                let (mut p_buf, mut q_buf) = (DistBuf::new(), DistBuf::new());
                for i in 0..new_tokens {
                    let (p_row, q_row) = (&p_rows[i * vocab..(i + 1) * vocab], &q_rows[i * vocab..(i + 1) * vocab]);
                    let p = distribution(p_row, &history, &[], &sampling, &mut p_buf);
                    let q = distribution(q_row, &history, &[], &sampling, &mut q_buf);
                    println!("{temperature} {index} {seed} {i} {:.5} {:.5}", overlap(p, q), q.confidence(q_row));
                }
            }
        }
    }
    Ok(())
}
