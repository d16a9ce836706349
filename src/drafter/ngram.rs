//! Prompt lookup: if the last n tokens occurred before, propose what followed them then. Costs
//! microseconds and no model, and pays off on repetitive text (code, edits, quoting). Where
//! nothing matches it proposes nothing, so the round is a plain target step.
//!
//! On text that does not repeat, chance matches would still cost verification: the drafter
//! tracks how often its proposals are accepted and proposes only as many tokens as pay for
//! themselves (none, with an occasional probe, when they don't).

use super::{DraftContext, Drafter, Guess};
use crate::error::{Error, Result};

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
        if self.max_proposal == 0 || self.max_proposal > crate::MAX_GAMMA {
            return Err(Error::invalid(format!(
                "n-gram max_proposal must be in 1..={}, got {}",
                crate::MAX_GAMMA,
                self.max_proposal
            )));
        }
        Ok(())
    }
}

pub struct NGramDrafter {
    cfg: NGramConfig,
    /// This round's proposals, found when the round starts, and where the round started.
    pending: Vec<u32>,
    round_start: usize,
    proposed: usize,
    /// Decayed counts of accepted and verified proposals.
    accepted: f64,
    verified: f64,
    /// Rounds sat out since proposing stopped paying, and how many to sit out before a probe.
    idle: u32,
    probe_every: u32,
}

/// Extra verification cost of one more fed token, relative to a one-token target step: what
/// a proposal must earn back (about 0.12 on CPU for small models, measured by `specdec bench`).
const VERIFY_SLOPE: f64 = 0.12;
const DECAY: f64 = 0.95;

impl NGramDrafter {
    pub fn new(cfg: NGramConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(NGramDrafter {
            cfg,
            pending: Vec::new(),
            round_start: 0,
            proposed: 0,
            accepted: 1.0,
            verified: 2.0,
            idle: 0,
            probe_every: 8,
        })
    }

    /// How many proposals pay off at the running acceptance rate: the k maximising expected
    /// tokens per verification cost, (1 − α^{k+1}) / (1 − α) / (1 + slope·k).
    fn worth_proposing(&self) -> usize {
        let alpha = (self.accepted / self.verified).min(0.999);
        let rate = |k: usize| crate::policy::expected_tokens(alpha, k) / (1.0 + VERIFY_SLOPE * k as f64);
        (0..=self.cfg.max_proposal).max_by(|&a, &b| rate(a).total_cmp(&rate(b))).unwrap_or(0)
    }
}

/// The continuation after the most recent earlier occurrence of the longest matching suffix.
pub(crate) fn lookup<'a>(seq: &'a [u32], n_min: usize, n_max: usize, max: usize) -> &'a [u32] {
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
            self.round_start = ctx.tokens.len();
            let mut limit = self.worth_proposing();
            if limit == 0 {
                self.idle += 1;
                if self.idle >= self.probe_every {
                    self.idle = 0;
                    self.probe_every = (self.probe_every * 2).min(64);
                    limit = 1;
                }
            } else {
                self.probe_every = 8;
            }
            if limit > 0 {
                let found = lookup(ctx.tokens, self.cfg.n_min, self.cfg.n_max, limit);
                self.pending.extend_from_slice(found);
            }
            self.proposed = 0;
        }
        self.proposed = self.proposed.max((ctx.drafts.len() + 1).min(self.pending.len()));
        Ok(match self.pending.get(ctx.drafts.len()) {
            Some(&t) => Guess::Token(t),
            None => Guess::Stop,
        })
    }

    fn rollback(&mut self, _tokens: &[u32], keep: usize) -> Result<()> {
        if self.proposed > 0 {
            let accepted = keep.saturating_sub(self.round_start).min(self.proposed);
            let verified = accepted + (accepted < self.proposed) as usize;
            for i in 0..verified {
                self.accepted = self.accepted * DECAY + (i < accepted) as u32 as f64;
                self.verified = self.verified * DECAY + 1.0;
            }
            self.proposed = 0;
        }
        Ok(())
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
            let ctx = DraftContext { tokens: &seq, drafts: &[], left: 4 };
            let n = match d.guess(&ctx).unwrap() {
                Guess::Token(_) => d.pending.len(),
                _ => 0,
            };
            proposed.push(n);
            d.rollback(&seq, seq.len()).unwrap(); // every proposal rejected
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
