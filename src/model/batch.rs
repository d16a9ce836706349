//! Batched forward calls: several sequences, each with its own cache and its own number of new
//! tokens, in one ONNX Runtime call (the batch engine's verification and draft steps).
//!
//! On graphs that take an attention mask and explicit positions (Optimum exports) the rows'
//! valid past slots are gathered into one batch of pasts padded to the longest row, the new
//! tokens padded to the most any row feeds; the mask zeroes the padding, positions are given per
//! row, and each row's presents (its past plus its own new slots) are copied back into its cache.
//! Other graphs run the rows one call each: GroupQueryAttention exports (ONNX Runtime 1.32's CPU
//! kernel refuses a multi-token step with a past at batch > 1, and their shared buffers are bound
//! per sequence), IoBinding models (their caches stay on the device), merged decoders with
//! `use_cache_branch`, and graphs without a mask or positions (padding would shift positions).

use std::sync::Arc;
use std::time::Instant;

use ort::value::DynTensor;

use super::cache::BatchStore;
use super::io::{copy_batch_rows, take_logits, take_presents, Inputs};
use super::{plain_feed, CallCost, KvCache, Model};
use crate::error::{Error, Result};

/// A row feeding more tokens than this runs alone, in chunks ([`Model::forward`]).
const MAX_BATCHED_FEED: usize = super::MAX_CHUNK;

/// Slots of holes a batch's presents may carry beyond a quarter of the longest row before the
/// next call gathers the rows afresh.
const MAX_HOLE_SLOTS: usize = 32;

/// One sequence's part of a batched call: feed `tokens` after what `cache` holds and write the
/// logits of the last `rows` of them into `out` (rows × vocab, f32).
#[doc(hidden)]
pub struct BatchRow<'a> {
    pub(crate) cache: &'a mut KvCache,
    pub(crate) tokens: &'a [u32],
    pub(crate) rows: usize,
    pub(crate) out: &'a mut Vec<f32>,
}

impl Model {
    /// Whether [`Model::forward_batch`] runs its rows in one call (else one call per row).
    pub fn batches_rows(&self) -> bool {
        let l = &self.layout;
        self.bound.is_none() && l.attention_mask.is_some() && l.position_ids.is_some() && !l.use_cache_branch
    }

