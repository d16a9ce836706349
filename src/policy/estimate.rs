//! Pieces every adaptive draft-length controller needs: a decayed acceptance estimate that starts
//! from a prior, and a back-off schedule for probing a drafter that stopped paying. Shared by the
//! `auto` policy and the n-gram drafter's own proposal length.

/// α̂ = accepted / verified, both decayed per verified position and started from a prior worth
/// some positions (so that a few early rejections cannot switch a good drafter off).
#[derive(Debug, Clone, Copy)]
pub(crate) struct AcceptanceEstimate {
    accepted: f64,
    verified: f64,
    decay: f64,
}

impl AcceptanceEstimate {
    pub(crate) fn new(prior_alpha: f64, prior_weight: f64, decay: f64) -> Self {
        AcceptanceEstimate { accepted: prior_alpha * prior_weight, verified: prior_weight, decay }
    }

    /// Learn from one verified position accepted with probability `beta` (1/0 for an outcome).
    pub(crate) fn record(&mut self, beta: f64) {
        self.accepted = self.accepted * self.decay + beta;
        self.verified = self.verified * self.decay + 1.0;
    }

    pub(crate) fn alpha(&self) -> f64 {
        self.accepted / self.verified
    }

    /// Positions' worth of record, the prior included.
    pub(crate) fn weight(&self) -> f64 {
        self.verified
    }

    /// The same estimate worth `w` times as many positions.
    pub(crate) fn scaled(&self, w: f64) -> Self {
        AcceptanceEstimate { accepted: self.accepted * w, verified: self.verified * w, decay: self.decay }
    }
}

/// While proposing does not pay, propose once now and then: after `first` idle rounds, then after
/// twice as many, up to `max`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Prober {
    idle: u32,
    every: u32,
    first: u32,
    max: u32,
    /// The least gap, whatever the schedule says (set from what a probe was seen to cost).
    floor: u32,
}

impl Prober {
    pub(crate) fn new(first: u32, max: u32) -> Self {
        Prober { idle: 0, every: first, first, max, floor: 0 }
    }

    /// Keep at least `rounds` idle rounds between probes from now on.
    pub(crate) fn set_floor(&mut self, rounds: u32) {
        self.floor = rounds;
    }

    /// A round without proposals: whether to probe in it.
    pub(crate) fn idle_round(&mut self) -> bool {
        self.idle += 1;
        if self.idle >= self.every.max(self.floor) {
            self.idle = 0;
            self.every = (self.every * 2).min(self.max);
            return true;
        }
        false
    }

    /// Proposing pays again: the next idle stretch starts the schedule afresh.
    pub(crate) fn reset(&mut self) {
        self.idle = 0;
        self.every = self.first;
        self.floor = 0;
    }

    /// The gap the schedule is at (the floor included).
    pub(crate) fn gap(&self) -> u32 {
        self.every.max(self.floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_back_off_and_reset() {
        let mut p = Prober::new(2, 8);
        let probes: Vec<bool> = (0..16).map(|_| p.idle_round()).collect();
        let at: Vec<usize> = probes.iter().enumerate().filter(|(_, &b)| b).map(|(i, _)| i + 1).collect();
        assert_eq!(at, vec![2, 6, 14], "after 2, then 4, then 8 idle rounds");
        p.reset();
        assert!(!p.idle_round() && p.idle_round());
    }

    #[test]
    fn the_estimate_starts_at_its_prior_and_follows_outcomes() {
        let mut a = AcceptanceEstimate::new(0.5, 6.0, 0.99);
        assert_eq!(a.alpha(), 0.5);
        for _ in 0..500 {
            a.record(1.0);
        }
        assert!(a.alpha() > 0.95, "{}", a.alpha());
        assert!((a.scaled(0.5).alpha() - a.alpha()).abs() < 1e-12);
    }
}
