//! Where messages go: specdec's own (a model's context length guessed, a CUDA fallback) and ONNX
//! Runtime's, which reach specdec through the custom logger its environment is created with. One
//! process-wide threshold and one sink: the host's callback, or else one plain line on stderr.
//!
//! Until [`set_level`] is called, specdec's own messages pass from [`LogLevel::Warning`] and ONNX
//! Runtime's from its own default ([`LogLevel::Error`], or `$ORT_LOG`), as before this module
//! existed; [`set_level`] then sets one threshold for both.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use crate::error::{Error, Result};

/// Severity of a message, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Verbose = 0,
    Info = 1,
    Warning = 2,
    Error = 3,
    Fatal = 4,
    /// As a threshold: nothing passes.
    Off = 5,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Verbose => "verbose",
            LogLevel::Info => "info",
            LogLevel::Warning => "warning",
            LogLevel::Error => "error",
            LogLevel::Fatal => "fatal",
            LogLevel::Off => "off",
        }
    }

    pub fn from_u32(v: u32) -> Option<LogLevel> {
        Some(match v {
            0 => LogLevel::Verbose,
            1 => LogLevel::Info,
            2 => LogLevel::Warning,
            3 => LogLevel::Error,
            4 => LogLevel::Fatal,
            5 => LogLevel::Off,
            _ => return None,
        })
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogSource {
    Specdec,
    OnnxRuntime,
}

impl LogSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LogSource::Specdec => "specdec",
            LogSource::OnnxRuntime => "onnxruntime",
        }
    }
}

/// A host's sink for messages. It may be called from any thread, from several at once (ONNX
/// Runtime logs from its worker threads too), and must not panic (a panic is caught and dropped).
pub type LogCallback = Arc<dyn Fn(LogLevel, LogSource, &str) + Send + Sync>;

/// No explicit level yet: specdec's own default and ONNX Runtime's own.
const UNSET: u8 = u8::MAX;
static LEVEL: AtomicU8 = AtomicU8::new(UNSET);
static SINK: RwLock<Option<LogCallback>> = RwLock::new(None);
/// Passes a new threshold on to ONNX Runtime (registered by the runtime module, which depends on
/// this one, not the other way round).
static ORT_LEVEL_HOOK: OnceLock<fn(LogLevel)> = OnceLock::new();

thread_local! {
    /// Set while this thread runs the host's callback: a message logged from inside it is dropped
    /// (no recursion) and replacing the callback from inside it is refused (it would deadlock).
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

/// The threshold of specdec's own messages (and ONNX Runtime's, once [`set_level`] was called).
pub fn level() -> LogLevel {
    match LEVEL.load(Ordering::Relaxed) {
        UNSET => LogLevel::Warning,
        v => LogLevel::from_u32(v as u32).unwrap_or(LogLevel::Warning),
    }
}

/// The threshold ONNX Runtime's messages pass at: [`level`] once set, else ONNX Runtime's default
/// (`$ORT_LOG`: verbose, info, warning, error or fatal; error when unset).
pub(crate) fn ort_level() -> LogLevel {
    match LEVEL.load(Ordering::Relaxed) {
        UNSET => match std::env::var("ORT_LOG").as_deref() {
            Ok("verbose") => LogLevel::Verbose,
            Ok("info") => LogLevel::Info,
            Ok("warning") => LogLevel::Warning,
            Ok("fatal") => LogLevel::Fatal,
            _ => LogLevel::Error,
        },
        _ => level(),
    }
}

/// Set the threshold of every message, specdec's and ONNX Runtime's; [`LogLevel::Off`] silences
/// both. Takes effect at once, also for models already loaded. Allowed from inside the callback.
pub fn set_level(level: LogLevel) {
    LEVEL.store(level as u8, Ordering::Relaxed);
    if let Some(hook) = ORT_LEVEL_HOOK.get() {
        hook(ort_level());
    }
}

/// Have `hook` called with ONNX Runtime's threshold whenever [`set_level`] changes it.
pub(crate) fn on_ort_level(hook: fn(LogLevel)) {
    let _ = ORT_LEVEL_HOOK.set(hook);
}

/// Send messages to `callback` (`None`: back to stderr). Refused with [`Error::Busy`] from inside
/// the callback itself.
pub fn set_callback(callback: Option<LogCallback>) -> Result<()> {
    if IN_CALLBACK.with(Cell::get) {
        return Err(Error::Busy("the log callback cannot be replaced from inside itself".into()));
    }
    *SINK.write().unwrap_or_else(|e| e.into_inner()) = callback;
    Ok(())
}

/// Whether a message of `level` from `source` would be delivered.
pub fn enabled(level: LogLevel, source: LogSource) -> bool {
    let threshold = match source {
        LogSource::Specdec => self::level(),
        LogSource::OnnxRuntime => ort_level(),
    };
    level != LogLevel::Off && level >= threshold
}

/// Deliver a message: to the host's callback, or as one line on stderr.
pub fn log(level: LogLevel, source: LogSource, message: &str) {
    if !enabled(level, source) || IN_CALLBACK.with(Cell::get) {
        return;
    }
    let sink = SINK.read().unwrap_or_else(|e| e.into_inner());
    match sink.as_ref() {
        Some(callback) => {
            IN_CALLBACK.with(|c| c.set(true));
            // A panicking callback must not unwind into ONNX Runtime's C++ frames.
            let _ = catch_unwind(AssertUnwindSafe(|| callback(level, source, message)));
            IN_CALLBACK.with(|c| c.set(false));
        }
        None => eprintln!("{}: {}: {}", source.as_str(), level.as_str(), message.trim_end()),
    }
}

/// specdec's own warning.
pub(crate) fn warn(message: impl AsRef<str>) {
    log(LogLevel::Warning, LogSource::Specdec, message.as_ref());
}

/// specdec's own informational message.
pub(crate) fn info(message: impl AsRef<str>) {
    if enabled(LogLevel::Info, LogSource::Specdec) {
        log(LogLevel::Info, LogSource::Specdec, message.as_ref());
    }
}

/// The logger ONNX Runtime's environment is created with: its messages go where specdec's go.
pub(crate) fn ort_logger() -> ort::logging::LoggerFunction {
    Arc::new(|level: ort::logging::LogLevel, _category: &str, _id: &str, _location: &str, message: &str| {
        use ort::logging::LogLevel as L;
        let level = match level {
            L::Verbose => LogLevel::Verbose,
            L::Info => LogLevel::Info,
            L::Warning => LogLevel::Warning,
            L::Error => LogLevel::Error,
            L::Fatal => LogLevel::Fatal,
        };
        // Called from C++: nothing may unwind out of here.
        let _ = catch_unwind(|| log(level, LogSource::OnnxRuntime, message));
    })
}

/// ONNX Runtime's severity for a threshold (it has no "off": fatal is its quietest).
pub(crate) fn to_ort(level: LogLevel) -> ort::logging::LogLevel {
    use ort::logging::LogLevel as L;
    match level {
        LogLevel::Verbose => L::Verbose,
        LogLevel::Info => L::Info,
        LogLevel::Warning => L::Warning,
        LogLevel::Error => L::Error,
        LogLevel::Fatal | LogLevel::Off => L::Fatal,
    }
}
