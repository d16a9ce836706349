//! A decoder model: one ONNX Runtime session plus what the engine needs to know about it.
//!
//! The submodules, in the order a load and a call go through them: `config` (the folder's JSON
//! files), `session` (ONNX Runtime session and execution provider), `layout` (what the graph's
//! inputs and outputs say), `dtype` (element types), `cache` (one sequence's KV tensors), `io`
//! (one call's inputs and outputs, the only place that names them), `bind` (the IoBinding path);
//! `graph` reads a context length from the graph when config.json states none.

mod batch;
mod bind;
mod cache;
mod config;
mod dtype;
mod graph;
mod io;
pub mod layout;
mod session;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ort::memory::Allocator;
use ort::session::{Session, SessionInputValue};
use ort::value::{DynTensor, Tensor, TensorRef};

pub use batch::BatchRow;
pub use cache::{KvCache, KvCopyStats};
#[doc(hidden)]
pub use config::info_from_metadata;
pub use config::DEFAULT_CONTEXT_LIMIT;
pub use dtype::ElemType;

use bind::{Bound, LogitsTo};
use cache::{same_memory, KvCounters};
use config::FolderConfig;
use dtype::tensor_bytes;
use io::{copy_last_rows, take_logits, take_presents, InputValue, Inputs};
use layout::Layout;

use crate::error::{Error, Result};
use crate::policy::cost::CostCurve;

/// Where a model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Device {
    #[default]
    Cpu,
    /// ONNX Runtime's CUDA execution provider on GPU N, with the KV cache kept on the GPU.
    Cuda(u32),
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl std::str::FromStr for Device {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| Error::invalid(format!("unknown device `{s}` (expected cpu, cuda or cuda:N)"))),
        }
    }
}

/// How to open a model.
#[derive(Debug, Clone)]
pub struct ModelOptions {
    pub device: Device,
    /// ONNX Runtime intra-op threads of a pool of the model's own; 0 (the default) runs on the
    /// process's shared pool (one thread per core), which every such model takes turns on.
    pub intra_threads: usize,
    /// ONNX Runtime graph optimization level, 0 (none) to 3 (all, the default).
    pub optimization_level: u8,
    /// Whether idle intra-op worker threads spin before sleeping (ONNX Runtime's default, true).
    /// Spinning cuts a call's start-up latency but takes a core from whatever runs in between.
    pub spinning: bool,
    /// Run every call through ONNX Runtime's IoBinding, with the KV cache bound to the memory of
    /// the model's device and compacted there. Always on for CUDA; on CPU (default off) it runs the
    /// same code path as CUDA does, which is how that path is tested without a GPU.
    pub io_binding: bool,
    /// Reduce logits on the model's device when sampling needs only the best of each row: a small
    /// helper session (Gather then TopK, on the model's execution provider) turns the logits, left
    /// where the model wrote them, into the argmax (greedy) or the k best logits (top-k sampling)
    /// of each row, and only those cross to the host instead of a vocabulary's worth per row.
    /// Rows are still read in full where the transforms need them (penalties, logit bias, top-p or
    /// min-p without top-k, log-probabilities, a draft's confidence at temperature 0). `None` (the
    /// default): on for a device other than the CPU, off on the CPU, where reading rows in place
    /// costs nothing and a helper call would only add one; `Some(true)` turns it on for a CPU model
    /// too (which then runs on the IoBinding path), which is how the reductions are tested without
    /// a GPU. Tokens are the same either way (the same logits, the same tie-break).
    pub device_reductions: Option<bool>,
    /// When CUDA was asked for but cannot be used, load the model on CPU instead of failing
    /// (default off: a CUDA request either runs on CUDA or fails with a message naming what is
    /// missing). [`Model::device`] and [`Model::device_fallback`] tell what happened.
    pub cuda_fallback_to_cpu: bool,
    /// Which graph of a folder with several (onnx-community folders: `onnx/model.onnx`,
    /// `onnx/model_fp16.onnx`, `onnx/model_q4.onnx`, ...): `q4` picks `model_q4.onnx`, `default`
    /// `model.onnx`. `None` (the default) takes the only one, and refuses a folder with several,
    /// naming them.
    pub variant: Option<String>,
    /// The context length to use whatever config.json or the graph say (`None`, the default:
    /// config.json's, else a learned position table's, else [`DEFAULT_CONTEXT_LIMIT`] with a
    /// warning).
    pub context_limit: Option<usize>,
}

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions {
            device: Device::Cpu,
            intra_threads: 0,
            optimization_level: 3,
            spinning: true,
            io_binding: false,
            device_reductions: None,
            cuda_fallback_to_cpu: false,
            variant: None,
            context_limit: None,
        }
    }
}

