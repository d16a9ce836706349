//! Status codes, error objects and the panic boundary.

use std::cell::Cell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

use super::specdec_status;
use crate::Error;

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
    /// `Error::code` is the engine's one map onto status values; a code without a status (a bug
    /// the unit tests catch) is reported as SPECDEC_STATUS_PANIC rather than a wrong status.
    fn from(e: Error) -> Self {
        match specdec_status::from_code(e.code()) {
            Some(code) => FfiError { code, message: e.to_string() },
            None => FfiError {
                code: specdec_status::Panic,
                message: format!("internal error in specdec: no status for code {}: {e}", e.code()),
            },
        }
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
    specdec_status::from_code(status).map_or(c"SPECDEC_STATUS_UNKNOWN", specdec_status::c_name).as_ptr()
}
