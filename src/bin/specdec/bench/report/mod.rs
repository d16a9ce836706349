//! The figures a run reports, derived from the measured variants and costs: speed-ups with the
//! paper's prediction beside them, and the session-option comparison with its choice. json.rs and
//! markdown.rs write the same figures, so both outputs always agree.

use specdec::policy::{expected_tokens, predicted_speedup};
use specdec::{DraftPolicy, DraftSource};

use super::costs::Costs;
use super::instances::Instance;
use super::options::BenchOpts;
use super::variants::Variant;
use crate::median;

mod json;
mod markdown;

/// A finished run, borrowed for the figures and both outputs.
pub(super) struct Report<'a> {
    pub(super) o: &'a BenchOpts,
    pub(super) vs: &'a [Variant],
    pub(super) instances: &'a [Instance],
    /// Per instance: prompts whose greedy output differs from instance 0's (None: no T = 0 runs).
    pub(super) greedy_diff: &'a [Option<usize>],
    /// Greedy differences at near-ties of the target's logits, described (see bench/run.rs).
    pub(super) near_ties: &'a [String],
    pub(super) costs: &'a Costs,
    pub(super) verify: &'a dyn Fn(usize) -> f64,
    pub(super) prompts: usize,
}

/// Derived figures of one variant.
struct Row<'a> {
    v: &'a Variant,
    tps: Summary,
    speedup: Summary,
    /// The speed-up of decoding after each generation's first step (its tokens over its time):
    /// what the paper's formula describes, without the prompt's prefill (the target's, which both
    /// sides pay, and the draft's) and the first round.
    decode_speedup: Summary,
    alpha: f64,
    tokens_per_round: f64,
    split: (f64, f64, f64),
    /// The paper's formula with measured α̂, c and T(k)/T₀: with one draft step cost c (the
    /// cold one, as a round starts), and with the first step cold and the others warm.
    predicted_paper: Option<f64>,
    predicted: Option<f64>,
}