/// Where a model's context length comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextLimitSource {
    /// config.json (`max_position_embeddings`, `n_positions`, `n_ctx`, `max_sequence_length`).
    Config,
    /// The graph: the rows of a learned position table (config.json stating none).
    Graph,
    /// [`ModelOptions::context_limit`].
    Options,
    /// Nothing stated it: [`DEFAULT_CONTEXT_LIMIT`] is assumed (and a warning logged). Rotary
    /// models have no table to read it from; set [`ModelOptions::context_limit`].
    Default,
}

impl ContextLimitSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ContextLimitSource::Config => "config",
            ContextLimitSource::Graph => "graph",
            ContextLimitSource::Options => "options",
            ContextLimitSource::Default => "default",
        }
    }
}

/// Facts about a model that callers and the generator rely on.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    pub vocab_size: usize,
    /// Longest sequence (prompt + generated) the model accepts.
    pub context_limit: usize,
    /// Where `context_limit` comes from.
    pub context_limit_source: ContextLimitSource,
    /// End-of-sequence ids from generation_config.json (or config.json).
    pub eos_ids: Vec<u32>,
    /// Beginning-of-sequence and padding ids from generation_config.json (or config.json), when
    /// stated and inside the vocabulary.
    pub bos_id: Option<u32>,
    pub pad_id: Option<u32>,
    /// config.json's `architectures[0]` (e.g. "LlamaForCausalLM"), else its `model_type`.
    pub architecture: Option<String>,
    pub layers: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Hash of tokenizer.json's vocabulary (when the folder has one): two models agree on what
    /// ids mean only if these match.
    pub tokenizer_fingerprint: Option<u64>,
}

/// [`Model::path`] of a model loaded from memory.
pub const MEMORY_PATH: &str = "<memory>";

fn check_options(options: &ModelOptions) -> Result<()> {
    if options.optimization_level > 3 {
        return Err(Error::invalid(format!("graph optimization level must be 0..=3, got {}", options.optimization_level)));
    }
    if options.context_limit == Some(0) {
        return Err(Error::invalid("a context limit of 0 tokens"));
    }
    Ok(())
}

/// What a forward call hands back of the logits rows it asks for.
pub(crate) enum Out<'a> {
    /// The rows in full (rows × vocab, f32).
    Rows(&'a mut Vec<f32>),
    /// The `k` best logits of each row, reduced on the model's device: rows × k ids and values,
    /// each row's in the sampling transforms' order (value descending, lower id first).
    Top { k: usize, ids: &'a mut Vec<u32>, values: &'a mut Vec<f32> },
}

impl Out<'_> {
    /// Where a bound call on `k` tokens should put its logits: every row read in full goes to host
    /// memory, straight into the rows buffer where the logits are f32 and the model runs on the
    /// CPU (else they stay on the device, to be gathered or reduced there).
    fn logits_to(&mut self, rows: usize, k: usize, vocab: usize, elem: ElemType, on_cpu: bool) -> LogitsTo<'_> {
        match self {
            // Not yet on a GPU: binding a pageable host buffer there is unmeasured.
            Out::Rows(out) if rows == k && elem == ElemType::F32 && on_cpu => {
                // Growing writes zeros once; a buffer that keeps its size is written by the call only.
                let n = k * vocab;
                if out.len() < n {
                    out.resize(n, 0.0);
                } else {
                    out.truncate(n);
                }
                LogitsTo::Buffer(&mut out[..], k)
            }
            Out::Rows(_) if rows == k => LogitsTo::Host,
            _ => LogitsTo::Device,
        }
    }
}

/// Longest chunk fed in one call; bounds the logits a long prompt produces at once.
pub(crate) const MAX_CHUNK: usize = 256;

/// A loaded decoder. Immutable after loading and shareable across threads (`Arc<Model>`): the
/// session sits behind a mutex because ONNX Runtime's run needs exclusive access in `ort`, so
/// concurrent generators on one model take turns per forward call.
pub struct Model {
    session: Mutex<Session>,
    layout: Layout,
    info: ModelInfo,
    path: PathBuf,
    cost: CostCurve,
    device: Device,
    fallback: Option<String>,
    bound: Option<Bound>,
    kv_counters: Arc<KvCounters>,
    id: u64,
}

