//! `Auto`: the draft length from measured acceptance and costs, following the paper's section 3.5:
//! with acceptance rate α, draft step cost d and target cost T(k) for k fed tokens, a round of γ
//! proposals yields (1 − α^{γ+1}) / (1 − α) tokens in γ·d + T(γ+1) seconds; pick the γ with the
//! most tokens per second, γ = 0 (target only) included. α and d are measured on this sequence,
//! T(k) on the target model across all its users.
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
//! What `Auto` learnt (α̂, the buckets, the draft's step costs) outlives the sequence
//! ([`super::memory`]). Simulated on the demo pair's acceptance trace under its measured costs
//! (`examples/acceptance_trace.rs`, `scripts/policy_sim.py`), the two together beat the best fixed
//! γ by 14-18% at T = 0 and 2-4% at T = 1, where stopping on exact knowledge of every position's β
//! would gain 6%: a sampled proposal's acceptance is a coin flip whatever one knows.

use super::cost::{robust_mean, CostCurve};
use super::estimate::{AcceptanceEstimate, Prober};
use super::guard::{RateGuard, RoundTime};
use super::memory::{Snapshot, BUCKETS, MEMORY_WEIGHT};
use super::{expected_tokens, AfterGuess, DraftCost, LengthPolicy, RoundReport, AUTO_MAX_GAMMA};

/// Per-position decay of the acceptance estimate: about the last 100 verified positions count
/// (faster decay made the estimate, and with it γ, jump around on noise).
const ALPHA_DECAY: f64 = 0.99;
/// The estimate starts at α = 0.5 worth this many positions, so that a few early rejections
/// cannot switch a good drafter off before it has been seen.
const ALPHA_PRIOR_WEIGHT: f64 = 6.0;
/// Target-only rounds before `Auto` probes the drafter again, at first and at most. A probe costs
/// more than its round: the draft first catches up on the tokens it skipped (on a weak fp32 pair
/// of tiny models, probes every 32 rounds cost 10% of the time), so the gaps grow long.
const PROBE_FIRST: u32 = 8;
const PROBE_MAX: u32 = 256;
/// The share of the time probes of the acceptance may take, as measured (their gaps grow to keep
/// to it), and the longest gap that sets.
const PROBE_BUDGET: f64 = 0.005;
const PROBE_GAP_MAX: u32 = 4096;
/// The same where the measured round rates said "don't": the closed form keeps saying "do", so
/// only time tells, and a probe there is a full round plus a follow-up, the draft catching up first.
const GUARD_PROBE_FIRST: u32 = 16;
const GUARD_PROBE_MAX: u32 = 256;
/// Rounds the closed form must keep saying "draft" before the probe schedules start afresh. On a
/// pair at the edge (the weak fp32 pair at T = 1, α̂ 0.43–0.45) noise made it say so for a few
/// rounds at a time, and each time the schedules went back to probing after 8, 16, 32… rounds,
/// each probe ~0.6 ms of the draft catching up: waiting for a stretch this long took `auto`'s
/// draft time there from 1.3–4.5% of the total to 0.9–1.3% (paired, four alternations).
const TRUSTED_STRETCH: u32 = 16;
/// Positions' worth of the overall α̂ a bucket starts from (and is pulled towards).
const BUCKET_PRIOR_WEIGHT: f64 = 3.0;
/// The acceptance under which `auto` judges whether drafting could ever pay for its cost.
const ALPHA_CEILING: f64 = 0.99;
/// Rounds' worth of measured round rates a new sequence inherits.
const MEMORY_ROUNDS: f64 = 6.0;
/// The least predicted gain worth drafting for. The closed form leaves out what a round costs
/// besides its calls (the draft's distributions, the acceptance test, the caches' rollback) and
/// rests on estimates: on the int4 demo pair at T = 1 it promised 1.01x where γ = 1 measured
/// 0.97x, and `auto` speculating on such promises measured 0.96x.
const MIN_GAIN: f64 = 0.04;
/// Verified positions beyond the prior before [`MIN_GAIN`] applies.
const MIN_GAIN_EVIDENCE: f64 = 16.0;