impl Report<'_> {
    fn c_cold(&self) -> f64 {
        self.costs.draft_cold / self.costs.target_only
    }

    fn c_warm(&self) -> f64 {
        self.costs.draft_warm / self.costs.target_only
    }

    /// Target-only on instance `inst` at temperature `t`: the speed-ups' denominator.
    fn target_only(&self, inst: usize, t: f32) -> Option<&Variant> {
        self.vs.iter().find(|b| b.inst == inst && b.source.is_none() && b.temperature == t)
    }

    fn rows(&self) -> Vec<Row<'_>> {
        self.vs
            .iter()
            .filter(|v| v.inst == 0)
            .map(|v| {
                let base = self.target_only(0, v.temperature).expect("target-only variant");
                let s = v.total();
                let total = s.total_time.as_secs_f64().max(1e-12);
                let draft = s.draft_time.as_secs_f64() / total;
                let target = s.target_time.as_secs_f64() / total;
                let alpha = s.alpha();
                let fixed = v.source.is_some()
                    && v.policy == DraftPolicy::Fixed
                    && v.confidence_stop == 0.0
                    && matches!(v.source, Some(DraftSource::Model(_)));
                Row {
                    v,
                    tps: summarise(v.runs.iter().map(|r| r.0).collect()),
                    speedup: summarise(v.runs.iter().zip(&base.runs).map(|(a, b)| a.0 / b.0).collect()),
                    decode_speedup: summarise(v.runs.iter().zip(&base.runs).map(|(a, b)| a.2 / b.2).collect()),
                    alpha,
                    tokens_per_round: s.tokens_per_target_call(),
                    split: (draft, target, (1.0 - draft - target).max(0.0)),
                    predicted_paper: fixed.then(|| predicted_speedup(alpha, v.gamma, self.c_cold(), (self.verify)(v.gamma + 1))),
                    predicted: fixed.then(|| {
                        let draft = self.c_cold() + (v.gamma as f64 - 1.0) * self.c_warm();
                        expected_tokens(alpha, v.gamma) / (draft + (self.verify)(v.gamma + 1))
                    }),
                }
            })
            .collect()
    }

    /// The session-option comparison: for each setting measured on every instance (target-only
    /// and γ = --options-gamma, per temperature), the run's own options first, then each other
    /// instance, with tokens/s paired per repetition against the run's own options.
    fn option_rows(&self) -> Vec<OptionRow<'_>> {
        if self.instances.len() < 2 {
            return Vec::new();
        }
        let mut out = Vec::new();
        for d in self.vs.iter().filter(|v| v.inst == 0 && v.options_mode(self.o.options_gamma)) {
            let mut members: Vec<&Variant> =
                self.vs.iter().filter(|v| v.same_setting(d) && (v.inst != 0 || std::ptr::eq(*v, d))).collect();
            members.sort_by_key(|v| v.inst);
            for v in members {
                let own_base = self.target_only(v.inst, v.temperature);
                let s = v.total();
                let ratio = summarise(v.runs.iter().zip(&d.runs).map(|(a, b)| a.0 / b.0).collect());
                let verdict = if v.inst == 0 {
                    "–"
                } else if v.runs.len() < MIN_REPS_FOR_CHOICE {
                    "too few reps"
                } else if ratio.min > 1.0 {
                    "faster"
                } else if ratio.max < 1.0 {
                    "slower"
                } else {
                    "mixed"
                };
                out.push(OptionRow {
                    v,
                    inst: &self.instances[v.inst],
                    tps: summarise(v.runs.iter().map(|r| r.0).collect()),
                    ratio,
                    speedup: v
                        .source
                        .as_ref()
                        .and(own_base)
                        .map(|b| summarise(v.runs.iter().zip(&b.runs).map(|(a, b)| a.0 / b.0).collect())),
                    alpha: s.alpha(),
                    tokens_per_round: s.tokens_per_target_call(),
                    verdict,
                });
            }
        }
        out
    }

    /// The options this run's measurements pick: an alternative only where it was faster than the
    /// run's own options in every repetition of every setting it was measured at (the one with the
    /// largest geometric-mean median ratio if several are), else the run's own.
    fn option_choice(&self, rows: &[OptionRow]) -> Option<(usize, f64)> {
        if self.o.repeats < MIN_REPS_FOR_CHOICE {
            return None;
        }
        (1..self.instances.len())
            .filter_map(|i| {
                let mine: Vec<&OptionRow> = rows.iter().filter(|r| r.v.inst == i).collect();
                (!mine.is_empty() && mine.iter().all(|r| r.ratio.min > 1.0))
                    .then(|| (i, (mine.iter().map(|r| r.ratio.med.ln()).sum::<f64>() / mine.len() as f64).exp()))
            })
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }

    fn options_label(&self, i: usize) -> String {
        let inst = &self.instances[i];
        if i == 0 {
            format!("run's own (opt-level {}{})", inst.optimization_level, if inst.io_binding { ", iobinding" } else { "" })
        } else {
            inst.label.clone()
        }
    }
}

/// Fewer repetitions than this give no verdict on session options ("faster in every repetition"
/// means little over one or two).
const MIN_REPS_FOR_CHOICE: usize = 3;

/// One row of the session-option comparison.
struct OptionRow<'a> {
    v: &'a Variant,
    inst: &'a Instance,
    tps: Summary,
    /// Paired per repetition against the same setting on the run's own options.
    ratio: Summary,
    /// Speculative rows: against the same instance's target-only.
    speedup: Option<Summary>,
    alpha: f64,
    tokens_per_round: f64,
    verdict: &'static str,
}

/// Median and range over repetitions.
struct Summary {
    med: f64,
    min: f64,
    max: f64,
}

fn summarise(mut v: Vec<f64>) -> Summary {
    let min = v.iter().copied().fold(f64::MAX, f64::min);
    let max = v.iter().copied().fold(0.0, f64::max);
    Summary { med: median(&mut v), min, max }
}
