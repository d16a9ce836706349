//! The classic draft: a smaller ONNX decoder with its own KV cache.

use std::sync::Arc;

use super::{DraftContext, Drafter, Guess};
use crate::decoder::DecoderState;
use crate::error::{Error, Result};
use crate::model::{BatchRow, Model};

pub struct ModelDrafter {
    model: Arc<Model>,
    state: DecoderState,
    logits: Vec<f32>,
}

impl ModelDrafter {
    pub fn new(model: Arc<Model>) -> Result<Self> {
        let state = DecoderState::new(model.clone())?;
        Ok(ModelDrafter { model, state, logits: Vec::new() })
    }
}

impl Drafter for ModelDrafter {
    fn name(&self) -> &'static str {
        "model"
    }

    fn check_target(&self, target: &Model) -> Result<()> {
        let (t, d) = (target.info(), self.model.info());
        if t.vocab_size != d.vocab_size {
            return Err(Error::VocabMismatch(format!(
                "target {} has {} tokens, draft {} has {}",
                target.path().display(),
                t.vocab_size,
                self.model.path().display(),
                d.vocab_size
            )));
        }
        if let (Some(a), Some(b)) = (&t.tokenizer_fingerprint, &d.tokenizer_fingerprint) {
            if a != b {
                return Err(Error::VocabMismatch(format!(
                    "{} and {} have the same size but different tokenizer vocabularies",
                    target.path().display(),
                    self.model.path().display()
                )));
            }
        }
        Ok(())
    }

    fn context_limit(&self) -> Option<usize> {
        Some(self.model.info().context_limit)
    }

    fn memory_key(&self) -> Option<String> {
        // The loaded instance, not just the file: threads and device change the step cost.
        Some(format!("model {} at {:p}", self.model.path().display(), Arc::as_ptr(&self.model)))
    }

    fn kv_bytes_per_token(&self) -> usize {
        self.model.kv_bytes_per_token()
    }

    /// Each call feeds whatever the cache lacks (the last round's correction included) plus the
    /// newest proposal, so catching up costs no extra call.
    fn guess(&mut self, ctx: &DraftContext<'_>) -> Result<Guess<'_>> {
        self.state.sync(ctx.tokens, ctx.drafts, 1, &mut self.logits)?;
        Ok(Guess::Logits(&self.logits))
    }

    fn batch_row(&mut self, ctx: &DraftContext<'_>) -> Option<BatchRow<'_>> {
        let (cache, tokens) = self.state.prepare(ctx.tokens, ctx.drafts);
        Some(BatchRow { cache, tokens, rows: 1, out: &mut self.logits })
    }

    fn batch_guess(&mut self) -> Guess<'_> {
        Guess::Logits(&self.logits)
    }

    fn set_slot_limit(&mut self, slots: usize) {
        self.state.set_slot_limit(slots);
    }

    fn rollback(&mut self, _tokens: &[u32], keep: usize) -> Result<()> {
        self.state.rewind(keep)
    }

    fn prefill(&mut self, tokens: &[u32]) -> Result<u64> {
        if self.state.len() >= tokens.len() {
            return Ok(0);
        }
        Ok(self.state.sync(tokens, &[], 1, &mut self.logits)?.calls)
    }

    fn fork(&self, _tokens: &[u32], keep: usize) -> Result<Box<dyn Drafter>> {
        Ok(Box::new(ModelDrafter { model: self.model.clone(), state: self.state.fork(keep)?, logits: Vec::new() }))
    }
}
