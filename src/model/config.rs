//! What a model folder says about the model besides its graph, combined with what the graph
//! states. Three layouts are read as their tools emit them:
//! - Hugging Face Optimum: `model.onnx`, `config.json`, `generation_config.json`, `tokenizer.json`;
//! - onnxruntime-genai's model builder: `genai_config.json` (its `model` section says what
//!   config.json would, its `decoder` section names the graph file and its inputs and outputs),
//!   `model.onnx` with external data, `tokenizer.json`; no config.json;
//! - onnx-community / transformers.js: config files at the root, graphs under `onnx/`, one per
//!   variant (`model.onnx`, `model_fp16.onnx`, `model_q4.onnx`, ...).

use std::path::{Path, PathBuf};

use super::layout::{self, Layout, Names, TensorSpec};
use super::{ContextLimitSource, ModelInfo};
use crate::error::{Error, Result};

/// Context length assumed when neither config.json nor the export states one (with a warning).
pub const DEFAULT_CONTEXT_LIMIT: usize = 2048;
/// Largest vocabulary and KV head count / head size believed; beyond them the metadata is wrong.
const MAX_VOCAB: usize = 1 << 24;
const MAX_KV_DIM: usize = 1 << 16;

/// The JSON files beside a model, each `None` when absent.
pub(super) struct FolderConfig {
    /// config.json, completed from genai_config.json's `model` section where config.json is
    /// silent (or absent, as in builder exports).
    pub config: Option<serde_json::Value>,
    pub generation: Option<serde_json::Value>,
    /// genai_config.json as found.
    pub genai: Option<serde_json::Value>,
    pub tokenizer_fingerprint: Option<u64>,
}

impl FolderConfig {
    pub(super) fn read(folder: &Path) -> Result<FolderConfig> {
        let genai = read_json(&folder.join("genai_config.json"))?;
        let mut config = read_json(&folder.join("config.json"))?;
        if let Some(from_genai) = genai.as_ref().and_then(config_from_genai) {
            config = Some(merge_missing(config.unwrap_or_else(|| serde_json::json!({})), from_genai));
        }
        let generation = read_json(&folder.join("generation_config.json"))?;
        // Only a fingerprint is taken here; a broken tokenizer.json is reported when it is loaded.
        let tokenizer_fingerprint = read_json(&folder.join("tokenizer.json")).ok().flatten().map(|t| vocabulary_fingerprint(&t));
        Ok(FolderConfig { config, generation, genai, tokenizer_fingerprint })
    }

    /// The vocabulary config.json (or genai_config.json) states, before the graph is opened.
    pub(super) fn vocab_hint(&self) -> Option<usize> {
        json_usize(self.config.as_ref(), &["vocab_size"])
    }

    /// The input and output names: genai_config.json's where it gives them, else Optimum's.
    pub(super) fn names(&self) -> Names {
        let mut names = Names::default();
        let Some(decoder) = self.genai.as_ref().and_then(|g| g.pointer("/model/decoder")) else { return names };
        let text = |section: &str, key: &str| decoder.get(section)?.get(key)?.as_str().map(str::to_string);
        let slots = [
            (&mut names.input_ids, "inputs", "input_ids"),
            (&mut names.attention_mask, "inputs", "attention_mask"),
            (&mut names.position_ids, "inputs", "position_ids"),
            (&mut names.past_key, "inputs", "past_key_names"),
            (&mut names.past_value, "inputs", "past_value_names"),
            (&mut names.logits, "outputs", "logits"),
            (&mut names.present_key, "outputs", "present_key_names"),
            (&mut names.present_value, "outputs", "present_value_names"),
        ];
        for (slot, section, key) in slots {
            if let Some(name) = text(section, key) {
                *slot = name;
            }
        }
        names
    }

    /// Whether the export asks for one KV buffer shared by past and present
    /// (genai_config.json's `search.past_present_share_buffer`).
    pub(super) fn shares_past_and_present(&self) -> bool {
        self.genai.as_ref().and_then(|g| g.pointer("/search/past_present_share_buffer")).and_then(|v| v.as_bool()) == Some(true)
    }

