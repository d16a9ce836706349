//! One sequence's state in one model: the model and the sequence's KV cache. The generator holds
//! one for the target and the model drafter one for the draft; this is where a fixed-buffer cache
//! (GroupQueryAttention exports) and a batched cache plug in.

use std::sync::Arc;

use crate::error::Result;
use crate::model::{CallCost, KvCache, Model};

pub struct DecoderState {
    model: Arc<Model>,
    cache: KvCache,
    /// Reused for the tokens each sync feeds.
    feed: Vec<u32>,
}

impl DecoderState {
    /// An empty sequence in `model`.
    pub fn new(model: Arc<Model>) -> Result<DecoderState> {
        let cache = model.new_cache()?;
        Ok(DecoderState { model, cache, feed: Vec::new() })
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Tokens the state holds.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// The KV cache, for where it lives and what it copied.
    pub fn cache(&self) -> &KvCache {
        &self.cache
    }

    /// Feed `tokens` after what the state holds and write the logits of the last `rows` of them
    /// into `out` (rows × vocab, f32).
    pub fn forward(&mut self, tokens: &[u32], rows: usize, out: &mut Vec<f32>) -> Result<()> {
        self.model.forward(&mut self.cache, tokens, rows, out, &mut CallCost::default())
    }

    /// Bring the state level with `tokens` followed by `proposals`, feeding only what it lacks
    /// (the tail of `tokens` it has not seen, then the proposals it has not seen), and write the
    /// logits of the last `rows` positions into `out`. Returns the time spent in ONNX Runtime.
    pub(crate) fn sync(&mut self, tokens: &[u32], proposals: &[u32], rows: usize, out: &mut Vec<f32>) -> Result<CallCost> {
        let mut cost = CallCost::default();
        let model = self.model.clone();
        let (cache, feed) = self.prepare(tokens, proposals);
        model.forward(cache, feed, rows, out, &mut cost)?;
        Ok(cost)
    }

    /// What [`DecoderState::sync`] would feed, and the cache to feed it to (for a batched call).
    pub(crate) fn prepare(&mut self, tokens: &[u32], proposals: &[u32]) -> (&mut KvCache, &[u32]) {
        let cached = self.cache.len();
        self.feed.clear();
        if cached <= tokens.len() {
            self.feed.extend_from_slice(&tokens[cached..]);
            self.feed.extend_from_slice(proposals);
        } else {
            self.feed.extend_from_slice(&proposals[cached - tokens.len()..]);
        }
        (&mut self.cache, &self.feed)
    }

    /// Keep the first `n` tokens and forget the rest (rejected proposals, an edit).
    pub fn rewind(&mut self, n: usize) -> Result<()> {
        self.cache.truncate(n)
    }

    /// Drop the holes rolled-back tokens left in the cache now (they are otherwise masked out
    /// and compacted once they pile up).
    pub fn compact(&mut self) -> Result<()> {
        self.cache.compact()
    }

    /// A state in the same model holding this one's first `n` tokens (at most what it holds),
    /// their KV copied (on the model's device for a device-resident cache), not recomputed.
    pub fn fork(&self, n: usize) -> Result<DecoderState> {
        let cache = match n.min(self.cache.len()) {
            0 => self.model.new_cache()?,
            n => self.cache.copy_prefix(n)?,
        };
        Ok(DecoderState { model: self.model.clone(), cache, feed: Vec::new() })
    }

    /// Cap the cache's physical slots (a memory budget).
    pub fn set_slot_limit(&mut self, slots: usize) {
        self.cache.set_slot_limit(slots);
    }
}
