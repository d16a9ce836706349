//! Loading ONNX Runtime. `ort` allows one library and one environment per process, so both live in
//! a process-wide cell that is filled on first success and never replaced. A failed attempt leaves
//! the cell empty so that the caller can retry with another path.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::error::{Error, Result};

/// Where `scripts/setup.sh` places the library in a source checkout: the last place looked at.
pub const PROJECT_LOCAL_ORT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.deps/onnxruntime/libonnxruntime.so");

/// Environment variable consulted when no explicit path is given.
pub const ORT_PATH_ENV: &str = "ORT_DYLIB_PATH";

struct Runtime {
    path: PathBuf,
    env: ort::environment::Environment,
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
static INIT_LOCK: Mutex<()> = Mutex::new(());

/// The library path that [`init`] would use: `explicit`, else `$ORT_DYLIB_PATH`, else a
/// `libonnxruntime.so` beside the file specdec itself was loaded from (an installed or unpacked
/// package), else [`PROJECT_LOCAL_ORT`] (a source checkout after `scripts/setup.sh`).
pub fn resolve_library_path(explicit: Option<&Path>) -> PathBuf {
    resolve(explicit, false)
}

/// As [`resolve_library_path`]; for a process whose first model asks for CUDA, the checkout's
/// GPU build ([`crate::cuda::PROJECT_LOCAL_ORT_GPU`], from `scripts/setup-gpu.sh`) comes before
/// the CPU one when it is there.
fn resolve(explicit: Option<&Path>, want_cuda: bool) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    match std::env::var_os(ORT_PATH_ENV) {
        Some(p) if !p.is_empty() => return PathBuf::from(p),
        _ => {}
    }
    if let Some(beside) = own_directory().map(|d| d.join("libonnxruntime.so")).filter(|p| p.exists()) {
        return beside;
    }
    if want_cuda && Path::new(crate::cuda::PROJECT_LOCAL_ORT_GPU).exists() {
        return PathBuf::from(crate::cuda::PROJECT_LOCAL_ORT_GPU);
    }
    PathBuf::from(PROJECT_LOCAL_ORT)
}

/// The path ONNX Runtime was loaded from, if it has been loaded in this process.
pub fn loaded_path() -> Option<&'static Path> {
    RUNTIME.get().map(|rt| rt.path.as_path())
}

/// Folder of the binary or shared library this code is part of.
fn own_directory() -> Option<PathBuf> {
    // SAFETY: dladdr only reads the loader's tables for an address inside this object; the
    // returned name is a NUL-terminated string owned by the loader.
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(own_directory as *const libc::c_void, &mut info) == 0 || info.dli_fname.is_null() {
            return None;
        }
        let file = std::ffi::CStr::from_ptr(info.dli_fname).to_str().ok()?;
        std::fs::canonicalize(file).ok()?.parent().map(Path::to_path_buf)
    }
}

/// Load ONNX Runtime once for the process. Later calls return the loaded library's path; asking
/// for a different explicit path after a successful load is an error rather than a silent no-op.
pub fn init(explicit: Option<&Path>) -> Result<&'static Path> {
    init_for(explicit, false)
}

fn init_for(explicit: Option<&Path>, want_cuda: bool) -> Result<&'static Path> {
    if let Some(rt) = RUNTIME.get() {
        return check_same(rt, explicit);
    }
    let _guard = INIT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(rt) = RUNTIME.get() {
        return check_same(rt, explicit);
    }
    // A bare relative name would make dlopen search the system paths instead of the folder
    // the caller meant.
    let path = resolve(explicit, want_cuda);
    let path = std::path::absolute(&path).unwrap_or(path);
    let load_error = |reason: String| Error::RuntimeLoad { path: path.clone(), reason };
    if !path.exists() {
        let hint = if explicit.is_none() && std::env::var_os(ORT_PATH_ENV).is_none() {
            " (set ORT_DYLIB_PATH or pass the library's path; in a source checkout, run scripts/setup.sh)"
        } else {
            ""
        };
        return Err(load_error(format!("no such file{hint}")));
    }
    let builder = ort::init_from(&path).map_err(|e| {
        // The loader's own text ("invalid ELF header", a missing dependency) sits in the
        // libloading error's source, which ort's error does not chain.
        load_error(match &e {
            ort::LoadDynamicError::Dlopen { error, .. } => error_chain(error),
            other => error_chain(other),
        })
    })?;
    // One intra-op pool for every session that does not ask for a thread count of its own: a
    // target and its draft then take turns on the same threads instead of two pools fighting
    // over the cores.
    let pool = ort::environment::GlobalThreadPoolOptions::default()
        .with_intra_threads(0)
        .and_then(|p| p.with_spin_control(true))
        .map_err(|e| load_error(e.to_string()))?;
    // ONNX Runtime's messages go through specdec's logger (the host's callback or plain stderr)
    // at specdec's threshold, instead of its own coloured lines on stderr.
    crate::logging::on_ort_level(apply_log_level);
    let env = builder
        .with_name("specdec")
        .with_telemetry(false)
        .with_global_thread_pool(pool)
        .with_logger(crate::logging::ort_logger())
        .build()
        .map_err(|e| load_error(e.to_string()))?;
    let rt = RUNTIME.get_or_init(|| Runtime { path, env });
    // A threshold set while the environment was being built is applied here; later ones by the hook.
    apply_log_level(crate::logging::ort_level());
    crate::logging::info(format!("ONNX Runtime loaded from {}", rt.path.display()));
    Ok(&rt.path)
}

/// Pass a log threshold on to ONNX Runtime, if it is loaded.
fn apply_log_level(level: crate::logging::LogLevel) {
    if let Some(rt) = RUNTIME.get() {
        rt.env.set_log_level(crate::logging::to_ort(level));
    }
}

/// The process's ONNX Runtime environment, loading the library from the default location if needed
/// (for a CUDA model the checkout's GPU build, when scripts/setup-gpu.sh fetched it).
pub(crate) fn environment_for(want_cuda: bool) -> Result<&'static ort::environment::Environment> {
    init_for(None, want_cuda)?;
    Ok(&RUNTIME.get().expect("initialised above").env)
}

fn check_same(rt: &'static Runtime, explicit: Option<&Path>) -> Result<&'static Path> {
    match explicit {
        Some(p) if !same_file(p, &rt.path) => Err(Error::RuntimeLoad {
            path: p.to_path_buf(),
            reason: format!("ONNX Runtime is already loaded from {} in this process", rt.path.display()),
        }),
        _ => Ok(&rt.path),
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The message with every `source()` below it: the loader's own reason is the useful part.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let s_msg = s.to_string();
        if !msg.contains(&s_msg) {
            msg.push_str(": ");
            msg.push_str(&s_msg);
        }
        cur = s.source();
    }
    msg
}
