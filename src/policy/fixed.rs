//! The same draft length every round.

use super::{CostCurve, LengthPolicy, RoundReport};

pub(super) struct Fixed {
    pub(super) gamma: usize,
}

impl LengthPolicy for Fixed {
    fn plan(&mut self, _target_cost: &CostCurve) -> usize {
        self.gamma
    }

    fn observe(&mut self, _report: &RoundReport<'_>) {}

    fn max_gamma(&self) -> usize {
        self.gamma
    }
}
