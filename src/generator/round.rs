//! One round of speculative decoding, in the order it runs: plan the draft length, draft guess by
//! guess, verify every proposal in one target call, accept or resample position by position, let
//! the policy and drafter learn, commit the emitted tokens (stopping where the generation ends),
//! and rewind both decoder states to what the sequence holds.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;

use super::logprobs::LogprobRecords;
use super::{FinishReason, GenerationConfig, Generator};
use crate::acceptance;
use crate::drafter::{DraftContext, Guess};
use crate::error::{Error, Result};
use crate::model::{BatchRow, Out};
use crate::policy::{AfterGuess, DraftCost, LengthPolicy, RoundReport};
use crate::sampling::{self, Dist, DistBuf, History};

/// Buffers a round reuses, so that a warm round allocates nothing.
#[derive(Default)]
pub(super) struct RoundScratch {
    /// The target's logits for every proposal and the bonus position: whole rows, or with
    /// `best` the best of each row (`best` values per row, their ids in `ids`).
    pub(super) logits: Vec<f32>,
    pub(super) ids: Vec<u32>,
    /// How many of each row's best logits the last verification read (device reductions).
    best: Option<usize>,
    /// The draft's distribution for each proposal, or the proposal itself where q is a point mass.
    q: Vec<DistBuf>,
    q_point: Vec<Option<u32>>,
    p: DistBuf,
    residual: Vec<f32>,
    drafts: Vec<u32>,
    emitted: Vec<u32>,
    /// β = Σ min(p, q) at each verified position, when the policy learns from it.
    overlaps: Vec<f64>,
    /// Proposals the target accepted this round.
    accepted: usize,
    draft_cost: Option<DraftCost>,
    /// The round's planned draft length, and whether drafting goes on.
    gamma: usize,
    drafting: bool,
    want_confidence: bool,
    /// How many best scores of a row a drafter may answer with this round (DraftContext::best).
    draft_best: Option<usize>,
    /// Draft steps so far, their time, and the first one's (it may include catching up).
    guesses: u64,
    draft_time: Duration,
    first_guess: Duration,
    /// The sequence's length when the round started.
    start_len: usize,
    /// Log-probabilities of the emitted tokens (when on).
    logprobs: LogprobRecords,
}

impl RoundScratch {
    /// Proposals the last round verified.
    pub(super) fn proposed(&self) -> usize {
        self.drafts.len()
    }

    /// Proposals the last round accepted.
    pub(super) fn accepted(&self) -> usize {
        self.accepted
    }

    /// Whether the last round's drafting was drafting only (no catching up on a prompt or on
    /// rounds without drafting).
    pub(super) fn clean_draft(&self) -> bool {
        self.draft_cost.is_some()
    }
}

impl Generator {
    /// One round; `remaining` tokens may still be generated.
    pub(super) fn iterate(&mut self, remaining: usize) -> Result<()> {
        let gamma = self.plan(remaining);
        if let Some(drafter) = self.drafter.as_mut().filter(|_| gamma > 0) {
            for i in 0..gamma {
                let started = Instant::now();
                let best = self.round.draft_best;
                let ctx = DraftContext { tokens: &self.tokens, drafts: &self.round.drafts, left: gamma - i, best };
                let guess = drafter.guess(&ctx);
                let took = started.elapsed();
                let more = take_guess(
                    &mut self.round,
                    &mut self.rng,
                    &mut *self.policy,
                    Scoring { history: &self.history, drafts: &[], cfg: &self.cfg, want_confidence: false, best },
                    self.target.model().info().vocab_size,
                    guess?,
                    took,
                )?;
                if !more {
                    break;
                }
            }
        }
        self.draft_done();
        self.verify()?;
        self.finish_round()
    }

    /// Start a round: the draft length for it (0 without a draft), and the draft scratch ready.
    pub(crate) fn plan(&mut self, remaining: usize) -> usize {
        let room = self.context_limit - self.tokens.len();
        let gamma = match &self.drafter {
            Some(_) => self.policy.plan(self.target.model().cost_curve()).min(remaining - 1).min(room - 1),
            None => 0,
        };
        let r = &mut self.round;
        r.drafts.clear();
        r.draft_cost = None;
        r.gamma = gamma;
        r.drafting = gamma > 0;
        (r.guesses, r.draft_time, r.first_guess) = (0, Duration::ZERO, Duration::ZERO);
        r.want_confidence = self.cfg.confidence_stop > 0.0 || self.policy.wants_confidence();
        // A greedy guess's confidence is the softmax of its whole row.
        r.draft_best = sampling::best_needed(&self.cfg.sampling, self.target.model().info().vocab_size)
            .filter(|_| !(r.want_confidence && self.cfg.sampling.is_greedy()));
        r.start_len = self.tokens.len();
        if r.q.len() < gamma {
            r.q.resize_with(gamma, DistBuf::new);
            r.q_point.resize(gamma, None);
        }
        gamma
    }

