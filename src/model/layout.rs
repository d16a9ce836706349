//! What a decoder export looks like, read from its input and output metadata alone, so that any
//! standard export works without per-architecture code. Kept free of ONNX Runtime types so that it
//! can be unit-tested and fuzzed on arbitrary metadata.

pub use super::dtype::ElemType;

/// One input or output of a model: name, element type, shape with -1 for symbolic dimensions.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub elem: ElemType,
    pub shape: Vec<i64>,
}

/// Names of one layer's cache tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerNames {
    pub past_key: String,
    pub past_value: String,
    pub present_key: String,
    pub present_value: String,
}

/// The names a decoder graph gives its inputs and outputs; per-layer names are patterns with `%d`
/// for the layer. Optimum's by default; genai_config.json may name others.
#[derive(Debug, Clone, PartialEq)]
pub struct Names {
    pub input_ids: String,
    pub attention_mask: String,
    pub position_ids: String,
    pub past_key: String,
    pub past_value: String,
    pub logits: String,
    pub present_key: String,
    pub present_value: String,
}

impl Default for Names {
    fn default() -> Self {
        Names {
            input_ids: "input_ids".into(),
            attention_mask: "attention_mask".into(),
            position_ids: "position_ids".into(),
            past_key: "past_key_values.%d.key".into(),
            past_value: "past_key_values.%d.value".into(),
            logits: "logits".into(),
            present_key: "present.%d.key".into(),
            present_value: "present.%d.value".into(),
        }
    }
}

impl Names {
    fn layer(pattern: &str, i: usize) -> String {
        pattern.replace("%d", &i.to_string())
    }
}

/// How to drive a decoder: which optional inputs exist and what its KV cache looks like.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// The graph's names of the inputs and outputs the engine feeds and reads.
    pub names: Names,
    pub ids_type: ElemType,
    /// Element type of `attention_mask`, if the model takes one.
    pub attention_mask: Option<ElemType>,
    /// Element type of `position_ids`, if the model takes one.
    pub position_ids: Option<ElemType>,
    /// Legacy merged decoders select their branch with a boolean `use_cache_branch`.
    pub use_cache_branch: bool,
    pub layers: Vec<LayerNames>,
    /// KV heads and head size; `None` where the export leaves them symbolic (filled from config).
    pub kv_heads: Option<usize>,
    pub head_dim: Option<usize>,
    pub kv_type: ElemType,
    pub logits_type: ElemType,
    /// Vocabulary size from the logits shape, when static.
    pub vocab_size: Option<usize>,
    /// One KV buffer of the context's length serves as past and present (onnxruntime-genai's
    /// `past_present_share_buffer`, for GroupQueryAttention graphs): the graph writes the new
    /// entries in place and the attention mask's length says how many are valid, so rolling back
    /// is shortening the mask. Set by the loader from the export's configuration.
    pub shared_buffer: bool,
}

impl Layout {
    /// Holes left by a rollback can be masked out only when the model takes both a mask and
    /// explicit positions; otherwise a rollback must compact the cache at once.
    pub fn supports_masked_rollback(&self) -> bool {
        self.attention_mask.is_some() && self.position_ids.is_some()
    }
}

fn find<'a>(specs: &'a [TensorSpec], name: &str) -> Option<&'a TensorSpec> {
    specs.iter().find(|s| s.name == name)
}

/// Parse the layout of a decoder with a KV cache (Hugging Face Optimum names). Errors say what is
/// missing or unexpected in words a user can act on.
pub fn parse(inputs: &[TensorSpec], outputs: &[TensorSpec]) -> Result<Layout, String> {
    parse_named(inputs, outputs, Names::default())
}

