#![allow(dead_code)]
//! Shared by the integration tests: fixture paths and model loading.

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