    /// Whether this round's drafting goes on (the policy and the drafter have not ended it).
    pub(crate) fn wants_draft(&self) -> bool {
        self.round.drafting
    }

    /// The draft model call this round's next guess needs, for a batched call (None: the drafter
    /// is not a model that can be batched).
    pub(crate) fn draft_row(&mut self) -> Option<BatchRow<'_>> {
        let r = &self.round;
        // Batched calls hand back whole rows.
        let ctx = DraftContext { tokens: &self.tokens, drafts: &r.drafts, left: r.gamma - r.drafts.len(), best: None };
        self.drafter.as_mut()?.batch_row(&ctx)
    }

    /// Take the guess a batched call made for [`Generator::draft_row`], which took `took` of this
    /// sequence's time.
    pub(crate) fn take_batched_guess(&mut self, took: Duration) -> Result<()> {
        let Some(drafter) = self.drafter.as_mut() else { return Err(Error::invalid("no drafter")) };
        let scoring = Scoring { history: &self.history, drafts: &[], cfg: &self.cfg, want_confidence: false, best: None };
        let vocab = self.target.model().info().vocab_size;
        take_guess(&mut self.round, &mut self.rng, &mut *self.policy, scoring, vocab, drafter.batch_guess(), took)?;
        Ok(())
    }

    /// End the drafting of a round: count it and what its steps cost.
    pub(crate) fn draft_done(&mut self) {
        let r = &mut self.round;
        r.drafting = false;
        if r.guesses == 0 {
            return;
        }
        self.stats.draft_calls += r.guesses;
        self.stats.draft_time += r.draft_time;
        self.stats.drafted += r.drafts.len() as u64;
        // A first step that also catches up on a prompt or on undrafted rounds is no step cost.
        if self.draft_level {
            r.draft_cost = Some(DraftCost { first: r.first_guess, rest: r.draft_time - r.first_guess, more: r.guesses - 1 });
        }
    }

    /// The target call that verifies this round's proposals, for a batched call.
    pub(crate) fn verify_row(&mut self) -> BatchRow<'_> {
        let r = &mut self.round;
        // Batched calls hand back whole rows.
        r.best = None;
        let rows = r.drafts.len() + 1;
        let (cache, feed) = self.target.prepare(&self.tokens, &r.drafts);
        BatchRow { cache, tokens: feed, rows, out: &mut r.logits }
    }

    /// Count a batched verification that took `time` of this sequence's share.
    pub(crate) fn verified(&mut self, time: Duration) {
        self.stats.target_calls += 1;
        self.stats.target_time += time;
        self.stats.rounds += 1;
    }

    /// The target call that [`Generator::prefill`] would make, for a batched call (None: nothing
    /// to feed).
    pub(crate) fn prefill_target_row(&mut self) -> Option<BatchRow<'_>> {
        let keep = self.tokens.len().checked_sub(1).filter(|&k| k > self.target.len())?;
        let (cache, feed) = self.target.prepare(&self.tokens[..keep], &[]);
        Some(BatchRow { cache, tokens: feed, rows: 1, out: &mut self.round.logits })
    }

    /// The draft call that [`Generator::prefill`] would make, for a batched call (None: nothing
    /// to feed, or a drafter that is not a model).
    pub(crate) fn prefill_draft_row(&mut self) -> Option<BatchRow<'_>> {
        let keep = self.tokens.len().checked_sub(1).filter(|&k| k > 0)?;
        let ctx = DraftContext { tokens: &self.tokens[..keep], drafts: &[], left: 1, best: None };
        self.drafter.as_mut()?.batch_row(&ctx).filter(|r| !r.tokens.is_empty())
    }

    /// Count batched prefill calls that took `target` and `draft` of this sequence's share.
    pub(crate) fn prefilled(&mut self, target: Option<Duration>, draft: Option<Duration>) {
        if let Some(t) = target {
            self.stats.target_calls += 1;
            self.stats.target_time += t;
            self.stats.total_time += t;
        }
        if let Some(t) = draft {
            self.stats.draft_calls += 1;
            self.stats.draft_time += t;
            self.stats.total_time += t;
        }
    }

    /// The rest of a round once the target's logits are in: accept, learn, commit, roll back.
    pub(crate) fn finish_round(&mut self) -> Result<()> {
        let n = self.round.start_len;
        self.draft_level = self.round.gamma > 0;
        self.accept();
        self.learn();
        self.commit()?;
        // Both states saw the accepted proposals; neither saw the emitted correction or bonus, and
        // neither may hold the sequence's last token (a stop inside the accepted proposals), which
        // the next round feeds.
        self.rewind_states((self.tokens.len() - 1).min(n + self.round.accepted))
    }

    /// One target call scores every proposal and yields the bonus row.
    fn verify(&mut self) -> Result<()> {
        let best = self.target_best();
        let r = &mut self.round;
        r.best = best;
        let rows = r.drafts.len() + 1;
        let cost = match best {
            Some(k) => {
                self.target.sync_to(&self.tokens, &r.drafts, rows, &mut Out::Top { k, ids: &mut r.ids, values: &mut r.logits })?
            }
            None => self.target.sync(&self.tokens, &r.drafts, rows, &mut r.logits)?,
        };
        self.stats.target_calls += cost.calls;
        self.stats.target_time += cost.time;
        self.stats.rounds += 1;
        Ok(())
    }

    /// Accept proposals while the acceptance rule says so; at the first rejection emit a token
    /// from the residual, after all of them the bonus token from the last row.
    fn accept(&mut self) {
        let r = &mut self.round;
        let vocab = self.target.model().info().vocab_size;
        let proposed = r.drafts.len();
        let want_overlaps = self.policy.wants_overlaps();
        let want_logprobs = self.cfg.logprobs > 0;
        r.emitted.clear();
        r.overlaps.clear();
        r.accepted = 0;
        if want_logprobs {
            r.logprobs.reset(self.logprobs.view().top_n());
        }
        for i in 0..=proposed {
            let (p, row) = match r.best {
                Some(k) => {
                    let (ids, values) = (&r.ids[i * k..(i + 1) * k], &r.logits[i * k..(i + 1) * k]);
                    (sampling::distribution_top(ids, values, vocab, &self.cfg.sampling, &mut r.p), &[][..])
                }
                None => {
                    let row = &r.logits[i * vocab..(i + 1) * vocab];
                    (sampling::distribution(row, &self.history, &r.drafts[..i], &self.cfg.sampling, &mut r.p), row)
                }
            };
            if i == proposed {
                let t = p.sample(&mut self.rng);
                r.emitted.push(t);
                if want_logprobs {
                    r.logprobs.record(row, p, t);
                }
                break;
            }
            let q = match r.q_point[i] {
                Some(t) => Dist::Point(t),
                None => r.q[i].dist(),
            };
            if want_overlaps {
                r.overlaps.push(acceptance::overlap(p, q));
            }
            let verdict =
                if self.always_accept { None } else { acceptance::verify(p, q, r.drafts[i], &mut self.rng, &mut r.residual) };
            let t = verdict.unwrap_or(r.drafts[i]);
            r.emitted.push(t);
            if want_logprobs {
                r.logprobs.record(row, p, t);
            }
            if verdict.is_some() {
                break;
            }
            r.accepted += 1;
        }
        self.stats.accepted += r.accepted as u64;
        self.stats.rejected += u64::from(r.accepted < proposed);
    }

    /// Hand the round's outcome to the policy and the drafter.
    fn learn(&mut self) {
        let r = &self.round;
        let report =
            RoundReport { proposed: r.drafts.len(), accepted: r.accepted, overlaps: &r.overlaps, draft_cost: r.draft_cost };
        self.policy.observe(&report);
        if let Some(d) = self.drafter.as_mut() {
            d.observe(&report);
        }
    }

    /// Append the emitted tokens, stopping at the first that ends the generation.
    fn commit(&mut self) -> Result<()> {
        let (mut committed, mut outcome) = (0, Ok(()));
        for &t in &self.round.emitted {
            self.tokens.push(t);
            self.history.push_generated(t);
            self.generated += 1;
            self.stats.new_tokens += 1;
            committed += 1;
            let generated = &self.tokens[self.tokens.len() - self.generated..];
            match self.stop_rule.check(generated, self.tokenizer.as_deref()) {
                Ok(None) => {}
                Ok(Some(reason)) => {
                    self.finished = Some(reason);
                    break;
                }
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
            if self.cfg.finish_at_context_limit && self.tokens.len() >= self.context_limit {
                self.finished = Some(FinishReason::Length);
                break;
            }
        }
        // One record per committed token, also when the stop check failed.
        if self.cfg.logprobs > 0 {
            self.logprobs.extend_from(&self.round.logprobs, committed);
        }
        outcome
    }

    /// Cut both decoder states back to the sequence's first `keep` tokens.
    pub(super) fn rewind_states(&mut self, keep: usize) -> Result<()> {
        self.target.rewind(keep)?;
        if let Some(d) = self.drafter.as_mut() {
            d.rollback(&self.tokens, keep)?;
        }
        Ok(())
    }
}

