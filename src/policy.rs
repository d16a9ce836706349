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
//!
//! A second, within the round: α is a mean, and a guess's chance varies with how sure the draft
//! was (at greedy a sure draft is right far more often; at T = 1 a flat draft can overlap a flat
//! target well, so the direction is learnt, not assumed). After each guess `Auto` looks at the
//! draft's top probability, turns it into an acceptance estimate (learnt per confidence bucket
//! from the verified β = Σ min(p, q)), and stops drafting once the next proposal is expected to
//! earn less than its time is worth at the best rate the pair can reach (r*, from the closed
//! form): it maximises E[tokens] − r*·E[time] of the round. The decision never looks at the
//! target, so the output distribution stays exactly the target's.
//!
//! What `Auto` learnt (α̂, the buckets, the draft's step costs) outlives the sequence: the target
//! model keeps it per draft source and sampling setting ([`PolicyMemory`]), and the next sequence
//! starts from it, worth a few dozen positions, instead of from the prior. Simulated on the demo
//! pair's acceptance trace under its measured costs (`examples/acceptance_trace.rs`,
//! `scripts/policy_sim.py`), the two together beat the best fixed γ by 14-18% at T = 0 and 2-4%
//! at T = 1, where stopping on exact knowledge of every position's β would gain 6%: a sampled
//! proposal's acceptance is a coin flip whatever one knows.

use std::sync::Mutex;
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
/// Buckets of the draft's top probability, each with its own acceptance estimate (5, 10 and 20
/// simulated within 2% of each other on the demo pair).
const BUCKETS: usize = 5;
/// Positions' worth of the overall α̂ a bucket starts from (and is pulled towards).
const BUCKET_PRIOR_WEIGHT: f64 = 3.0;

/// Positions' worth of record a new sequence inherits from earlier ones: enough to start from,
/// little enough that its own 30 or so positions outweigh it.
const MEMORY_WEIGHT: f64 = 30.0;
/// Draft sources × sampling settings remembered per target.
const MEMORY_ENTRIES: usize = 32;

/// What to do after a guess under `Auto`'s within-round stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterGuess {
    /// Propose it and draft another.
    Continue,
    /// Propose it and stop drafting.
    Stop,
    /// Do not propose it (its verification would cost more than it is expected to earn); stop.
    Drop,
}

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
    /// Decayed β sums and counts per confidence bucket.
    bucket_beta: [f64; BUCKETS],
    bucket_count: [f64; BUCKETS],
    /// This round: the bucket of each proposal (None: no confidence known), the probability
    /// that all proposals so far are accepted, and the rate r* stopping weighs time at (0: no
    /// within-round stopping this round).
    round_buckets: Vec<Option<usize>>,
    all_accepted: f64,
    rate: f64,
    /// T(k) for this round's decisions at index k = 1..=AUTO_MAX_GAMMA + 1 (read once per round).
    round_costs: [f64; AUTO_MAX_GAMMA + 2],
    /// Test hook: costs as (draft step, extra per verified token) in fractions of T(1), instead
    /// of measured.
    pinned_cost: Option<(f64, f64)>,
}

/// The part of a controller's record that carries over to the next sequence.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    accepted: f64,
    verified: f64,
    bucket_beta: [f64; BUCKETS],
    bucket_count: [f64; BUCKETS],
    first_step: Option<f64>,
    next_step: Option<f64>,
}

/// `Auto`'s record from finished sequences, per draft source and sampling setting (a key the
/// generator makes). Held by the target model, shared by its generators.
#[derive(Debug, Default)]
pub struct PolicyMemory {
    entries: Mutex<Vec<(String, Snapshot)>>,
}

