//! One error type for the whole engine, with a stable numeric code per kind so that the C ABI and
//! the CLI can report it without string matching.

use std::path::PathBuf;

/// Everything that can go wrong in specdec. Each variant maps to a stable [`Error::code`].
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A caller-supplied value is out of its documented range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// ONNX Runtime could not be loaded (missing, not a library, or too old).
    #[error("cannot load ONNX Runtime from {path}: {reason}")]
    RuntimeLoad { path: PathBuf, reason: String },
    /// A file or folder could not be read.
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
    /// The file exists but ONNX Runtime cannot open it as a model.
    #[error("{path}: not a loadable ONNX model: {reason}")]
    InvalidModel { path: PathBuf, reason: String },
    /// The model is valid ONNX but not a decoder layout specdec can drive.
    #[error("{path}: unsupported model layout: {reason}")]
    UnsupportedLayout { path: PathBuf, reason: String },
    /// Draft and target disagree on the vocabulary.
    #[error("vocabulary mismatch: {0}")]
    VocabMismatch(String),
    /// A token id is negative or not below the vocabulary size.
    #[error("token id {id} is out of range (vocabulary size {vocab_size})")]
    TokenOutOfRange { id: i64, vocab_size: usize },
    /// The sequence would exceed the model's context length.
    #[error("context limit reached: {needed} tokens needed, the model allows {limit}")]
    ContextLimit { needed: usize, limit: usize },
    /// A prompt leaves less room in the context than the generation asks for
    /// ([`crate::GenerationConfig::reserve_max_new_tokens`]).
    #[error(
        "context limit: after this prompt of {prompt} tokens, {fits} new tokens fit in the context of {limit}, max_new_tokens is {max_new_tokens}"
    )]
    ContextRoom { prompt: usize, fits: usize, max_new_tokens: usize, limit: usize },
    /// Tokenizer loading, encoding or decoding failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Generation was cancelled by the caller.
    #[error("generation cancelled")]
    Cancelled,
    /// ONNX Runtime failed while running a model.
    #[error("ONNX Runtime: {0}")]
    Inference(String),
    /// The requested feature cannot be used here: not part of this build, or what it needs at run
    /// time is missing (for CUDA: the GPU build of ONNX Runtime, the driver, a CUDA or cuDNN
    /// library; the message names it).
    #[error("not available: {0}")]
    Unavailable(String),
    /// The request's KV caches would outgrow the configured memory budget.
    #[error("KV cache memory budget exceeded: this request needs {needed} bytes, the budget is {limit}")]
    MemoryBudget { needed: usize, limit: usize },
    /// The object is in use by another call (for example the log callback replaced from inside
    /// itself).
    #[error("busy: {0}")]
    Busy(String),
    /// A host callback (for example a draft callback) reported failure.
    #[error("host callback failed: {0}")]
    Callback(String),
}

impl Error {
    /// Stable code of this error kind (the C ABI's status values; never renumbered).
    pub fn code(&self) -> u32 {
        match self {
            Error::InvalidArgument(_) => 7001,
            Error::RuntimeLoad { .. } => 7002,
            Error::Io { .. } => 7003,
            Error::InvalidModel { .. } => 7004,
            Error::UnsupportedLayout { .. } => 7005,
            Error::VocabMismatch(_) => 7006,
            Error::TokenOutOfRange { .. } => 7007,
            Error::ContextLimit { .. } | Error::ContextRoom { .. } => 7008,
            Error::Tokenizer(_) => 7009,
            Error::Cancelled => 7010,
            Error::Inference(_) => 7011,
            Error::Unavailable(_) => 7012,
            Error::Busy(_) => 7015,
            Error::MemoryBudget { .. } => 7016,
            Error::Callback(_) => 7020,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, err: impl std::fmt::Display) -> Self {
        Error::Io { path: path.into(), reason: err.to_string() }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }
}

impl From<ort::Error> for Error {
    fn from(e: ort::Error) -> Self {
        Error::Inference(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
