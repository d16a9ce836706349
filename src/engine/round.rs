//! One round over every running sequence: each plans its draft length, the draft steps run as
//! batched calls (a sequence whose policy or drafter stops drops out of the later ones), one
//! batched target call verifies every sequence's proposals, and each sequence accepts, commits and
//! rolls back through the generator's own code. Model time of a batched call is shared out evenly
//! among its rows in the sequences' stats.

use std::time::{Duration, Instant};

use super::Seq;
use crate::error::{Error, Result};
use crate::generator::StepStart;
use crate::model::{BatchRow, CallCost, Model};

/// What a round did, for the engine's counters.
#[derive(Default)]
pub(super) struct RoundTimes {
    pub(super) ran: bool,
    pub(super) target: Duration,
    pub(super) draft: Duration,
    /// Sequences whose round failed, with the error.
    pub(super) failed: Vec<(u64, Error)>,
}

/// A sequence taking part in this round.
struct Live {
    index: usize,
    start: StepStart,
    /// Set when one of its calls failed; it takes no further part.
    error: Option<Error>,
}

/// Run one round for `seqs` (speculating with `draft` when given); a sequence whose call fails
/// is rolled back and reported in [`RoundTimes::failed`], the others go on.
pub(super) fn run(target: &Model, draft: Option<&Model>, seqs: &mut [Seq]) -> RoundTimes {
    let mut times = RoundTimes::default();
    let mut live = Vec::with_capacity(seqs.len());
    for (index, seq) in seqs.iter_mut().enumerate() {
        match seq.gen.step_ready() {
            Ok(Some(remaining)) => {
                let start = seq.gen.step_start();
                seq.gen.plan(remaining);
                live.push(Live { index, start, error: None });
            }
            Ok(None) => {}
            Err(e) => times.failed.push((seq.id, e)),
        }
    }
    if live.is_empty() {
        return times;
    }
    times.ran = true;
    if let Some(draft) = draft {
        loop {
            let drafting: Vec<usize> =
                live.iter().filter(|l| l.error.is_none() && seqs[l.index].gen.wants_draft()).map(|l| l.index).collect();
            if drafting.is_empty() {
                break;
            }
            let (result, took) = call(draft, seqs, &drafting, true, |seq| seq.gen.draft_row());
            times.draft += took;
            let share = took / drafting.len() as u32;
            for l in live.iter_mut().filter(|l| drafting.contains(&l.index)) {
                let gen = &mut seqs[l.index].gen;
                let outcome = match &result {
                    Ok(()) => gen.take_batched_guess(share),
                    Err(e) => Err(e.clone()),
                };
                if let Err(e) = outcome {
                    gen.draft_done();
                    l.error = Some(e);
                }
            }
        }
    }
    let verifying: Vec<usize> = live.iter().filter(|l| l.error.is_none()).map(|l| l.index).collect();
    for &i in &verifying {
        seqs[i].gen.draft_done();
    }
    let (result, took) = call(target, seqs, &verifying, true, |seq| Some(seq.gen.verify_row()));
    times.target += took;
    let share = took / verifying.len().max(1) as u32;
    for l in live {
        let seq = &mut seqs[l.index];
        let round = match (l.error, &result) {
            (Some(e), _) => Err(e),
            (None, Err(e)) => Err(e.clone()),
            (None, Ok(())) => {
                seq.gen.verified(share);
                seq.gen.finish_round()
            }
        };
        if let Err(e) = seq.gen.step_end(l.start, round) {
            times.failed.push((seq.id, e));
        }
    }
    times
}

/// Feed newly admitted sequences' prompts to both models, one batched call per model; when a
/// batched call fails, each sequence retries alone so that only a failing one fails.
pub(super) fn prefill(target: &Model, draft: Option<&Model>, seqs: &mut [Seq]) -> Vec<Result<()>> {
    let all: Vec<usize> = (0..seqs.len()).collect();
    let fed: Vec<bool> = seqs.iter_mut().map(|s| s.gen.prefill_target_row().is_some()).collect();
    let (target_result, took) = call(target, seqs, &all, false, |seq| seq.gen.prefill_target_row());
    let target_share = took / seqs.len().max(1) as u32;
    let (mut draft_result, mut draft_share, mut drafted) = (Ok(()), Duration::ZERO, vec![false; seqs.len()]);
    if let Some(draft) = draft {
        drafted = seqs.iter_mut().map(|s| s.gen.prefill_draft_row().is_some()).collect();
        let took;
        (draft_result, took) = call(draft, seqs, &all, false, |seq| seq.gen.prefill_draft_row());
        draft_share = took / seqs.len().max(1) as u32;
    }
    seqs.iter_mut()
        .enumerate()
        .map(|(i, seq)| {
            if target_result.is_err() || draft_result.is_err() {
                return seq.gen.prefill();
            }
            seq.gen.prefilled(fed[i].then_some(target_share), drafted[i].then_some(draft_share));
            Ok(())
        })
        .collect()
}

/// One batched call of `model` over the sequences at `indices`, each giving its row with `row`
/// (none: nothing to feed, an error when `required`: a drafter that is not a model, which the
/// engine never makes); returns the outcome and the wall time.
fn call<'a>(
    model: &Model,
    seqs: &'a mut [Seq],
    indices: &[usize],
    required: bool,
    row: impl Fn(&'a mut Seq) -> Option<BatchRow<'a>>,
) -> (Result<()>, Duration) {
    let started = Instant::now();
    let mut rows = Vec::with_capacity(indices.len());
    for (i, seq) in seqs.iter_mut().enumerate() {
        if indices.contains(&i) {
            match row(seq) {
                Some(r) => rows.push(r),
                None if required => return (Err(Error::invalid("a drafter the engine cannot batch")), started.elapsed()),
                None => {}
            }
        }
    }
    if rows.is_empty() {
        return (Ok(()), started.elapsed());
    }
    let result = model.forward_batch(&mut rows, &mut CallCost::default());
    (result, started.elapsed())
}
