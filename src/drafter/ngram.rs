//! Prompt lookup: if the last n tokens occurred before, propose what followed them then. Costs
//! microseconds and no model, and pays off on repetitive text (code, edits, quoting). Where
//! nothing matches it proposes nothing, so the round is a plain target step.
//!
//! On text that does not repeat, chance matches would still cost verification: the drafter
//! tracks how often its proposals are accepted and proposes only as many tokens as pay for
//! themselves (none, with an occasional probe, when they don't).

use super::{DraftContext, Drafter, Guess};
use crate::error::{Error, Result};
use crate::policy::estimate::{AcceptanceEstimate, Prober};
use crate::policy::{expected_tokens, RoundReport, MAX_GAMMA};

/// Settings of the n-gram drafter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NGramConfig {
    /// Shortest suffix worth matching.
    pub n_min: usize,
    /// Longest suffix tried first (longer matches predict better).
    pub n_max: usize,
    /// Most tokens proposed per round (the draft-length policy may ask for fewer).
    pub max_proposal: usize,
}

impl Default for NGramConfig {
    fn default() -> Self {
        NGramConfig { n_min: 2, n_max: 4, max_proposal: 8 }
    }
}

impl NGramConfig {
    pub fn validate(&self) -> Result<()> {
        if self.n_min == 0 || self.n_min > self.n_max || self.n_max > 64 {
            return Err(Error::invalid(format!(
                "n-gram sizes must satisfy 1 <= n_min <= n_max <= 64, got {}..={}",
                self.n_min, self.n_max
            )));
        }
        if self.max_proposal == 0 || self.max_proposal > MAX_GAMMA {
            return Err(Error::invalid(format!("n-gram max_proposal must be in 1..={}, got {}", MAX_GAMMA, self.max_proposal)));
        }
        Ok(())
    }
}

pub struct NGramDrafter {
    cfg: NGramConfig,
    /// This round's proposals, found when the round starts.
    pending: Vec<u32>,
    alpha: AcceptanceEstimate,
    /// When to propose again after proposing stopped paying.
    probe: Prober,
}

/// Extra verification cost of one more fed token, relative to a one-token target step: what
/// a proposal must earn back (about 0.12 on CPU for small models, measured by `specdec bench`).
const VERIFY_SLOPE: f64 = 0.12;
/// Per-position decay of the acceptance estimate (about the last 20 positions count: text
/// changes between repetitive and not quickly).
const DECAY: f64 = 0.95;

impl NGramDrafter {
    pub fn new(cfg: NGramConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(NGramDrafter { cfg, pending: Vec::new(), alpha: AcceptanceEstimate::new(0.5, 2.0, DECAY), probe: Prober::new(8, 64) })
    }

    /// How many proposals pay off at the running acceptance rate: the k maximising expected
    /// tokens per verification cost, (1 − α^{k+1}) / (1 − α) / (1 + slope·k).
    fn worth_proposing(&self) -> usize {
        let alpha = self.alpha.alpha().min(0.999);
        let rate = |k: usize| expected_tokens(alpha, k) / (1.0 + VERIFY_SLOPE * k as f64);
        (0..=self.cfg.max_proposal).max_by(|&a, &b| rate(a).total_cmp(&rate(b))).unwrap_or(0)
    }
}

/// The continuation after the most recent earlier occurrence of the longest matching suffix.
pub(crate) fn lookup(seq: &[u32], n_min: usize, n_max: usize, max: usize) -> &[u32] {
    let len = seq.len();
    for n in (n_min..=n_max.min(len.saturating_sub(1))).rev() {
        let suffix = &seq[len - n..];
        // Most recent first: nearby repeats predict best.
        if let Some(j) = (0..len - n).rev().find(|&j| &seq[j..j + n] == suffix) {
            let from = j + n;
            return &seq[from..len.min(from + max)];
        }
    }
    &[]
}

impl Drafter for NGramDrafter {
    fn name(&self) -> &'static str {
        "ngram"
    }

    fn guess(&mut self, ctx: &DraftContext<'_>) -> Result<Guess<'_>> {
        if ctx.drafts.is_empty() {
            self.pending.clear();
            let mut limit = self.worth_proposing();
            if limit == 0 {
                limit = usize::from(self.probe.idle_round());
            } else {
                self.probe.reset();
            }
            if limit > 0 {
                let found = lookup(ctx.tokens, self.cfg.n_min, self.cfg.n_max, limit);
                self.pending.extend_from_slice(found);
            }
        }
        Ok(match self.pending.get(ctx.drafts.len()) {
            Some(&t) => Guess::Token(t),
            None => Guess::Stop,
        })
    }

    /// A fresh drafter: the index is the sequence itself, and what it learnt about acceptance
    /// belongs to this sequence.
    fn fork(&self, _tokens: &[u32], _keep: usize) -> Result<Box<dyn super::Drafter>> {
        Ok(Box::new(NGramDrafter::new(self.cfg.clone())?))
    }

    fn observe(&mut self, r: &RoundReport<'_>) {
        let verified = r.accepted + usize::from(r.accepted < r.proposed);
        for i in 0..verified {
            self.alpha.record(f64::from(u8::from(i < r.accepted)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_proposing_when_proposals_keep_failing_and_probes_later() {
        let mut d = NGramDrafter::new(NGramConfig { n_min: 1, n_max: 1, max_proposal: 4 }).unwrap();
        let seq = [1u32, 2, 1, 2, 1, 2, 1];
        let mut proposed = Vec::new();
        for _ in 0..60 {
            let ctx = DraftContext { tokens: &seq, drafts: &[], left: 4, best: None };
            let n = match d.guess(&ctx).unwrap() {
                Guess::Token(_) => d.pending.len(),
                _ => 0,
            };
            proposed.push(n);
            d.observe(&RoundReport { proposed: n, accepted: 0, overlaps: &[], draft_cost: None });
            // every proposal rejected
        }
        assert!(proposed[0] > 0);
        let tail = &proposed[20..];
        assert!(tail.iter().filter(|&&n| n > 0).count() <= 3, "{proposed:?}");
        assert!(tail.iter().all(|&n| n <= 1), "probes propose one token: {proposed:?}");
    }

    #[test]
    fn finds_the_most_recent_longest_match() {
        // suffix [1, 2] occurred at 0 (followed by 3, 4) and at 4 (followed by 9).
        let seq = [1, 2, 3, 4, 1, 2, 9, 7, 1, 2];
        assert_eq!(lookup(&seq, 2, 3, 4), &[9, 7, 1, 2]);
        assert_eq!(lookup(&seq, 2, 3, 1), &[9]);
        // A 3-gram [7, 1, 2] never occurred before, so the 2-gram decides.
        assert_eq!(lookup(&[5, 6, 7, 5, 6], 1, 3, 8), &[7, 5, 6]);
    }

    #[test]
    fn no_match_proposes_nothing() {
        assert!(lookup(&[1, 2, 3, 4], 1, 3, 8).is_empty());
        assert!(lookup(&[1], 1, 3, 8).is_empty());
        assert!(lookup(&[], 1, 3, 8).is_empty());
    }
}