#[derive(Debug, Clone)]
pub(super) struct Auto {
    /// The first round's length, before any cost is known.
    gamma: usize,
    alpha: AcceptanceEstimate,
    /// Seconds of a round's first draft guess and of each later one (decayed means).
    first_step: Option<f64>,
    next_step: Option<f64>,
    probe: Prober,
    guard_probe: Prober,
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
    /// Measured round rates, speculative against plain (`guard`).
    rates: RateGuard,
    /// The last round was a full probe while the measured rates said "don't": speculate once
    /// more, since a probe's own round also catches the draft up and is not measured.
    follow_up: bool,
    /// The round planned is a probe: its time, against plain rounds', sets the least gap to the
    /// next one.
    probing: bool,
    /// Rounds in a row the closed form has said "draft" (the measured rates agreeing).
    stretch: u32,
}

impl Auto {
    pub(super) fn new(gamma: usize) -> Self {
        Auto {
            gamma,
            alpha: AcceptanceEstimate::new(0.5, ALPHA_PRIOR_WEIGHT, ALPHA_DECAY),
            first_step: None,
            next_step: None,
            probe: Prober::new(PROBE_FIRST, PROBE_MAX),
            guard_probe: Prober::new(GUARD_PROBE_FIRST, GUARD_PROBE_MAX),
            bucket_beta: [0.0; BUCKETS],
            bucket_count: [0.0; BUCKETS],
            round_buckets: Vec::new(),
            all_accepted: 1.0,
            rate: 0.0,
            round_costs: [0.0; AUTO_MAX_GAMMA + 2],
            pinned_cost: None,
            rates: RateGuard::default(),
            follow_up: false,
            probing: false,
            stretch: 0,
        }
    }

    /// T(k) for every length a round may verify (index k): measured, or as pinned.
    fn target_times(&self, target_cost: &CostCurve) -> [f64; AUTO_MAX_GAMMA + 2] {
        let mut t = [0.0; AUTO_MAX_GAMMA + 2];
        match self.pinned_cost {
            Some((_, slope)) => {
                let one = target_cost.estimate(1);
                t.iter_mut().enumerate().for_each(|(k, t)| *t = one * (1.0 + slope * (k as f64 - 1.0)));
            }
            None => target_cost.estimates(&mut t),
        }
        t
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
    fn record_draft_cost(&mut self, c: &DraftCost) {
        if self.pinned_cost.is_some() {
            return;
        }
        let mean = |old: Option<f64>, x: f64| Some(old.map_or(x, |m| robust_mean(m, x)));
        self.first_step = mean(self.first_step, c.first.as_secs_f64());
        if c.more > 0 {
            self.next_step = mean(self.next_step, c.rest.as_secs_f64() / c.more as f64);
        }
    }

    /// Learn from one verified position whose proposal is accepted with probability `beta`
    /// (Σ min(p, q): exact, so sampled rounds teach as much as their outcomes, with less noise).
    /// `index` is the proposal's place in the round (for its confidence bucket).
    fn record_position(&mut self, index: usize, beta: f64) {
        self.alpha.record(beta);
        if let Some(&Some(b)) = self.round_buckets.get(index) {
            self.bucket_beta[b] = self.bucket_beta[b] * ALPHA_DECAY + beta;
            self.bucket_count[b] = self.bucket_count[b] * ALPHA_DECAY + 1.0;
        }
    }
}

impl LengthPolicy for Auto {
    fn plan(&mut self, target_cost: &CostCurve) -> usize {
        self.round_buckets.clear();
        self.all_accepted = 1.0;
        self.rate = 0.0;
        if let Some((c, _)) = self.pinned_cost {
            let step = c * target_cost.estimate(1);
            (self.first_step, self.next_step) = (Some(step), Some(step));
        }
        let Some(first) = self.first_step else { return self.gamma.min(AUTO_MAX_GAMMA) };
        let next = self.next_step.unwrap_or(first);
        // The margin once α̂ rests on its own evidence: before, any predicted gain is worth the
        // proposals that teach α̂ (a pessimistic prior must not keep a good drafter from showing it).
        let margin = if self.alpha.weight() >= ALPHA_PRIOR_WEIGHT + MIN_GAIN_EVIDENCE { MIN_GAIN } else { 0.0 };
        let t = self.target_times(target_cost);
        let (best, rate) = best_gamma(self.alpha(), first, next, margin, |k| t[k]);
        // The closed form's γ is the plan for a draft of average confidence; the round may run
        // longer or shorter as the guesses show their confidence.
        let speculate = |this: &mut Self| {
            this.rate = rate;
            this.round_costs[1..].copy_from_slice(&t[1..]);
            AUTO_MAX_GAMMA
        };
        let measured = self.pinned_cost.is_none();
        if best > 0 && std::mem::take(&mut self.follow_up) {
            return speculate(self);
        }
        if best > 0 && !(measured && self.rates.speculation_loses()) {
            self.stretch = self.stretch.saturating_add(1);
            if self.stretch == TRUSTED_STRETCH {
                self.probe.reset();
                self.guard_probe.reset();
            }
            if measured && self.rates.plain_round_due() {
                return 0;
            }
            return speculate(self);
        }
        self.stretch = 0;
        // Where even a draft that is always right could not pay for its steps (a draft as dear as
        // the target, a steep verify curve), α does not matter: no probes, whose catching the draft
        // up on the skipped tokens costs about what drafting them would (a fifth of the time on a
        // draft as large as its target).
        if best == 0 && best_gamma(ALPHA_CEILING, first, next, margin, |k| t[k]).0 == 0 {
            return 0;
        }
        // Otherwise α cannot change without proposals: probe now and then, backing off while
        // probes keep saying "don't". Where only the measured rates say so, the probe is a full
        // round, so that its rate is measured as speculation would run.
        if best > 0 {
            if !self.guard_probe.idle_round() {
                return 0;
            }
            self.follow_up = true;
            return speculate(self);
        }
        self.probing = self.probe.idle_round();
        usize::from(self.probing)
    }

