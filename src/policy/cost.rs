//! The measured cost of a target call by the number of tokens it feeds, T(k): what the draft-length
//! policies weigh drafting against.

use std::sync::Mutex;
use std::time::Duration;

/// Tokens per call for which call times are tracked (verification feeds are γ + 1 ≤ this).
const COST_TRACKED: usize = 72;

/// The measured time of one call by the number of tokens fed, T(k), as a decaying mean over all
/// calls of every generator using the model: the draft-length policy weighs drafting against it.
#[derive(Debug)]
pub struct CostCurve {
    seconds: Mutex<[Option<f64>; COST_TRACKED + 1]>,
}

impl Default for CostCurve {
    fn default() -> Self {
        CostCurve { seconds: Mutex::new([None; COST_TRACKED + 1]) }
    }
}

impl CostCurve {
    pub fn record(&self, k: usize, time: Duration) {
        if k == 0 || k > COST_TRACKED {
            return;
        }
        let t = time.as_secs_f64();
        let mut s = self.seconds.lock().unwrap_or_else(|e| e.into_inner());
        s[k] = Some(s[k].map_or(t, |m| robust_mean(m, t)));
    }

    /// T(k) in seconds if calls of exactly k tokens were measured.
    pub fn measured(&self, k: usize) -> Option<f64> {
        let s = self.seconds.lock().unwrap_or_else(|e| e.into_inner());
        s.get(k).copied().flatten()
    }

    /// T(k) in seconds: measured, else interpolated between measured neighbours, else
    /// extrapolated from the nearest with +10% per token (a typical slope on CPU).
    pub fn estimate(&self, k: usize) -> f64 {
        let s = self.seconds.lock().unwrap_or_else(|e| e.into_inner());
        estimate_in(&s, k)
    }

    /// [`CostCurve::estimate`] of k = 1..out.len() into out[k] (out[0] as k = 1), under one lock:
    /// a policy that weighs every draft length reads the curve once a round, not once a length.
    pub fn estimates(&self, out: &mut [f64]) {
        let s = self.seconds.lock().unwrap_or_else(|e| e.into_inner());
        for (k, o) in out.iter_mut().enumerate() {
            *o = estimate_in(&s, k);
        }
    }
}

/// [`CostCurve::estimate`] on the curve's values.
fn estimate_in(s: &[Option<f64>; COST_TRACKED + 1], k: usize) -> f64 {
    let k = k.clamp(1, COST_TRACKED);
    if let Some(t) = s[k] {
        return t;
    }
    let below = (1..k).rev().find_map(|i| s[i].map(|t| (i, t)));
    let above = (k + 1..=COST_TRACKED).find_map(|i| s[i].map(|t| (i, t)));
    match (below, above) {
        (Some((a, ta)), Some((b, tb))) => ta + (tb - ta) * (k - a) as f64 / (b - a) as f64,
        (Some((i, t)), None) | (None, Some((i, t))) => t * (1.0 + 0.1 * (k as f64 - 1.0)) / (1.0 + 0.1 * (i as f64 - 1.0)),
        (None, None) => 1e-3 * (1.0 + 0.1 * (k as f64 - 1.0)),
    }
}

/// A running mean that one scheduling hiccup cannot move far: a sample counts as at most twice
/// (at least half) the mean, so a 10 ms stall does not make drafting look unaffordable for the many
/// rounds it takes γ = 0 to probe again, while a real change still shows within a few rounds.
pub(crate) fn robust_mean(mean: f64, sample: f64) -> f64 {
    0.9 * mean + 0.1 * sample.clamp(0.5 * mean, 2.0 * mean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_barely_moves_the_cost_estimate_but_a_real_change_shows() {
        let spiked = robust_mean(1.0, 100.0);
        assert!((spiked - 1.1).abs() < 1e-12, "{spiked}");
        let mut m = 1.0;
        for _ in 0..30 {
            m = robust_mean(m, 3.0);
        }
        assert!((m - 3.0).abs() < 0.15, "{m}");
    }
}
