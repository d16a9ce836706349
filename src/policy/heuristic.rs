//! Longer after a round whose proposals were all accepted, shorter after a rejection.

use super::{CostCurve, LengthPolicy, RoundReport, MAX_GAMMA};

pub(super) struct Heuristic {
    pub(super) gamma: usize,
}

impl LengthPolicy for Heuristic {
    fn plan(&mut self, _target_cost: &CostCurve) -> usize {
        self.gamma
    }

    fn observe(&mut self, r: &RoundReport<'_>) {
        if r.proposed > 0 {
            self.gamma =
                if r.accepted == r.proposed { (self.gamma + 2).min(MAX_GAMMA) } else { self.gamma.saturating_sub(1).max(1) };
        }
    }

    fn max_gamma(&self) -> usize {
        MAX_GAMMA
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(h: &mut Heuristic, proposed: usize, accepted: usize) {
        h.observe(&RoundReport { proposed, accepted, overlaps: &[], draft_cost: None });
    }

    #[test]
    fn heuristic_grows_on_full_acceptance_and_shrinks_otherwise() {
        let mut h = Heuristic { gamma: 4 };
        round(&mut h, 4, 4);
        assert_eq!(h.gamma, 6);
        round(&mut h, 6, 2);
        assert_eq!(h.gamma, 5);
        for _ in 0..10 {
            round(&mut h, 1, 0);
        }
        assert_eq!(h.gamma, 1);
    }
}