    /// Run every row: in one call where the graph allows (see the module notes), else row by
    /// row. Adds the calls and their time to `cost`. On error the rows' caches are unchanged but
    /// for rows already run alone.
    pub(crate) fn forward_batch(&self, rows: &mut [BatchRow<'_>], cost: &mut CallCost) -> Result<()> {
        let vocab = self.info.vocab_size;
        for r in rows.iter() {
            if r.tokens.is_empty() || r.rows == 0 || r.rows > r.tokens.len() {
                return Err(Error::invalid(format!("forward of {} tokens asking for {} logits rows", r.tokens.len(), r.rows)));
            }
            if let Some(&bad) = r.tokens.iter().find(|&&t| t as usize >= vocab) {
                return Err(Error::TokenOutOfRange { id: bad as i64, vocab_size: vocab });
            }
            let needed = r.cache.len() + r.tokens.len();
            if needed > self.info.context_limit {
                return Err(Error::ContextLimit { needed, limit: self.info.context_limit });
            }
        }
        let together = self.batches_rows() && rows.len() > 1;
        let mut batched = Vec::with_capacity(rows.len());
        for r in rows.iter_mut() {
            if together && r.tokens.len() <= MAX_BATCHED_FEED {
                batched.push(r);
            } else {
                self.forward(r.cache, r.tokens, r.rows, r.out, cost)?;
            }
        }
        match batched.len() {
            0 => Ok(()),
            1 => {
                let r = &mut batched[0];
                self.forward(r.cache, r.tokens, r.rows, r.out, cost)
            }
            _ => self.run_batch(&mut batched, cost),
        }
    }

    /// One call for all `rows` (host caches, a graph with a mask and positions). When the rows
    /// are exactly the rows of the previous call's presents, in order, those are fed back as they
    /// are (their holes masked: padding and rolled-back proposals); otherwise, or once holes make
    /// up too much of them, the rows' valid slots are gathered into fresh pasts.
    fn run_batch(&self, rows: &mut [&mut BatchRow<'_>], cost: &mut CallCost) -> Result<()> {
        let b = rows.len();
        let k = rows.iter().map(|r| r.tokens.len()).max().unwrap_or(0);
        let reuse = reusable(rows, self.info.context_limit.saturating_sub(k));
        let gathered;
        let (pasts, past) = match &reuse {
            Some(store) => (&store.tensors, store.slots),
            None => {
                let past = rows.iter().map(|r| r.cache.len()).max().unwrap_or(0);
                let mut fresh = self.batch_kv_tensors(b, past)?;
                for (i, r) in rows.iter().enumerate() {
                    r.cache.copy_into_batch(&mut fresh, i)?;
                }
                gathered = fresh;
                (&gathered, past)
            }
        };
        let (mut ids, mut mask, mut positions) =
            (Vec::with_capacity(b * k), Vec::with_capacity(b * (past + k)), Vec::with_capacity(b * k));
        let mut valid = Vec::with_capacity(b);
        for r in rows.iter() {
            let (len, n) = (r.cache.len(), r.tokens.len());
            let last = *r.tokens.last().unwrap_or(&0) as i64;
            ids.extend(r.tokens.iter().map(|&t| t as i64).chain(std::iter::repeat_n(last, k - n)));
            let row: Vec<bool> = match &reuse {
                Some(_) => r.cache.valid().iter().copied().chain((0..k).map(|j| j < n)).collect(),
                None => (0..past).map(|j| j < len).chain((0..k).map(|j| j < n)).collect(),
            };
            mask.extend(row.iter().map(|&v| v as i64));
            valid.push(row);
            // Padding repeats the last position: it stays inside a learned position table.
            positions.extend((0..k).map(|j| (len + j.min(n - 1)) as i64));
        }
        let inputs = Inputs::batched(&self.layout, &ids, &mask, &positions, b, pasts);
        let feed = plain_feed(&inputs)?;
        let started = Instant::now();
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let mut outputs = session.run(feed)?;
        let presents = take_presents(&self.layout, &mut outputs)?;
        let logits = take_logits(&self.layout, &mut outputs)?;
        cost.calls += 1;
        cost.time += started.elapsed();
        for (i, r) in rows.iter_mut().enumerate() {
            let n = r.tokens.len();
            copy_batch_rows(&logits, b, k, i, n - r.rows, r.rows, self.info.vocab_size, r.out)?;
        }
        drop(outputs);
        drop(session);
        let store = Arc::new(BatchStore { tensors: presents, batch: b, slots: past + k });
        for ((i, r), valid) in rows.iter_mut().enumerate().zip(valid) {
            let n = r.tokens.len();
            r.cache.set_view(store.clone(), i, valid, n);
        }
        Ok(())
    }

    /// Host KV tensors [batch, kv_heads, slots, head_dim] for every layer, left for the rows'
    /// copies to fill (each zeroes its padding).
    fn batch_kv_tensors(&self, batch: usize, slots: usize) -> Result<Vec<DynTensor>> {
        let elem = self.layout.kv_type.float_tensor_type();
        let shape = [batch as i64, self.info.kv_heads as i64, slots as i64, self.info.head_dim as i64];
        (0..2 * self.info.layers).map(|_| Ok(DynTensor::new(&ort::memory::Allocator::default(), elem, shape)?)).collect()
    }
}

/// The store the rows can be fed from as they are: every row is the row of the same index of
/// one batch of exactly these rows, and holes do not yet make up too much of it (nor more than
/// `max_slots`).
fn reusable(rows: &[&mut BatchRow<'_>], max_slots: usize) -> Option<Arc<BatchStore>> {
    let (store, _) = rows.first()?.cache.batch_store()?;
    if store.batch != rows.len() {
        return None;
    }
    for (i, r) in rows.iter().enumerate() {
        match r.cache.batch_store() {
            Some((s, row)) if Arc::ptr_eq(s, store) && row == i => {}
            _ => return None,
        }
    }
    let longest = rows.iter().map(|r| r.cache.len()).max().unwrap_or(0);
    // Attention reads every slot: past this much padding a gathering copy pays for itself.
    // And the mask may not outgrow the context, which some graphs size position tables by.
    (store.slots <= (longest + longest / 4 + MAX_HOLE_SLOTS).min(max_slots)).then(|| store.clone())
}