impl PolicyMemory {
    pub(crate) fn get(&self, key: &str) -> Option<Snapshot> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.iter().find(|(k, _)| k == key).map(|(_, s)| s.clone())
    }

    /// Remember `snapshot` under `key`, as the newest entry (the oldest goes when full).
    pub(crate) fn put(&self, key: String, snapshot: Snapshot) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|(k, _)| *k != key);
        if entries.len() >= MEMORY_ENTRIES {
            entries.remove(0);
        }
        entries.push((key, snapshot));
    }
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
            bucket_beta: [0.0; BUCKETS],
            bucket_count: [0.0; BUCKETS],
            round_buckets: Vec::new(),
            all_accepted: 1.0,
            rate: 0.0,
            round_costs: [0.0; AUTO_MAX_GAMMA + 2],
            pinned_cost: None,
        }
    }

    pub(crate) fn pin_costs(&mut self, draft: f64, per_token: f64) {
        self.pinned_cost = Some((draft, per_token));
    }

    /// T(k): measured, or as pinned.
    fn target_time(&self, target_cost: &CostCurve, k: usize) -> f64 {
        match self.pinned_cost {
            Some((_, slope)) => target_cost.estimate(1) * (1.0 + slope * (k as f64 - 1.0)),
            None => target_cost.estimate(k),
        }
    }

    /// Start from what earlier sequences learnt instead of the prior.
    pub(crate) fn restore(&mut self, s: Snapshot) {
        self.accepted = s.accepted;
        self.verified = s.verified;
        self.bucket_beta = s.bucket_beta;
        self.bucket_count = s.bucket_count;
        self.first_step = s.first_step;
        self.next_step = s.next_step;
    }

    /// This record, scaled down to at most [`MEMORY_WEIGHT`] positions' worth; `None` while
    /// nothing has been verified beyond the prior.
    pub(crate) fn snapshot(&self) -> Option<Snapshot> {
        if self.verified <= ALPHA_PRIOR_WEIGHT {
            return None;
        }
        let w = (MEMORY_WEIGHT / self.verified).min(1.0);
        Some(Snapshot {
            accepted: self.accepted * w,
            verified: self.verified * w,
            bucket_beta: self.bucket_beta.map(|x| x * w),
            bucket_count: self.bucket_count.map(|x| x * w),
            first_step: self.first_step,
            next_step: self.next_step,
        })
    }

    /// The running acceptance estimate α̂.
    pub(crate) fn alpha(&self) -> f64 {
        self.accepted / self.verified
    }

    /// Draft length for the next round (before the caller's caps for budget and context).
    pub(crate) fn next(&mut self, target_cost: &CostCurve) -> usize {
        self.round_buckets.clear();
        self.all_accepted = 1.0;
        self.rate = 0.0;
        if let Some((c, _)) = self.pinned_cost {
            let step = c * target_cost.estimate(1);
            (self.first_step, self.next_step) = (Some(step), Some(step));
        }
        match self.policy {
            DraftPolicy::Fixed | DraftPolicy::Heuristic => self.gamma,
            DraftPolicy::Auto => {
                let Some(first) = self.first_step else { return self.gamma.min(AUTO_MAX_GAMMA) };
                let next = self.next_step.unwrap_or(first);
                let (best, rate) = best_gamma(self.alpha(), first, next, |k| self.target_time(target_cost, k));
                if best > 0 {
                    self.idle_rounds = 0;
                    self.probe_every = PROBE_FIRST;
                    // The closed form's γ is the plan for a draft of average confidence; the
                    // round may run longer or shorter as the guesses show their confidence.
                    self.rate = rate;
                    for k in 1..self.round_costs.len() {
                        self.round_costs[k] = self.target_time(target_cost, k);
                    }
                    return AUTO_MAX_GAMMA;
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

    /// Under `Auto`, after the round's `drafted`-th guess (1-based) whose draft put `confidence`
    /// on its top token: propose it or not, and whether to draft on.
    pub(crate) fn after_guess(&mut self, drafted: usize, confidence: Option<f32>) -> AfterGuess {
        if self.rate <= 0.0 {
            return AfterGuess::Continue;
        }
        let bucket = confidence.map(|c| ((c.clamp(0.0, 1.0) * BUCKETS as f32) as usize).min(BUCKETS - 1));
        self.round_buckets.push(bucket);
        let alpha = self.alpha().clamp(0.0, 0.999);
        let before = self.all_accepted;
        let with = before * self.bucket_alpha(bucket, alpha);
        let next = self.next_step.or(self.first_step).unwrap_or(0.0);
        let r = self.rate;
        // Round value from here, in tokens, the part already spent being the same for every
        // choice: drop this guess (verify the others), or keep it and draft `more` at the average
        // acceptance (the best `more`; ties go to the longer round).
        let drop = -r * self.round_costs[drafted];
        let (mut more, mut keep) = (0, with - r * self.round_costs[drafted + 1]);
        let (mut future, mut term) = (0.0, with);
        for m in 1..=AUTO_MAX_GAMMA.saturating_sub(drafted) {
            term *= alpha;
            future += term;
            let value = with + future - r * (m as f64 * next + self.round_costs[drafted + m + 1]);
            if value >= keep {
                (more, keep) = (m, value);
            }
        }
        if drop > keep {
            self.round_buckets.pop();
            return AfterGuess::Drop;
        }
        self.all_accepted = with;
        if more == 0 {
            AfterGuess::Stop
        } else {
            AfterGuess::Continue
        }
    }

    /// The acceptance estimate for a proposal in `bucket`: the bucket's own record, pulled
    /// towards the overall α̂ while it is thin.
    fn bucket_alpha(&self, bucket: Option<usize>, alpha: f64) -> f64 {
        match bucket {
            Some(b) => (self.bucket_beta[b] + BUCKET_PRIOR_WEIGHT * alpha) / (self.bucket_count[b] + BUCKET_PRIOR_WEIGHT),
            None => alpha,
        }
    }

    /// Learn the cost of drafting: a round's first guess took `first`, the `more` later ones
    /// `rest` in all.
    pub(crate) fn record_draft_cost(&mut self, first: Duration, rest: Duration, more: u64) {
        if self.pinned_cost.is_some() {
            return;
        }
        let mean = |old: Option<f64>, x: f64| Some(old.map_or(x, |m| robust_mean(m, x)));
        self.first_step = mean(self.first_step, first.as_secs_f64());
        if more > 0 {
            self.next_step = mean(self.next_step, rest.as_secs_f64() / more as f64);
        }
    }

    /// Learn from one verified position whose proposal is accepted with probability `beta`
    /// (Σ min(p, q): exact, so sampled rounds teach as much as their outcomes, with less noise).
    /// `index` is the proposal's place in the round (for its confidence bucket).
    pub(crate) fn record_position(&mut self, index: usize, beta: f64) {
        self.accepted = self.accepted * ALPHA_DECAY + beta;
        self.verified = self.verified * ALPHA_DECAY + 1.0;
        if let Some(&Some(b)) = self.round_buckets.get(index) {
            self.bucket_beta[b] = self.bucket_beta[b] * ALPHA_DECAY + beta;
            self.bucket_count[b] = self.bucket_count[b] * ALPHA_DECAY + 1.0;
        }
    }

    /// Learn from a verified round: `proposed` drafts, of which the first `accepted` were
    /// accepted (a rejection follows unless all were).
    pub(crate) fn record_round(&mut self, proposed: usize, accepted: usize) {
        if self.policy == DraftPolicy::Heuristic && proposed > 0 {
            self.gamma =
                if accepted == proposed { (self.gamma + 2).min(crate::MAX_GAMMA) } else { self.gamma.saturating_sub(1).max(1) };
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
    if gamma == 0 {
        0.0
    } else {
        first + (gamma - 1) as f64 * next
    }
}

/// The γ in 0..=AUTO_MAX_GAMMA with the most expected tokens per second, and that rate.
fn best_gamma(alpha: f64, first: f64, next: f64, target: impl Fn(usize) -> f64) -> (usize, f64) {
    let alpha = alpha.clamp(0.0, 0.999);
    let rate = |g: usize| expected_tokens(alpha, g) / (draft_time(g, first, next) + target(g + 1));
    (0..=AUTO_MAX_GAMMA).map(|g| (g, rate(g))).max_by(|a, b| a.1.total_cmp(&b.1)).unwrap_or((0, 0.0))
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
        let gamma = |alpha, first, next, curve: &dyn Fn(usize) -> f64| best_gamma(alpha, first, next, curve).0;
        let high = gamma(0.9, 0.02, 0.02, &flat);
        let low = gamma(0.5, 0.02, 0.02, &flat);
        assert!(high > low && low > 0, "high {high} low {low}");
        // A dear first step favours longer rounds, which spread it over more proposals.
        let steep = |k: usize| 1.0 + 0.15 * (k as f64 - 1.0);
        assert!(gamma(0.8, 1.0, 0.05, &steep) > gamma(0.8, 0.05, 0.05, &steep));
        // A draft step as dear as the target makes speculation a loss: target only.
        assert_eq!(gamma(0.5, 1.0, 1.0, &flat), 0);
        assert_eq!(gamma(0.0, 0.0, 0.0, &flat), 0);
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

    /// A controller that has seen sure guesses (top probability 0.95) always accepted and unsure
    /// ones (0.05) always rejected, with a draft step a tenth of a target step.
    fn taught(curve: &CostCurve) -> LengthController {
        let mut c = LengthController::new(DraftPolicy::Auto, 4);
        for round in 0..60 {
            c.record_draft_cost(Duration::from_secs_f64(1e-4), Duration::from_secs_f64(1e-4), 1);
            assert_eq!(c.next(curve), AUTO_MAX_GAMMA);
            let (conf, beta) = if round % 2 == 0 { (0.95, 1.0) } else { (0.05, 0.0) };
            c.after_guess(1, Some(conf));
            c.record_position(0, beta);
        }
        c
    }

    fn flat_curve() -> CostCurve {
        let curve = CostCurve::default();
        for k in 1..=20 {
            curve.record(k, Duration::from_secs_f64(1e-3 * (1.0 + 0.05 * (k as f64 - 1.0))));
        }
        curve
    }

    #[test]
    fn auto_runs_on_while_the_draft_is_sure_and_drops_an_unsure_guess() {
        let curve = flat_curve();
        let mut c = taught(&curve);
        c.next(&curve);
        for k in 1..=6 {
            assert_eq!(c.after_guess(k, Some(0.95)), AfterGuess::Continue, "sure guess {k}");
        }
        assert_eq!(c.after_guess(7, Some(0.05)), AfterGuess::Drop);
        // A fresh round starts over: an unsure first guess is not worth verifying either.
        c.next(&curve);
        assert_eq!(c.after_guess(1, Some(0.05)), AfterGuess::Drop);
        // Without a confidence the guess counts as average, and an average round is short.
        c.next(&curve);
        assert_eq!(c.after_guess(1, None), AfterGuess::Continue);
        // Other policies never stop a round on their own.
        let mut fixed = LengthController::new(DraftPolicy::Fixed, 4);
        fixed.next(&curve);
        assert_eq!(fixed.after_guess(1, Some(0.0)), AfterGuess::Continue);
    }

    #[test]
    fn a_new_sequence_inherits_a_scaled_down_record() {
        let curve = flat_curve();
        let c = taught(&curve);
        let s = c.snapshot().expect("verified positions");
        assert!((s.verified - MEMORY_WEIGHT).abs() < 1e-9, "{}", s.verified);
        let mut fresh = LengthController::new(DraftPolicy::Auto, 4);
        assert_eq!(fresh.alpha(), 0.5);
        fresh.restore(s);
        assert!((fresh.alpha() - c.alpha()).abs() < 1e-12);
        assert!(fresh.first_step.is_some(), "draft step costs carry over");
        // One that verified nothing leaves nothing.
        assert!(LengthController::new(DraftPolicy::Auto, 4).snapshot().is_none());
        let memory = PolicyMemory::default();
        for i in 0..MEMORY_ENTRIES + 1 {
            memory.put(format!("key {i}"), c.snapshot().unwrap());
        }
        assert!(memory.get("key 0").is_none(), "the oldest entry goes first");
        assert!(memory.get(&format!("key {MEMORY_ENTRIES}")).is_some());
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
            c.record_position(0, 0.0);
            c.record_round(1, 0);
        }
        let picks: Vec<usize> = (0..100).map(|_| c.next(&curve)).collect();
        assert_eq!(picks.iter().filter(|&&g| g > 0).count(), 4, "{picks:?}"); // after 8, 16, 32 and 32 idle rounds
        assert!(picks.iter().all(|&g| g <= 1));
    }
}
