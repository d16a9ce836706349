//! A per-sequence KV cache that stays inside ONNX Runtime values: each call's `present` tensors
//! become the next call's `past` as they are, with no copy through host vectors.
//!
//! Rollback is cheap: where the model takes `attention_mask` and `position_ids`, rejected slots are
//! left in place and masked out (explicit positions keep RoPE/learned positions right), and the
//! cache is compacted only once holes pile up. Models without those inputs compact at once.
//!
//! On a device (CUDA, or CPU when IoBinding is forced) the tensors stay where the execution
//! provider put them: compaction is a Gather over the kept slots run by ONNX Runtime on that
//! device, never a copy through host memory. Every copy of KV data through host memory that specdec
//! makes or causes is counted ([`KvCache::host_copies`]), so that tests can show there are none on
//! the device path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ort::memory::MemoryInfo;
use ort::value::DynTensor;

use super::bind::{DeviceKv, KeptBinding};
use super::dtype::ElemType;
use crate::error::{Error, Result};

/// When holes make up this share of the physical cache (or exceed [`MAX_HOLES`]) the cache is compacted.
const MAX_HOLE_FRACTION: f32 = 0.25;
const MAX_HOLES: usize = 256;

pub struct KvCache {
    /// Key then value for each layer, shaped [1, kv_heads, physical_len, head_dim].
    tensors: Vec<DynTensor>,
    /// For each physical slot, whether it belongs to the sequence (false = rolled-back hole).
    valid: Vec<bool>,
    len: usize,
    can_mask: bool,
    /// The tensors are buffers of a fixed number of slots that the graph reads as past and writes
    /// as present in place; the sequence is their first `len` slots, so a rollback only shortens
    /// it (no holes, no copies).
    shared: bool,
    /// Scratch for the next call's small integer inputs, kept to avoid per-call allocation.
    scratch: Vec<i64>,
    /// Most physical slots allowed before holes must be compacted away (a memory budget).
    slot_limit: usize,
    /// Set when the tensors live on the model's device (IoBinding): compaction runs there.
    device: Option<Arc<DeviceKv>>,
    host_copies: u64,
    host_copy_bytes: u64,
    compactions: u64,
    /// The model's totals over all its caches.
    counters: Arc<KvCounters>,
    /// A shared buffer's IoBinding, kept from call to call (made again when the buffers change).
    binding: Option<KeptBinding>,
    /// Set after a batched call: the sequence lives in one row of that call's presents (and
    /// `tensors` is empty), so that the next batched call over the same rows feeds them as they
    /// are. Any other use copies the row out first ([`KvCache::own`]).
    view: Option<BatchView>,
}

/// What a shared-buffer call reads and binds: the buffers, their kept binding, the slots'
/// validity, the sequence length, and the small inputs' scratch.
pub(super) type SharedParts<'a> = (&'a mut [DynTensor], &'a mut Option<KeptBinding>, &'a [bool], usize, &'a mut Vec<i64>);

/// A batched call's presents, [batch, heads, slots, dim] each, shared by the caches of its rows.
pub(super) struct BatchStore {
    pub(super) tensors: Vec<DynTensor>,
    pub(super) batch: usize,
    pub(super) slots: usize,
}

struct BatchView {
    store: Arc<BatchStore>,
    row: usize,
}

/// Copies and compactions of KV data, summed over every cache of one model.
#[derive(Debug, Default)]
pub(super) struct KvCounters {
    host_copies: AtomicU64,
    host_copy_bytes: AtomicU64,
    compactions: AtomicU64,
}

impl KvCounters {
    pub(super) fn snapshot(&self) -> KvCopyStats {
        KvCopyStats {
            host_copies: self.host_copies.load(Ordering::Relaxed),
            host_copy_bytes: self.host_copy_bytes.load(Ordering::Relaxed),
            compactions: self.compactions.load(Ordering::Relaxed),
        }
    }
}

/// What happened to a model's KV caches so far ([`crate::Model::kv_copy_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KvCopyStats {
    /// KV tensors copied through host memory (host compactions, tensors crossing between host
    /// and device). Zero when the cache stays on the device.
    pub host_copies: u64,
    pub host_copy_bytes: u64,
    /// Compactions (on the device for a device-resident cache).
    pub compactions: u64,
}