/// Turn one guess into this round's next proposal (the policy may end drafting after it); false
/// when drafting ends here.
fn take_guess(
    r: &mut RoundScratch,
    rng: &mut StdRng,
    policy: &mut dyn LengthPolicy,
    scoring: Scoring<'_>,
    vocab: usize,
    guess: Guess<'_>,
    took: Duration,
) -> Result<bool> {
    let i = r.drafts.len();
    r.first_guess = if i == 0 { took } else { r.first_guess };
    r.draft_time += took;
    r.guesses += 1;
    r.drafting = false;
    let scoring = Scoring { drafts: &r.drafts, want_confidence: r.want_confidence, ..scoring };
    let Some(p) = scoring.proposal(guess, vocab, rng, &mut r.q[i])? else { return Ok(false) };
    let then = policy.after_guess(i + 1, p.confidence);
    if then == AfterGuess::Drop {
        return Ok(false);
    }
    r.q_point[i] = p.point;
    r.drafts.push(p.token);
    r.drafting = then != AfterGuess::Stop && r.drafts.len() < r.gamma;
    Ok(r.drafting)
}

/// A proposal made from a guess: the token, the token again when q is a point mass at it (else q
/// is the distribution written beside it), and how sure the draft was when that is wanted.
struct Proposal {
    token: u32,
    point: Option<u32>,
    confidence: Option<f32>,
}

