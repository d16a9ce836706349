//! Model-layout parsing from arbitrary ONNX input/output metadata, plus the config.json and
//! generation_config.json that complete it: `specdec::model::info_from_metadata` (what
//! `Model::load` does after ONNX Runtime has opened the session) must return a layout or an
//! error, never panic, and a layout it accepts must be one the engine can drive.
#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use specdec::layout::{ElemType, TensorSpec};

const ELEMS: [ElemType; 7] =
    [ElemType::F32, ElemType::F16, ElemType::BF16, ElemType::I64, ElemType::I32, ElemType::Bool, ElemType::Other];

/// Names biased towards the ones the parser looks for, so that the fuzzer reaches past the
/// first checks; any other string stays possible.
fn name(u: &mut Unstructured) -> Result<String> {
    let layer = u.int_in_range(0u8..=3)?;
    Ok(match u.int_in_range(0u8..=9)? {
        0 => "input_ids".into(),
        1 => "attention_mask".into(),
        2 => "position_ids".into(),
        3 => "use_cache_branch".into(),
        4 => "logits".into(),
        5 => format!("past_key_values.{layer}.key"),
        6 => format!("past_key_values.{layer}.value"),
        7 => format!("present.{layer}.key"),
        8 => format!("present.{layer}.value"),
        _ => u.arbitrary()?,
    })
}

fn dim(u: &mut Unstructured) -> Result<i64> {
    Ok(match u.int_in_range(0u8..=4)? {
        0 => -1,
        1 => 0,
        2 => u.int_in_range(1..=8)?,
        3 => 512,
        _ => u.arbitrary()?,
    })
}

fn spec(u: &mut Unstructured) -> Result<TensorSpec> {
    let name = name(u)?;
    let elem = *u.choose(&ELEMS)?;
    let rank = u.int_in_range(0usize..=5)?;
    let shape = (0..rank).map(|_| dim(u)).collect::<Result<Vec<_>>>()?;
    Ok(TensorSpec { name, elem, shape })
}

fn specs(u: &mut Unstructured, max: usize) -> Result<Vec<TensorSpec>> {
    (0..u.int_in_range(0usize..=max)?).map(|_| spec(u)).collect()
}

/// An Optimum-style decoder (what real exports look like), then a few random edits: a spec
/// dropped, renamed, retyped, reshaped or added. Reaches the checks past the first ones far more
/// often than specs built from nothing.
fn template(u: &mut Unstructured) -> Result<(Vec<TensorSpec>, Vec<TensorSpec>)> {
    let t = |name: String, elem, shape: Vec<i64>| TensorSpec { name, elem, shape };
    let ids = if u.ratio(1u8, 8)? { ElemType::I32 } else { ElemType::I64 };
    let kv = *u.choose(&[ElemType::F32, ElemType::F32, ElemType::F16, ElemType::BF16])?;
    let (heads, dim_, vocab) = (dim(u)?, dim(u)?, dim(u)?);
    let mut inputs = vec![t("input_ids".into(), ids, vec![-1, -1])];
    if u.arbitrary()? {
        inputs.push(t("attention_mask".into(), ids, vec![-1, -1]));
    }
    if u.arbitrary()? {
        inputs.push(t("position_ids".into(), ids, vec![-1, -1]));
    }
    if u.ratio(1u8, 4)? {
        inputs.push(t("use_cache_branch".into(), ElemType::Bool, vec![1]));
    }
    let mut outputs = vec![t("logits".into(), ElemType::F32, vec![-1, -1, vocab])];
    for i in 0..u.int_in_range(1usize..=3)? {
        for kind in ["key", "value"] {
            inputs.push(t(format!("past_key_values.{i}.{kind}"), kv, vec![-1, heads, -1, dim_]));
            outputs.push(t(format!("present.{i}.{kind}"), kv, vec![-1, heads, -1, dim_]));
        }
    }
    for _ in 0..u.int_in_range(0u8..=3)? {
        let list = if u.arbitrary()? { &mut inputs } else { &mut outputs };
        if list.is_empty() {
            continue;
        }
        let i = u.choose_index(list.len())?;
        match u.int_in_range(0u8..=4)? {
            0 => drop(list.remove(i)),
            1 => list[i].name = name(u)?,
            2 => list[i].elem = *u.choose(&ELEMS)?,
            3 => {
                if list[i].shape.is_empty() || u.ratio(1u8, 4)? {
                    list[i].shape = (0..u.int_in_range(0usize..=5)?).map(|_| dim(u)).collect::<Result<_>>()?;
                } else {
                    let d = u.choose_index(list[i].shape.len())?;
                    list[i].shape[d] = dim(u)?;
                }
            }
            _ => list.push(spec(u)?),
        }
    }
    Ok((inputs, outputs))
}