impl KvCache {
    pub(super) fn new(
        tensors: Vec<DynTensor>,
        can_mask: bool,
        shared: bool,
        device: Option<Arc<DeviceKv>>,
        counters: Arc<KvCounters>,
    ) -> Self {
        KvCache {
            tensors,
            valid: Vec::new(),
            len: 0,
            can_mask,
            shared,
            scratch: Vec::new(),
            slot_limit: usize::MAX,
            device,
            host_copies: 0,
            host_copy_bytes: 0,
            compactions: 0,
            counters,
            binding: None,
            view: None,
        }
    }

    /// KV tensors copied through host memory so far (by a host compaction, or a tensor that had to
    /// cross between host and device for a call). Zero on the device path.
    pub fn host_copies(&self) -> u64 {
        self.host_copies
    }

    /// Bytes of KV data those copies moved.
    pub fn host_copy_bytes(&self) -> u64 {
        self.host_copy_bytes
    }

    /// Compactions so far (each removes all holes).
    pub fn compactions(&self) -> u64 {
        self.compactions
    }

    /// Whether the cache is kept on the model's device with IoBinding (CUDA, or CPU when forced).
    pub fn is_device_resident(&self) -> bool {
        self.device.is_some()
    }

    /// Where the tensors are, as ONNX Runtime names the memory: `Cpu:0`, `Cuda:0`, …
    pub fn location(&self) -> String {
        self.view
            .as_ref()
            .map_or(&self.tensors, |v| &v.store.tensors)
            .first()
            .map_or_else(|| "none".to_string(), |t| memory_name(t.memory_info()))
    }

    /// Cap the physical slots (a memory budget): holes are compacted away before a call would
    /// pass the cap.
    pub fn set_slot_limit(&mut self, slots: usize) {
        self.slot_limit = slots;
    }

    /// Whether feeding `k` more tokens would pass the context or the slot limit while holes could
    /// make room.
    pub(super) fn needs_room(&self, k: usize, context_limit: usize) -> bool {
        self.physical_len() + k > context_limit.min(self.slot_limit) && self.holes() > 0
    }

    /// What a forward call reads: the pasts, the slots' validity, the sequence length, and the
    /// scratch its small inputs are laid out in.
    pub(super) fn call_parts(&mut self) -> (&[DynTensor], &[bool], usize, &mut Vec<i64>) {
        (&self.tensors, &self.valid, self.len, &mut self.scratch)
    }

