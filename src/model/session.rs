//! ONNX Runtime sessions: options, execution providers, and what a session says about its graph.

use std::path::Path;

use ort::session::builder::SessionBuilder;
use ort::session::Session;
use ort::value::ValueType;

use super::dtype::ElemType;
use super::layout::TensorSpec;
use super::{Device, ModelOptions};
use crate::error::{Error, Result};

/// A session for `onnx` on the options' device: CUDA when asked (or the CPU after an opted-in
/// fallback, with the reason), else the CPU.
/// `vocab_hint` is the vocabulary config.json states, if any (see [`stops_spinning`]).
pub(super) fn open(
    env: &ort::environment::Environment,
    options: &ModelOptions,
    onnx: &Path,
    vocab_hint: Option<usize>,
) -> Result<(Session, Device, Option<String>)> {
    let invalid = |e: &dyn std::fmt::Display| Error::InvalidModel { path: onnx.to_path_buf(), reason: e.to_string() };
    let on_cpu = || -> Result<Session> {
        let mut builder = cpu_session_builder(env, options, vocab_hint).map_err(|e| invalid(&e))?;
        builder.commit_from_file(onnx).map_err(|e| invalid(&e))
    };
    match options.device {
        Device::Cpu => Ok((on_cpu()?, Device::Cpu, None)),
        Device::Cuda(n) => match open_cuda(env, options, n, onnx) {
            Ok(session) => Ok((session, Device::Cuda(n), None)),
            Err(Error::Unavailable(why)) if options.cuda_fallback_to_cpu => Ok((on_cpu()?, Device::Cpu, Some(why))),
            Err(e) => Err(e),
        },
    }
}

/// As [`open`], for a single-file model's bytes; `label` names it in errors.
pub(super) fn open_memory(
    env: &ort::environment::Environment,
    options: &ModelOptions,
    bytes: &[u8],
    label: &Path,
    vocab_hint: Option<usize>,
) -> Result<(Session, Device, Option<String>)> {
    let invalid = |e: &dyn std::fmt::Display| Error::InvalidModel { path: label.to_path_buf(), reason: e.to_string() };
    let commit = |cuda: Option<u32>| -> Result<Session> {
        let mut builder = match cuda {
            Some(_) => session_builder(env, options, options.intra_threads),
            None => cpu_session_builder(env, options, vocab_hint),
        }
        .map_err(|e| invalid(&e))?;
        if let Some(id) = cuda {
            let lib = crate::runtime::loaded_path().map(Path::to_path_buf).unwrap_or_default();
            crate::cuda::prepare(&lib).map_err(|why| Error::Unavailable(format!("cuda:{id}: {why}")))?;
            builder = with_cuda(builder, id)?;
        }
        builder.commit_from_memory(bytes).map_err(|e| invalid(&e))
    };
    match options.device {
        Device::Cpu => Ok((commit(None)?, Device::Cpu, None)),
        Device::Cuda(n) => match commit(Some(n)) {
            Ok(session) => Ok((session, Device::Cuda(n), None)),
            Err(Error::Unavailable(why)) if options.cuda_fallback_to_cpu => Ok((commit(None)?, Device::Cpu, Some(why))),
            Err(e) => Err(e),
        },
    }
}

/// The graph's inputs and outputs as the layout parser reads them.
pub(super) fn specs(outlets: &[ort::value::Outlet]) -> Vec<TensorSpec> {
    outlets.iter().map(spec_of).collect()
}

fn spec_of(o: &ort::value::Outlet) -> TensorSpec {
    let (elem, shape) = match o.dtype() {
        ValueType::Tensor { ty, shape, .. } => (ElemType::of(*ty), shape.iter().copied().collect()),
        _ => (ElemType::Other, Vec::new()),
    };
    TensorSpec { name: o.name().to_string(), elem, shape }
}

