//! One forward call's inputs and outputs, for every layout the parser admits: the only place that
//! knows the names a decoder graph gives them and what each layout wants fed. The plain path and
//! the IoBinding path both build their call from [`Inputs`] and read it with [`take_presents`] and
//! [`copy_last_rows`].

use ort::session::SessionOutputs;
use ort::value::{DynTensor, DynValue, TensorElementType, ValueType};

use super::dtype::{bf16_to_f32, f16_to_f32, ElemType};
use super::layout::Layout;
use crate::error::{Error, Result};

/// The value of one input, before it is turned into what the calling path needs.
pub(super) enum InputValue<'a> {
    /// A [1, len] integer tensor of the given element type.
    Ints(ElemType, &'a [i64]),
    /// A one-element bool tensor.
    Flag(bool),
    /// A past KV tensor, as the cache holds it.
    Past(&'a DynTensor),
}

/// One call's inputs: the ids, the mask and positions a layout takes, and the cache's pasts.
pub(super) struct Inputs<'a> {
    layout: &'a Layout,
    ids: &'a [i64],
    mask: &'a [i64],
    positions: &'a [i64],
    /// Slots the pasts hold (holes included); legacy merged decoders branch on it.
    physical: usize,
    /// The cache's pasts, when they are fed as inputs here (a shared buffer is bound apart, as
    /// past and present at once).
    pasts: Option<&'a [DynTensor]>,
    /// Rows of the batch: the integer inputs are [batch, len / batch].
    batch: usize,
}

impl<'a> Inputs<'a> {
    /// Lay out the small integer inputs of feeding `tokens` after a cache whose slots are `valid`
    /// (false: a rolled-back hole) and which holds `len` tokens, into `scratch` (reused between
    /// calls), and name them with the cache's `pasts`.
    pub(super) fn new(
        layout: &'a Layout,
        scratch: &'a mut Vec<i64>,
        tokens: &[u32],
        valid: &[bool],
        len: usize,
        pasts: Option<&'a [DynTensor]>,
    ) -> Inputs<'a> {
        let k = tokens.len();
        scratch.clear();
        scratch.extend(tokens.iter().map(|&t| t as i64));
        if layout.attention_mask.is_some() {
            scratch.extend(valid.iter().map(|&v| v as i64));
            scratch.extend(std::iter::repeat_n(1, k));
        }
        let mask_len = scratch.len() - k;
        if layout.position_ids.is_some() {
            // Explicit positions keep RoPE / learned positions right across masked holes.
            scratch.extend((0..k as i64).map(|i| len as i64 + i));
        }
        let (ids, rest) = scratch.split_at(k);
        let (mask, positions) = rest.split_at(mask_len);
        Inputs { layout, ids, mask, positions, physical: valid.len(), pasts, batch: 1 }
    }

    /// The inputs of a batched call of `batch` rows: `ids` and `positions` [batch, k], `mask`
    /// [batch, past + k], laid out row by row by the caller, and the batch's `pasts`. Only for
    /// layouts with a mask and positions and without `use_cache_branch`.
    pub(super) fn batched(
        layout: &'a Layout,
        ids: &'a [i64],
        mask: &'a [i64],
        positions: &'a [i64],
        batch: usize,
        pasts: &'a [DynTensor],
    ) -> Inputs<'a> {
        Inputs { layout, ids, mask, positions, physical: 1, pasts: Some(pasts), batch }
    }

    /// Rows of the batch (1 but for a batched call).
    pub(super) fn batch(&self) -> usize {
        self.batch
    }

    /// Every input the graph takes, by name.
    pub(super) fn named(&self) -> impl Iterator<Item = (&'a str, InputValue<'a>)> + '_ {
        let l = self.layout;
        let n = &l.names;
        let small = [
            Some((n.input_ids.as_str(), InputValue::Ints(l.ids_type, self.ids))),
            l.attention_mask.map(|t| (n.attention_mask.as_str(), InputValue::Ints(t, self.mask))),
            l.position_ids.map(|t| (n.position_ids.as_str(), InputValue::Ints(t, self.positions))),
            l.use_cache_branch.then_some(("use_cache_branch", InputValue::Flag(self.physical > 0))),
        ];
        let pasts = self.pasts.into_iter().flat_map(move |pasts| past_names(l).zip(pasts).map(|(n, t)| (n, InputValue::Past(t))));
        small.into_iter().flatten().chain(pasts)
    }
}