    /// [`KvCache::call_parts`] for a shared buffer, which is bound as past and present at once,
    /// with the binding kept for it.
    pub(super) fn shared_call_parts(&mut self) -> SharedParts<'_> {
        (&mut self.tensors, &mut self.binding, &self.valid, self.len, &mut self.scratch)
    }

    pub(super) fn tensors(&self) -> &[DynTensor] {
        &self.tensors
    }

    /// Whether the tensors are fixed buffers shared by past and present.
    pub fn is_shared_buffer(&self) -> bool {
        self.shared
    }

    /// Slots the shared buffers hold (0 before they are allocated).
    pub(super) fn capacity(&self) -> usize {
        self.tensors.first().and_then(|t| t.shape().get(2).copied()).unwrap_or(0).max(0) as usize
    }

    /// Put the shared buffers in place (before the first call).
    pub(super) fn set_buffers(&mut self, buffers: Vec<DynTensor>) {
        self.binding = None;
        self.tensors = buffers;
    }

    /// The slot limit set for a memory budget (usize::MAX without one).
    pub(super) fn slot_limit(&self) -> usize {
        self.slot_limit
    }

    pub(super) fn count_host_copy(&mut self, bytes: usize) {
        self.host_copies += 1;
        self.host_copy_bytes += bytes as u64;
        self.counters.host_copies.fetch_add(1, Ordering::Relaxed);
        self.counters.host_copy_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Tokens of the sequence held in the cache.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Slots in the tensors, holes included.
    pub fn physical_len(&self) -> usize {
        self.valid.len()
    }

    fn holes(&self) -> usize {
        self.valid.len() - self.len
    }

    /// Record a forward call's outputs: `presents` (none for a shared buffer, written in place)
    /// now cover `added` more slots.
    pub(super) fn advance(&mut self, presents: Option<Vec<DynTensor>>, added: usize) {
        if let Some(presents) = presents {
            self.tensors = presents;
        }
        self.valid.resize(self.valid.len() + added, true);
        self.len += added;
    }

    /// Keep the first `n` tokens of the sequence and forget the rest.
    pub fn truncate(&mut self, n: usize) -> Result<()> {
        if n >= self.len {
            return Ok(());
        }
        let mut drop = self.len - n;
        for slot in self.valid.iter_mut().rev() {
            if drop == 0 {
                break;
            }
            if *slot {
                *slot = false;
                drop -= 1;
            }
        }
        self.len = n;
        if self.shared {
            // The slots past `n` are rewritten by the next call; the mask stops reading them.
            self.valid.truncate(n);
            return Ok(());
        }
        if self.view.is_some() {
            // The batch's next call masks them; a gathering call or `own` drops them.
            return Ok(());
        }
        // Trailing holes cost nothing to drop logically, but the tensors still hold them.
        let holes = self.holes();
        if !self.can_mask || holes >= MAX_HOLES || holes as f32 >= MAX_HOLE_FRACTION * self.valid.len() as f32 {
            self.compact()?;
        }
        Ok(())
    }

    /// Copy the valid slots into fresh tensors without holes: on the device with a Gather for a
    /// device-resident cache, else with host memory copies.
    pub fn compact(&mut self) -> Result<()> {
        if self.view.is_some() {
            return self.own();
        }
        if self.holes() == 0 {
            return Ok(());
        }
        self.compactions += 1;
        self.counters.compactions.fetch_add(1, Ordering::Relaxed);
        if let Some(device) = &self.device {
            let keep: Vec<i64> = self.valid.iter().enumerate().filter(|(_, &v)| v).map(|(i, _)| i as i64).collect();
            self.tensors = device.gather_slots(&self.tensors, keep)?;
            self.valid = vec![true; self.len];
            return Ok(());
        }
        let runs = valid_runs(&self.valid);
        let phys = self.valid.len();
        let mut out = Vec::with_capacity(self.tensors.len());
        let mut copied = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            if t.memory_info().allocation_device() != ort::memory::AllocationDevice::CPU {
                return Err(Error::Inference(format!(
                    "a host compaction of a KV tensor in {} memory",
                    memory_name(t.memory_info())
                )));
            }
            let dims: Vec<i64> = t.shape().iter().copied().collect();
            let (heads, dim) = (dims[0] as usize * dims[1] as usize, dims[3] as usize);
            let elem = match ElemType::of(*t.data_type()) {
                e @ (ElemType::F32 | ElemType::F16 | ElemType::BF16) => e.size(),
                other => return Err(Error::Inference(format!("unexpected KV cache element type {other:?}"))),
            };
            let row = dim * elem;
            let mut fresh =
                DynTensor::new(&ort::memory::Allocator::default(), *t.data_type(), [dims[0], dims[1], self.len as i64, dims[3]])?;
            let src = t.data_ptr() as *const u8;
            let dst = fresh.data_ptr_mut() as *mut u8;
            let mut at = 0usize;
            for h in 0..heads {
                for &(start, n) in &runs {
                    // SAFETY: both tensors are CPU buffers of [heads, slots, dim] elements; the
                    // runs lie inside `phys` and their total is `self.len`.
                    unsafe {
                        std::ptr::copy_nonoverlapping(src.add((h * phys + start) * row), dst.add(at * row), n * row);
                    }
                    at += n;
                }
            }
            out.push(fresh);
            copied.push(heads * self.len * row);
        }
        copied.into_iter().for_each(|bytes| self.count_host_copy(bytes));
        self.tensors = out;
        self.valid = vec![true; self.len];
        Ok(())
    }
}