/// Time spent inside ONNX Runtime and the number of calls.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct CallCost {
    pub calls: u64,
    pub time: Duration,
}

impl Model {
    /// Open a model folder (holding model.onnx, config.json, generation_config.json) or an .onnx file.
    ///
    /// With [`Device::Cuda`] the CUDA execution provider is registered with `error_on_failure`:
    /// the model runs on CUDA or loading fails with [`Error::Unavailable`] naming what is missing
    /// (the provider library beside ONNX Runtime, the driver, a CUDA or cuDNN library), unless
    /// [`ModelOptions::cuda_fallback_to_cpu`] asks for a CPU model instead.
    pub fn load(path: impl AsRef<Path>, options: &ModelOptions) -> Result<Model> {
        let path = path.as_ref();
        let (onnx, folder) = config::locate(path, options.variant.as_deref())?;
        let folder_config = FolderConfig::read(&folder)?;
        check_options(options)?;
        let env = crate::runtime::environment_for(matches!(options.device, Device::Cuda(_)))?;
        let (session, device, fallback) = session::open(env, options, &onnx, folder_config.vocab_hint())?;
        let table_rows = || graph::position_table_rows_in_file(&onnx);
        Model::assemble(env, session, device, fallback, onnx.clone(), &folder_config, options, table_rows)
    }

    /// Load a single-file model (no external data) from `onnx`, its bytes (ONNX Runtime copies
    /// what it needs: the buffer may be dropped afterwards), with the texts of its config.json and
    /// generation_config.json when there are any. Otherwise as [`Model::load`]; the model's
    /// [`Model::path`] is `<memory>`.
    pub fn load_from_memory(
        onnx: &[u8],
        config_json: Option<&str>,
        generation_config_json: Option<&str>,
        options: &ModelOptions,
    ) -> Result<Model> {
        let folder_config = FolderConfig::from_json(config_json, generation_config_json)?;
        check_options(options)?;
        let env = crate::runtime::environment_for(matches!(options.device, Device::Cuda(_)))?;
        let label = PathBuf::from(MEMORY_PATH);
        let (session, device, fallback) = session::open_memory(env, options, onnx, &label, folder_config.vocab_hint())?;
        let table_rows = || graph::position_table_rows_in_bytes(onnx);
        Model::assemble(env, session, device, fallback, label, &folder_config, options, table_rows)
    }