/// Whether a CPU model with these options and vocabulary runs on a pool of its own whose threads
/// stop spinning at the end of every run, instead of on the process's shared spinning pool.
///
/// Sampling from a row at least [`crate::sampling::split::SPLIT_MIN`] wide shares its passes with
/// a helper thread, which needs a core between runs. The shared pool's threads spin on every core
/// long after a run, so the helper would wait for a scheduler tick; a pool that stops spinning
/// leaves the cores free. The price is waking the pool's threads at the start of each run (~80 µs
/// measured on a 2-core CPU): nothing beside a large vocabulary's multi-millisecond runs, but 15–20%
/// of a small int4 model's 0.4 ms, which therefore stays on the shared pool.
pub(super) fn stops_spinning(options: &ModelOptions, vocab_hint: Option<usize>) -> bool {
    options.intra_threads == 0
        && options.spinning
        && vocab_hint.is_some_and(|v| v >= crate::sampling::split::SPLIT_MIN)
        && crate::sampling::split::helper_enabled()
}

/// [`session_builder`] for a CPU session, with a pool of its own that stops spinning where
/// [`stops_spinning`] says so.
fn cpu_session_builder(
    env: &ort::environment::Environment,
    options: &ModelOptions,
    vocab_hint: Option<usize>,
) -> Result<SessionBuilder, String> {
    let builder = session_builder(env, options, options.intra_threads)?;
    if !stops_spinning(options, vocab_hint) {
        return Ok(builder);
    }
    let text = |e: &dyn std::fmt::Display| e.to_string();
    // No thread count: ONNX Runtime's default, one per physical core, as the shared pool has.
    let builder = builder.with_independent_thread_pool().map_err(|e| text(&e))?;
    builder.with_config_entry("session.force_spinning_stop", "1").map_err(|e| text(&e))
}

/// A session builder with the options' threads, spinning and optimization level (checked ≤ 3).
pub(super) fn session_builder(
    env: &ort::environment::Environment,
    options: &ModelOptions,
    intra_threads: usize,
) -> Result<SessionBuilder, String> {
    use ort::session::builder::GraphOptimizationLevel as L;
    let level = match options.optimization_level {
        0 => L::Disable,
        1 => L::Level1,
        2 => L::Level2,
        _ => L::Level3,
    };
    let text = |e: &dyn std::fmt::Display| e.to_string();
    let mut builder = Session::builder(env).map_err(|e| text(&e))?.with_optimization_level(level).map_err(|e| text(&e))?;
    // Without a thread count of its own a session runs on the process's shared pool
    // (runtime.rs), whose threads spin; one that must not spin gets a pool of its own.
    if intra_threads > 0 || !options.spinning {
        builder = builder.with_independent_thread_pool().map_err(|e| text(&e))?;
    }
    if intra_threads > 0 {
        builder = builder.with_intra_threads(intra_threads).map_err(|e| text(&e))?;
    }
    if !options.spinning {
        builder = builder.with_intra_op_spinning(false).map_err(|e| text(&e))?;
    }
    Ok(builder)
}

/// Register the CUDA execution provider, failing rather than falling back to CPU.
pub(super) fn with_cuda(builder: SessionBuilder, id: u32) -> Result<SessionBuilder> {
    builder
        .with_execution_providers([ort::ep::CUDA::default().with_device_id(id as i32).build().error_on_failure()])
        .map_err(|e| Error::Unavailable(format!("cuda:{id}: the CUDA execution provider failed to register: {e}")))
}

/// A session for `onnx` on CUDA device `id`: the provider's libraries checked and loaded first, so
/// that a failure names what is missing.
fn open_cuda(env: &ort::environment::Environment, options: &ModelOptions, id: u32, onnx: &Path) -> Result<Session> {
    let lib = crate::runtime::loaded_path().map(Path::to_path_buf).unwrap_or_default();
    crate::cuda::prepare(&lib).map_err(|why| Error::Unavailable(format!("cuda:{id}: {why}")))?;
    let builder = session_builder(env, options, options.intra_threads)
        .map_err(|e| Error::InvalidModel { path: onnx.to_path_buf(), reason: e.to_string() })?;
    let mut builder = with_cuda(builder, id)?;
    builder.commit_from_file(onnx).map_err(|e| {
        let reason = e.to_string();
        let lower = reason.to_ascii_lowercase();
        if ["cuda", "cudnn", "cublas", "gpu", "device"].iter().any(|w| lower.contains(w)) {
            Error::Unavailable(format!("cuda:{id}: the CUDA execution provider failed to start: {reason}"))
        } else {
            Error::InvalidModel { path: onnx.to_path_buf(), reason }
        }
    })
}
