//! specdec: exact speculative decoding (Leviathan, Kalman, Matias, arXiv 2211.17192) over ONNX
//! decoder exports, run through ONNX Runtime.
//!
//! ```no_run
//! use std::sync::Arc;
//! use specdec::{GenerationConfig, Generator, Model, ModelOptions, Tokenizer};
//! # fn main() -> specdec::Result<()> {
//! let target = Arc::new(Model::load("models/demo/target", &ModelOptions::default())?);
//! let draft = Arc::new(Model::load("models/demo/draft", &ModelOptions::default())?);
//! let tok = Tokenizer::load("models/demo/target")?;
//! let mut generator = Generator::new(target, Some(draft), GenerationConfig::default())?;
//! generator.append_tokens(&tok.encode("def fib(n):")?)?;
//! generator.generate(|_new| true)?;
//! println!("{}", tok.decode(generator.tokens())?);
//! # Ok(()) }
//! ```

pub mod acceptance;
pub mod cuda;
pub mod drafter;
pub mod error;
pub mod ffi;
pub mod generator;
pub mod kv_cache;
pub mod layout;
pub mod model;
pub mod policy;
pub mod runtime;
pub mod sampling;
pub mod tokenizer;

pub use drafter::{DraftSource, Drafter, NGramConfig};
pub use error::{Error, Result};
pub use generator::{FinishReason, GenerationConfig, Generator, Stats, MAX_GAMMA};
pub use kv_cache::KvCopyStats;
pub use model::{Device, Model, ModelInfo, ModelOptions};
pub use policy::DraftPolicy;
pub use sampling::SamplingConfig;
pub use tokenizer::{StreamDecoder, Tokenizer};
