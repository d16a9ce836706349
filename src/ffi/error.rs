//! Status codes, error objects and the panic boundary.

use std::cell::Cell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

use crate::Error;

/// Result of every fallible call. Values start at 7000 so they are never mistaken for errno.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum specdec_status {
    Ok = 0,
    /// A required pointer argument was NULL.
    NullParameter = 7000,
    /// A value is out of its documented range.
    InvalidArgument = 7001,
    /// ONNX Runtime could not be loaded.
    RuntimeLoad = 7002,
    /// A file or folder could not be read.
    Io = 7003,
    /// The file is not a loadable ONNX model.
    InvalidModel = 7004,
    /// The model is not a decoder layout specdec can drive.
    UnsupportedLayout = 7005,
    /// Draft and target vocabularies differ.
    VocabMismatch = 7006,
    /// A token id is not below the vocabulary size.
    TokenOutOfRange = 7007,
    /// The sequence would exceed the model's context length.
    ContextLimit = 7008,
    /// Tokenizer loading, encoding or decoding failed.
    Tokenizer = 7009,
    /// Generation was cancelled.
    Cancelled = 7010,
    /// ONNX Runtime failed while running a model.
    Inference = 7011,
    /// Not available in this build (for example the CUDA execution provider).
    Unavailable = 7012,
    /// The caller's buffer is too small; the required size was stored.
    BufferTooSmall = 7013,
    /// A string argument is not valid UTF-8.
    InvalidUtf8 = 7014,
    /// The generator is in use by another call (for example from inside its own callback, where
    /// only specdec_generator_cancel is allowed).
    Busy = 7015,
    /// The request's KV caches would exceed the budget set with specdec_gen_config_set_kv_memory_limit.
    MemoryBudget = 7016,
    /// A host callback (a draft callback) reported failure.
    Callback = 7020,
    /// An internal error (a bug in specdec) was caught at the ABI boundary.
    Panic = 7099,
}

/// An error: a status code and a message. Created by failing calls, freed by the caller with
/// specdec_error_free.
pub struct specdec_error {
    code: specdec_status,
    message: CString,
}

/// What the FFI layer reports: the engine's errors plus its own (NULL, UTF-8, buffer size).
#[derive(Debug)]
pub struct FfiError {
    pub(crate) code: specdec_status,
    pub(crate) message: String,
}

pub type FfiResult<T> = Result<T, FfiError>;

impl FfiError {
    pub(crate) fn null(name: &str) -> Self {
        FfiError { code: specdec_status::NullParameter, message: format!("`{name}` must not be NULL") }
    }
    pub(crate) fn utf8(name: &str) -> Self {
        FfiError { code: specdec_status::InvalidUtf8, message: format!("`{name}` is not valid UTF-8") }
    }
    pub(crate) fn too_small(what: &str, needed: usize, capacity: usize) -> Self {
        FfiError { code: specdec_status::BufferTooSmall, message: format!("{what} needs {needed}, capacity is {capacity}") }
    }
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        FfiError { code: specdec_status::InvalidArgument, message: msg.into() }
    }
}

impl From<Error> for FfiError {
    fn from(e: Error) -> Self {
        use specdec_status as S;
        let code = match &e {
            Error::InvalidArgument(_) => S::InvalidArgument,
            Error::RuntimeLoad { .. } => S::RuntimeLoad,
            Error::Io { .. } => S::Io,
            Error::InvalidModel { .. } => S::InvalidModel,
            Error::UnsupportedLayout { .. } => S::UnsupportedLayout,
            Error::VocabMismatch(_) => S::VocabMismatch,
            Error::TokenOutOfRange { .. } => S::TokenOutOfRange,
            Error::ContextLimit { .. } | Error::ContextRoom { .. } => S::ContextLimit,
            Error::Tokenizer(_) => S::Tokenizer,
            Error::Cancelled => S::Cancelled,
            Error::Inference(_) => S::Inference,
            Error::Unavailable(_) => S::Unavailable,
            Error::Busy(_) => S::Busy,
            Error::MemoryBudget { .. } => S::MemoryBudget,
            Error::Callback(_) => S::Callback,
        };
        debug_assert_eq!(code as u32, e.code());
        FfiError { code, message: e.to_string() }
    }
}

thread_local! {
    static IN_FFI: Cell<bool> = const { Cell::new(false) };
}

