//! Draft sources. The generator asks a [`Drafter`] for one guess at a time and verifies whatever
//! it proposes, so any source works as long as it says how its guess was made: from scores
//! (sampled by the generator with the same transforms as the target), from its own distribution,
//! or as a fixed token (verified as a point mass, which keeps the output exact).

mod callback;
mod counts;
mod model;
mod ngram;

use std::sync::Arc;

pub use callback::{CallbackDrafter, DraftCallback};
pub use counts::{CountTable, CountsDrafter};
pub use model::ModelDrafter;
pub use ngram::{NGramConfig, NGramDrafter};

use crate::error::Result;
use crate::model::{BatchRow, Model};
use crate::policy::RoundReport;

/// What the generator knows when it asks for the next guess.
#[derive(Debug, Clone, Copy)]
pub struct DraftContext<'a> {
    /// The committed sequence (prompts and accepted output).
    pub tokens: &'a [u32],
    /// This round's proposals so far; the guess is for the position after them.
    pub drafts: &'a [u32],
    /// Proposals still allowed this round, this one included (at least 1).
    pub left: usize,
}

/// One guess for the next position.
#[derive(Debug)]
#[non_exhaustive]
pub enum Guess<'a> {
    /// Scores over the vocabulary. The generator applies the sampling transforms to them, exactly
    /// as to the target's logits, and samples the proposal.
    Logits(&'a [f32]),
    /// A proposal the drafter sampled from its own distribution `probs` (summing to 1); used as
    /// q as given.
    Sampled { token: u32, probs: &'a [f32] },
    /// A fixed proposal, verified as the point mass q = δ(token).
    Token(u32),
    /// Nothing (more) to propose this round.
    Stop,
}

/// A source of draft tokens for one sequence. Created per generator, so it may keep state
/// (a KV cache, an index) about the sequence.
pub trait Drafter: Send {
    /// A short name for stats and benchmarks ("model", "ngram", ...).
    fn name(&self) -> &'static str;

    /// Refuse a target whose vocabulary this drafter's ids do not belong to.
    fn check_target(&self, _target: &Model) -> Result<()> {
        Ok(())
    }

    /// Longest sequence the drafter can follow (none: unlimited).
    fn context_limit(&self) -> Option<usize> {
        None
    }

    /// Bytes of KV cache the drafter holds per token of the sequence (for memory budgets).
    fn kv_bytes_per_token(&self) -> usize {
        0
    }

    /// What this drafter's acceptance and step cost depend on besides the target and the sampling
    /// settings, for the `Auto` policy to carry what it learnt from one sequence to the next;
    /// `None` (the default) starts every sequence afresh.
    fn memory_key(&self) -> Option<String> {
        None
    }

    /// Guess the token after `ctx.tokens` followed by `ctx.drafts`.
    fn guess(&mut self, ctx: &DraftContext<'_>) -> Result<Guess<'_>>;

    /// Cap the physical KV slots the drafter keeps (the generator's memory budget).
    fn set_slot_limit(&mut self, _slots: usize) {}

    /// What the round the drafter proposed for did (called after verification).
    fn observe(&mut self, _report: &RoundReport<'_>) {}

    /// The sequence now holds `tokens`; the drafter saw proposals of which only those inside the
    /// first `keep` positions survive. Called after every round, after a failed one, and when
    /// the generator is rewound (then `tokens` may be shorter than what the drafter saw).
    fn rollback(&mut self, _tokens: &[u32], _keep: usize) -> Result<()> {
        Ok(())
    }

    /// Take in the first `tokens.len()` tokens of the sequence now, ahead of the next round
    /// ([`crate::Generator::prefill`]); returns the calls it made.
    fn prefill(&mut self, _tokens: &[u32]) -> Result<u64> {
        Ok(0)
    }

    /// The model call that [`Drafter::guess`] would make for `ctx`, for the batch engine to run
    /// together with other sequences' (then [`Drafter::batch_guess`] reads its outcome). `None`
    /// (the default): this drafter is not a model and the engine cannot batch it.
    #[doc(hidden)]
    fn batch_row(&mut self, _ctx: &DraftContext<'_>) -> Option<BatchRow<'_>> {
        None
    }

    /// The guess of the batched call made for [`Drafter::batch_row`].
    #[doc(hidden)]
    fn batch_guess(&mut self) -> Guess<'_> {
        Guess::Stop
    }

    /// A drafter for a new sequence holding `tokens` (a prefix of this one's), keeping what this
    /// one computed for its first `keep` tokens ([`crate::Generator::fork`]). The default refuses
    /// with [`crate::Error::Unavailable`].
    fn fork(&self, _tokens: &[u32], _keep: usize) -> Result<Box<dyn Drafter>> {
        Err(crate::Error::Unavailable(format!("the `{}` drafter cannot be forked", self.name())))
    }
}

/// A recipe for drafters: one value, shareable between threads, that makes a fresh drafter for
/// each generator (the CLI's and the C ABI's way to pick a draft source).
#[derive(Clone)]
#[non_exhaustive]
pub enum DraftSource {
    /// A smaller ONNX decoder with the target's vocabulary.
    Model(Arc<Model>),
    /// Prompt lookup: propose what followed an earlier occurrence of the last n tokens.
    NGram(NGramConfig),
    /// Unigram (order 1) or bigram (order 2) counts, from a file or learnt from the sequence.
    Counts { order: usize, table: Option<Arc<CountTable>> },
    /// The host's own proposals.
    Callback(Arc<dyn DraftCallback>),
}

impl std::fmt::Debug for DraftSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DraftSource::Model(m) => write!(f, "Model({})", m.path().display()),
            DraftSource::NGram(c) => write!(f, "NGram({c:?})"),
            DraftSource::Counts { order, table } => write!(f, "Counts(order {order}, from file: {})", table.is_some()),
            DraftSource::Callback(_) => write!(f, "Callback"),
        }
    }
}

impl DraftSource {
    /// A fresh drafter for one sequence over a target of `vocab_size` tokens.
    pub fn instantiate(&self, vocab_size: usize) -> Result<Box<dyn Drafter>> {
        Ok(match self {
            DraftSource::Model(m) => Box::new(ModelDrafter::new(m.clone())?),
            DraftSource::NGram(c) => Box::new(NGramDrafter::new(c.clone())?),
            DraftSource::Counts { order, table } => Box::new(CountsDrafter::new(*order, table.clone(), vocab_size)?),
            DraftSource::Callback(cb) => Box::new(CallbackDrafter::new(cb.clone(), vocab_size)),
        })
    }
}
