//! The measured runs: the prompts, one variant's pass over them, and the repetitions of every
//! variant with the check that greedy output does not depend on the variant.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use specdec::{Error, GenerationConfig, Generator, Model, SamplingConfig, Stats, Tokenizer};

use super::instances::{instance_suffix, Instance};
use super::options::BenchOpts;
use super::variants::{run_order, Variant};
use crate::{usage, CliError};

/// One JSON string per line (blank lines skipped), tokenized with the target's tokenizer.
pub(super) fn load_prompts(path: &PathBuf, tok: &Tokenizer) -> Result<Vec<Vec<u32>>, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let p: String = serde_json::from_str(line)
            .map_err(|e| usage(format!("{} line {}: not a JSON string: {e}", path.display(), i + 1)))?;
        out.push(tok.encode(&p)?);
    }
    if out.is_empty() {
        return Err(usage(format!("{} holds no prompts", path.display())));
    }
    Ok(out)
}

/// One variant's pass over the prompts: tokens/s, the stats summed over the prompts, each
/// prompt's new tokens, and tokens/s of decoding after each generation's first step.
type VariantRun = (f64, Stats, Vec<Vec<u32>>, f64);

/// Generate `new_tokens` after each prompt (EOS off, so every variant does the same work);
/// tokens/s over the time spent in generation, and the stats summed over prompts.
pub(super) fn run_variant(
    target: &Arc<Model>,
    v: &Variant,
    prompts: &[Vec<u32>],
    new_tokens: usize,
    rep: usize,
    truncation: &SamplingConfig,
) -> Result<VariantRun, Error> {
    let mut total = Stats::default();
    let mut outputs = Vec::with_capacity(prompts.len());
    // Decoding after each generation's first step (the prompt's prefill, the draft's included, and
    // the first round): tokens and seconds.
    let (mut decode_tokens, mut decode_secs) = (0usize, 0.0f64);
    for (i, prompt) in prompts.iter().enumerate() {
        let cfg = GenerationConfig {
            gamma: v.gamma,
            draft_policy: v.policy,
            confidence_stop: v.confidence_stop,
            max_new_tokens: new_tokens,
            eos_ids: Some(vec![]),
            seed: (rep * 1000 + i) as u64,
            sampling: if v.temperature > 0.0 {
                SamplingConfig { temperature: v.temperature, ..truncation.clone() }
            } else {
                SamplingConfig::default()
            },
            ..Default::default()
        };
        let mut g = Generator::from_source(target.clone(), v.source.as_ref(), cfg)?;
        g.append_tokens(prompt)?;
        g.generate(|_| true)?;
        total += g.stats();
        if let (Some(first), Some(last)) = (g.rounds().first(), g.rounds().last()) {
            decode_tokens += g.rounds()[1..].iter().map(|r| r.emitted).sum::<usize>();
            decode_secs += (last.end - first.end).as_secs_f64();
        }
        outputs.push(g.tokens()[prompt.len()..].to_vec());
    }
    Ok((total.tokens_per_second(), total, outputs, decode_tokens as f64 / decode_secs.max(1e-12)))
}

/// Top-1 minus top-2 raw log-probability under which a greedy difference is a near-tie: int4
/// `MatMulNBits` (accuracy level 4) computes a k-token verify call with other arithmetic than a
/// 1-token step, which moved the top two of the builder int4 demo target by 0.01-0.03 nats (flips
/// seen at margins of 0.0008 and 0.029 nats). A bug in the algorithm shows at any margin.
const NEAR_TIE_NATS: f32 = 0.05;

/// What the runs found besides their timings.
pub(super) struct Checks {
    /// Per instance: prompts whose greedy output differs from instance 0's (None: no T = 0 runs).
    pub(super) greedy_diff: Vec<Option<usize>>,
    /// Greedy differences within an instance at a near-tie of the target-only logits, described.
    pub(super) near_ties: Vec<String>,
}

/// The top-two margin of the target's raw log-probabilities at position `pos` of `output` after
/// `prompt` (target-only, greedy), in nats.
fn margin_at(target: &Arc<Model>, prompt: &[u32], pos: usize) -> Result<f32, Error> {
    let cfg = GenerationConfig { max_new_tokens: pos + 1, eos_ids: Some(vec![]), logprobs: 2, ..Default::default() };
    let mut g = Generator::new(target.clone(), None, cfg)?;
    g.append_tokens(prompt)?;
    g.generate(|_| true)?;
    let top = g.logprobs().top(pos).to_vec();
    Ok(match top[..] {
        [a, b, ..] => a.raw_logprob - b.raw_logprob,
        _ => f32::INFINITY,
    })
}

/// A warm-up, then `o.repeats` repetitions in run order, each run's tokens/s and stats pushed
/// onto its variant. Greedy output that differs within an instance is fatal unless the target's
/// own top two are within [`NEAR_TIE_NATS`] where it first differs (then it is reported).
pub(super) fn run_all(
    o: &BenchOpts,
    instances: &[Instance],
    vs: &mut [Variant],
    groups: &[Vec<usize>],
    prompts: &[Vec<u32>],
    before_each_rep: &mut dyn FnMut() -> Result<(), Error>,
) -> Result<Checks, CliError> {
    let mut near_ties = Vec::new();
    // Warm-up: one short pass of every variant, of every instance (sessions plan and allocate on
    // first use).
    for v in vs.iter() {
        run_variant(&instances[v.inst].target, v, &prompts[..1], o.new_tokens.min(16), 0, &o.truncation)?;
    }
    // Greedy output must not depend on the variant: every greedy run of an instance is checked
    // against the instance's first one. Across instances (other graph optimizations, another
    // cache path) float rounding may flip a near-tie, so there a difference is reported, not fatal.
    let mut reference: Vec<Option<Vec<Vec<u32>>>> = vec![None; instances.len()];
    let started = Instant::now();
    for rep in 0..o.repeats {
        before_each_rep()?;
        for i in run_order(groups, rep) {
            let v = &mut vs[i];
            let (tps, stats, outputs, decode) =
                run_variant(&instances[v.inst].target, v, prompts, o.new_tokens, rep, &o.truncation)?;
            if v.temperature == 0.0 {
                match &reference[v.inst] {
                    None => reference[v.inst] = Some(outputs),
                    Some(r) => {
                        for (p, (want, got)) in r.iter().zip(&outputs).enumerate() {
                            let Some(pos) = want.iter().zip(got).position(|(a, b)| a != b) else { continue };
                            let margin = margin_at(&instances[v.inst].target, &prompts[p], pos)?;
                            let what = format!(
                                "greedy output of `{}`{} differs from the first variant's at prompt {p}, token {pos}: the target's top two are {margin:.4} nats apart",
                                v.name,
                                instance_suffix(&instances[v.inst])
                            );
                            if margin >= NEAR_TIE_NATS {
                                return Err(Error::Inference(what).into());
                            }
                            eprintln!("near-tie: {what}");
                            if !near_ties.contains(&what) {
                                near_ties.push(what);
                            }
                        }
                    }
                }
            }
            v.runs.push((tps, stats, decode));
        }
        eprintln!("repetition {}/{} done ({:.0} s)", rep + 1, o.repeats, started.elapsed().as_secs_f64());
    }
    // Prompts whose greedy output differs from instance 0's, per instance.
    let greedy_diff: Vec<Option<usize>> =
        reference.iter().map(|r| Some(r.as_ref()?.iter().zip(reference[0].as_ref()?).filter(|(a, b)| a != b).count())).collect();
    Ok(Checks { greedy_diff, near_ties })
}