fn json(u: &mut Unstructured) -> Result<Option<Vec<u8>>> {
    if !u.arbitrary::<bool>()? {
        return Ok(None);
    }
    // Either structured keys with odd values, or raw bytes.
    if u.arbitrary::<bool>()? {
        let keys = [
            "vocab_size",
            "num_attention_heads",
            "n_head",
            "num_key_value_heads",
            "head_dim",
            "hidden_size",
            "n_embd",
            "max_position_embeddings",
            "n_positions",
            "n_ctx",
            "max_sequence_length",
            "eos_token_id",
        ];
        let mut fields = Vec::new();
        for _ in 0..u.int_in_range(0..=6)? {
            let key = u.choose(&keys)?;
            let value = match u.int_in_range(0u8..=5)? {
                0 => "0".to_string(),
                1 => u.int_in_range(1u32..=1024)?.to_string(),
                2 => u.arbitrary::<u64>()?.to_string(),
                3 => format!("[{}, {}]", u.arbitrary::<u32>()?, u.arbitrary::<u64>()?),
                4 => "-3".to_string(),
                _ => "\"x\"".to_string(),
            };
            fields.push(format!("\"{key}\": {value}"));
        }
        Ok(Some(format!("{{{}}}", fields.join(", ")).into_bytes()))
    } else {
        let n = u.int_in_range(0usize..=64)?;
        Ok(Some(u.bytes(n)?.to_vec()))
    }
}

fn check(u: &mut Unstructured) -> Result<()> {
    let config = json(u)?;
    let generation = json(u)?;
    let (inputs, outputs) = if u.arbitrary::<bool>()? { template(u)? } else { (specs(u, 12)?, specs(u, 10)?) };

    let direct = specdec::layout::parse(&inputs, &outputs);
    let Ok((layout, info)) = specdec::model::info_from_metadata(&inputs, &outputs, config.as_deref(), generation.as_deref())
    else {
        return Ok(());
    };
    assert_eq!(direct.as_ref(), Ok(&layout), "info_from_metadata must use layout::parse");
    // What the engine relies on when it drives the model.
    let input = |n: &str| inputs.iter().find(|s| s.name == n);
    let output = |n: &str| outputs.iter().find(|s| s.name == n);
    assert!(input("input_ids").is_some() && output("logits").is_some());
    assert!(!layout.layers.is_empty(), "a layout without a KV cache was accepted");
    for l in &layout.layers {
        for n in [&l.past_key, &l.past_value] {
            let s = input(n).unwrap_or_else(|| panic!("{n} is not an input"));
            assert_eq!(s.shape.len(), 4);
        }
        for n in [&l.present_key, &l.present_value] {
            assert!(output(n).is_some(), "{n} is not an output");
        }
    }
    assert!(matches!(layout.ids_type, ElemType::I64 | ElemType::I32));
    assert!(matches!(layout.kv_type, ElemType::F32 | ElemType::F16 | ElemType::BF16));
    assert!(info.vocab_size > 0, "vocabulary size 0 accepted");
    assert!(info.kv_heads > 0 && info.head_dim > 0, "empty KV cache dimensions accepted: {info:?}");
    assert!(info.context_limit > 0, "context limit 0 accepted");
    assert!(info.eos_ids.iter().all(|&e| (e as usize) < info.vocab_size));
    assert_eq!(info.layers, layout.layers.len());
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = check(&mut Unstructured::new(data));
});
