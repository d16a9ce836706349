//! The call costs the predicted speed-up is built from (T₀, c cold and warm, T(k)/T₀): timed on
//! bare forward calls, apart from the variant runs, in the order speculative decoding makes them.

use std::sync::Arc;
use std::time::Instant;

use specdec::{DecoderState, Error, Model};

use crate::median;

/// Call costs as speculative decoding meets them: for each k = 1..=kmax, a draft step right after
/// a target call (cold: the target's weights pushed the draft's out of the CPU caches), a second
/// draft step (warm), then the target fed k tokens; `reps` interleaved rounds after a warm-up,
/// caches cut back to `prefix` after every call. Returns (median, min, max) per k of the target,
/// and the cold and warm draft steps. Also the target-only step as target-only decoding meets it
/// (the later calls of a run of target calls): the speed-ups' baseline, which a call after draft
/// steps overstates because the draft has pushed some of the target's weights out of the caches
/// and a multi-threaded target's pool has gone to sleep.
pub(super) struct Costs {
    pub(super) target: Vec<(f64, f64, f64)>,
    pub(super) target_only: f64,
    pub(super) draft_cold: f64,
    pub(super) draft_warm: f64,
}

/// The timed calls behind [`Costs`], gathered in slices between the repetitions of the runs, so
/// that the costs describe the same minutes of the machine as the runs they predict.
#[derive(Default)]
pub(super) struct CostSamples {
    target: Vec<Vec<f64>>,
    target_only: Vec<f64>,
    draft_cold: Vec<f64>,
    draft_warm: Vec<f64>,
}

impl CostSamples {
    /// Medians (with min and max per k) of everything measured so far.
    pub(super) fn costs(&self) -> Costs {
        let target = self
            .target
            .iter()
            .map(|t| {
                let mut t = t.clone();
                (median(&mut t), t.iter().copied().fold(f64::MAX, f64::min), t.iter().copied().fold(0.0, f64::max))
            })
            .collect();
        let med = |v: &[f64]| median(&mut v.to_vec());
        Costs {
            target,
            target_only: med(&self.target_only),
            draft_cold: med(&self.draft_cold),
            draft_warm: med(&self.draft_warm),
        }
    }

    /// `reps` more timed rounds (after three untimed ones) of every k = 1..=kmax.
    pub(super) fn measure(
        &mut self,
        target: &Arc<Model>,
        draft: &Arc<Model>,
        prefix: &[u32],
        kmax: usize,
        reps: usize,
    ) -> Result<(), Error> {
        let (mut tc, mut dc) = (DecoderState::new(target.clone())?, DecoderState::new(draft.clone())?);
        let mut row = Vec::new();
        tc.forward(prefix, 1, &mut row)?;
        dc.forward(prefix, 1, &mut row)?;
        let feed: Vec<u32> = prefix.iter().cycle().take(kmax).copied().collect();
        self.target.resize_with(kmax, Vec::new);
        let timed = |state: &mut DecoderState, k: usize, row: &mut Vec<f32>| -> Result<f64, Error> {
            let started = Instant::now();
            state.forward(&feed[..k], 1, row)?;
            let t = started.elapsed().as_secs_f64();
            state.rewind(prefix.len())?;
            Ok(t)
        };
        for rep in 0..reps + 3 {
            for k in 1..=kmax {
                let c = timed(&mut dc, 1, &mut row)?;
                let w = timed(&mut dc, 1, &mut row)?;
                let t = timed(&mut tc, k, &mut row)?;
                if rep >= 3 {
                    self.draft_cold.push(c);
                    self.draft_warm.push(w);
                    self.target[k - 1].push(t);
                }
            }
            // Target-only decoding is a run of target calls: time the later calls of a run of six,
            // by when a multi-threaded pool is spinning again and the draft's traces are gone.
            for i in 0..6 {
                let b = timed(&mut tc, 1, &mut row)?;
                if rep >= 3 && i >= 2 {
                    self.target_only.push(b);
                }
            }
        }
        Ok(())
    }
}
