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
use crate::model::Out;
use crate::policy::{AfterGuess, DraftCost, RoundReport};
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
        let n = self.tokens.len();
        let room = self.context_limit - n;
        let gamma = match &self.drafter {
            Some(_) => self.policy.plan(self.target.model().cost_curve()).min(remaining - 1).min(room - 1),
            None => 0,
        };
        self.draft(gamma)?;
        self.verify()?;
        self.draft_level = gamma > 0;
        self.accept();
        self.learn();
        self.commit()?;
        // Both states saw the accepted proposals; neither saw the emitted correction or bonus, and
        // neither may hold the sequence's last token (a stop inside the accepted proposals), which
        // the next round feeds.
        self.rewind_states((self.tokens.len() - 1).min(n + self.round.accepted))
    }

    /// Ask the drafter for up to `gamma` guesses, one at a time, each turned into a proposal and
    /// its q; the policy may end the round after any guess.
    fn draft(&mut self, gamma: usize) -> Result<()> {
        let r = &mut self.round;
        r.drafts.clear();
        r.draft_cost = None;
        let Some(drafter) = self.drafter.as_mut().filter(|_| gamma > 0) else { return Ok(()) };
        if r.q.len() < gamma {
            r.q.resize_with(gamma, DistBuf::new);
            r.q_point.resize(gamma, None);
        }
        let want_confidence = self.cfg.confidence_stop > 0.0 || self.policy.wants_confidence();
        // A greedy guess's confidence is the softmax of its whole row.
        let draft_best = sampling::best_needed(&self.cfg.sampling, self.target.model().info().vocab_size)
            .filter(|_| !(want_confidence && self.cfg.sampling.is_greedy()));
        let (mut guesses, mut time, mut first) = (0u64, Duration::ZERO, Duration::ZERO);
        for i in 0..gamma {
            let started = Instant::now();
            let ctx = DraftContext { tokens: &self.tokens, drafts: &r.drafts, left: gamma - i, best: draft_best };
            let guess = drafter.guess(&ctx);
            let took = started.elapsed();
            first = if i == 0 { took } else { first };
            time += took;
            guesses += 1;
            let scoring =
                Scoring { history: &self.history, drafts: &r.drafts, cfg: &self.cfg, want_confidence, best: draft_best };
            let Some(p) = scoring.proposal(guess?, self.target.model().info().vocab_size, &mut self.rng, &mut r.q[i])? else {
                break;
            };
            let then = self.policy.after_guess(i + 1, p.confidence);
            if then == AfterGuess::Drop {
                break;
            }
            r.q_point[i] = p.point;
            r.drafts.push(p.token);
            if then == AfterGuess::Stop {
                break;
            }
        }
        self.stats.draft_calls += guesses;
        self.stats.draft_time += time;
        self.stats.drafted += r.drafts.len() as u64;
        // A first step that also catches up on a prompt or on undrafted rounds is no step cost.
        if self.draft_level {
            r.draft_cost = Some(DraftCost { first, rest: time - first, more: guesses - 1 });
        }
        Ok(())
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
                let dist = sampling::distribution(row, self.history, self.drafts, &self.cfg.sampling, q);
                let confidence = self.want_confidence.then(|| dist.confidence(row));
                if confidence.is_some_and(|c| c < self.cfg.confidence_stop) {
                    return Ok(None);
                }
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
