//! Prompt lookup: if the last n tokens occurred before, propose what followed them then. Costs
//! microseconds and no model, and pays off on repetitive text (code, edits, quoting). Where
//! nothing matches it proposes nothing, so the round is a plain target step.

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
            return Err(Error::invalid(format!("n-gram sizes must satisfy 1 <= n_min <= n_max <= 64, got {}..={}", self.n_min, self.n_max)));
        }
        if self.max_proposal == 0 || self.max_proposal > crate::MAX_GAMMA {
            return Err(Error::invalid(format!("n-gram max_proposal must be in 1..={}, got {}", crate::MAX_GAMMA, self.max_proposal)));
        }
        Ok(())
    }
}

pub struct NGramDrafter {
    cfg: NGramConfig,
    /// This round's proposals, found when the round starts.
    pending: Vec<u32>,
}

impl NGramDrafter {
    pub fn new(cfg: NGramConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(NGramDrafter { cfg, pending: Vec::new() })
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
            let found = lookup(ctx.tokens, self.cfg.n_min, self.cfg.n_max, self.cfg.max_proposal);
            self.pending.clear();
            self.pending.extend_from_slice(found);
        }
        Ok(match self.pending.get(ctx.drafts.len()) {
            Some(&t) => Guess::Token(t),
            None => Guess::Stop,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::lookup;

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
