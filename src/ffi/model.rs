//! Model handles. A model is immutable once loaded and reference-counted: generators keep it
//! alive, so freeing the handle while generators run is safe. Loading from a path or from memory,
//! and what a loaded model says about itself.

use std::ffi::{c_char, c_void, CString};
use std::sync::Arc;

use super::*;
use crate::{ContextLimitSource, Device, ElemType, Model, ModelOptions};

/// Options for specdec_model_load. Defaults: device "cpu", intra-op threads chosen by ONNX Runtime,
/// no CUDA fallback, IoBinding only for CUDA.
pub struct specdec_model_options {
    pub(crate) inner: ModelOptions,
}

/// A loaded decoder model. Read-only: one handle may be used by many generators on many threads
/// at once; its ONNX Runtime calls are serialised internally.
pub struct specdec_model {
    pub(crate) inner: Arc<Model>,
    /// NUL-terminated texts the getters hand out.
    architecture: CString,
    device: CString,
}

impl specdec_model {
    fn new(model: Model) -> Self {
        let text = |s: String| CString::new(s.replace('\0', " ")).unwrap_or_default();
        specdec_model {
            architecture: text(model.info().architecture.clone().unwrap_or_default()),
            device: text(model.device().to_string()),
            inner: Arc::new(model),
        }
    }
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

/// ONNX Runtime intra-op threads of a pool of the model's own; 0 (the default) runs the model on
/// the process's shared pool (one thread per core), on which a target and its draft take turns
/// instead of two pools fighting over the cores.
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
            Ok(specdec_model::new(Model::load(path, options)?))
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

/// Reduce logits on the model's device where sampling needs only the best of each row: the argmax
/// (greedy) or the top-k candidates cross to the host instead of whole rows (see
/// `ModelOptions::device_reductions`). Not calling this keeps the default: on for CUDA, off on the
/// CPU (where reading rows in place is free); `true` on the CPU runs the reductions there, with
/// the same tokens, which is how they are tested without a GPU.
///
/// Errors: SPECDEC_STATUS_NULL_PARAMETER.
#[no_mangle]
pub unsafe extern "C" fn specdec_model_options_set_device_reductions(
    options: *mut specdec_model_options,
    enable: bool,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        handle_mut(options, "options")?.inner.device_reductions = Some(enable);
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

/// Where a model's context limit comes from (specdec_model_context_limit_source).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum specdec_context_limit_source {
    /// config.json (max_position_embeddings, n_positions, n_ctx or max_sequence_length).
    Config = 0,
    /// The graph: the rows of a learned position table (GPT-2's), config.json stating none.
    Graph = 1,
    /// specdec_model_options_set_context_limit.
    Options = 2,
    /// Nothing stated it: 2048 is assumed and a warning logged (rotary models have no table to
    /// read it from; set it with specdec_model_options_set_context_limit).
    Default = 3,
}

/// Use `n_tokens` as the context limit whatever config.json and the graph say; 0 (the default)
/// takes config.json's, else the rows of a learned position table in the graph, else 2048 with
/// a warning (see specdec_model_context_limit_source).
///
/// Errors: SPECDEC_STATUS_NULL_PARAMETER.
#[no_mangle]
pub unsafe extern "C" fn specdec_model_options_set_context_limit(
    options: *mut specdec_model_options,
    n_tokens: usize,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        handle_mut(options, "options")?.inner.context_limit = (n_tokens > 0).then_some(n_tokens);
        Ok(())
    })
}

/// Load a single-file model (no external data) from `size` bytes at `data`, with the texts of its
/// config.json and generation_config.json (NUL-terminated UTF-8; NULL when there is none).
/// ONNX Runtime copies what it needs: `data` may be freed when the call returns. Otherwise as
/// specdec_model_load; the model has no tokenizer fingerprint (no vocabulary check beyond the
/// size against a draft).
///
/// Errors: SPECDEC_STATUS_NULL_PARAMETER (data NULL), SPECDEC_STATUS_INVALID_ARGUMENT (size 0),
/// SPECDEC_STATUS_INVALID_UTF8,
/// SPECDEC_STATUS_IO (invalid JSON), SPECDEC_STATUS_INVALID_MODEL, SPECDEC_STATUS_UNSUPPORTED_LAYOUT,
/// SPECDEC_STATUS_UNAVAILABLE, SPECDEC_STATUS_RUNTIME_LOAD. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn specdec_model_load_from_memory(
    data: *const c_void,
    size: usize,
    config_json: *const c_char,
    generation_config_json: *const c_char,
    options: *const specdec_model_options,
    out: *mut *mut specdec_model,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        new_handle(out, || {
            if size == 0 {
                return Err(FfiError::invalid("an empty model buffer"));
            }
            let bytes = slice_arg(data as *const u8, size, "data")?;
            let config = if config_json.is_null() { None } else { Some(str_arg(config_json, "config_json")?) };
            let generation = if generation_config_json.is_null() {
                None
            } else {
                Some(str_arg(generation_config_json, "generation_config_json")?)
            };
            let defaults = ModelOptions::default();
            let options = options.as_ref().map_or(&defaults, |o| &o.inner);
            Ok(specdec_model::new(Model::load_from_memory(bytes, config, generation, options)?))
        })
    })
}