    /// The contents of config.json and generation_config.json given as text (a model loaded
    /// from memory).
    pub(super) fn from_json(config: Option<&str>, generation: Option<&str>) -> Result<FolderConfig> {
        let parse = |what: &str, text: Option<&str>| {
            text.map(serde_json::from_str::<serde_json::Value>)
                .transpose()
                .map_err(|e| Error::io(what, format!("invalid JSON: {e}")))
        };
        Ok(FolderConfig {
            config: parse("config.json", config)?,
            generation: parse("generation_config.json", generation)?,
            genai: None,
            tokenizer_fingerprint: None,
        })
    }

    /// The model's facts: the graph's where it states them, else the folder's; a folder that
    /// contradicts the graph is refused.
    pub(super) fn info(&self, layout: &Layout) -> Result<ModelInfo, String> {
        check_agrees(layout, self.config.as_ref())?;
        model_info(layout, self.config.as_ref(), self.generation.as_ref(), self.tokenizer_fingerprint)
    }
}

/// What genai_config.json's `model` section says, in config.json's words.
fn config_from_genai(genai: &serde_json::Value) -> Option<serde_json::Value> {
    let model = genai.get("model")?;
    let decoder = model.get("decoder");
    let mut out = serde_json::Map::new();
    let mut copy = |from: Option<&serde_json::Value>, key: &str, to: &str| {
        if let Some(v) = from.and_then(|f| f.get(key)) {
            out.insert(to.to_string(), v.clone());
        }
    };
    copy(Some(model), "vocab_size", "vocab_size");
    copy(Some(model), "context_length", "max_position_embeddings");
    copy(Some(model), "eos_token_id", "eos_token_id");
    copy(Some(model), "bos_token_id", "bos_token_id");
    copy(Some(model), "pad_token_id", "pad_token_id");
    copy(Some(model), "type", "model_type");
    copy(decoder, "head_size", "head_dim");
    copy(decoder, "hidden_size", "hidden_size");
    copy(decoder, "num_attention_heads", "num_attention_heads");
    copy(decoder, "num_key_value_heads", "num_key_value_heads");
    copy(decoder, "num_hidden_layers", "num_hidden_layers");
    Some(serde_json::Value::Object(out))
}

/// `base` with the keys of `extra` it lacks.
fn merge_missing(mut base: serde_json::Value, extra: serde_json::Value) -> serde_json::Value {
    if let (Some(b), serde_json::Value::Object(e)) = (base.as_object_mut(), extra) {
        for (k, v) in e {
            b.entry(k).or_insert(v);
        }
    }
    base
}

/// Refuse a folder whose stated KV head count, head size or layer count differs from what the
/// graph itself says: one of them is not this model's.
fn check_agrees(layout: &Layout, config: Option<&serde_json::Value>) -> Result<(), String> {
    let stated = [
        ("KV head count", layout.kv_heads, json_usize(config, &["num_key_value_heads"])),
        ("head size", layout.head_dim, json_usize(config, &["head_dim"])),
        ("layer count", Some(layout.layers.len()), json_usize(config, &["num_hidden_layers", "n_layer"])),
    ];
    for (what, graph, folder) in stated {
        if let (Some(g), Some(f)) = (graph, folder) {
            if g != f {
                return Err(format!("the graph has {what} {g} but the folder's config says {f}"));
            }
        }
    }
    Ok(())
}