    fn after_guess(&mut self, drafted: usize, confidence: Option<f32>) -> AfterGuess {
        if self.rate <= 0.0 {
            return AfterGuess::Continue;
        }
        let bucket = confidence.map(|c| ((c.clamp(0.0, 1.0) * BUCKETS as f32) as usize).min(BUCKETS - 1));
        self.round_buckets.push(bucket);
        let alpha = self.alpha().clamp(0.0, 0.999);
        let with = self.all_accepted * self.bucket_alpha(bucket, alpha);
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

    fn wants_confidence(&self) -> bool {
        true
    }

    fn wants_overlaps(&self) -> bool {
        true
    }

    fn observe(&mut self, r: &RoundReport<'_>) {
        if let Some(c) = &r.draft_cost {
            self.record_draft_cost(c);
        }
        for (i, &beta) in r.overlaps.iter().enumerate() {
            self.record_position(i, beta);
        }
    }

    fn timed(&mut self, round: &RoundTime) {
        if std::mem::take(&mut self.probing) && round.speculative {
            // What the probe cost beyond the plain rounds it stood in for (the draft catching up
            // on what it skipped, mostly): spaced so that probes of the acceptance take about
            // PROBE_BUDGET of the time. Catching up grows with the gap, so the gap at most doubles
            // per probe (up to PROBE_GAP_MAX) instead of chasing its own cost, and a stretch of
            // proposing that pays clears it (TRUSTED_STRETCH). The guard's probes keep their
            // schedule: a verdict of the wall clock that noise got wrong must be revisited within a
            // few hundred rounds.
            if let Some(per_token) = self.rates.plain_seconds_per_token() {
                let extra = round.elapsed.as_secs_f64() - round.emitted as f64 * per_token;
                let cap = (2 * self.probe.gap()).min(PROBE_GAP_MAX) as f64;
                self.probe.set_floor((extra / (PROBE_BUDGET * per_token)).clamp(0.0, cap) as u32);
            }
        }
        self.rates.record(round);
    }

    fn max_gamma(&self) -> usize {
        AUTO_MAX_GAMMA
    }

    fn alpha(&self) -> f64 {
        self.alpha.alpha()
    }

    fn remembers(&self) -> bool {
        true
    }

    /// This record, scaled down to at most [`MEMORY_WEIGHT`] positions' worth; `None` while
    /// nothing has been verified beyond the prior.
    fn snapshot(&self) -> Option<Snapshot> {
        if self.alpha.weight() <= ALPHA_PRIOR_WEIGHT {
            return None;
        }
        let w = (MEMORY_WEIGHT / self.alpha.weight()).min(1.0);
        Some(Snapshot {
            alpha: self.alpha.scaled(w),
            bucket_beta: self.bucket_beta.map(|x| x * w),
            bucket_count: self.bucket_count.map(|x| x * w),
            first_step: self.first_step,
            next_step: self.next_step,
            rates: self.rates.scaled(MEMORY_ROUNDS),
            probe: self.probe,
            guard_probe: self.guard_probe,
        })
    }

    fn restore(&mut self, s: Snapshot) {
        self.alpha = s.alpha;
        self.bucket_beta = s.bucket_beta;
        self.bucket_count = s.bucket_count;
        self.first_step = s.first_step;
        self.next_step = s.next_step;
        self.rates = s.rates;
        self.probe = s.probe;
        self.guard_probe = s.guard_probe;
    }

    #[cfg(any(test, feature = "test-hooks"))]
    fn pin_costs(&mut self, draft: f64, per_token: f64) {
        self.pinned_cost = Some((draft, per_token));
    }
}

/// Seconds of drafting γ tokens when the first step costs `first` and later ones `next`.
fn draft_time(gamma: usize, first: f64, next: f64) -> f64 {
    if gamma == 0 {
        0.0
    } else {
        first + (gamma - 1) as f64 * next
    }
}

/// The γ in 0..=AUTO_MAX_GAMMA with the most expected tokens per second, and that rate; γ = 0
/// unless drafting beats it by `margin` (a fraction).
fn best_gamma(alpha: f64, first: f64, next: f64, margin: f64, target: impl Fn(usize) -> f64) -> (usize, f64) {
    let alpha = alpha.clamp(0.0, 0.999);
    let rate = |g: usize| expected_tokens(alpha, g) / (draft_time(g, first, next) + target(g + 1));
    let plain = rate(0);
    (1..=AUTO_MAX_GAMMA)
        .map(|g| (g, rate(g)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .filter(|&(_, r)| r >= plain * (1.0 + margin))
        .unwrap_or((0, plain))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::policy::RoundTime;

    #[test]
    fn auto_drafts_more_when_acceptance_is_high_and_drafts_are_cheap() {
        let flat = |k: usize| 1.0 + 0.05 * (k as f64 - 1.0);
        let gamma = |alpha, first, next, curve: &dyn Fn(usize) -> f64| best_gamma(alpha, first, next, 0.0, curve).0;
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

    fn cost(first: f64, rest: f64, more: u64) -> Option<DraftCost> {
        Some(DraftCost { first: Duration::from_secs_f64(first), rest: Duration::from_secs_f64(rest), more })
    }

    /// A policy that has seen sure guesses (top probability 0.95) always accepted and unsure
    /// ones (0.05) always rejected, with a draft step a tenth of a target step.
    fn taught(curve: &CostCurve) -> Auto {
        let mut c = Auto::new(4);
        for round in 0..60 {
            c.observe(&RoundReport { proposed: 0, accepted: 0, overlaps: &[], draft_cost: cost(1e-4, 1e-4, 1) });
            assert_eq!(c.plan(curve), AUTO_MAX_GAMMA);
            let (conf, beta) = if round % 2 == 0 { (0.95, 1.0) } else { (0.05, 0.0) };
            c.after_guess(1, Some(conf));
            c.observe(&RoundReport { proposed: 1, accepted: beta as usize, overlaps: &[beta], draft_cost: None });
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
        c.plan(&curve);
        for k in 1..=6 {
            assert_eq!(c.after_guess(k, Some(0.95)), AfterGuess::Continue, "sure guess {k}");
        }
        assert_eq!(c.after_guess(7, Some(0.05)), AfterGuess::Drop);
        // A fresh round starts over: an unsure first guess is not worth verifying either.
        c.plan(&curve);
        assert_eq!(c.after_guess(1, Some(0.05)), AfterGuess::Drop);
        // Without a confidence the guess counts as average, and an average round is short.
        c.plan(&curve);
        assert_eq!(c.after_guess(1, None), AfterGuess::Continue);
        // Other policies never stop a round on their own.
        let mut fixed = super::super::new_policy(super::super::DraftPolicy::Fixed, 4);
        fixed.plan(&curve);
        assert_eq!(fixed.after_guess(1, Some(0.0)), AfterGuess::Continue);
    }

    #[test]
    fn a_new_sequence_inherits_a_scaled_down_record() {
        let curve = flat_curve();
        let c = taught(&curve);
        let s = c.snapshot().expect("verified positions");
        assert!((s.alpha.weight() - MEMORY_WEIGHT).abs() < 1e-9, "{}", s.alpha.weight());
        let mut fresh = Auto::new(4);
        assert_eq!(fresh.alpha(), 0.5);
        fresh.restore(s);
        assert!((fresh.alpha() - c.alpha()).abs() < 1e-12);
        assert!(fresh.first_step.is_some(), "draft step costs carry over");
        // One that verified nothing leaves nothing.
        assert!(Auto::new(4).snapshot().is_none());
    }

    /// Plans of a taught policy over `rounds` rounds whose wall times follow `time` (speculative:
    /// 2 tokens a round; plain: 1), a speculative round after a plain one catching the draft up.
    fn plans_under(rounds: usize, spec_ms: f64, plain_ms: f64) -> Vec<usize> {
        let curve = flat_curve();
        let mut c = taught(&curve);
        let mut last_spec = true;
        (0..rounds)
            .map(|_| {
                let g = c.plan(&curve);
                let spec = g > 0;
                let ms = if spec { spec_ms } else { plain_ms };
                c.timed(&RoundTime {
                    speculative: spec,
                    emitted: 1 + spec as usize,
                    elapsed: Duration::from_secs_f64(ms * 1e-3),
                    typical: !spec || last_spec,
                });
                last_spec = spec;
                g
            })
            .collect()
    }

    #[test]
    fn measured_round_rates_overrule_the_closed_form() {
        // The closed form says speculate (cheap draft, flat curve); the clock says speculative
        // rounds run at 2 tokens per 3 ms against 1 per ms: after a few rounds, plain, with
        // full probes (each followed by one measured round) backing off to one per 128 rounds.
        let picks = plans_under(600, 3.0, 1.0);
        let late = &picks[300..];
        let spec = late.iter().filter(|&&g| g > 0).count();
        assert!((2..=10).contains(&spec), "{spec} speculative rounds of 300: {picks:?}");
        assert!(late.iter().all(|&g| g == 0 || g == AUTO_MAX_GAMMA));
        // Where speculation pays (2 tokens per 1.2 ms), it keeps speculating, with a plain round
        // now and then to keep the comparison current.
        let picks = plans_under(300, 1.2, 1.0);
        let plain = picks[100..].iter().filter(|&&g| g == 0).count();
        assert!((1..=8).contains(&plain), "{plain} plain rounds of 200: {picks:?}");
    }

    #[test]
    fn a_draft_that_could_never_pay_is_not_probed() {
        // Draft steps as dear as a target step: even an always-right draft loses, so after the
        // costs are known `auto` stays target-only without probing (each probe would pay for
        // catching the draft up on every skipped token).
        let curve = flat_curve();
        let mut c = Auto::new(4);
        for _ in 0..4 {
            c.observe(&RoundReport { proposed: 1, accepted: 1, overlaps: &[1.0], draft_cost: cost(1e-3, 1e-3, 1) });
        }
        assert!((0..500).all(|_| c.plan(&curve) == 0));
    }

    /// A target whose calls cost 10% more per token fed, and a policy that has learnt that its
    /// drafter is never right and costs half a target step.
    fn never_right() -> (CostCurve, Auto) {
        let curve = CostCurve::default();
        for k in 1..=20 {
            curve.record(k, Duration::from_secs_f64(1e-3 * (1.0 + 0.1 * (k as f64 - 1.0))));
        }
        let mut c = Auto::new(4);
        for _ in 0..80 {
            c.observe(&RoundReport { proposed: 1, accepted: 0, overlaps: &[0.0], draft_cost: cost(5e-4, 0.0, 0) });
        }
        (curve, c)
    }

    #[test]
    fn auto_goes_target_only_then_probes_with_backoff() {
        let (curve, mut c) = never_right();
        let picks: Vec<usize> = (0..300).map(|_| c.plan(&curve)).collect();
        let at: Vec<usize> = picks.iter().enumerate().filter(|(_, &g)| g > 0).map(|(i, _)| i + 1).collect();
        assert_eq!(at, vec![8, 24, 56, 120, 248], "after 8, 16, 32, 64 and 128 idle rounds");
        assert!(picks.iter().all(|&g| g <= 1));
        // The next sequence goes on from there instead of probing after 8 rounds again.
        let mut next = Auto::new(4);
        next.restore(c.snapshot().expect("a record"));
        let picks: Vec<usize> = (0..300).map(|_| next.plan(&curve)).collect();
        let at: Vec<usize> = picks.iter().enumerate().filter(|(_, &g)| g > 0).map(|(i, _)| i + 1).collect();
        assert_eq!(at, vec![204], "52 rounds after the last probe, 256 in all");
    }

    #[test]
    fn a_brief_turn_to_drafting_keeps_the_probe_schedule() {
        let (curve, mut c) = never_right();
        // Probes after 8, 16, 32 and 64 idle rounds: the next one waits for 128.
        assert_eq!((0..120).filter(|_| c.plan(&curve) > 0).count(), 4);
        assert_eq!(c.probe.gap(), 128);
        let (low, high) = (c.alpha, AcceptanceEstimate::new(0.95, 1000.0, ALPHA_DECAY));
        // The estimate says "draft" for a few rounds (as noise at the edge makes it), then not.
        c.alpha = high;
        assert!((1..TRUSTED_STRETCH).all(|_| c.plan(&curve) > 0));
        c.alpha = low;
        assert_eq!(c.plan(&curve), 0);
        assert_eq!(c.probe.gap(), 128, "a short stretch leaves the schedule where it was");
        // A stretch long enough to trust starts it afresh.
        c.alpha = high;
        assert!((0..TRUSTED_STRETCH).all(|_| c.plan(&curve) > 0));
        assert_eq!(c.probe.gap(), PROBE_FIRST);
    }

    #[test]
    fn a_dear_probe_keeps_the_next_one_away() {
        let (curve, mut c) = never_right();
        // Plain rounds of 1 ms a token; a probe that took 6 ms for its one token (5 ms of catching
        // up): at half a percent of the time, the next probe would wait 1000 rounds; the gap
        // doubles up to it.
        let mut at = Vec::new();
        for i in 1..=2000 {
            let g = c.plan(&curve);
            let ms = if g > 0 { 6.0 } else { 1.0 };
            c.timed(&RoundTime { speculative: g > 0, emitted: 1, elapsed: Duration::from_secs_f64(ms * 1e-3), typical: g == 0 });
            if g > 0 {
                at.push(i);
            }
        }
        let gaps: Vec<usize> = at.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!((at[0], gaps), (8, vec![32, 64, 128, 256, 512, 1000]), "{at:?}");
        // Proposing that pays again clears the floor.
        c.probe.reset();
        assert_eq!(c.probe.gap(), PROBE_FIRST);
    }
}
