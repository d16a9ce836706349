//! The host's own draft source, called once per round.

use std::sync::Arc;

use super::{DraftContext, Drafter, Guess};
use crate::error::{Error, Result};

/// A host-provided proposer. It may be called from whichever thread runs a generator, by several
/// generators at once, hence `Sync`.
pub trait DraftCallback: Send + Sync {
    /// Push up to `max` proposals continuing `tokens`. Either leave `probs` empty (the proposals
    /// are then verified as fixed tokens, which is exact whatever they are), or push one
    /// distribution of `vocab` probabilities per proposal from which that proposal was sampled.
    fn propose(&self, tokens: &[u32], max: usize, vocab: usize, proposals: &mut Vec<u32>, probs: &mut Vec<f32>) -> Result<()>;
}

impl<F> DraftCallback for F
where
    F: Fn(&[u32], usize, &mut Vec<u32>, &mut Vec<f32>) -> Result<()> + Send + Sync,
{
    fn propose(&self, tokens: &[u32], max: usize, _vocab: usize, proposals: &mut Vec<u32>, probs: &mut Vec<f32>) -> Result<()> {
        self(tokens, max, proposals, probs)
    }
}

pub struct CallbackDrafter {
    callback: Arc<dyn DraftCallback>,
    vocab: usize,
    pending: Vec<u32>,
    probs: Vec<f32>,
}

impl CallbackDrafter {
    pub fn new(callback: Arc<dyn DraftCallback>, vocab: usize) -> Self {
        CallbackDrafter { callback, vocab, pending: Vec::new(), probs: Vec::new() }
    }

    /// Reject proposals that would make verification wrong rather than merely slow.
    fn check(&self, max: usize) -> Result<()> {
        let n = self.pending.len();
        if n > max {
            return Err(Error::invalid(format!("draft callback proposed {n} tokens, at most {max} allowed")));
        }
        if let Some(&bad) = self.pending.iter().find(|&&t| t as usize >= self.vocab) {
            return Err(Error::TokenOutOfRange { id: bad as i64, vocab_size: self.vocab });
        }
        if self.probs.is_empty() {
            return Ok(());
        }
        if self.probs.len() != n * self.vocab {
            return Err(Error::invalid(format!(
                "draft callback gave {} probabilities for {n} proposals of {} tokens",
                self.probs.len(),
                self.vocab
            )));
        }
        for (i, row) in self.probs.chunks(self.vocab).enumerate() {
            let sum: f64 = row.iter().map(|&p| p as f64).sum();
            if row.iter().any(|p| !(p.is_finite() && *p >= 0.0))
                || (sum - 1.0).abs() > 1e-3
                || row[self.pending[i] as usize] <= 0.0
            {
                return Err(Error::invalid(format!(
                    "draft callback distribution {i} is not a probability distribution giving its proposal a positive probability (sum {sum})"
                )));
            }
        }
        Ok(())
    }
}

impl Drafter for CallbackDrafter {
    fn name(&self) -> &'static str {
        "callback"
    }

    /// The host's callback object: one callback, one record for `Auto`.
    fn memory_key(&self) -> Option<String> {
        Some(format!("callback at {:p}", Arc::as_ptr(&self.callback) as *const ()))
    }

    fn fork(&self, _tokens: &[u32], _keep: usize) -> Result<Box<dyn super::Drafter>> {
        Ok(Box::new(CallbackDrafter::new(self.callback.clone(), self.vocab)))
    }

    fn guess(&mut self, ctx: &DraftContext<'_>) -> Result<Guess<'_>> {
        let i = ctx.drafts.len();
        if i == 0 {
            self.pending.clear();
            self.probs.clear();
            self.callback.propose(ctx.tokens, ctx.left, self.vocab, &mut self.pending, &mut self.probs)?;
            if let Err(e) = self.check(ctx.left) {
                self.pending.clear();
                self.probs.clear();
                return Err(e);
            }
        }
        Ok(match self.pending.get(i) {
            None => Guess::Stop,
            Some(&token) if self.probs.is_empty() => Guess::Token(token),
            Some(&token) => Guess::Sampled { token, probs: &self.probs[i * self.vocab..(i + 1) * self.vocab] },
        })
    }
}
