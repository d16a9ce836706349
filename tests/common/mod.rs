#![allow(dead_code)]
//! Shared by the integration tests: fixture paths and model loading.

use specdec::DecoderState;
use std::path::PathBuf;
use std::sync::Arc;

use specdec::{Model, ModelOptions, Tokenizer};

pub fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models")
}

/// Fixture targets of different architectures that share the project's tokenizer.
pub const ARCHS: [&str; 3] = ["llama", "qwen2", "gpt2"];

pub fn fixture(name: &str) -> PathBuf {
    models_dir().join("fixtures").join(name)
}

pub fn load(path: impl AsRef<std::path::Path>) -> Arc<Model> {
    specdec::runtime::init(None).expect("ONNX Runtime (run scripts/setup.sh or set ORT_DYLIB_PATH)");
    let options = ModelOptions { intra_threads: 1, ..Default::default() };
    Arc::new(Model::load(path.as_ref(), &options).unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display())))
}

pub fn tokenizer() -> Tokenizer {
    Tokenizer::load(fixture("llama")).unwrap()
}

/// Code prompts in the style of the training corpus, and one that is not code.
pub const PROMPTS: [&str; 4] = [
    "def __init__(self, name, value=None):\n        self.name = name\n",
    "import os\nimport sys\n\n\nclass Config:\n    \"\"\"",
    "    for i in range(len(items)):\n        if items[i] is None:\n            ",
    "The quick brown fox jumps over the lazy dog. 1234567890",
];

/// `new_tokens` tokens after `prompt` with EOS off (so every run has the full length to compare),
/// speculating with `draft` when given; the new tokens and the stats.
pub fn generate_n(
    target: &Arc<Model>,
    draft: Option<&Arc<Model>>,
    prompt: &[u32],
    gamma: usize,
    new_tokens: usize,
    sampling: &specdec::SamplingConfig,
) -> (Vec<u32>, specdec::Stats) {
    let cfg = specdec::GenerationConfig {
        gamma,
        max_new_tokens: new_tokens,
        eos_ids: Some(vec![]),
        sampling: sampling.clone(),
        ..Default::default()
    };
    let mut g = specdec::Generator::new(target.clone(), draft.cloned(), cfg).unwrap();
    g.append_tokens(prompt).unwrap();
    g.generate(|_| true).unwrap();
    (g.tokens()[prompt.len()..].to_vec(), *g.stats())
}

/// Gap between the two largest logits of `model` after `prefix`: how close a divergence was to a tie.
pub fn top2_margin(model: &Arc<Model>, prefix: &[u32]) -> f32 {
    let mut cache = DecoderState::new(model.clone()).unwrap();
    let mut row = Vec::new();
    cache.forward(prefix, 1, &mut row).unwrap();
    row.sort_by(|a, b| b.total_cmp(a));
    row[0] - row[1]
}

/// `got` must equal `want`; a first difference where `reference` (the model `want` came from)
/// has a top-2 logit margin below `near_tie` is reported and returned as that margin, any other
/// difference fails (and with `exact`, any difference fails).
pub fn compare(
    near_tie: f32,
    what: &str,
    reference: &Arc<Model>,
    prompt: &[u32],
    want: &[u32],
    got: &[u32],
    exact: bool,
) -> Option<f32> {
    let i = want.iter().zip(got).position(|(a, b)| a != b)?;
    let prefix = [prompt, &want[..i]].concat();
    let m = top2_margin(reference, &prefix);
    let msg = format!(
        "{what}: first difference at new token {i} ({} vs {}); reference top-2 logit margin there {m:.3e}",
        want[i], got[i]
    );
    assert!(!exact && m < near_tie, "{msg}");
    println!("near-tie divergence, reported: {msg}");
    Some(m)
}
