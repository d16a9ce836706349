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

// Modules in the order data flows through them: a model is loaded (`runtime`, `model`), one
// sequence's state in it is a `decoder` state; each round a `drafter` proposes under a length
// `policy`, the target verifies, `sampling` turns logits into distributions and `acceptance`
// applies the paper's rule; the `generator` runs the rounds, the `engine` runs them for many
// sequences at once in batched calls. `tokenizer` turns text into ids and
// back; `ffi` is the C ABI over all of it.
pub mod acceptance;
pub mod cuda;
pub mod decoder;
pub mod drafter;
pub mod engine;
pub mod error;
pub mod ffi;
pub mod generator;
pub mod logging;
pub mod model;
pub mod policy;
pub mod runtime;
pub mod sampling;
pub mod tokenizer;

/// The decoder layout parser (what a graph's inputs and outputs say), for tools and the fuzzer.
pub use model::layout;

pub use decoder::DecoderState;
pub use drafter::{DraftSource, Drafter, NGramConfig};
pub use engine::{Admission, Engine, EngineOptions, EngineStats, Poll, SeqState};
pub use error::{Error, Result};
pub use generator::{FinishReason, GenerationConfig, Generator, Logprobs, RoundTiming, Stats, TokenLogprob};
pub use model::{ContextLimitSource, Device, ElemType, KvCopyStats, Model, ModelInfo, ModelOptions};
pub use policy::{DraftPolicy, MAX_GAMMA};
pub use sampling::split::set_helper as set_sampling_helper;
pub use sampling::SamplingConfig;
pub use tokenizer::{StreamDecoder, Tokenizer};