/// The .onnx file and the folder holding its config files. A folder holds `model.onnx`, or the
/// file genai_config.json names, or (onnx-community) graphs under `onnx/`, of which `variant`
/// chooses `model_<variant>.onnx` (`model.onnx` for "" or "default"); without a variant there
/// must be exactly one.
pub(super) fn locate(path: &Path, variant: Option<&str>) -> Result<(PathBuf, PathBuf)> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        let genai_file = read_json(&path.join("genai_config.json"))?
            .and_then(|g| g.pointer("/model/decoder/filename").and_then(|f| f.as_str()).map(str::to_string));
        let graphs = if path.join("onnx").is_dir() { path.join("onnx") } else { path.to_path_buf() };
        let onnx = match (variant, genai_file) {
            (Some(v), _) => graphs.join(variant_file(v)),
            (None, Some(file)) => path.join(file),
            (None, None) if graphs.join("model.onnx").is_file() && onnx_files(&graphs).len() == 1 => graphs.join("model.onnx"),
            (None, None) if graphs == path => path.join("model.onnx"),
            (None, None) => match onnx_files(&graphs).as_slice() {
                [one] => graphs.join(one),
                [] => return Err(Error::io(&graphs, "holds no .onnx file")),
                several => {
                    return Err(Error::invalid(format!(
                        "{} holds several variants ({}); choose one (CLI --variant, ModelOptions::variant, \
                         specdec_model_options_set_variant)",
                        graphs.display(),
                        several.iter().map(|f| variant_name(f)).collect::<Vec<_>>().join(", ")
                    )))
                }
            },
        };
        if !onnx.is_file() {
            let why = match variant {
                Some(v) => format!(
                    "no variant `{v}` ({} missing; variants here: {})",
                    onnx.file_name().unwrap_or_default().to_string_lossy(),
                    onnx_files(&graphs).iter().map(|f| variant_name(f)).collect::<Vec<_>>().join(", ")
                ),
                None => format!("folder has no {}", onnx.file_name().unwrap_or_default().to_string_lossy()),
            };
            return Err(Error::io(path, why));
        }
        Ok((onnx, path.to_path_buf()))
    } else if variant.is_some() {
        Err(Error::invalid(format!("a variant chooses a graph inside a model folder; {} is a file", path.display())))
    } else if !meta.is_file() {
        // A device or a FIFO: reading it may never end.
        Err(Error::io(path, "not a regular file or folder"))
    } else {
        let folder = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok((path.to_path_buf(), if folder.as_os_str().is_empty() { PathBuf::from(".") } else { folder }))
    }
}

/// The graph file of a variant: `model_<variant>.onnx`, or `model.onnx` for "" and "default".
fn variant_file(variant: &str) -> String {
    match variant {
        "" | "default" => "model.onnx".into(),
        v => format!("model_{v}.onnx"),
    }
}

/// The variant a graph file is (`model_q4.onnx` -> `q4`, `model.onnx` -> `default`).
fn variant_name(file: &str) -> String {
    let stem = file.strip_suffix(".onnx").unwrap_or(file);
    match stem.strip_prefix("model_") {
        Some(v) => v.to_string(),
        None if stem == "model" => "default".to_string(),
        None => stem.to_string(),
    }
}

/// The .onnx files in a folder, sorted.
fn onnx_files(folder: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(folder)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    files.retain(|f| f.ends_with(".onnx"));
    files.sort();
    files
}

fn read_json(path: &Path) -> Result<Option<serde_json::Value>> {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => return Err(Error::io(path, "not a regular file")),
        _ => {}
    }
    match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| Error::io(path, format!("invalid JSON: {e}"))),
    }
}

fn json_usize(v: Option<&serde_json::Value>, keys: &[&str]) -> Option<usize> {
    let v = v?;
    keys.iter().find_map(|k| v.get(*k).and_then(|x| x.as_u64())).map(|x| x as usize)
}

/// Ids as found: wider than u32 is kept so that the vocabulary check sees it instead of a
/// truncated value.
fn json_ids(v: Option<&serde_json::Value>, key: &str) -> Option<Vec<u64>> {
    match v?.get(key)? {
        serde_json::Value::Number(n) => n.as_u64().map(|x| vec![x]),
        serde_json::Value::Array(a) => Some(a.iter().filter_map(|x| x.as_u64()).collect()),
        _ => None,
    }
}