/// Keep the default hook's message and backtrace off the host's stderr for panics caught at the
/// boundary; panics elsewhere in the process still reach the previous hook.
fn install_quiet_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_FFI.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// Run `f` behind the panic boundary and report its outcome through `err`.
pub(crate) fn guard(err: *mut *mut specdec_error, f: impl FnOnce() -> FfiResult<()>) -> specdec_status {
    install_quiet_hook();
    let was = IN_FFI.with(|c| c.replace(true));
    let outcome = catch_unwind(AssertUnwindSafe(f));
    IN_FFI.with(|c| c.set(was));
    let failure = match outcome {
        Ok(Ok(())) => return specdec_status::Ok,
        Ok(Err(e)) => e,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            FfiError { code: specdec_status::Panic, message: format!("internal error in specdec: {what}") }
        }
    };
    let code = failure.code;
    if !err.is_null() {
        let message = CString::new(failure.message.replace('\0', " ")).unwrap_or_default();
        // SAFETY: the caller passed a writable `specdec_error **` (documented), checked non-NULL.
        unsafe { *err = Box::into_raw(Box::new(specdec_error { code, message })) };
    }
    code
}

/// Run `f` behind the panic boundary where there is no way to report an error (free functions,
/// getters); a panic yields `fallback`.
pub(crate) fn guard_value<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    install_quiet_hook();
    let was = IN_FFI.with(|c| c.replace(true));
    let out = catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback);
    IN_FFI.with(|c| c.set(was));
    out
}

/// The status code of `err` (SPECDEC_STATUS_NULL_PARAMETER for NULL).
#[no_mangle]
pub unsafe extern "C" fn specdec_error_code(err: *const specdec_error) -> specdec_status {
    err.as_ref().map_or(specdec_status::NullParameter, |e| e.code)
}

/// The message of `err`, NUL-terminated UTF-8, owned by `err` (valid until specdec_error_free).
/// Returns "" for NULL.
#[no_mangle]
pub unsafe extern "C" fn specdec_error_message(err: *const specdec_error) -> *const c_char {
    err.as_ref().map_or(c"".as_ptr(), |e| e.message.as_ptr())
}

/// Free an error. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn specdec_error_free(err: *mut specdec_error) {
    super::free_boxed(err);
}

/// A static, NUL-terminated name for a status code ("SPECDEC_STATUS_OK", ...), or
/// "SPECDEC_STATUS_UNKNOWN".
#[no_mangle]
pub extern "C" fn specdec_status_name(status: u32) -> *const c_char {
    use specdec_status as S;
    let all = [
        (S::Ok, c"SPECDEC_STATUS_OK"),
        (S::NullParameter, c"SPECDEC_STATUS_NULL_PARAMETER"),
        (S::InvalidArgument, c"SPECDEC_STATUS_INVALID_ARGUMENT"),
        (S::RuntimeLoad, c"SPECDEC_STATUS_RUNTIME_LOAD"),
        (S::Io, c"SPECDEC_STATUS_IO"),
        (S::InvalidModel, c"SPECDEC_STATUS_INVALID_MODEL"),
        (S::UnsupportedLayout, c"SPECDEC_STATUS_UNSUPPORTED_LAYOUT"),
        (S::VocabMismatch, c"SPECDEC_STATUS_VOCAB_MISMATCH"),
        (S::TokenOutOfRange, c"SPECDEC_STATUS_TOKEN_OUT_OF_RANGE"),
        (S::ContextLimit, c"SPECDEC_STATUS_CONTEXT_LIMIT"),
        (S::Tokenizer, c"SPECDEC_STATUS_TOKENIZER"),
        (S::Cancelled, c"SPECDEC_STATUS_CANCELLED"),
        (S::Inference, c"SPECDEC_STATUS_INFERENCE"),
        (S::Unavailable, c"SPECDEC_STATUS_UNAVAILABLE"),
        (S::BufferTooSmall, c"SPECDEC_STATUS_BUFFER_TOO_SMALL"),
        (S::InvalidUtf8, c"SPECDEC_STATUS_INVALID_UTF8"),
        (S::Busy, c"SPECDEC_STATUS_BUSY"),
        (S::MemoryBudget, c"SPECDEC_STATUS_MEMORY_BUDGET"),
        (S::Callback, c"SPECDEC_STATUS_CALLBACK"),
        (S::Panic, c"SPECDEC_STATUS_PANIC"),
    ];
    all.iter().find(|(s, _)| *s as u32 == status).map_or(c"SPECDEC_STATUS_UNKNOWN".as_ptr(), |(_, n)| n.as_ptr())
}
