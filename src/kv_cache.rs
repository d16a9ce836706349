//! A per-sequence KV cache that stays inside ONNX Runtime values: each call's `present` tensors
//! become the next call's `past` as they are, with no copy through host vectors.
//!
//! Rollback is cheap: where the model takes `attention_mask` and `position_ids`, rejected slots are
//! left in place and masked out (explicit positions keep RoPE/learned positions right), and the
//! cache is compacted only once holes pile up. Models without those inputs compact at once.

use ort::value::DynTensor;

use crate::error::Result;

/// When holes make up this share of the physical cache (or exceed [`MAX_HOLES`]) the cache is compacted.
const MAX_HOLE_FRACTION: f32 = 0.25;
const MAX_HOLES: usize = 256;

pub struct KvCache {
    /// Key then value for each layer, shaped [1, kv_heads, physical_len, head_dim].
    pub(crate) tensors: Vec<DynTensor>,
    /// For each physical slot, whether it belongs to the sequence (false = rolled-back hole).
    pub(crate) valid: Vec<bool>,
    len: usize,
    pub(crate) can_mask: bool,
    /// Scratch for the next call's small integer inputs, kept to avoid per-call allocation.
    pub(crate) scratch: Vec<i64>,
    /// Most physical slots allowed before holes must be compacted away (a memory budget).
    pub(crate) slot_limit: usize,
}

impl KvCache {
    pub(crate) fn new(tensors: Vec<DynTensor>, can_mask: bool) -> Self {
        KvCache { tensors, valid: Vec::new(), len: 0, can_mask, scratch: Vec::new(), slot_limit: usize::MAX }
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

    pub(crate) fn holes(&self) -> usize {
        self.valid.len() - self.len
    }

    /// Record a forward call's outputs: `presents` now cover `added` more slots.
    pub(crate) fn advance(&mut self, presents: Vec<DynTensor>, added: usize) {
        self.tensors = presents;
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
        // Trailing holes cost nothing to drop logically, but the tensors still hold them.
        let holes = self.holes();
        if !self.can_mask || holes >= MAX_HOLES || holes as f32 >= MAX_HOLE_FRACTION * self.valid.len() as f32 {
            self.compact()?;
        }
        Ok(())
    }

    /// Copy the valid slots into fresh tensors without holes.
    pub fn compact(&mut self) -> Result<()> {
        if self.holes() == 0 {
            return Ok(());
        }
        let runs = valid_runs(&self.valid);
        let phys = self.valid.len();
        let mut out = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            let dims: Vec<i64> = t.shape().iter().copied().collect();
            let (heads, dim) = (dims[0] as usize * dims[1] as usize, dims[3] as usize);
            let elem = element_size(t)?;
            let row = dim * elem;
            let mut fresh = DynTensor::new(&ort::memory::Allocator::default(), *t.data_type(), [dims[0], dims[1], self.len as i64, dims[3]])?;
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
        }
        self.tensors = out;
        self.valid = vec![true; self.len];
        Ok(())
    }
}

fn element_size(t: &DynTensor) -> Result<usize> {
    use ort::value::TensorElementType as T;
    Ok(match t.data_type() {
        T::Float32 => 4,
        T::Float16 | T::Bfloat16 => 2,
        other => return Err(crate::Error::Inference(format!("unexpected KV cache element type {other:?}"))),
    })
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
