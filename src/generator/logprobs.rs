//! Log-probabilities of generated tokens under the target's distribution at their position, taken
//! from the rows verification computes anyway (the same rows target-only decoding samples from),
//! so speculation reports what target-only decoding would.

use crate::sampling::Dist;

/// Most alternatives a generated token can list.
pub const MAX_LOGPROBS: usize = 256;

/// One token's log-probabilities at one position.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenLogprob {
    pub token: u32,
    /// ln p(token) in the distribution sampled from: after the repetition penalty, temperature,
    /// top-k, top-p and min-p; −∞ for a token they cut. Greedy samples from a point mass: 0 for
    /// the token it picks, −∞ for every other.
    pub logprob: f32,
    /// log_softmax of the target's raw logits (no transform).
    pub raw_logprob: f32,
}

/// The records of consecutive generated tokens: each token's own and its `top_n` most likely
/// alternatives (ordered by `logprob`, then `raw_logprob`, then id).
#[derive(Debug, Default, Clone)]
pub(crate) struct LogprobRecords {
    top_n: usize,
    chosen: Vec<TokenLogprob>,
    top: Vec<TokenLogprob>,
    /// Scratch for the top-n selection.
    order: Vec<u32>,
}

impl LogprobRecords {
    /// Forget every record and list `top_n` alternatives (at most the vocabulary) from now on.
    pub(crate) fn reset(&mut self, top_n: usize) {
        self.top_n = top_n;
        self.clear();
    }

    pub(crate) fn clear(&mut self) {
        self.chosen.clear();
        self.top.clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.chosen.len()
    }

    /// Keep the first `n` records.
    pub(crate) fn truncate(&mut self, n: usize) {
        self.chosen.truncate(n);
        self.top.truncate(n * self.top_n);
    }

    /// Append the first `n` records of `other` (which lists as many alternatives).
    pub(crate) fn extend_from(&mut self, other: &LogprobRecords, n: usize) {
        debug_assert_eq!(self.top_n, other.top_n);
        self.chosen.extend_from_slice(&other.chosen[..n]);
        self.top.extend_from_slice(&other.top[..n * other.top_n]);
    }

    /// Record `token`, emitted at the position whose raw logits are `row` and whose distribution
    /// after the sampling transforms is `p`.
    pub(crate) fn record(&mut self, row: &[f32], p: Dist<'_>, token: u32) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f64 = row.iter().map(|&l| ((l - max) as f64).exp()).sum();
        let lse = max as f64 + sum.ln();
        let raw = |t: u32| (row[t as usize] as f64 - lse) as f32;
        let logprob = |t: u32| p.prob(t).ln();
        self.chosen.push(TokenLogprob { token, logprob: logprob(token), raw_logprob: raw(token) });
        let n = self.top_n;
        debug_assert!(n <= row.len(), "more alternatives than the vocabulary");
        if n == 0 {
            return;
        }
        // Most likely first in the sampled distribution, the raw logits breaking its ties (every
        // token but one under greedy, the cut tokens under truncation), then the lower id.
        let key = |t: u32| p.prob(t);
        let cmp =
            |a: &u32, b: &u32| key(*b).total_cmp(&key(*a)).then(row[*b as usize].total_cmp(&row[*a as usize])).then(a.cmp(b));
        self.order.clear();
        self.order.extend(0..row.len() as u32);
        if n < row.len() {
            self.order.select_nth_unstable_by(n - 1, cmp);
            self.order.truncate(n);
        }
        self.order.sort_unstable_by(cmp);
        for &t in &self.order {
            self.top.push(TokenLogprob { token: t, logprob: logprob(t), raw_logprob: raw(t) });
        }
    }

    pub(crate) fn view(&self) -> Logprobs<'_> {
        Logprobs { chosen: &self.chosen, top: &self.top, top_n: self.top_n }
    }
}

/// The log-probabilities of the last [`Logprobs::len`] generated tokens of the current generation
/// ([`crate::Generator::logprobs`]).
#[derive(Debug, Clone, Copy)]
pub struct Logprobs<'a> {
    chosen: &'a [TokenLogprob],
    top: &'a [TokenLogprob],
    top_n: usize,
}

impl<'a> Logprobs<'a> {
    /// Tokens with a record.
    pub fn len(&self) -> usize {
        self.chosen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chosen.is_empty()
    }

    /// Each token's own log-probabilities, in sequence order.
    pub fn chosen(&self) -> &'a [TokenLogprob] {
        self.chosen
    }

    /// Alternatives listed per token (the configured number, at most the vocabulary).
    pub fn top_n(&self) -> usize {
        self.top_n
    }

    /// The alternatives of record `i`, most likely first.
    pub fn top(&self, i: usize) -> &'a [TokenLogprob] {
        &self.top[i * self.top_n..(i + 1) * self.top_n]
    }

    /// Every record's alternatives, `top_n` per record.
    pub fn top_all(&self) -> &'a [TokenLogprob] {
        self.top
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_is_log_softmax_and_transformed_follows_the_distribution() {
        let row = [1.0f32, 3.0, 2.0, 3.0];
        let mut r = LogprobRecords::default();
        r.reset(3);
        // Greedy: a point mass at the first maximum.
        r.record(&row, Dist::Point(1), 1);
        let lse = row.iter().map(|&l| (l as f64).exp()).sum::<f64>().ln();
        let v = r.view();
        assert_eq!(v.len(), 1);
        assert_eq!(v.chosen()[0].logprob, 0.0);
        assert!((v.chosen()[0].raw_logprob as f64 - (3.0 - lse)).abs() < 1e-6);
        // The pick first; the tie at 3.0 and then 2.0 follow by raw logit, cut tokens at −∞.
        let ids: Vec<u32> = v.top(0).iter().map(|t| t.token).collect();
        assert_eq!(ids, vec![1, 3, 2]);
        assert_eq!(v.top(0)[1].logprob, f32::NEG_INFINITY);
        // Sampling after a truncation that removed token 0.
        let q = [0.0f32, 0.4, 0.2, 0.4];
        r.record(&row, Dist::Probs(&q), 2);
        let v = r.view();
        assert!((v.chosen()[1].logprob - 0.2f32.ln()).abs() < 1e-6);
        let ids: Vec<u32> = v.top(1).iter().map(|t| t.token).collect();
        assert_eq!(ids, vec![1, 3, 2]);
        r.truncate(1);
        assert_eq!((r.view().len(), r.view().top_all().len()), (1, 3));
    }

    #[test]
    fn every_token_listed_when_the_vocabulary_is_small() {
        let mut r = LogprobRecords::default();
        r.reset(2);
        r.record(&[0.0, 1.0], Dist::Point(1), 0);
        let v = r.view();
        assert_eq!(v.chosen()[0].logprob, f32::NEG_INFINITY);
        assert_eq!(v.top(0).iter().map(|t| t.token).collect::<Vec<_>>(), vec![1, 0]);
    }
}
