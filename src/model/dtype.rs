//! Element types of model tensors and their sizes, in one place: the layout parser, the KV cache,
//! the IoBinding path and the logits reader all ask here.

use ort::value::{DynTensor, TensorElementType};

/// Element types the engine distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElemType {
    F32,
    F16,
    BF16,
    I64,
    I32,
    Bool,
    Other,
}

impl ElemType {
    /// Bytes per element (0 for types the engine never stores).
    pub fn size(self) -> usize {
        match self {
            ElemType::F32 | ElemType::I32 => 4,
            ElemType::F16 | ElemType::BF16 => 2,
            ElemType::I64 => 8,
            ElemType::Bool => 1,
            ElemType::Other => 0,
        }
    }

    /// ONNX's name of the type: "float32", "float16", "bfloat16", "int64", "int32", "bool".
    pub fn name(self) -> &'static str {
        match self {
            ElemType::F32 => "float32",
            ElemType::F16 => "float16",
            ElemType::BF16 => "bfloat16",
            ElemType::I64 => "int64",
            ElemType::I32 => "int32",
            ElemType::Bool => "bool",
            ElemType::Other => "other",
        }
    }

    pub(crate) fn is_float(self) -> bool {
        matches!(self, ElemType::F32 | ElemType::F16 | ElemType::BF16)
    }

    pub(crate) fn is_int(self) -> bool {
        matches!(self, ElemType::I64 | ElemType::I32)
    }

    pub(crate) fn of(ty: TensorElementType) -> ElemType {
        match ty {
            TensorElementType::Float32 => ElemType::F32,
            TensorElementType::Float16 => ElemType::F16,
            TensorElementType::Bfloat16 => ElemType::BF16,
            TensorElementType::Int64 => ElemType::I64,
            TensorElementType::Int32 => ElemType::I32,
            TensorElementType::Bool => ElemType::Bool,
            _ => ElemType::Other,
        }
    }

    /// The ONNX Runtime type of a float tensor of this kind (a KV cache or logits); anything else
    /// is taken as f32, which is what the layout parser admits besides the 16-bit floats.
    pub(crate) fn float_tensor_type(self) -> TensorElementType {
        match self {
            ElemType::F16 => TensorElementType::Float16,
            ElemType::BF16 => TensorElementType::Bfloat16,
            _ => TensorElementType::Float32,
        }
    }
}

/// Bytes a tensor's data takes.
pub(crate) fn tensor_bytes(t: &DynTensor) -> usize {
    t.shape().iter().map(|&d| d.max(0) as usize).product::<usize>() * ElemType::of(*t.data_type()).size()
}

pub(crate) fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: renormalise the fraction.
            let shift = frac.leading_zeros() - 21;
            sign | ((113 - shift) << 23) | ((frac << (shift + 1)) & 0x3ff) << 13
        }
        (0x1f, _) => sign | 0x7f80_0000 | (frac << 13),
        _ => sign | ((exp + 112) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_floats_convert_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x0200), 2f32.powi(-15));
        assert!(f16_to_f32(0x7c00).is_infinite());
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
    }
}
