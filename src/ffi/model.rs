//! Model handles. A model is immutable once loaded and reference-counted: generators keep it
//! alive, so freeing the handle while generators run is safe.

use std::ffi::c_char;
use std::sync::Arc;

use super::*;
use crate::{Device, Model, ModelOptions};

/// Options for specdec_model_load. Defaults: device "cpu", intra-op threads chosen by ONNX Runtime,
/// no CUDA fallback, IoBinding only for CUDA.
pub struct specdec_model_options {
    pub(crate) inner: ModelOptions,
}

/// A loaded decoder model. Read-only: one handle may be used by many generators on many threads
/// at once; its ONNX Runtime calls are serialised internally.
pub struct specdec_model {
    pub(crate) inner: Arc<Model>,
}

/// New model options with the defaults. Free with specdec_model_options_free.
#[no_mangle]
pub extern "C" fn specdec_model_options_new() -> *mut specdec_model_options {
    guard_value(std::ptr::null_mut(), || Box::into_raw(Box::new(specdec_model_options { inner: ModelOptions::default() })))
}

/// Free model options. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn specdec_model_options_free(options: *mut specdec_model_options) {
    free_boxed(options);
}

/// Execution provider: "cpu" (default), "cuda" or "cuda:N". With CUDA the KV cache stays on the GPU.
///
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_INVALID_UTF8, SPECDEC_STATUS_INVALID_ARGUMENT
/// (unknown device). Whether CUDA can be used is found at load time: specdec_model_load fails
/// with SPECDEC_STATUS_UNAVAILABLE and a message naming what is missing (the GPU build of ONNX
/// Runtime, the NVIDIA driver, a CUDA or cuDNN library), never silently running on the CPU,
/// unless specdec_model_options_set_cuda_fallback allowed it.
#[no_mangle]
pub unsafe extern "C" fn specdec_model_options_set_device(
    options: *mut specdec_model_options,
    device: *const c_char,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        let options = handle_mut(options, "options")?;
        options.inner.device = str_arg(device, "device")?.parse::<Device>()?;
        Ok(())
    })
}

/// ONNX Runtime intra-op threads; 0 (default) lets ONNX Runtime choose.
///
/// Errors: SPECDEC_STATUS_NULL_PARAMETER.
#[no_mangle]
pub unsafe extern "C" fn specdec_model_options_set_intra_threads(
    options: *mut specdec_model_options,
    threads: u32,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        handle_mut(options, "options")?.inner.intra_threads = threads as usize;
        Ok(())
    })
}

/// Load a model from a folder (model.onnx, config.json, generation_config.json) or an .onnx file.
/// `options` may be NULL for the defaults. On success `*out` receives a handle to free with
/// specdec_model_free; on failure `*out` is set to NULL.
///
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_INVALID_UTF8, SPECDEC_STATUS_IO (missing
/// path, folder without model.onnx, unreadable JSON), SPECDEC_STATUS_INVALID_MODEL (not ONNX,
/// truncated), SPECDEC_STATUS_UNSUPPORTED_LAYOUT (not a decoder with a KV cache),
/// SPECDEC_STATUS_UNAVAILABLE (cuda asked for where it cannot run; the message names what is
/// missing), SPECDEC_STATUS_RUNTIME_LOAD.
///
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn specdec_model_load(
    path: *const c_char,
    options: *const specdec_model_options,
    out: *mut *mut specdec_model,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        new_handle(out, || {
            let path = str_arg(path, "path")?;
            let defaults = ModelOptions::default();
            let options = options.as_ref().map_or(&defaults, |o| &o.inner);
            Ok(specdec_model { inner: Arc::new(Model::load(path, options)?) })
        })
    })
}

/// Release a model handle. Generators created from it keep the model alive until they are
/// freed. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn specdec_model_free(model: *mut specdec_model) {
    free_boxed(model);
}

/// Vocabulary size of the model (0 for NULL). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn specdec_model_vocab_size(model: *const specdec_model) -> usize {
    model.as_ref().map_or(0, |m| m.inner.info().vocab_size)
}

/// Longest sequence (prompt + generated tokens) the model accepts (0 for NULL). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn specdec_model_context_limit(model: *const specdec_model) -> usize {
    model.as_ref().map_or(0, |m| m.inner.info().context_limit)
}

/// Whether idle ONNX Runtime worker threads spin before sleeping (default true, ONNX Runtime's
/// own default). Turn it off when other work shares the cores between this model's calls.
///
/// Errors: SPECDEC_STATUS_NULL_PARAMETER.
#[no_mangle]
pub unsafe extern "C" fn specdec_model_options_set_spinning(
    options: *mut specdec_model_options,
    spinning: bool,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        handle_mut(options, "options")?.inner.spinning = spinning;
        Ok(())
    })
}

/// ONNX Runtime graph optimization level, 0 (none) to 3 (all; the default).
///
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_INVALID_ARGUMENT (above 3).
#[no_mangle]
pub unsafe extern "C" fn specdec_model_options_set_optimization_level(
    options: *mut specdec_model_options,
    level: u32,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        if level > 3 {
            return Err(FfiError::invalid(format!("graph optimization level must be 0..=3, got {level}")));
        }
        handle_mut(options, "options")?.inner.optimization_level = level as u8;
        Ok(())
    })
}

/// Which graph of a model folder with several to load: `variant` "q4" picks `model_q4.onnx` (in
/// the folder's `onnx/` subfolder for onnx-community layouts), "default" `model.onnx`; NULL (the
/// default) takes the only graph and refuses a folder with several, listing them.
///
/// Errors: SPECDEC_STATUS_NULL_PARAMETER (options), SPECDEC_STATUS_INVALID_UTF8. An unknown variant
/// is reported by specdec_model_load (SPECDEC_STATUS_IO, naming the variants present).
#[no_mangle]
pub unsafe extern "C" fn specdec_model_options_set_variant(
    options: *mut specdec_model_options,
    variant: *const c_char,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        let variant = if variant.is_null() { None } else { Some(str_arg(variant, "variant")?.to_string()) };
        handle_mut(options, "options")?.inner.variant = variant;
        Ok(())
    })
}

/// Whether a model asked to run on CUDA may load on the CPU instead when CUDA cannot be used
/// (default false: such a load fails with SPECDEC_STATUS_UNAVAILABLE). specdec_model_cuda_device
/// tells where a loaded model runs.
///
/// Errors: SPECDEC_STATUS_NULL_PARAMETER.
#[no_mangle]
pub unsafe extern "C" fn specdec_model_options_set_cuda_fallback(
    options: *mut specdec_model_options,
    fallback: bool,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        handle_mut(options, "options")?.inner.cuda_fallback_to_cpu = fallback;
        Ok(())
    })
}

/// Run every call through ONNX Runtime's IoBinding with the KV cache bound to the device's memory
/// and compacted there (always on for CUDA; default false on the CPU, where it runs the CUDA code
/// path for testing and gives the same output).
///
/// Errors: SPECDEC_STATUS_NULL_PARAMETER.
#[no_mangle]
pub unsafe extern "C" fn specdec_model_options_set_io_binding(
    options: *mut specdec_model_options,
    enable: bool,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        handle_mut(options, "options")?.inner.io_binding = enable;
        Ok(())
    })
}

/// The CUDA device the model runs on, or -1 when it runs on the CPU (also after a CUDA fallback)
/// or `model` is NULL. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn specdec_model_cuda_device(model: *const specdec_model) -> i32 {
    guard_value(-1, || match model.as_ref().map(|m| m.inner.device()) {
        Some(Device::Cuda(n)) => n as i32,
        _ => -1,
    })
}
