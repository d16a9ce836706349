//! Draft-length policies: how many tokens to propose each round, and when to stop a round early.
//!
//! A policy plans each round ([`LengthPolicy::plan`]), may cut it short after any guess
//! ([`LengthPolicy::after_guess`]) and learns from what the round did ([`RoundReport`]). None of
//! them looks at the target's distribution before verification, so the output stays exactly the
//! target's whatever they choose. One file per policy: `fixed`, `heuristic`, `auto`; what they
//! share: `cost` (T(k), measured per model), `estimate` (a decayed acceptance estimate and a probe
//! schedule, also used by the n-gram drafter) and `memory` (what `auto` carries to the next sequence).

mod auto;
pub mod cost;
pub(crate) mod estimate;
mod fixed;
mod guard;
mod heuristic;
pub(crate) mod memory;

use std::time::Duration;

use crate::error::{Error, Result};

pub use cost::CostCurve;
pub use guard::RoundTime;
pub use memory::PolicyMemory;

use memory::Snapshot;

/// Largest draft length accepted; beyond it verification cost dwarfs any gain.
pub const MAX_GAMMA: usize = 64;
/// Largest draft length `Auto` considers.
pub const AUTO_MAX_GAMMA: usize = 16;

/// How the draft length is chosen each round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DraftPolicy {
    /// Always `gamma` (fewer only when the drafter runs out, or near the end).
    #[default]
    Fixed,
    /// Start at `gamma`; +2 after a round whose proposals were all accepted, −1 otherwise.
    Heuristic,
    /// Choose γ in 0..=[`AUTO_MAX_GAMMA`] from the measured α, draft cost and verification cost;
    /// γ = 0 (no drafting) when speculation would be slower than the target alone. Within a
    /// round, stop early after a guess the draft is unsure of (or run on while it is sure), and
    /// start each sequence from what earlier sequences on the same target learnt. Because γ
    /// follows measured timings and earlier requests, sampled output for a fixed seed is
    /// reproducible only in distribution (use `Fixed` or `Heuristic` for the same tokens per
    /// seed); greedy output is the target's own whatever the policy.
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

/// What to do after a guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterGuess {
    /// Propose it and draft another.
    Continue,
    /// Propose it and stop drafting.
    Stop,
    /// Do not propose it (its verification would cost more than it is expected to earn); stop.
    Drop,
}

/// The cost of a round's drafting: its first guess, and the `more` later ones in all.
#[derive(Debug, Clone, Copy)]
pub struct DraftCost {
    pub first: Duration,
    pub rest: Duration,
    pub more: u64,
}

/// What one verified round did: what policies and drafters learn from.
#[derive(Debug, Clone, Copy)]
pub struct RoundReport<'a> {
    /// Tokens proposed (after any guess the policy dropped).
    pub proposed: usize,
    /// Proposals accepted; a rejection follows unless all were.
    pub accepted: usize,
    /// β = Σ min(p, q), the exact acceptance probability, at each verified position (the accepted
    /// ones and the first rejected one); empty unless the policy asked for them.
    pub overlaps: &'a [f64],
    /// The drafting's cost, when it was a pure drafting cost (not when the first step also caught
    /// up on a prompt or on rounds without drafting).
    pub draft_cost: Option<DraftCost>,
}

/// A policy's running state for one generator.
pub(crate) trait LengthPolicy: Send {
    /// Draft length for the next round (before the generator's caps for budget and context).
    fn plan(&mut self, target_cost: &CostCurve) -> usize;

    /// After the round's `drafted`-th guess (1-based) whose draft put `confidence` on its top
    /// token: propose it or not, and whether to draft on.
    fn after_guess(&mut self, _drafted: usize, _confidence: Option<f32>) -> AfterGuess {
        AfterGuess::Continue
    }

    /// Whether [`LengthPolicy::after_guess`] reads the draft's confidence.
    fn wants_confidence(&self) -> bool {
        false
    }

    /// Whether [`RoundReport::overlaps`] should be computed for this policy.
    fn wants_overlaps(&self) -> bool {
        false
    }

    /// Learn from a verified round.
    fn observe(&mut self, report: &RoundReport<'_>);

    /// Learn how long a whole round took on the wall clock (after [`LengthPolicy::observe`]).
    fn timed(&mut self, _round: &RoundTime) {}

    /// The longest round this policy can ask for (what memory budgets reserve).
    fn max_gamma(&self) -> usize;

    /// The running acceptance estimate (its prior, 0.5, for policies that keep none).
    fn alpha(&self) -> f64 {
        0.5
    }

    /// Whether what it learns carries over to the next sequence ([`LengthPolicy::snapshot`]).
    fn remembers(&self) -> bool {
        false
    }

    /// What carries over to the next sequence; `None` while nothing worth keeping was learnt.
    fn snapshot(&self) -> Option<Snapshot> {
        None
    }

    /// Start from what earlier sequences learnt.
    fn restore(&mut self, _snapshot: Snapshot) {}

    #[cfg(any(test, feature = "test-hooks"))]
    /// Test hook: take a draft step to cost `draft` × T(1) and each verified token `per_token` ×
    /// T(1) more, instead of the measured costs.
    fn pin_costs(&mut self, _draft: f64, _per_token: f64) {}
}

/// A fresh policy state of kind `policy`, starting at draft length `gamma`.
pub(crate) fn new_policy(policy: DraftPolicy, gamma: usize) -> Box<dyn LengthPolicy> {
    match policy {
        DraftPolicy::Fixed => Box::new(fixed::Fixed { gamma }),
        DraftPolicy::Heuristic => Box::new(heuristic::Heuristic { gamma }),
        DraftPolicy::Auto => Box::new(auto::Auto::new(gamma)),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_tokens_match_the_closed_form() {
        assert!((expected_tokens(0.5, 3) - 1.875).abs() < 1e-12);
        assert_eq!(expected_tokens(0.0, 5), 1.0);
        assert_eq!(expected_tokens(1.0, 4), 5.0);
    }
}
