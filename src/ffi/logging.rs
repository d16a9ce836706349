//! Log threshold and log callback: specdec's own messages and ONNX Runtime's.

use std::ffi::{c_char, c_void, CString};
use std::sync::Arc;

use super::*;
use crate::logging::{self, LogLevel, LogSource};

/// Severity of a log message, and the threshold of specdec_set_log_level.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum specdec_log_level {
    Verbose = 0,
    Info = 1,
    Warning = 2,
    Error = 3,
    Fatal = 4,
    /// As a threshold: no message at all.
    Off = 5,
}

/// Receives one log message: its severity, its source ("specdec" or "onnxruntime"; static
/// strings) and the message (NUL-terminated UTF-8, valid only during the call). It may be called
/// from any thread, from several at once (ONNX Runtime logs from its worker threads), and must
/// not unwind (no C++ exceptions, no longjmp). It may call specdec functions, except
/// specdec_set_log_callback (SPECDEC_STATUS_BUSY); messages those calls log on the same thread
/// are dropped rather than delivered recursively.
pub type specdec_log_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, level: specdec_log_level, source: *const c_char, message: *const c_char)>;

struct HostLogger {
    f: unsafe extern "C" fn(*mut c_void, specdec_log_level, *const c_char, *const c_char),
    user_data: *mut c_void,
}

impl HostLogger {
    fn deliver(&self, level: LogLevel, source: LogSource, message: &str) {
        let source = match source {
            LogSource::Specdec => c"specdec",
            LogSource::OnnxRuntime => c"onnxruntime",
        };
        let message = CString::new(message.replace('\0', " ")).unwrap_or_default();
        // SAFETY: the host's function pointer with its own user_data, as documented.
        unsafe { (self.f)(self.user_data, to_c(level), source.as_ptr(), message.as_ptr()) };
    }
}

// SAFETY: the header documents that the callback may run on any thread, several at once; making
// that safe for `user_data` is the host's side of the contract.
unsafe impl Send for HostLogger {}
unsafe impl Sync for HostLogger {}

fn to_c(level: LogLevel) -> specdec_log_level {
    match level {
        LogLevel::Verbose => specdec_log_level::Verbose,
        LogLevel::Info => specdec_log_level::Info,
        LogLevel::Warning => specdec_log_level::Warning,
        LogLevel::Error => specdec_log_level::Error,
        LogLevel::Fatal => specdec_log_level::Fatal,
        LogLevel::Off => specdec_log_level::Off,
    }
}

/// Set the threshold of every message, specdec's own and ONNX Runtime's (a specdec_log_level;
/// SPECDEC_LOG_LEVEL_OFF silences both). Until this is called, specdec's own messages pass from
/// WARNING and ONNX Runtime's from ERROR (its own default, or the level named by $ORT_LOG).
/// Takes effect at once, also for loaded models. Thread-safe; allowed from the log callback.
///
/// Errors: SPECDEC_STATUS_INVALID_ARGUMENT (unknown level).
#[no_mangle]
pub unsafe extern "C" fn specdec_set_log_level(level: u32, err: *mut *mut specdec_error) -> specdec_status {
    guard(err, || {
        let level = LogLevel::from_u32(level).ok_or_else(|| FfiError::invalid(format!("unknown log level {level}")))?;
        logging::set_level(level);
        Ok(())
    })
}

/// The threshold of specdec's own messages (WARNING until specdec_set_log_level is called).
/// Thread-safe.
#[no_mangle]
pub extern "C" fn specdec_get_log_level() -> specdec_log_level {
    guard_value(specdec_log_level::Warning, || to_c(logging::level()))
}

/// Send every message that passes the threshold to `callback` with `user_data` (which must stay
/// valid until the callback is replaced); NULL restores the default, one plain line per message
/// on stderr. Replaces any earlier callback, waiting for calls of it running on other threads to
/// return. Thread-safe.
///
/// Errors: SPECDEC_STATUS_BUSY (called from inside the log callback).
#[no_mangle]
pub unsafe extern "C" fn specdec_set_log_callback(
    callback: specdec_log_fn,
    user_data: *mut c_void,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        let sink = callback.map(|f| {
            let host = HostLogger { f, user_data };
            Arc::new(move |level: LogLevel, source: LogSource, message: &str| host.deliver(level, source, message))
                as logging::LogCallback
        });
        logging::set_callback(sink)?;
        Ok(())
    })
}