/// FNV-1a over the canonical JSON of the token→id map and the added tokens (serde_json keeps
/// object keys sorted, so equal vocabularies hash equally).
fn vocabulary_fingerprint(tokenizer: &serde_json::Value) -> u64 {
    let vocab = tokenizer.pointer("/model/vocab").map(|v| v.to_string()).unwrap_or_default();
    let added = tokenizer.get("added_tokens").map(|v| v.to_string()).unwrap_or_default();
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in vocab.bytes().chain([0]).chain(added.bytes()) {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// What [`Model::load`] derives from a session's input/output metadata and the folder's
/// config.json and generation_config.json (bytes; `None` for an absent file), without ONNX
/// Runtime. For the fuzzer; errors are the load path's `UnsupportedLayout` reasons.
#[doc(hidden)]
pub fn info_from_metadata(
    inputs: &[TensorSpec],
    outputs: &[TensorSpec],
    config: Option<&[u8]>,
    generation: Option<&[u8]>,
) -> Result<(Layout, ModelInfo), String> {
    let json = |b: Option<&[u8]>| {
        b.map(serde_json::from_slice::<serde_json::Value>).transpose().map_err(|e| format!("invalid JSON: {e}"))
    };
    let (config, generation) = (json(config)?, json(generation)?);
    let layout = layout::parse(inputs, outputs)?;
    let info = model_info(&layout, config.as_ref(), generation.as_ref(), None)?;
    Ok((layout, info))
}

/// Combine what the graph states with config.json; the graph wins where both speak.
fn model_info(
    layout: &Layout,
    config: Option<&serde_json::Value>,
    generation: Option<&serde_json::Value>,
    tokenizer_fingerprint: Option<u64>,
) -> Result<ModelInfo, String> {
    let vocab_size = match (layout.vocab_size, json_usize(config, &["vocab_size"])) {
        (Some(v), _) | (None, Some(v)) => v,
        (None, None) => {
            return Err("vocabulary size unknown: logits dimension is symbolic and config.json has no vocab_size".into())
        }
    };
    let heads = json_usize(config, &["num_attention_heads", "n_head"]);
    let kv_heads = layout
        .kv_heads
        .or_else(|| json_usize(config, &["num_key_value_heads"]))
        .or(heads)
        .ok_or("KV head count unknown: symbolic in the graph and absent from config.json")?;
    let head_dim = layout
        .head_dim
        .or_else(|| json_usize(config, &["head_dim"]))
        .or_else(|| json_usize(config, &["hidden_size", "n_embd"])?.checked_div(heads?))
        .ok_or("head size unknown: symbolic in the graph and absent from config.json")?;
    let stated = json_usize(config, &["max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length"]);
    let (context_limit, context_limit_source) = match stated {
        Some(n) => (n, ContextLimitSource::Config),
        None => (DEFAULT_CONTEXT_LIMIT, ContextLimitSource::Default),
    };
    // Zero would make every call fail later with a confusing error (or divide by zero); absurdly
    // large values would make the first generation try to allocate it all. Refuse both here.
    for (what, value, max) in [
        ("vocabulary size", vocab_size, MAX_VOCAB),
        ("KV head count", kv_heads, MAX_KV_DIM),
        ("head size", head_dim, MAX_KV_DIM),
        ("context length", context_limit, usize::MAX),
    ] {
        if value == 0 || value > max {
            return Err(format!("implausible {what} {value} (from the graph or config.json)"));
        }
    }
    let eos_ids = json_ids(generation, "eos_token_id").or_else(|| json_ids(config, "eos_token_id")).unwrap_or_default();
    if let Some(&bad) = eos_ids.iter().find(|&&e| e >= vocab_size as u64) {
        return Err(format!("eos_token_id {bad} is outside the vocabulary of {vocab_size}"));
    }
    let eos_ids = eos_ids.into_iter().map(|e| e as u32).collect();
    // Informational only: an id the vocabulary does not have (some configs put the pad id there)
    // is left out rather than refused.
    let single_id = |key: &str| {
        json_ids(generation, key)
            .or_else(|| json_ids(config, key))
            .and_then(|ids| ids.first().copied())
            .filter(|&id| id < vocab_size as u64)
            .map(|id| id as u32)
    };
    let architecture = config.and_then(|c| {
        c.pointer("/architectures/0").and_then(|a| a.as_str()).or_else(|| c.get("model_type").and_then(|t| t.as_str()))
    });
    Ok(ModelInfo {
        vocab_size,
        context_limit,
        context_limit_source,
        eos_ids,
        bos_id: single_id("bos_token_id"),
        pad_id: single_id("pad_token_id"),
        architecture: architecture.map(str::to_string),
        layers: layout.layers.len(),
        kv_heads,
        head_dim,
        tokenizer_fingerprint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layout::{ElemType, TensorSpec};

    fn symbolic_decoder() -> (Vec<TensorSpec>, Vec<TensorSpec>) {
        let t = |name: &str, elem, shape: &[i64]| TensorSpec { name: name.into(), elem, shape: shape.to_vec() };
        let i = vec![
            t("input_ids", ElemType::I64, &[-1, -1]),
            t("past_key_values.0.key", ElemType::F32, &[-1, -1, -1, -1]),
            t("past_key_values.0.value", ElemType::F32, &[-1, -1, -1, -1]),
        ];
        let o = vec![
            t("logits", ElemType::F32, &[-1, -1, -1]),
            t("present.0.key", ElemType::F32, &[-1, -1, -1, -1]),
            t("present.0.value", ElemType::F32, &[-1, -1, -1, -1]),
        ];
        (i, o)
    }

    #[test]
    fn config_values_that_cannot_work_are_refused_at_load() {
        let (i, o) = symbolic_decoder();
        let info = |config: &str, generation: Option<&str>| {
            info_from_metadata(&i, &o, Some(config.as_bytes()), generation.map(str::as_bytes))
        };
        let good = r#"{"vocab_size": 512, "num_attention_heads": 4, "hidden_size": 64, "max_position_embeddings": 128}"#;
        let (_, ok) = info(good, Some(r#"{"eos_token_id": [2, 3]}"#)).unwrap();
        assert_eq!(
            (ok.vocab_size, ok.kv_heads, ok.head_dim, ok.context_limit, ok.eos_ids.clone()),
            (512, 4, 16, 128, vec![2, 3])
        );
        // Found by the layout fuzz target: zero heads divided by zero.
        let e = info(r#"{"vocab_size": 512, "num_attention_heads": 0, "hidden_size": 64}"#, None).unwrap_err();
        assert!(e.contains("head"), "{e}");
        for (config, needle) in [
            (r#"{"vocab_size": 0, "num_attention_heads": 4, "hidden_size": 64}"#, "vocabulary size 0"),
            (r#"{"vocab_size": 512, "num_attention_heads": 128, "hidden_size": 64}"#, "head size 0"),
            (r#"{"vocab_size": 512, "num_attention_heads": 4, "num_key_value_heads": 0, "hidden_size": 64}"#, "KV head count 0"),
            (r#"{"vocab_size": 512, "num_attention_heads": 4, "hidden_size": 64, "n_positions": 0}"#, "context length 0"),
            (r#"{"vocab_size": 1099511627776, "num_attention_heads": 4, "hidden_size": 64}"#, "vocabulary size 1099511627776"),
        ] {
            let e = info(config, None).unwrap_err();
            assert!(e.contains(needle), "{config}: {e}");
        }
        // An EOS id that only fits the vocabulary once truncated to 32 bits.
        let e = info(good, Some(r#"{"eos_token_id": 4294967298}"#)).unwrap_err();
        assert!(e.contains("4294967298"), "{e}");
        assert!(info("{", None).unwrap_err().contains("invalid JSON"));
    }
}
