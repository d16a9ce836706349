//! What a run measures: one variant per draft source, length policy and temperature named by
//! --variants, each on every instance where the session options are compared, and the order a
//! repetition runs them in.

use specdec::{DraftPolicy, DraftSource, NGramConfig, Stats};

use super::instances::Instance;
use super::options::BenchOpts;
use crate::{usage, CliError};

/// One thing measured: a draft source with its length policy at one temperature, on one instance.
pub(super) struct Variant {
    pub(super) name: String,
    pub(super) temperature: f32,
    /// Index into the instances (0: the run's own session options).
    pub(super) inst: usize,
    pub(super) source: Option<DraftSource>,
    pub(super) policy: DraftPolicy,
    pub(super) gamma: usize,
    pub(super) confidence_stop: f32,
    /// Per repetition: tokens/s and the summed stats over all prompts.
    /// Per repetition: tokens/s, the stats, and tokens/s of decoding after each first step.
    pub(super) runs: Vec<(f64, Stats, f64)>,
}

impl Variant {
    /// Whether this variant is one of the two settings the session options are compared at:
    /// target-only, or the model draft at fixed γ = `gamma` with no confidence stop.
    pub(super) fn options_mode(&self, gamma: usize) -> bool {
        match &self.source {
            None => true,
            Some(DraftSource::Model(_)) => {
                self.policy == DraftPolicy::Fixed && self.confidence_stop == 0.0 && self.gamma == gamma
            }
            Some(_) => false,
        }
    }

    /// Stats summed over every repetition.
    pub(super) fn total(&self) -> Stats {
        let mut s = Stats::default();
        self.runs.iter().for_each(|(_, st, _)| s += st);
        s
    }

    /// The same setting (temperature, drafted or not, γ), on any instance: the option comparison
    /// pairs these.
    pub(super) fn same_setting(&self, other: &Variant) -> bool {
        self.temperature == other.temperature && self.source.is_none() == other.source.is_none() && self.gamma == other.gamma
    }
}

/// The variants in the order a repetition runs them, grouped: a group is one variant of instance
/// 0 followed by the same setting on each other instance (a single variant where there are none).
/// Each group runs back to back, its order rotated per repetition, so the paired option ratios
/// compare runs seconds apart and no instance always runs first.
pub(super) fn variants(o: &BenchOpts, instances: &[Instance]) -> Result<(Vec<Variant>, Vec<Vec<usize>>), CliError> {
    let draft = DraftSource::Model(instances[0].draft.clone());
    let compare = instances.len() > 1;
    let mut out = Vec::new();
    for &t in &o.temperatures {
        let mut add = |name: String, source: Option<DraftSource>, policy, gamma, confidence_stop| {
            out.push(Variant { name, temperature: t, inst: 0, source, policy, gamma, confidence_stop, runs: Vec::new() })
        };
        for v in &o.variants {
            let ngram = DraftSource::NGram(NGramConfig::default());
            match v.as_str() {
                "target" => add("target-only".into(), None, DraftPolicy::Fixed, 1, 0.0),
                "gammas" => {
                    o.gammas.iter().for_each(|&g| add(format!("model γ={g}"), Some(draft.clone()), DraftPolicy::Fixed, g, 0.0))
                }
                "auto" => add("model auto".into(), Some(draft.clone()), DraftPolicy::Auto, 4, 0.0),
                "heuristic" => add("model heuristic".into(), Some(draft.clone()), DraftPolicy::Heuristic, 4, 0.0),
                "confidence" => add("model γ=8 conf≥0.3".into(), Some(draft.clone()), DraftPolicy::Fixed, 8, 0.3),
                "ngram" => add("ngram γ≤8".into(), Some(ngram), DraftPolicy::Fixed, 8, 0.0),
                "ngram-auto" => add("ngram auto".into(), Some(ngram), DraftPolicy::Auto, 8, 0.0),
                "bigram" => {
                    add("bigram γ=2".into(), Some(DraftSource::Counts { order: 2, table: None }), DraftPolicy::Fixed, 2, 0.0)
                }
                "unigram" => {
                    add("unigram γ=2".into(), Some(DraftSource::Counts { order: 1, table: None }), DraftPolicy::Fixed, 2, 0.0)
                }
                // Instances, not rows of their own: handled below.
                "opt" | "iobinding" => {}
                other => return Err(usage(format!("unknown bench variant `{other}`"))),
            }
        }
        // The speculative setting of the option comparison needs its row on the run's options.
        if compare && !out.iter().any(|v| v.temperature == t && v.source.is_some() && v.options_mode(o.options_gamma)) {
            let g = o.options_gamma;
            out.push(Variant {
                name: format!("model γ={g}"),
                temperature: t,
                inst: 0,
                source: Some(draft.clone()),
                policy: DraftPolicy::Fixed,
                gamma: g,
                confidence_stop: 0.0,
                runs: Vec::new(),
            });
        }
    }
    if !out.iter().any(|v| v.source.is_none()) {
        return Err(usage("the bench variants must include `target`: every speed-up is relative to it"));
    }
    let mut ordered = Vec::with_capacity(out.len() * instances.len());
    let mut groups = Vec::new();
    for v in out {
        let mut group = vec![ordered.len()];
        let siblings: Vec<Variant> = if compare && v.options_mode(o.options_gamma) {
            (1..instances.len())
                .map(|i| Variant {
                    name: v.name.clone(),
                    temperature: v.temperature,
                    inst: i,
                    source: v.source.as_ref().map(|_| DraftSource::Model(instances[i].draft.clone())),
                    policy: v.policy,
                    gamma: v.gamma,
                    confidence_stop: 0.0,
                    runs: Vec::new(),
                })
                .collect()
        } else {
            Vec::new()
        };
        ordered.push(v);
        for s in siblings {
            group.push(ordered.len());
            ordered.push(s);
        }
        groups.push(group);
    }
    Ok((ordered, groups))
}

/// The order of repetition `rep`: the groups in order, each rotated by `rep`.
pub(super) fn run_order(groups: &[Vec<usize>], rep: usize) -> Vec<usize> {
    groups
        .iter()
        .flat_map(|g| {
            let mut g = g.clone();
            let n = g.len();
            g.rotate_left(rep % n);
            g
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_order_rotates_within_groups_only() {
        let groups = vec![vec![0, 1, 2], vec![3], vec![4, 5]];
        assert_eq!(run_order(&groups, 0), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(run_order(&groups, 1), vec![1, 2, 0, 3, 5, 4]);
        assert_eq!(run_order(&groups, 2), vec![2, 0, 1, 3, 4, 5]);
    }
}