impl KvCache {
    /// A new cache holding copies of this one's first `n` tokens (1 ≤ n ≤ len), without holes:
    /// gathered on the device for a device-resident cache, copied through host memory (and
    /// counted) otherwise. This cache is not changed.
    pub(crate) fn copy_prefix(&self, n: usize) -> Result<KvCache> {
        if self.view.is_some() {
            return Err(Error::invalid("a cache in a batch row cannot be copied (the batch engine does not fork)"));
        }
        if n == 0 || n > self.len {
            return Err(Error::invalid(format!("cannot copy {n} of a cache's {} tokens", self.len)));
        }
        let kept: Vec<usize> = self.valid.iter().enumerate().filter(|(_, &v)| v).map(|(i, _)| i).take(n).collect();
        // A shared buffer's copy is a buffer of the same capacity holding the prefix in front.
        let slots = if self.shared { self.capacity() } else { n };
        let mut copy = KvCache::new(Vec::new(), self.can_mask, self.shared, self.device.clone(), self.counters.clone());
        if let Some(device) = &self.device {
            // Slots past the prefix are filled with copies of its first (never read: the mask stops there).
            let keep = kept.iter().map(|&i| i as i64).chain(std::iter::repeat_n(kept[0] as i64, slots - n)).collect();
            copy.tensors = device.gather_slots(&self.tensors, keep)?;
        } else {
            let mut valid = vec![false; self.valid.len()];
            kept.iter().for_each(|&i| valid[i] = true);
            let runs = valid_runs(&valid);
            for t in &self.tensors {
                if t.memory_info().allocation_device() != ort::memory::AllocationDevice::CPU {
                    return Err(Error::Inference(format!(
                        "a host copy of a KV tensor in {} memory",
                        memory_name(t.memory_info())
                    )));
                }
                let dims: Vec<i64> = t.shape().iter().copied().collect();
                let (heads, phys) = (dims[0] as usize * dims[1] as usize, dims[2] as usize);
                let row = dims[3] as usize * ElemType::of(*t.data_type()).size();
                let mut fresh = DynTensor::new(
                    &ort::memory::Allocator::default(),
                    *t.data_type(),
                    [dims[0], dims[1], slots as i64, dims[3]],
                )?;
                let (src, dst) = (t.data_ptr() as *const u8, fresh.data_ptr_mut() as *mut u8);
                for h in 0..heads {
                    let mut at = 0usize;
                    for &(start, len) in &runs {
                        // SAFETY: both tensors are CPU buffers of [heads, slots, dim] elements (`phys`
                        // and `slots` slots); the runs lie inside `phys` and add up to `n` ≤ `slots`.
                        unsafe {
                            std::ptr::copy_nonoverlapping(
                                src.add((h * phys + start) * row),
                                dst.add((h * slots + at) * row),
                                len * row,
                            )
                        };
                        at += len;
                    }
                }
                copy.count_host_copy(heads * n * row);
                copy.tensors.push(fresh);
            }
        }
        copy.valid = vec![true; n];
        copy.len = n;
        copy.slot_limit = self.slot_limit;
        Ok(copy)
    }
}

/// Batched calls (host tensors only): a row's valid slots are gathered into one row of a padded
/// batch of pasts; afterwards the cache is a view of its row of the call's presents.
impl KvCache {
    /// Whether the cache is row `row` of a batch of `batch` rows held in `store` (the same
    /// store for every row of a call means its presents can be fed back as they are).
    pub(super) fn batch_store(&self) -> Option<(&Arc<BatchStore>, usize)> {
        self.view.as_ref().map(|v| (&v.store, v.row))
    }

    /// The slots' validity (for a view: over the batch's slots).
    pub(super) fn valid(&self) -> &[bool] {
        &self.valid
    }

