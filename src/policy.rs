//! Draft-length policies: how many tokens to propose each round.
//!
//! `Auto` follows the paper's section 3.5: with acceptance rate α, draft step cost d and target
//! cost T(k) for k fed tokens, a round of γ proposals yields (1 − α^{γ+1}) / (1 − α) tokens in
//! γ·d + T(γ+1) seconds; pick the γ with the most tokens per second, γ = 0 (target only)
//! included. α and d are measured on this sequence, T(k) on the target model across all its users.
//!
//! One refinement, measured on CPU: a round's first draft step costs more than the others (the
//! target's call in between pushed the draft's weights out of the CPU caches), so the draft cost
//! of a round is d_first + (γ − 1)·d_next with both measured.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::model::CostCurve;

/// How the draft length is chosen each round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DraftPolicy {
    /// Always `gamma` (fewer only when the drafter runs out, or near the end).
    #[default]
    Fixed,
    /// Start at `gamma`; +2 after a round whose proposals were all accepted, −1 otherwise.
    Heuristic,
    /// Choose γ in 0..=[`AUTO_MAX_GAMMA`] from the measured α, draft cost and verification cost;
    /// γ = 0 (no drafting) when speculation would be slower than the target alone. Because γ
    /// follows measured timings, sampled output for a fixed seed is reproducible only in
    /// distribution (use `Fixed` or `Heuristic` for the same tokens per seed); greedy output is
    /// the target's own whatever the policy.
    Auto,
}

impl std::str::FromStr for DraftPolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "fixed" => Ok(DraftPolicy::Fixed),
            "heuristic" => Ok(DraftPolicy::Heuristic),
            "auto" => Ok(DraftPolicy::Auto),
            _ => Err(Error::invalid(format!("unknown draft policy `{s}` (expected fixed, heuristic or auto)"))),
        }
    }
}

/// Largest draft length `Auto` considers.
pub const AUTO_MAX_GAMMA: usize = 16;
/// Per-position decay of the acceptance estimate: about the last 100 verified positions count
/// (faster decay made the estimate, and with it γ, jump around on noise).
const ALPHA_DECAY: f64 = 0.99;
/// The estimate starts at α = 0.5 worth this many positions, so that a few early rejections
/// cannot switch a good drafter off before it has been seen.
const ALPHA_PRIOR_WEIGHT: f64 = 6.0;
/// Target-only rounds before `Auto` probes the drafter again, at first and at most.
const PROBE_FIRST: u32 = 8;
const PROBE_MAX: u32 = 32;

/// The running state of a policy for one generator.
#[derive(Debug, Clone)]
pub(crate) struct LengthController {
    policy: DraftPolicy,
    gamma: usize,
    /// Decayed counts of accepted and verified proposals.
    accepted: f64,
    verified: f64,
    /// Seconds of a round's first draft guess and of each later one (decayed means).
    first_step: Option<f64>,
    next_step: Option<f64>,
    idle_rounds: u32,
    probe_every: u32,
}

impl LengthController {
    pub(crate) fn new(policy: DraftPolicy, gamma: usize) -> Self {
        LengthController {
            policy,
            gamma,
            accepted: 0.5 * ALPHA_PRIOR_WEIGHT,
            verified: ALPHA_PRIOR_WEIGHT,
            first_step: None,
            next_step: None,
            idle_rounds: 0,
            probe_every: PROBE_FIRST,
        }
    }

    /// The running acceptance estimate α̂.
    pub(crate) fn alpha(&self) -> f64 {
        self.accepted / self.verified
    }

    /// Draft length for the next round (before the caller's caps for budget and context).
    pub(crate) fn next(&mut self, target_cost: &CostCurve) -> usize {
        match self.policy {
            DraftPolicy::Fixed | DraftPolicy::Heuristic => self.gamma,
            DraftPolicy::Auto => {
                let Some(first) = self.first_step else { return self.gamma.min(AUTO_MAX_GAMMA) };
                let next = self.next_step.unwrap_or(first);
                let best = best_gamma(self.alpha(), first, next, |k| target_cost.estimate(k));
                if best > 0 {
                    self.idle_rounds = 0;
                    self.probe_every = PROBE_FIRST;
                    return best;
                }
                // Without proposals α cannot change: probe with one now and then, backing off
                // while probes keep saying "don't".
                self.idle_rounds += 1;
                if self.idle_rounds >= self.probe_every {
                    self.idle_rounds = 0;
                    self.probe_every = (self.probe_every * 2).min(PROBE_MAX);
                    return 1;
                }
                0
            }
        }
    }

    /// Learn the cost of drafting: a round's first guess took `first`, the `more` later ones
    /// `rest` in all.
    pub(crate) fn record_draft_cost(&mut self, first: Duration, rest: Duration, more: u64) {
        let mean = |old: Option<f64>, x: f64| Some(old.map_or(x, |m| robust_mean(m, x)));
        self.first_step = mean(self.first_step, first.as_secs_f64());
        if more > 0 {
            self.next_step = mean(self.next_step, rest.as_secs_f64() / more as f64);
        }
    }