/// Names of the past inputs, key then value for each layer (the cache's order).
pub(super) fn past_names(layout: &Layout) -> impl Iterator<Item = &str> {
    layout.layers.iter().flat_map(|n| [n.past_key.as_str(), n.past_value.as_str()])
}

/// Names of the present outputs, key then value for each layer (the cache's order).
pub(super) fn present_names(layout: &Layout) -> impl Iterator<Item = &str> {
    layout.layers.iter().flat_map(|n| [n.present_key.as_str(), n.present_value.as_str()])
}

/// Take the presents out of a call's outputs, in the cache's order.
pub(super) fn take_presents(layout: &Layout, outputs: &mut SessionOutputs<'_>) -> Result<Vec<DynTensor>> {
    present_names(layout)
        .map(|name| {
            let v = outputs.remove(name).ok_or_else(|| Error::Inference(format!("no `{name}` in outputs")))?;
            Ok(v.downcast()?)
        })
        .collect()
}

/// Take the logits out of a call's outputs.
pub(super) fn take_logits(layout: &Layout, outputs: &mut SessionOutputs<'_>) -> Result<DynValue> {
    let name = layout.names.logits.as_str();
    outputs.remove(name).ok_or_else(|| Error::Inference(format!("no `{name}` in outputs")))
}

/// Copy the last `rows` rows of a [1, k, vocab] logits tensor in host memory as f32.
pub(super) fn copy_last_rows(logits: &DynValue, k: usize, rows: usize, vocab: usize, out: &mut Vec<f32>) -> Result<()> {
    copy_batch_rows(logits, 1, k, 0, k - rows, rows, vocab, out)
}

/// Copy rows `start..start + n` of batch row `row` of a [batch, k, vocab] logits tensor in host
/// memory as f32.
#[allow(clippy::too_many_arguments)]
pub(super) fn copy_batch_rows(
    logits: &DynValue,
    batch: usize,
    k: usize,
    row: usize,
    start: usize,
    n: usize,
    vocab: usize,
    out: &mut Vec<f32>,
) -> Result<()> {
    out.clear();
    let first = (row * k + start) * vocab;
    let n = n * vocab;
    match logits.dtype() {
        ValueType::Tensor { ty: TensorElementType::Float32, .. } => {
            let (shape, data) = logits.try_extract_tensor::<f32>()?;
            check_logits_shape(shape, batch, k, vocab)?;
            out.extend_from_slice(&data[first..first + n]);
        }
        ValueType::Tensor { ty: ty @ (TensorElementType::Float16 | TensorElementType::Bfloat16), shape, .. } => {
            check_logits_shape(shape, batch, k, vocab)?;
            let tensor = logits.view().downcast::<ort::value::DynTensorValueType>()?;
            // SAFETY: a CPU tensor of [batch, k, vocab] 16-bit floats, checked above.
            let bits = unsafe { std::slice::from_raw_parts(tensor.data_ptr() as *const u16, batch * k * vocab) };
            let conv = if *ty == TensorElementType::Float16 { f16_to_f32 } else { bf16_to_f32 };
            out.extend(bits[first..first + n].iter().map(|&b| conv(b)));
        }
        other => return Err(Error::Inference(format!("logits of unsupported type {other:?}"))),
    }
    Ok(())
}

fn check_logits_shape(shape: &[i64], batch: usize, k: usize, vocab: usize) -> Result<()> {
    if shape.len() != 3 || shape[0] as usize != batch || shape[1] as usize != k || shape[2] as usize != vocab {
        return Err(Error::Inference(format!("logits shaped {shape:?}, expected [{batch}, {k}, {vocab}]")));
    }
    Ok(())
}