    /// A model from its open session: the layout its inputs and outputs say, the facts its
    /// folder's JSON files (and, for a context length they lack, its graph) add.
    #[allow(clippy::too_many_arguments)]
    fn assemble(
        env: &ort::environment::Environment,
        session: Session,
        device: Device,
        fallback: Option<String>,
        onnx: PathBuf,
        folder_config: &FolderConfig,
        options: &ModelOptions,
        table_rows: impl FnOnce() -> Option<usize>,
    ) -> Result<Model> {
        let unsupported = |reason| Error::UnsupportedLayout { path: onnx.clone(), reason };
        let (inputs, outputs) = (session::specs(session.inputs()), session::specs(session.outputs()));
        let mut layout = layout::parse_named(&inputs, &outputs, folder_config.names()).map_err(unsupported)?;
        // A shared buffer needs the graph to take its positions from the mask (GroupQueryAttention).
        layout.shared_buffer =
            folder_config.shares_past_and_present() && layout.attention_mask.is_some() && layout.position_ids.is_none();
        let mut info = folder_config.info(&layout).map_err(unsupported)?;
        if let Some(n) = options.context_limit {
            (info.context_limit, info.context_limit_source) = (n, ContextLimitSource::Options);
        } else if info.context_limit_source == ContextLimitSource::Default {
            match table_rows() {
                Some(rows) => (info.context_limit, info.context_limit_source) = (rows, ContextLimitSource::Graph),
                None => crate::logging::warn(format!(
                    "{}: the context length is unknown (config.json states none and the graph has no learned position \
                     table); assuming {DEFAULT_CONTEXT_LIMIT} tokens: set the model options' context limit if it is wrong",
                    onnx.display()
                )),
            }
        }
        if let Some(why) = &fallback {
            crate::logging::warn(format!("{}: runs on the CPU instead of CUDA: {why}", onnx.display()));
        }
        let reductions = options.device_reductions.unwrap_or(device != Device::Cpu);
        let bound = if device != Device::Cpu || options.io_binding || layout.shared_buffer || reductions {
            Some(Bound::new(env, device, &layout, layout.logits_type.float_tensor_type(), reductions)?)
        } else {
            None
        };
        crate::logging::info(format!(
            "{}: loaded on {device}: {} layers, vocabulary {}, context {} (from {}), KV cache {}",
            onnx.display(),
            info.layers,
            info.vocab_size,
            info.context_limit,
            info.context_limit_source.as_str(),
            layout.kv_type.name()
        ));
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Ok(Model {
            session: Mutex::new(session),
            layout,
            info,
            path: onnx,
            cost: CostCurve::default(),
            device,
            fallback,
            bound,
            kv_counters: Arc::default(),
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// Where the model runs (the CPU after an opted-in CUDA fallback).
    pub fn device(&self) -> Device {
        self.device
    }

    /// Why CUDA was not used, when [`ModelOptions::cuda_fallback_to_cpu`] loaded the model on CPU.
    pub fn device_fallback(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    /// Whether calls go through IoBinding with a device-resident KV cache.
    pub fn uses_io_binding(&self) -> bool {
        self.bound.is_some()
    }

    /// Whether logits rows can be reduced on the device ([`ModelOptions::device_reductions`]):
    /// what lets a generator ask for the best of each row instead of the whole row.
    pub fn device_reductions(&self) -> bool {
        self.bound.as_ref().is_some_and(Bound::reduces)
    }

    /// Logits rows this model has reduced on its device so far (each handing the host only its
    /// best entries instead of the row): how tests and `scripts/gpu-check.sh` see the reductions
    /// used rather than whole rows.
    pub fn reduced_rows(&self) -> u64 {
        self.bound.as_ref().map_or(0, Bound::reduced_rows)
    }

    /// Host copies and compactions of KV data over all caches of this model so far: how tests
    /// (and `scripts/gpu-check.sh`) show that a device cache never goes through host memory.
    pub fn kv_copy_stats(&self) -> KvCopyStats {
        self.kv_counters.snapshot()
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Element type of the KV cache (f32, f16 or bf16).
    pub fn kv_type(&self) -> ElemType {
        self.layout.kv_type
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A number unique to this loaded instance in the process (what learnt records are keyed by:
    /// threads and device change a model's costs, so another load of the same file starts afresh).
    pub fn instance_id(&self) -> u64 {
        self.id
    }

    /// Measured call time by tokens fed.
    pub fn cost_curve(&self) -> &CostCurve {
        &self.cost
    }

    /// KV cache bytes one token of a sequence occupies (keys and values of every layer).
    pub fn kv_bytes_per_token(&self) -> usize {
        2 * self.info.layers * self.info.kv_heads * self.info.head_dim * self.layout.kv_type.size()
    }

    /// An empty cache for one sequence.
    pub(crate) fn new_cache(&self) -> Result<KvCache> {
        // A shared buffer is allocated on the first call, once the memory budget is known.
        let tensors = self.kv_tensors(0, false)?;
        Ok(KvCache::new(
            tensors,
            self.layout.supports_masked_rollback(),
            self.layout.shared_buffer,
            self.bound.as_ref().map(|b| b.kv.clone()),
            self.kv_counters.clone(),
        ))
    }

    /// KV tensors of `slots` slots for every layer, in the device's memory for a device model
    /// (nothing to copy there later); zeroed when `zeroed` and in host memory.
    fn kv_tensors(&self, slots: usize, zeroed: bool) -> Result<Vec<DynTensor>> {
        let elem = self.layout.kv_type.float_tensor_type();
        let shape = [1i64, self.info.kv_heads as i64, slots as i64, self.info.head_dim as i64];
        let device_allocator = match &self.bound {
            Some(b) if b.off_host => {
                let session = self.session.lock().unwrap_or_else(|e| e.into_inner());
                Allocator::new(&session, b.kv.memory.clone()).ok()
            }
            _ => None,
        };
        let on_host = device_allocator.is_none();
        let allocator = device_allocator.unwrap_or_default();
        (0..2 * self.info.layers)
            .map(|_| {
                let mut t = DynTensor::new(&allocator, elem, shape)?;
                if zeroed && on_host {
                    let bytes = dtype::tensor_bytes(&t);
                    // SAFETY: a host tensor of `bytes` bytes just allocated for this shape.
                    unsafe { std::ptr::write_bytes(t.data_ptr_mut() as *mut u8, 0, bytes) };
                }
                Ok(t)
            })
            .collect()
    }

    /// Feed `tokens` after what `cache` holds and write the logits of the last `rows` of them into
    /// `out` (rows × vocab, f32), adding the time spent to `cost`. Long inputs go in chunks so that
    /// only the final chunk's logits are ever materialised in full.
    pub(crate) fn forward(
        &self,
        cache: &mut KvCache,
        tokens: &[u32],
        rows: usize,
        out: &mut Vec<f32>,
        cost: &mut CallCost,
    ) -> Result<()> {
        self.forward_to(cache, tokens, rows, &mut Out::Rows(out), cost)
    }

    /// As [`Model::forward`], handing back what `out` asks for of the last `rows` rows: the rows
    /// in full, or the k best logits of each, reduced on the device (which needs
    /// [`Model::device_reductions`]).
    pub(crate) fn forward_to(
        &self,
        cache: &mut KvCache,
        tokens: &[u32],
        rows: usize,
        out: &mut Out<'_>,
        cost: &mut CallCost,
    ) -> Result<()> {
        if let Out::Top { k, .. } = out {
            if !self.device_reductions() || *k == 0 || *k > self.info.vocab_size {
                return Err(Error::invalid(format!(
                    "the {k} best logits of a row asked of a model {} (vocabulary {})",
                    if self.device_reductions() { "with device reductions" } else { "without device reductions" },
                    self.info.vocab_size
                )));
            }
        }
        if tokens.is_empty() || rows == 0 || rows > tokens.len() || rows > MAX_CHUNK {
            return Err(Error::invalid(format!("forward of {} tokens asking for {rows} logits rows", tokens.len())));
        }
        let vocab = self.info.vocab_size;
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::TokenOutOfRange { id: bad as i64, vocab_size: vocab });
        }
        let needed = cache.len() + tokens.len();
        if needed > self.info.context_limit {
            return Err(Error::ContextLimit { needed, limit: self.info.context_limit });
        }
        let mut rest = tokens;
        while rest.len() > MAX_CHUNK {
            let take = MAX_CHUNK.min(rest.len() - rows);
            self.run(cache, &rest[..take], 0, out, cost)?;
            rest = &rest[take..];
        }
        self.run(cache, rest, rows, out, cost)
    }

    /// One ONNX Runtime call, on the IoBinding path or the plain one.
    fn run(&self, cache: &mut KvCache, tokens: &[u32], rows: usize, out: &mut Out<'_>, cost: &mut CallCost) -> Result<()> {
        let k = tokens.len();
        // A cache left in a batch row by a batched call gets tensors of its own again.
        cache.own()?;
        if cache.needs_room(k, self.info.context_limit) {
            cache.compact()?;
        }
        let started = Instant::now();
        let presents = match &self.bound {
            Some(b) if self.layout.shared_buffer => self.run_shared(b, cache, tokens, rows, out).map(|()| None)?,
            Some(b) => Some(self.run_bound(b, cache, tokens, rows, out)?),
            None => Some(self.run_plain(cache, tokens, rows, out)?),
        };
        let elapsed = started.elapsed();
        self.cost.record(k, elapsed);
        cost.calls += 1;
        cost.time += elapsed;
        cache.advance(presents, k);
        Ok(())
    }

    /// A call with the pasts fed as they are and ONNX Runtime allocating the outputs.
    fn run_plain(&self, cache: &mut KvCache, tokens: &[u32], rows: usize, out: &mut Out<'_>) -> Result<Vec<DynTensor>> {
        let (pasts, valid, len, scratch) = cache.call_parts();
        let inputs = Inputs::new(&self.layout, scratch, tokens, valid, len, Some(pasts));
        let feed = plain_feed(&inputs)?;
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let mut outputs = session.run(feed)?;
        let presents = take_presents(&self.layout, &mut outputs)?;
        if rows > 0 {
            let Out::Rows(out) = out else {
                return Err(Error::Inference("a plain call cannot reduce logits on the device".into()));
            };
            copy_last_rows(&take_logits(&self.layout, &mut outputs)?, tokens.len(), rows, self.info.vocab_size, out)?;
        }
        Ok(presents)
    }

    /// A call on a shared past/present buffer: the graph writes the new entries into the buffers in
    /// place and reads as many slots as the attention mask is long, so nothing is copied and a
    /// rollback is only a shorter mask next time. The buffers are allocated on the first call, as
    /// long as the context (or the memory budget's slot limit) allows.
    fn run_shared(&self, b: &Bound, cache: &mut KvCache, tokens: &[u32], rows: usize, out: &mut Out<'_>) -> Result<()> {
        let k = tokens.len();
        if cache.capacity() == 0 {
            let slots = self.info.context_limit.min(cache.slot_limit());
            cache.set_buffers(self.kv_tensors(slots, true)?);
        }
        let capacity = cache.capacity();
        if cache.len() + k > capacity {
            return Err(Error::ContextLimit { needed: cache.len() + k, limit: capacity });
        }
        let (buffers, kept, valid, len, scratch) = cache.shared_call_parts();
        let inputs = Inputs::new(&self.layout, scratch, tokens, valid, len, None);
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let to = out.logits_to(rows, k, self.info.vocab_size, self.layout.logits_type, !b.off_host);
        let (_, logits) = b.call(&mut session, &self.layout, &inputs, Some((buffers, kept)), to)?;
        drop(session);
        match logits {
            Some(logits) => self.read_rows(b, &logits, k, rows, out),
            None => Ok(()),
        }
    }

    /// Copy the last `rows` of a bound call's `k` logits rows to `out` (gathered on the device
    /// first when only some are wanted), or reduce them there to their best entries.
    fn read_rows(&self, b: &Bound, logits: &ort::value::DynValue, k: usize, rows: usize, out: &mut Out<'_>) -> Result<()> {
        match out {
            _ if rows == 0 => Ok(()),
            Out::Rows(out) if rows == k => copy_last_rows(logits, k, rows, self.info.vocab_size, out),
            Out::Rows(out) => b.gather_rows(logits, k, rows, self.info.vocab_size, out),
            Out::Top { k: best, ids, values } => b.top_rows(logits, k, rows, *best, ids, values),
        }
    }

    /// A call through IoBinding, counting every KV tensor that crosses between host and device
    /// memory (none should on a device model).
    fn run_bound(
        &self,
        b: &Bound,
        cache: &mut KvCache,
        tokens: &[u32],
        rows: usize,
        out: &mut Out<'_>,
    ) -> Result<Vec<DynTensor>> {
        let k = tokens.len();
        // KV data elsewhere than the device would be copied there by ONNX Runtime: count it.
        let crossing: Vec<usize> = cache
            .tensors()
            .iter()
            .filter(|t| !same_memory(t.memory_info(), &b.kv.memory))
            .map(tensor_bytes)
            .filter(|&n| n > 0)
            .collect();
        crossing.into_iter().for_each(|n| cache.count_host_copy(n));
        let (pasts, valid, len, scratch) = cache.call_parts();
        let inputs = Inputs::new(&self.layout, scratch, tokens, valid, len, Some(pasts));
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let to = out.logits_to(rows, k, self.info.vocab_size, self.layout.logits_type, !b.off_host);
        let (presents, logits) = b.call(&mut session, &self.layout, &inputs, None, to)?;
        drop(session);
        let presents = presents.ok_or_else(|| Error::Inference("a bound call returned no presents".into()))?;
        if let Some(logits) = logits {
            self.read_rows(b, &logits, k, rows, out)?;
        }
        // ONNX Runtime binds an output to the CPU when the device has no provider: count that too.
        let misplaced: Vec<usize> =
            presents.iter().filter(|t| !same_memory(t.memory_info(), &b.kv.memory)).map(tensor_bytes).collect();
        misplaced.into_iter().for_each(|n| cache.count_host_copy(n));
        Ok(presents)
    }
}

/// A plain call's inputs, by name, as ONNX Runtime takes them.
fn plain_feed<'a>(inputs: &'a Inputs<'a>) -> Result<Vec<(&'a str, SessionInputValue<'a>)>> {
    let b = inputs.batch();
    let mut feed: Vec<(&str, SessionInputValue<'_>)> = Vec::new();
    for (name, value) in inputs.named() {
        feed.push((
            name,
            match value {
                InputValue::Ints(ElemType::I32, data) => {
                    Tensor::from_array(([b, data.len() / b], data.iter().map(|&v| v as i32).collect::<Vec<_>>()))?.into()
                }
                InputValue::Ints(_, data) => TensorRef::from_array_view(([b, data.len() / b], data))?.into(),
                InputValue::Flag(b) => Tensor::from_array(([1usize], vec![b]))?.into(),
                InputValue::Past(t) => t.into(),
            },
        ));
    }
    Ok(feed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse() {
        assert_eq!("cpu".parse::<Device>().unwrap(), Device::Cpu);
        assert_eq!("cuda:1".parse::<Device>().unwrap(), Device::Cuda(1));
        assert!("gpu".parse::<Device>().is_err());
    }
}