    /// Learn from one verified position whose proposal is accepted with probability `beta`
    /// (Σ min(p, q): exact, so sampled rounds teach as much as their outcomes, with less noise).
    pub(crate) fn record_position(&mut self, beta: f64) {
        self.accepted = self.accepted * ALPHA_DECAY + beta;
        self.verified = self.verified * ALPHA_DECAY + 1.0;
    }

    /// Learn from a verified round: `proposed` drafts, of which the first `accepted` were
    /// accepted (a rejection follows unless all were).
    pub(crate) fn record_round(&mut self, proposed: usize, accepted: usize) {
        if self.policy == DraftPolicy::Heuristic && proposed > 0 {
            self.gamma = if accepted == proposed { (self.gamma + 2).min(crate::MAX_GAMMA) } else { self.gamma.saturating_sub(1).max(1) };
        }
    }
}

/// A running mean that one scheduling hiccup cannot move far: a sample counts as at most twice
/// (at least half) the mean, so a 10 ms stall does not make drafting look unaffordable for the many
/// rounds it takes γ = 0 to probe again, while a real change still shows within a few rounds.
pub(crate) fn robust_mean(mean: f64, sample: f64) -> f64 {
    0.9 * mean + 0.1 * sample.clamp(0.5 * mean, 2.0 * mean)
}

/// Expected tokens of a round with draft length γ at acceptance rate α.
pub fn expected_tokens(alpha: f64, gamma: usize) -> f64 {
    if alpha >= 1.0 {
        return (gamma + 1) as f64;
    }
    (1.0 - alpha.powi(gamma as i32 + 1)) / (1.0 - alpha)
}

/// The paper's speed-up over the target alone, with the verification cost of k tokens as
/// `verify(k)` = T(k) / T(1) (the paper assumes 1) and the draft step cost ratio `c`.
pub fn predicted_speedup(alpha: f64, gamma: usize, c: f64, verify: f64) -> f64 {
    expected_tokens(alpha, gamma) / (gamma as f64 * c + verify)
}

/// Seconds of drafting γ tokens when the first step costs `first` and later ones `next`.
fn draft_time(gamma: usize, first: f64, next: f64) -> f64 {
    if gamma == 0 { 0.0 } else { first + (gamma - 1) as f64 * next }
}

/// The γ in 0..=AUTO_MAX_GAMMA with the most expected tokens per second.
fn best_gamma(alpha: f64, first: f64, next: f64, target: impl Fn(usize) -> f64) -> usize {
    let alpha = alpha.clamp(0.0, 0.999);
    let rate = |g: usize| expected_tokens(alpha, g) / (draft_time(g, first, next) + target(g + 1));
    (0..=AUTO_MAX_GAMMA).max_by(|&a, &b| rate(a).total_cmp(&rate(b))).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_tokens_match_the_closed_form() {
        assert!((expected_tokens(0.5, 3) - 1.875).abs() < 1e-12);
        assert_eq!(expected_tokens(0.0, 5), 1.0);
        assert_eq!(expected_tokens(1.0, 4), 5.0);
    }

    #[test]
    fn auto_drafts_more_when_acceptance_is_high_and_drafts_are_cheap() {
        let flat = |k: usize| 1.0 + 0.05 * (k as f64 - 1.0);
        let high = best_gamma(0.9, 0.02, 0.02, flat);
        let low = best_gamma(0.5, 0.02, 0.02, flat);
        assert!(high > low && low > 0, "high {high} low {low}");
        // A dear first step favours longer rounds, which spread it over more proposals.
        let steep = |k: usize| 1.0 + 0.15 * (k as f64 - 1.0);
        assert!(best_gamma(0.8, 1.0, 0.05, steep) > best_gamma(0.8, 0.05, 0.05, steep));
        // A draft step as dear as the target makes speculation a loss: target only.
        assert_eq!(best_gamma(0.5, 1.0, 1.0, flat), 0);
        assert_eq!(best_gamma(0.0, 0.0, 0.0, flat), 0);
    }

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

    #[test]
    fn heuristic_grows_on_full_acceptance_and_shrinks_otherwise() {
        let mut c = LengthController::new(DraftPolicy::Heuristic, 4);
        c.record_round(4, 4);
        assert_eq!(c.gamma, 6);
        c.record_round(6, 2);
        assert_eq!(c.gamma, 5);
        for _ in 0..10 {
            c.record_round(1, 0);
        }
        assert_eq!(c.gamma, 1);
    }

    #[test]
    fn auto_goes_target_only_then_probes_with_backoff() {
        let curve = CostCurve::default();
        for k in 1..=20 {
            curve.record(k, Duration::from_secs_f64(1e-3 * (1.0 + 0.1 * (k as f64 - 1.0))));
        }
        let mut c = LengthController::new(DraftPolicy::Auto, 4);
        // A drafter that is never right and costs half a target step.
        for _ in 0..80 {
            c.record_draft_cost(Duration::from_secs_f64(5e-4), Duration::ZERO, 0);
            c.record_position(0.0);
            c.record_round(1, 0);
        }
        let picks: Vec<usize> = (0..100).map(|_| c.next(&curve)).collect();
        assert_eq!(picks.iter().filter(|&&g| g > 0).count(), 4, "{picks:?}"); // after 8, 16, 32 and 32 idle rounds
        assert!(picks.iter().all(|&g| g <= 1));
    }
}