/// [`parse`] with the graph's own names.
pub fn parse_named(inputs: &[TensorSpec], outputs: &[TensorSpec], names: Names) -> Result<Layout, String> {
    let n = &names;
    let ids = find(inputs, &n.input_ids).ok_or_else(|| format!("no `{}` input: not a text decoder", n.input_ids))?;
    if !ids.elem.is_int() || ids.shape.len() != 2 {
        return Err(format!("`{}` must be a 2-D int64/int32 tensor, found {:?} {:?}", n.input_ids, ids.elem, ids.shape));
    }
    let int_input = |name: &str| -> Result<Option<ElemType>, String> {
        match find(inputs, name) {
            None => Ok(None),
            Some(s) if s.elem.is_int() && s.shape.len() == 2 => Ok(Some(s.elem)),
            Some(s) => Err(format!("`{name}` must be a 2-D integer tensor, found {:?} {:?}", s.elem, s.shape)),
        }
    };
    let attention_mask = int_input(&n.attention_mask)?;
    let position_ids = int_input(&n.position_ids)?;
    let use_cache_branch = match find(inputs, "use_cache_branch") {
        None => false,
        Some(s) if s.elem == ElemType::Bool => true,
        Some(s) => return Err(format!("`use_cache_branch` must be bool, found {:?}", s.elem)),
    };

    let logits = find(outputs, &n.logits).ok_or_else(|| format!("no `{}` output", n.logits))?;
    if !logits.elem.is_float() || logits.shape.len() != 3 {
        return Err(format!("`{}` must be a 3-D float tensor, found {:?} {:?}", n.logits, logits.elem, logits.shape));
    }
    let vocab_size = match logits.shape[2] {
        d if d > 0 => Some(d as usize),
        _ => None,
    };

    let mut layers = Vec::new();
    let mut kv: Option<(ElemType, i64, i64)> = None;
    loop {
        let i = layers.len();
        let names = LayerNames {
            past_key: Names::layer(&n.past_key, i),
            past_value: Names::layer(&n.past_value, i),
            present_key: Names::layer(&n.present_key, i),
            present_value: Names::layer(&n.present_value, i),
        };
        let past_k = find(inputs, &names.past_key);
        let past_v = find(inputs, &names.past_value);
        if past_k.is_none() && past_v.is_none() {
            break;
        }
        let (Some(pk), Some(pv)) = (past_k, past_v) else {
            return Err(format!("layer {i} has only one of its past key/value inputs"));
        };
        for (role, name) in [("key", &names.present_key), ("value", &names.present_value)] {
            let present = find(outputs, name).ok_or_else(|| format!("layer {i} has no `{name}` output for its {role}"))?;
            if present.elem != pk.elem {
                return Err(format!("`{name}` is {:?} but its past is {:?}", present.elem, pk.elem));
            }
        }
        for s in [pk, pv] {
            if !s.elem.is_float() || s.shape.len() != 4 {
                return Err(format!(
                    "`{}` must be a 4-D float tensor [batch, heads, seq, dim], found {:?} {:?}",
                    s.name, s.elem, s.shape
                ));
            }
            let this = (s.elem, s.shape[1], s.shape[3]);
            match kv {
                None => kv = Some(this),
                Some(prev) if prev != this => {
                    return Err(format!(
                        "`{}` differs from layer 0's cache ({this:?} vs {prev:?}); mixed caches are unsupported",
                        s.name
                    ));
                }
                _ => {}
            }
        }
        layers.push(names);
    }
    let Some((kv_type, heads, dim)) = kv else {
        return Err(format!(
            "no `{}` / `{}` inputs: export with --task text-generation-with-past",
            n.past_key.replace("%d", "N"),
            n.past_value.replace("%d", "N")
        ));
    };
    if find(outputs, &Names::layer(&n.present_key, layers.len())).is_some() {
        return Err(format!("more present outputs than past inputs ({} layers of past)", layers.len()));
    }

    let known = |name: &str| {
        [&n.input_ids, &n.attention_mask, &n.position_ids].iter().any(|k| k.as_str() == name)
            || name == "use_cache_branch"
            || layers.iter().any(|l| l.past_key == name || l.past_value == name)
    };
    let unknown: Vec<&str> = inputs.iter().map(|s| s.name.as_str()).filter(|n| !known(n)).collect();
    if !unknown.is_empty() {
        return Err(format!("inputs specdec does not know how to fill: {}", unknown.join(", ")));
    }
    let positive = |d: i64| if d > 0 { Some(d as usize) } else { None };
    Ok(Layout {
        names,
        ids_type: ids.elem,
        attention_mask,
        position_ids,
        use_cache_branch,
        layers,
        kv_heads: positive(heads),
        head_dim: positive(dim),
        kv_type,
        logits_type: logits.elem,
        vocab_size,
        shared_buffer: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, elem: ElemType, shape: &[i64]) -> TensorSpec {
        TensorSpec { name: name.into(), elem, shape: shape.to_vec() }
    }

    fn optimum(layers: usize, with_positions: bool) -> (Vec<TensorSpec>, Vec<TensorSpec>) {
        let mut inputs = vec![t("input_ids", ElemType::I64, &[-1, -1]), t("attention_mask", ElemType::I64, &[-1, -1])];
        if with_positions {
            inputs.push(t("position_ids", ElemType::I64, &[-1, -1]));
        }
        let mut outputs = vec![t("logits", ElemType::F32, &[-1, -1, 512])];
        for i in 0..layers {
            for kv in ["key", "value"] {
                inputs.push(t(&format!("past_key_values.{i}.{kv}"), ElemType::F32, &[-1, 2, -1, 16]));
                outputs.push(t(&format!("present.{i}.{kv}"), ElemType::F32, &[-1, 2, -1, 16]));
            }
        }
        (inputs, outputs)
    }

    #[test]
    fn reads_an_optimum_decoder() {
        let (i, o) = optimum(3, true);
        let l = parse(&i, &o).unwrap();
        assert_eq!(l.layers.len(), 3);
        assert_eq!((l.kv_heads, l.head_dim, l.vocab_size), (Some(2), Some(16), Some(512)));
        assert!(l.supports_masked_rollback());
        let (i, o) = optimum(1, false);
        assert!(!parse(&i, &o).unwrap().supports_masked_rollback());
    }

    #[test]
    fn refuses_what_it_cannot_drive() {
        let (mut i, o) = optimum(2, true);
        i.retain(|s| s.name != "past_key_values.1.value");
        assert!(parse(&i, &o).unwrap_err().contains("only one"));

        let (i, mut o) = optimum(2, true);
        o.retain(|s| s.name != "present.1.key");
        assert!(parse(&i, &o).unwrap_err().contains("present.1.key"));

        let (mut i, o) = optimum(2, true);
        i.push(t("seqlens_k", ElemType::I32, &[-1]));
        assert!(parse(&i, &o).unwrap_err().contains("seqlens_k"));

        let matmul = [t("A", ElemType::F32, &[2, 2])];
        assert!(parse(&matmul, &matmul).unwrap_err().contains("input_ids"));

        let (i, _) = optimum(1, true);
        let o = [t("logits", ElemType::F32, &[-1, -1, 512])];
        assert!(parse(&i, &o).is_err());
    }
}