    /// Copy this cache's valid slots into row `row` of `batch` (tensors [B, heads, slots, dim],
    /// in the cache's order) at slots `0..len`, zeroing the rest of the row; returns the bytes
    /// copied.
    pub(super) fn copy_into_batch(&self, batch: &mut [DynTensor], row: usize) -> Result<usize> {
        let runs = valid_runs(&self.valid);
        let (sources, src_row) = match &self.view {
            Some(v) => (&v.store.tensors, v.row),
            None => (&self.tensors, 0),
        };
        let mut bytes = 0;
        for (t, dst) in sources.iter().zip(batch.iter_mut()) {
            let (heads, slots, row_bytes) = host_dims(dst)?;
            let (_, phys, _) = host_dims(t)?;
            if self.len > slots {
                return Err(Error::Inference(format!("a batch of {slots} slots for a row of {}", self.len)));
            }
            let (src, out) = (t.data_ptr() as *const u8, dst.data_ptr_mut() as *mut u8);
            for h in 0..heads {
                let (from, to) = ((src_row * heads + h) * phys, (row * heads + h) * slots);
                let mut at = 0usize;
                for &(start, n) in &runs {
                    // SAFETY: host tensors: the source row [heads, phys, dim] (runs inside phys),
                    // the batch [B, heads, slots, dim] with row < B and len <= slots.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            src.add((from + start) * row_bytes),
                            out.add((to + at) * row_bytes),
                            n * row_bytes,
                        )
                    };
                    at += n;
                }
                // SAFETY: the rest of the same row. Zeroed: a padded slot gets no attention
                // weight, but 0 × NaN would still be NaN.
                unsafe { std::ptr::write_bytes(out.add((to + at) * row_bytes), 0, (slots - at) * row_bytes) };
            }
            bytes += heads * self.len * row_bytes;
        }
        self.counters.host_copies.fetch_add(sources.len() as u64, Ordering::Relaxed);
        self.counters.host_copy_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        Ok(bytes)
    }

    /// After a batched call: the sequence is row `row` of `store`, with `added` more tokens, its
    /// slots valid where `valid` says.
    pub(super) fn set_view(&mut self, store: Arc<BatchStore>, row: usize, valid: Vec<bool>, added: usize) {
        self.tensors = Vec::new();
        self.view = Some(BatchView { store, row });
        self.valid = valid;
        self.len += added;
    }

    /// Copy a batch row's valid slots into tensors of the cache's own, without holes.
    pub(super) fn own(&mut self) -> Result<()> {
        let Some(view) = self.view.take() else { return Ok(()) };
        let runs = valid_runs(&self.valid);
        let mut fresh = Vec::with_capacity(view.store.tensors.len());
        for t in &view.store.tensors {
            let (heads, slots, row_bytes) = host_dims(t)?;
            let dims: Vec<i64> = t.shape().iter().copied().collect();
            let n = self.len;
            let mut own = DynTensor::new(&ort::memory::Allocator::default(), *t.data_type(), [1, dims[1], n as i64, dims[3]])?;
            let (src, dst) = (t.data_ptr() as *const u8, own.data_ptr_mut() as *mut u8);
            for h in 0..heads {
                let from = (view.row * heads + h) * slots;
                let mut at = 0usize;
                for &(start, len) in &runs {
                    // SAFETY: host tensors: the batch row [heads, slots, dim] (runs inside slots,
                    // adding up to n), the new one [1, heads, n, dim].
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            src.add((from + start) * row_bytes),
                            dst.add((h * n + at) * row_bytes),
                            len * row_bytes,
                        )
                    };
                    at += len;
                }
            }
            self.count_host_copy(heads * n * row_bytes);
            fresh.push(own);
        }
        self.tensors = fresh;
        self.valid = vec![true; self.len];
        Ok(())
    }
}

/// Heads, slots and bytes per slot of a host KV tensor [B, heads, slots, dim].
fn host_dims(t: &DynTensor) -> Result<(usize, usize, usize)> {
    if t.memory_info().allocation_device() != ort::memory::AllocationDevice::CPU {
        return Err(Error::Inference(format!("a batched copy of a KV tensor in {} memory", memory_name(t.memory_info()))));
    }
    let dims: Vec<i64> = t.shape().iter().copied().collect();
    if dims.len() != 4 {
        return Err(Error::Inference(format!("a KV tensor shaped {dims:?}")));
    }
    Ok((dims[1] as usize, dims[2] as usize, dims[3] as usize * ElemType::of(*t.data_type()).size()))
}

/// `Cpu:0`, `Cuda:1`: ONNX Runtime's name of the memory and the device ordinal.
pub(super) fn memory_name(m: &MemoryInfo<'_>) -> String {
    format!("{}:{}", m.allocation_device().as_str(), m.device_id())
}

/// Whether two memory descriptions name the same device memory.
pub(super) fn same_memory(a: &MemoryInfo<'_>, b: &MemoryInfo<'_>) -> bool {
    a.allocation_device() == b.allocation_device() && a.device_id() == b.device_id()
}

/// Maximal runs of valid slots as (start, length).
fn valid_runs(valid: &[bool]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < valid.len() {
        if valid[i] {
            let start = i;
            while i < valid.len() && valid[i] {
                i += 1;
            }
            runs.push((start, i - start));
        } else {
            i += 1;
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::valid_runs;

    #[test]
    fn runs_cover_exactly_the_valid_slots() {
        assert_eq!(valid_runs(&[true, true, false, true, false, false, true]), vec![(0, 2), (3, 1), (6, 1)]);
        assert_eq!(valid_runs(&[false, false]), vec![]);
        assert_eq!(valid_runs(&[]), vec![]);
    }
}