/// Where the context limit of specdec_model_context_limit comes from
/// (SPECDEC_CONTEXT_LIMIT_SOURCE_DEFAULT for NULL). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn specdec_model_context_limit_source(model: *const specdec_model) -> specdec_context_limit_source {
    use specdec_context_limit_source as S;
    guard_value(S::Default, || match model.as_ref().map(|m| m.inner.info().context_limit_source) {
        Some(ContextLimitSource::Config) => S::Config,
        Some(ContextLimitSource::Graph) => S::Graph,
        Some(ContextLimitSource::Options) => S::Options,
        _ => S::Default,
    })
}

/// The model's end-of-sequence ids (generation_config.json, else config.json): `*ids`/`*n_ids`
/// receive them, owned by the model (valid until the handle is freed; `*ids` may be NULL when
/// `*n_ids` is 0). Thread-safe.
///
/// Errors: SPECDEC_STATUS_NULL_PARAMETER.
#[no_mangle]
pub unsafe extern "C" fn specdec_model_eos_ids(
    model: *const specdec_model,
    ids: *mut *const u32,
    n_ids: *mut usize,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        let (ids, n_ids) = (out_arg(ids, "ids")?, out_arg(n_ids, "n_ids")?);
        let eos = &handle(model, "model")?.inner.info().eos_ids;
        *ids = if eos.is_empty() { std::ptr::null() } else { eos.as_ptr() };
        *n_ids = eos.len();
        Ok(())
    })
}

/// The beginning-of-sequence id (bos_token_id of generation_config.json or config.json), or -1
/// when none is stated (or it lies outside the vocabulary) and for NULL. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn specdec_model_bos_id(model: *const specdec_model) -> i64 {
    guard_value(-1, || model.as_ref().and_then(|m| m.inner.info().bos_id).map_or(-1, i64::from))
}

/// The padding id (pad_token_id), or -1 when none is stated (or it lies outside the vocabulary)
/// and for NULL. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn specdec_model_pad_id(model: *const specdec_model) -> i64 {
    guard_value(-1, || model.as_ref().and_then(|m| m.inner.info().pad_id).map_or(-1, i64::from))
}

/// The architecture: config.json's architectures[0] (e.g. "LlamaForCausalLM"), else its
/// model_type; "" when unknown and for NULL. Owned by the model. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn specdec_model_architecture(model: *const specdec_model) -> *const c_char {
    guard_value(c"".as_ptr(), || model.as_ref().map_or(c"".as_ptr(), |m| m.architecture.as_ptr()))
}

/// Decoder layers (0 for NULL). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn specdec_model_layer_count(model: *const specdec_model) -> usize {
    guard_value(0, || model.as_ref().map_or(0, |m| m.inner.info().layers))
}

/// Key/value heads per layer (fewer than the attention heads under grouped-query attention; 0
/// for NULL). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn specdec_model_kv_head_count(model: *const specdec_model) -> usize {
    guard_value(0, || model.as_ref().map_or(0, |m| m.inner.info().kv_heads))
}

/// Size of one attention head (0 for NULL). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn specdec_model_head_size(model: *const specdec_model) -> usize {
    guard_value(0, || model.as_ref().map_or(0, |m| m.inner.info().head_dim))
}

/// Bytes of KV cache one token takes (keys and values of every layer; 0 for NULL). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn specdec_model_kv_bytes_per_token(model: *const specdec_model) -> usize {
    guard_value(0, || model.as_ref().map_or(0, |m| m.inner.kv_bytes_per_token()))
}

/// Element type of the KV cache: "float32", "float16" or "bfloat16" ("" for NULL; static
/// storage). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn specdec_model_kv_dtype(model: *const specdec_model) -> *const c_char {
    guard_value(c"".as_ptr(), || match model.as_ref().map(|m| m.inner.kv_type()) {
        Some(ElemType::F32) => c"float32".as_ptr(),
        Some(ElemType::F16) => c"float16".as_ptr(),
        Some(ElemType::BF16) => c"bfloat16".as_ptr(),
        _ => c"".as_ptr(),
    })
}

/// Where the model runs: "cpu" or "cuda:N" (the CPU after an allowed CUDA fallback; "" for NULL).
/// Owned by the model. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn specdec_model_device(model: *const specdec_model) -> *const c_char {
    guard_value(c"".as_ptr(), || model.as_ref().map_or(c"".as_ptr(), |m| m.device.as_ptr()))
}