/// What turning a guess into a proposal reads: the same sampling transforms, with the same
/// history, as the target's rows get.
struct Scoring<'a> {
    history: &'a History,
    drafts: &'a [u32],
    cfg: &'a GenerationConfig,
    want_confidence: bool,
    /// What the drafter was allowed to answer with [`Guess::Top`] (DraftContext::best).
    best: Option<usize>,
}

impl Scoring<'_> {
    /// The proposal for `guess`, its q written into `q` when it is a distribution; `None` when
    /// the drafter has nothing more or the draft is less sure than the confidence stop.
    fn proposal(&self, guess: Guess<'_>, vocab: usize, rng: &mut StdRng, q: &mut DistBuf) -> Result<Option<Proposal>> {
        let p = match guess {
            Guess::Stop => return Ok(None),
            Guess::Token(t) => Proposal { token: t, point: Some(t), confidence: None },
            Guess::Logits(row) => {
                if row.len() != vocab {
                    return Err(Error::invalid(format!("drafter gave {} scores for a vocabulary of {vocab}", row.len())));
                }
                sampling::distribution(row, self.history, self.drafts, &self.cfg.sampling, q);
                let confidence = self.want_confidence.then(|| q.confidence(row));
                if confidence.is_some_and(|c| c < self.cfg.confidence_stop) {
                    return Ok(None);
                }
                let dist = q.dist();
                let point = if let Dist::Point(t) = dist { Some(t) } else { None };
                Proposal { token: dist.sample(rng), point, confidence }
            }
            Guess::Top { ids, logits } => {
                if ids.len() != logits.len() || self.best.is_none_or(|k| ids.len() < k) {
                    return Err(Error::invalid(format!(
                        "drafter gave {} best scores ({} ids) where the generator needs {}",
                        logits.len(),
                        ids.len(),
                        self.best.map_or("whole rows".into(), |k| k.to_string())
                    )));
                }
                let dist = sampling::distribution_top(ids, logits, vocab, &self.cfg.sampling, q);
                // Only a distribution's own top probability: a greedy guess with a confidence to
                // judge gets whole rows (DraftContext::best is None then).
                let confidence = self.want_confidence.then(|| dist.confidence(&[]));
                if confidence.is_some_and(|c| c < self.cfg.confidence_stop) {
                    return Ok(None);
                }
                let point = if let Dist::Point(t) = dist { Some(t) } else { None };
                Proposal { token: dist.sample(rng), point, confidence }
            }
            Guess::Sampled { token, probs } => {
                q.set_probs(probs);
                Proposal { token, point: None, confidence: Some(Dist::Probs(probs).confidence(probs)) }
            }
        };
        if p.token as usize >= vocab {
            return Err(Error::TokenOutOfRange { id: p.token as i64, vocab_size: vocab });
        }
        Ok(Some(p))
    }
}
