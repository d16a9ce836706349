//! The C ABI. Every function here only checks and converts its arguments and forwards to the Rust
//! API; none holds engine logic. Conventions (see include/specdec.h):
//! - fallible functions return a `specdec_status` and, when `err` is not NULL and the call fails,
//!   store a `specdec_error` the caller frees: errors are values, never thread-local state, so
//!   they work from Go and from any thread;
//! - every function runs inside a panic boundary; a bug becomes `SPECDEC_STATUS_PANIC`;
//! - handles are opaque; `_free(NULL)` is a no-op.

#![allow(non_camel_case_types)]
#![allow(clippy::missing_safety_doc)]

mod config;
mod drafter;
mod engine;
mod error;
mod generator;
mod logging;
mod model;
mod status;
mod tokenizer;

pub use config::*;
pub use drafter::*;
pub use engine::*;
pub use error::*;
pub use generator::*;
pub use logging::*;
pub use model::*;
pub use status::*;
pub use tokenizer::*;

use std::ffi::{c_char, CStr};

/// Library version (checked against Cargo.toml by a unit test).
pub const SPECDEC_VERSION_MAJOR: u32 = 0;
pub const SPECDEC_VERSION_MINOR: u32 = 2;
pub const SPECDEC_VERSION_PATCH: u32 = 0;

/// ABI version: bumped only on incompatible changes; the shared library's SONAME is
/// libspecdec.so.N, N being this number.
pub const SPECDEC_ABI_VERSION: u32 = 1;

/// Largest draft length (gamma) a generation config accepts.
pub const SPECDEC_MAX_GAMMA: u32 = 64;
const _: () = assert!(SPECDEC_MAX_GAMMA as usize == crate::MAX_GAMMA);

/// Most alternatives specdec_gen_config_set_logprobs accepts per token.
pub const SPECDEC_MAX_LOGPROBS: u32 = 256;
const _: () = assert!(SPECDEC_MAX_LOGPROBS as usize == crate::generator::MAX_LOGPROBS);

static VERSION: &CStr = match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
    Ok(v) => v,
    Err(_) => panic!("version string"),
};

/// The library version as "MAJOR.MINOR.PATCH" (static storage; never free it).
#[no_mangle]
pub extern "C" fn specdec_version() -> *const c_char {
    VERSION.as_ptr()
}

/// The ABI version of the loaded library; compare it with SPECDEC_ABI_VERSION from the header.
#[no_mangle]
pub extern "C" fn specdec_abi_version() -> u32 {
    SPECDEC_ABI_VERSION
}

/// Load ONNX Runtime for the process. `ort_library_path` may be NULL: then `$ORT_DYLIB_PATH`,
/// then `libonnxruntime.so` in the folder libspecdec was loaded from, then the source checkout's
/// `.deps/onnxruntime/libonnxruntime.so` is used. Calling it again
/// succeeds if the same library (or NULL) is named. Optional: loading a model initialises the
/// runtime from the default location.
///
/// Errors: SPECDEC_STATUS_RUNTIME_LOAD (missing, not a library, too old, or another library is
/// already loaded; the message names the path and the loader's reason), SPECDEC_STATUS_INVALID_UTF8.
///
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn specdec_runtime_init(ort_library_path: *const c_char, err: *mut *mut specdec_error) -> specdec_status {
    guard(err, || {
        let path = opt_path(ort_library_path, "ort_library_path")?;
        crate::runtime::init(path.as_deref())?;
        Ok(())
    })
}

/// A NUL-terminated string argument as UTF-8.
pub(crate) unsafe fn str_arg<'a>(p: *const c_char, name: &'static str) -> FfiResult<&'a str> {
    if p.is_null() {
        return Err(FfiError::null(name));
    }
    CStr::from_ptr(p).to_str().map_err(|_| FfiError::utf8(name))
}

pub(crate) unsafe fn opt_path(p: *const c_char, name: &'static str) -> FfiResult<Option<std::path::PathBuf>> {
    if p.is_null() {
        return Ok(None);
    }
    Ok(Some(str_arg(p, name)?.into()))
}

/// A (pointer, length) array argument; NULL is allowed only when the length is 0.
pub(crate) unsafe fn slice_arg<'a, T>(p: *const T, n: usize, name: &'static str) -> FfiResult<&'a [T]> {
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(FfiError::null(name));
    }
    Ok(std::slice::from_raw_parts(p, n))
}

/// The constructors' contract in one place: `*out` is NULL unless `make` succeeds, and then
/// receives the new handle.
pub(crate) unsafe fn new_handle<T>(out: *mut *mut T, make: impl FnOnce() -> FfiResult<T>) -> FfiResult<()> {
    let out = out_arg(out, "out")?;
    *out = std::ptr::null_mut();
    *out = Box::into_raw(Box::new(make()?));
    Ok(())
}

/// Free a handle made by `Box::into_raw`; NULL is a no-op.
pub(crate) unsafe fn free_boxed<T>(p: *mut T) {
    if !p.is_null() {
        guard_value((), || drop(Box::from_raw(p)));
    }
}

pub(crate) unsafe fn handle<'a, T>(p: *const T, name: &'static str) -> FfiResult<&'a T> {
    p.as_ref().ok_or_else(|| FfiError::null(name))
}

pub(crate) unsafe fn handle_mut<'a, T>(p: *mut T, name: &'static str) -> FfiResult<&'a mut T> {
    p.as_mut().ok_or_else(|| FfiError::null(name))
}

pub(crate) unsafe fn out_arg<'a, T>(p: *mut T, name: &'static str) -> FfiResult<&'a mut T> {
    p.as_mut().ok_or_else(|| FfiError::null(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_version_matches_the_crate() {
        let v = format!("{SPECDEC_VERSION_MAJOR}.{SPECDEC_VERSION_MINOR}.{SPECDEC_VERSION_PATCH}");
        assert_eq!(v, env!("CARGO_PKG_VERSION"));
        let s = unsafe { std::ffi::CStr::from_ptr(specdec_version()) };
        assert_eq!(s.to_str().unwrap(), v);
    }
}
