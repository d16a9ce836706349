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

pub(super) fn measure_costs(
    target: &Arc<Model>,
    draft: &Arc<Model>,
    prefix: &[u32],
    kmax: usize,
    reps: usize,
) -> Result<Costs, Error> {
    let (mut tc, mut dc) = (DecoderState::new(target.clone())?, DecoderState::new(draft.clone())?);
    let mut row = Vec::new();
    tc.forward(prefix, 1, &mut row)?;
    dc.forward(prefix, 1, &mut row)?;
    let feed: Vec<u32> = prefix.iter().cycle().take(kmax).copied().collect();
    // times[k - 1]: the target's calls on k tokens.
    let mut times = vec![Vec::with_capacity(reps); kmax];
    let (mut cold, mut warm, mut base) = (Vec::new(), Vec::new(), Vec::new());
    let timed = |state: &mut DecoderState, k: usize, row: &mut Vec<f32>| -> Result<f64, Error> {
        let started = Instant::now();
        state.forward(&feed[..k], 1, row)?;
        let t = started.elapsed().as_secs_f64();
        state.rewind(prefix.len())?;
        Ok(t)
    };
    for rep in 0..reps + 3 {
        for (k, times_k) in (1..=kmax).zip(&mut times) {
            let c = timed(&mut dc, 1, &mut row)?;
            let w = timed(&mut dc, 1, &mut row)?;
            let t = timed(&mut tc, k, &mut row)?;
            if rep >= 3 {
                cold.push(c);
                warm.push(w);
                times_k.push(t);
            }
        }
        // Target-only decoding is a run of target calls: time the later calls of a run of six, by
        // when a multi-threaded pool is spinning again and the draft's traces are gone.
        for i in 0..6 {
            let b = timed(&mut tc, 1, &mut row)?;
            if rep >= 3 && i >= 2 {
                base.push(b);
            }
        }
    }
    let target = times
        .iter_mut()
        .map(|t| (median(t), t.iter().copied().fold(f64::MAX, f64::min), t.iter().copied().fold(0.0, f64::max)))
        .collect();
    Ok(Costs { target, target_only: median(&mut base), draft_cold: median(&mut cold), draft_warm: median(&mut warm) })
}
