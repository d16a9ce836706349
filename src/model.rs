//! A decoder model: one ONNX Runtime session plus what the engine needs to know about it.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::builder::SessionBuilder;
use ort::session::{Session, SessionInputValue};
use ort::value::{DynTensor, DynValue, Tensor, TensorElementType, TensorRef, ValueType};

use crate::error::{Error, Result};
use crate::kv_cache::{same_memory, DeviceKv, KvCache, KvCopyStats, KvCounters};
use crate::layout::{self, ElemType, Layout, TensorSpec};

/// Where a model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
    /// ONNX Runtime intra-op threads; 0 lets ONNX Runtime choose.
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
    /// When CUDA was asked for but cannot be used, load the model on CPU instead of failing
    /// (default off: a CUDA request either runs on CUDA or fails with a message naming what is
    /// missing). [`Model::device`] and [`Model::device_fallback`] tell what happened.
    pub cuda_fallback_to_cpu: bool,
}

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions {
            device: Device::Cpu,
            intra_threads: 0,
            optimization_level: 3,
            spinning: true,
            io_binding: false,
            cuda_fallback_to_cpu: false,
        }
    }
}

/// Facts about a model that callers and the generator rely on.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    pub vocab_size: usize,
    /// Longest sequence (prompt + generated) the model accepts.
    pub context_limit: usize,
    /// End-of-sequence ids from generation_config.json (or config.json).
    pub eos_ids: Vec<u32>,
    pub layers: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Hash of tokenizer.json's vocabulary (when the folder has one): two models agree on what
    /// ids mean only if these match.
    pub tokenizer_fingerprint: Option<u64>,
}

/// Context length assumed when neither config.json nor the export states one.
const DEFAULT_CONTEXT_LIMIT: usize = 2048;
/// Largest vocabulary and KV head count / head size believed; beyond them the metadata is wrong.
const MAX_VOCAB: usize = 1 << 24;
const MAX_KV_DIM: usize = 1 << 16;
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
    memory: crate::policy::PolicyMemory,
    device: Device,
    fallback: Option<String>,
    bound: Option<Bound>,
    kv_counters: Arc<KvCounters>,
}

/// The IoBinding path: presents bound to the device's memory and fed back as pasts as they are;
/// logits bound to host memory when every row is wanted, else left on the device and only the
/// wanted rows gathered to the host.
struct Bound {
    kv: Arc<DeviceKv>,
    /// CPU memory, for the logits rows that sampling reads.
    host: MemoryInfo<'static>,
    /// Inputs `x0` (the logits) and `keep` (row indices), output `y0` = Gather(x0, keep, axis 1),
    /// bound to `host`.
    rows: Mutex<Session>,
    /// Whether the device is not the CPU (the empty first pasts are then allocated there).
    off_host: bool,
}

/// Tokens per call for which call times are tracked (verification feeds are γ + 1 ≤ this).
const COST_TRACKED: usize = 72;

/// The measured time of one call by the number of tokens fed, T(k), as a decaying mean over all
/// calls of every generator using the model: the draft-length policy weighs drafting against it.
#[derive(Debug)]
pub struct CostCurve {
    seconds: Mutex<[Option<f64>; COST_TRACKED + 1]>,
}

impl Default for CostCurve {
    fn default() -> Self {
        CostCurve { seconds: Mutex::new([None; COST_TRACKED + 1]) }
    }
}

impl CostCurve {
    pub fn record(&self, k: usize, time: Duration) {
        if k == 0 || k > COST_TRACKED {
            return;
        }
        let t = time.as_secs_f64();
        let mut s = self.seconds.lock().unwrap_or_else(|e| e.into_inner());
        s[k] = Some(s[k].map_or(t, |m| crate::policy::robust_mean(m, t)));
    }

    /// T(k) in seconds if calls of exactly k tokens were measured.
    pub fn measured(&self, k: usize) -> Option<f64> {
        let s = self.seconds.lock().unwrap_or_else(|e| e.into_inner());
        s.get(k).copied().flatten()
    }

    /// T(k) in seconds: measured, else interpolated between measured neighbours, else
    /// extrapolated from the nearest with +10% per token (a typical slope on CPU).
    pub fn estimate(&self, k: usize) -> f64 {
        let s = self.seconds.lock().unwrap_or_else(|e| e.into_inner());
        let k = k.clamp(1, COST_TRACKED);
        if let Some(t) = s[k] {
            return t;
        }
        let below = (1..k).rev().find_map(|i| s[i].map(|t| (i, t)));
        let above = (k + 1..=COST_TRACKED).find_map(|i| s[i].map(|t| (i, t)));
        match (below, above) {
            (Some((a, ta)), Some((b, tb))) => ta + (tb - ta) * (k - a) as f64 / (b - a) as f64,
            (Some((i, t)), None) | (None, Some((i, t))) => t * (1.0 + 0.1 * (k as f64 - 1.0)) / (1.0 + 0.1 * (i as f64 - 1.0)),
            (None, None) => 1e-3 * (1.0 + 0.1 * (k as f64 - 1.0)),
        }
    }
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
        let (onnx, folder) = locate(path)?;
        let config = read_json(&folder.join("config.json"))?;
        let generation = read_json(&folder.join("generation_config.json"))?;
        // Only a fingerprint is taken here; a broken tokenizer.json is reported when it is loaded.
        let tokenizer_fingerprint = read_json(&folder.join("tokenizer.json")).ok().flatten().map(|t| vocabulary_fingerprint(&t));
        if options.optimization_level > 3 {
            return Err(Error::invalid(format!("graph optimization level must be 0..=3, got {}", options.optimization_level)));
        }

        let env = crate::runtime::environment_for(matches!(options.device, Device::Cuda(_)))?;
        let invalid = |e: &dyn std::fmt::Display| Error::InvalidModel { path: onnx.clone(), reason: e.to_string() };
        let mut builder = session_builder(env, options, options.intra_threads).map_err(|e| invalid(&e))?;
        let (session, device, fallback) = match options.device {
            Device::Cpu => (builder.commit_from_file(&onnx).map_err(|e| invalid(&e))?, Device::Cpu, None),
            Device::Cuda(n) => match open_cuda(env, options, n, &onnx) {
                Ok(session) => (session, Device::Cuda(n), None),
                Err(Error::Unavailable(why)) if options.cuda_fallback_to_cpu => {
                    (builder.commit_from_file(&onnx).map_err(|e| invalid(&e))?, Device::Cpu, Some(why))
                }
                Err(e) => return Err(e),
            },
        };

        let specs = |outlets: &[ort::value::Outlet]| outlets.iter().map(spec_of).collect::<Vec<_>>();
        let layout = layout::parse(&specs(session.inputs()), &specs(session.outputs()))
            .map_err(|reason| Error::UnsupportedLayout { path: onnx.clone(), reason })?;
        let info = model_info(&layout, config.as_ref(), generation.as_ref(), tokenizer_fingerprint)
            .map_err(|reason| Error::UnsupportedLayout { path: onnx.clone(), reason })?;
        let bound = if device != Device::Cpu || options.io_binding {
            let logits_type = session.outputs().iter().find(|o| o.name() == "logits").and_then(|o| match o.dtype() {
                ValueType::Tensor { ty, .. } => Some(*ty),
                _ => None,
            });
            Some(Bound::new(env, device, &layout, logits_type.unwrap_or(TensorElementType::Float32))?)
        } else {
            None
        };
        Ok(Model {
            session: Mutex::new(session),
            layout,
            info,
            path: onnx,
            cost: CostCurve::default(),
            memory: Default::default(),
            device,
            fallback,
            bound,
            kv_counters: Arc::default(),
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

    /// Host copies and compactions of KV data over all caches of this model so far: how tests
    /// (and `scripts/gpu-check.sh`) show that a device cache never goes through host memory.
    pub fn kv_copy_stats(&self) -> KvCopyStats {
        self.kv_counters.snapshot()
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Measured call time by tokens fed.
    pub fn cost_curve(&self) -> &CostCurve {
        &self.cost
    }

    /// What the `Auto` draft policy learnt on this target's finished sequences.
    pub(crate) fn policy_memory(&self) -> &crate::policy::PolicyMemory {
        &self.memory
    }

    /// KV cache bytes one token of a sequence occupies (keys and values of every layer).
    pub fn kv_bytes_per_token(&self) -> usize {
        let elem = match self.layout.kv_type {
            ElemType::F16 | ElemType::BF16 => 2,
            _ => 4,
        };
        2 * self.info.layers * self.info.kv_heads * self.info.head_dim * elem
    }

    /// An empty cache for one sequence.
    pub fn new_cache(&self) -> Result<KvCache> {
        let elem = match self.layout.kv_type {
            ElemType::F16 => TensorElementType::Float16,
            ElemType::BF16 => TensorElementType::Bfloat16,
            _ => TensorElementType::Float32,
        };
        let shape = [1i64, self.info.kv_heads as i64, 0, self.info.head_dim as i64];
        // The empty first pasts: on the device for a device model (nothing to copy there later).
        let device_allocator = match &self.bound {
            Some(b) if b.off_host => {
                let session = self.session.lock().unwrap_or_else(|e| e.into_inner());
                Allocator::new(&session, b.kv.memory.clone()).ok()
            }
            _ => None,
        };
        let allocator = device_allocator.unwrap_or_default();
        let tensors =
            (0..2 * self.info.layers).map(|_| DynTensor::new(&allocator, elem, shape)).collect::<Result<Vec<_>, _>>()?;
        Ok(KvCache::new(
            tensors,
            self.layout.supports_masked_rollback(),
            self.bound.as_ref().map(|b| b.kv.clone()),
            self.kv_counters.clone(),
        ))
    }

    /// Feed `tokens` after what `cache` holds and write the logits of the last `rows` of them into
    /// `out` (rows × vocab, f32). Long inputs go in chunks so that only the final chunk's logits
    /// are ever materialised in full.
    pub fn forward(&self, cache: &mut KvCache, tokens: &[u32], rows: usize, out: &mut Vec<f32>) -> Result<()> {
        self.forward_timed(cache, tokens, rows, out, &mut CallCost::default())
    }

    pub(crate) fn forward_timed(
        &self,
        cache: &mut KvCache,
        tokens: &[u32],
        rows: usize,
        out: &mut Vec<f32>,
        cost: &mut CallCost,
    ) -> Result<()> {
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

    /// One ONNX Runtime call.
    fn run(&self, cache: &mut KvCache, tokens: &[u32], rows: usize, out: &mut Vec<f32>, cost: &mut CallCost) -> Result<()> {
        let k = tokens.len();
        if cache.physical_len() + k > self.info.context_limit.min(cache.slot_limit) && cache.holes() > 0 {
            cache.compact()?;
        }
        if let Some(b) = &self.bound {
            return self.run_bound(b, cache, tokens, rows, out, cost);
        }
        let phys = cache.physical_len();
        let l = &self.layout;
        let mask_len = self.small_inputs(cache, tokens);
        let (ids, rest) = cache.scratch.split_at(k);
        let (mask, positions) = rest.split_at(mask_len);

        let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = Vec::with_capacity(4 + cache.tensors.len());
        inputs.push(("input_ids".into(), int_tensor(l.ids_type, ids)?));
        if let Some(t) = l.attention_mask {
            inputs.push(("attention_mask".into(), int_tensor(t, mask)?));
        }
        if let Some(t) = l.position_ids {
            inputs.push(("position_ids".into(), int_tensor(t, positions)?));
        }
        if l.use_cache_branch {
            inputs.push(("use_cache_branch".into(), Tensor::from_array(([1usize], vec![phys > 0]))?.into()));
        }
        for (i, names) in l.layers.iter().enumerate() {
            inputs.push((names.past_key.as_str().into(), (&cache.tensors[2 * i]).into()));
            inputs.push((names.past_value.as_str().into(), (&cache.tensors[2 * i + 1]).into()));
        }

        let started = std::time::Instant::now();
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let mut outputs = session.run(inputs)?;
        let mut presents = Vec::with_capacity(2 * l.layers.len());
        for names in &l.layers {
            for name in [&names.present_key, &names.present_value] {
                let v = outputs.remove(name.as_str()).ok_or_else(|| Error::Inference(format!("no `{name}` in outputs")))?;
                presents.push(v.downcast()?);
            }
        }
        if rows > 0 {
            let logits = outputs.get("logits").ok_or_else(|| Error::Inference("no `logits` in outputs".into()))?;
            copy_last_rows(logits, k, rows, self.info.vocab_size, out)?;
        }
        drop(outputs);
        drop(session);
        let elapsed = started.elapsed();
        self.cost.record(k, elapsed);
        cost.calls += 1;
        cost.time += elapsed;
        cache.advance(presents, k);
        Ok(())
    }

    /// Fill the cache's scratch with the call's ids, then its attention mask (when the model takes
    /// one), then its positions (when it takes them); returns the mask's length.
    fn small_inputs(&self, cache: &mut KvCache, tokens: &[u32]) -> usize {
        let k = tokens.len();
        let start = cache.len() as i64;
        let l = &self.layout;
        let s = &mut cache.scratch;
        s.clear();
        s.extend(tokens.iter().map(|&t| t as i64));
        if l.attention_mask.is_some() {
            s.extend(cache.valid.iter().map(|&v| v as i64));
            s.extend(std::iter::repeat_n(1, k));
        }
        let mask_len = s.len() - k;
        if l.position_ids.is_some() {
            s.extend((0..k as i64).map(|i| start + i));
        }
        mask_len
    }

    /// One call through IoBinding: the pasts are bound where they are, the presents to the
    /// device's memory (they stay there and become the next pasts), the logits to host memory
    /// when all rows are wanted, else to the device with only the wanted rows gathered to the host.
    fn run_bound(
        &self,
        b: &Bound,
        cache: &mut KvCache,
        tokens: &[u32],
        rows: usize,
        out: &mut Vec<f32>,
        cost: &mut CallCost,
    ) -> Result<()> {
        let k = tokens.len();
        let phys = cache.physical_len();
        let l = &self.layout;
        let mask_len = self.small_inputs(cache, tokens);
        let s = &cache.scratch;
        let ids = owned_int_tensor(l.ids_type, &s[..k])?;
        let mask = l.attention_mask.map(|t| owned_int_tensor(t, &s[k..k + mask_len])).transpose()?;
        let positions = l.position_ids.map(|t| owned_int_tensor(t, &s[k + mask_len..])).transpose()?;
        let branch = if l.use_cache_branch { Some(Tensor::from_array(([1usize], vec![phys > 0]))?) } else { None };
        // KV data elsewhere than the device would be copied there by ONNX Runtime: count it.
        let crossing: Vec<usize> = cache
            .tensors
            .iter()
            .filter(|t| !same_memory(t.memory_info(), &b.kv.memory))
            .map(tensor_bytes)
            .filter(|&n| n > 0)
            .collect();
        crossing.into_iter().for_each(|n| cache.count_host_copy(n));

        let started = std::time::Instant::now();
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let mut binding = session.create_binding()?;
        binding.bind_input("input_ids", &ids)?;
        if let Some(m) = &mask {
            binding.bind_input("attention_mask", m)?;
        }
        if let Some(p) = &positions {
            binding.bind_input("position_ids", p)?;
        }
        if let Some(u) = &branch {
            binding.bind_input("use_cache_branch", u)?;
        }
        for (i, names) in l.layers.iter().enumerate() {
            binding.bind_input(names.past_key.as_str(), &cache.tensors[2 * i])?;
            binding.bind_input(names.past_value.as_str(), &cache.tensors[2 * i + 1])?;
            binding.bind_output_to_device(names.present_key.as_str(), &b.kv.memory)?;
            binding.bind_output_to_device(names.present_value.as_str(), &b.kv.memory)?;
        }
        binding.bind_output_to_device("logits", if rows == k { &b.host } else { &b.kv.memory })?;
        let mut outputs = session.run_binding(&binding)?;
        let mut presents: Vec<DynTensor> = Vec::with_capacity(2 * l.layers.len());
        for names in &l.layers {
            for name in [&names.present_key, &names.present_value] {
                let v = outputs.remove(name.as_str()).ok_or_else(|| Error::Inference(format!("no `{name}` in outputs")))?;
                presents.push(v.downcast()?);
            }
        }
        let logits = outputs.remove("logits").ok_or_else(|| Error::Inference("no `logits` in outputs".into()))?;
        drop(outputs);
        drop(binding);
        drop(session);
        if rows == k {
            copy_last_rows(&logits, k, rows, self.info.vocab_size, out)?;
        } else if rows > 0 {
            b.gather_rows(&logits, k, rows, self.info.vocab_size, out)?;
        }
        drop(logits);
        let elapsed = started.elapsed();
        self.cost.record(k, elapsed);
        cost.calls += 1;
        cost.time += elapsed;
        // ONNX Runtime binds an output to the CPU when the device has no provider: count that too.
        let misplaced: Vec<usize> =
            presents.iter().filter(|t| !same_memory(t.memory_info(), &b.kv.memory)).map(tensor_bytes).collect();
        misplaced.into_iter().for_each(|n| cache.count_host_copy(n));
        cache.advance(presents, k);
        Ok(())
    }
}

impl Bound {
    fn new(
        env: &ort::environment::Environment,
        device: Device,
        layout: &Layout,
        logits_type: TensorElementType,
    ) -> Result<Bound> {
        let memory = match device {
            Device::Cpu => MemoryInfo::new(AllocationDevice::CPU, 0, AllocatorType::Device, MemoryType::Default)?,
            Device::Cuda(n) => MemoryInfo::new(AllocationDevice::CUDA, n as i32, AllocatorType::Device, MemoryType::Default)?,
        };
        let host = MemoryInfo::new(AllocationDevice::CPU, 0, AllocatorType::Device, MemoryType::Default)?;
        let kv_type = match layout.kv_type {
            ElemType::F16 => TensorElementType::Float16,
            ElemType::BF16 => TensorElementType::Bfloat16,
            _ => TensorElementType::Float32,
        };
        let n = 2 * layout.layers.len();
        let unavailable = |e: &dyn std::fmt::Display| {
            Error::Unavailable(format!(
                "the device-resident KV cache (a Gather session built with ONNX Runtime's model editor API): {e}"
            ))
        };
        let open = |graph: ort::editor::Model| -> Result<Session> {
            let helper = ModelOptions { intra_threads: 1, spinning: false, ..Default::default() };
            let mut builder = session_builder(env, &helper, 1).map_err(|e| unavailable(&e))?;
            if let Device::Cuda(id) = device {
                builder = with_cuda(builder, id)?;
            }
            graph.into_session(&builder).map_err(|e| unavailable(&e))
        };
        let gather = open(gather_graph(n, kv_type, 4, 2).map_err(|e| unavailable(&e))?)?;
        let rows = open(gather_graph(1, logits_type, 3, 1).map_err(|e| unavailable(&e))?)?;
        Ok(Bound {
            kv: Arc::new(DeviceKv::new(memory, gather, n)),
            host,
            rows: Mutex::new(rows),
            off_host: device != Device::Cpu,
        })
    }

    /// The last `rows` of `k` logits rows, gathered where the logits are and copied to the host.
    fn gather_rows(&self, logits: &DynValue, k: usize, rows: usize, vocab: usize, out: &mut Vec<f32>) -> Result<()> {
        let keep = Tensor::from_array(([rows], ((k - rows) as i64..k as i64).collect::<Vec<_>>()))?;
        let mut session = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        let mut binding = session.create_binding()?;
        binding.bind_input("x0", logits)?;
        binding.bind_input("keep", &keep)?;
        binding.bind_output_to_device("y0", &self.host)?;
        let mut outputs = session.run_binding(&binding)?;
        let picked = outputs.remove("y0").ok_or_else(|| Error::Inference("logits gather gave no output".into()))?;
        copy_last_rows(&picked, rows, rows, vocab, out)
    }
}

/// A graph of `n` Gathers sharing one index input: `y{i}` = Gather(`x{i}`, `keep`, axis), each
/// `x{i}` of rank `rank` and element type `elem`.
fn gather_graph(n: usize, elem: TensorElementType, rank: usize, axis: i64) -> ort::Result<ort::editor::Model> {
    use ort::editor::{Graph, Node, Opset, ONNX_DOMAIN};
    use ort::value::{Outlet, Shape, SymbolicDimensions};
    let tensor = |name: String, ty, rank: usize| {
        Outlet::new(
            name,
            ValueType::Tensor { ty, shape: Shape::new(vec![-1i64; rank]), dimension_symbols: SymbolicDimensions::empty(rank) },
        )
    };
    let mut graph = Graph::new()?;
    let mut inputs: Vec<Outlet> = (0..n).map(|i| tensor(format!("x{i}"), elem, rank)).collect();
    inputs.push(tensor("keep".into(), TensorElementType::Int64, 1));
    graph.set_inputs(inputs)?;
    graph.set_outputs((0..n).map(|i| tensor(format!("y{i}"), elem, rank)))?;
    for i in 0..n {
        let attrs = [ort::operator::Attribute::new("axis", axis)?];
        graph.add_node(Node::new(
            "Gather",
            ONNX_DOMAIN,
            format!("gather{i}"),
            [format!("x{i}"), "keep".to_string()],
            [format!("y{i}")],
            attrs,
        )?)?;
    }
    let mut model = ort::editor::Model::new([Opset::new(ONNX_DOMAIN, 18)?])?;
    model.set_graph(graph)?;
    Ok(model)
}

/// A session builder with the options' threads, spinning and optimization level (checked ≤ 3).
fn session_builder(
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
    if intra_threads > 0 {
        builder = builder.with_intra_threads(intra_threads).map_err(|e| text(&e))?;
    }
    if !options.spinning {
        builder = builder.with_intra_op_spinning(false).map_err(|e| text(&e))?;
    }
    Ok(builder)
}

/// Register the CUDA execution provider, failing rather than falling back to CPU.
fn with_cuda(builder: SessionBuilder, id: u32) -> Result<SessionBuilder> {
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

fn tensor_bytes(t: &DynTensor) -> usize {
    let elem = match t.data_type() {
        TensorElementType::Float16 | TensorElementType::Bfloat16 => 2,
        _ => 4,
    };
    t.shape().iter().map(|&d| d.max(0) as usize).product::<usize>() * elem
}

/// An owned integer tensor [1, len] (IoBinding keeps owned inputs without a copy).
fn owned_int_tensor(elem: ElemType, data: &[i64]) -> Result<DynTensor> {
    Ok(match elem {
        ElemType::I32 => Tensor::from_array(([1usize, data.len()], data.iter().map(|&v| v as i32).collect::<Vec<_>>()))?.upcast(),
        _ => Tensor::from_array(([1usize, data.len()], data.to_vec()))?.upcast(),
    })
}

fn int_tensor<'a>(elem: ElemType, data: &'a [i64]) -> Result<SessionInputValue<'a>> {
    let len = data.len();
    Ok(match elem {
        ElemType::I32 => Tensor::from_array(([1usize, len], data.iter().map(|&v| v as i32).collect::<Vec<_>>()))?.into(),
        _ => TensorRef::from_array_view(([1usize, len], data))?.into(),
    })
}

/// Copy the last `rows` rows of a [1, k, vocab] logits tensor as f32.
fn copy_last_rows(logits: &ort::value::DynValue, k: usize, rows: usize, vocab: usize, out: &mut Vec<f32>) -> Result<()> {
    out.clear();
    let start = (k - rows) * vocab;
    let n = rows * vocab;
    match logits.dtype() {
        ValueType::Tensor { ty: TensorElementType::Float32, .. } => {
            let (shape, data) = logits.try_extract_tensor::<f32>()?;
            check_logits_shape(shape, k, vocab)?;
            out.extend_from_slice(&data[start..start + n]);
        }
        ValueType::Tensor { ty: ty @ (TensorElementType::Float16 | TensorElementType::Bfloat16), shape, .. } => {
            check_logits_shape(shape, k, vocab)?;
            let tensor = logits.view().downcast::<ort::value::DynTensorValueType>()?;
            // SAFETY: a CPU tensor of [1, k, vocab] 16-bit floats, checked above.
            let bits = unsafe { std::slice::from_raw_parts(tensor.data_ptr() as *const u16, k * vocab) };
            let conv = if *ty == TensorElementType::Float16 { f16_to_f32 } else { bf16_to_f32 };
            out.extend(bits[start..start + n].iter().map(|&b| conv(b)));
        }
        other => return Err(Error::Inference(format!("logits of unsupported type {other:?}"))),
    }
    Ok(())
}

fn check_logits_shape(shape: &[i64], k: usize, vocab: usize) -> Result<()> {
    if shape.len() != 3 || shape[0] != 1 || shape[1] as usize != k || shape[2] as usize != vocab {
        return Err(Error::Inference(format!("logits shaped {shape:?}, expected [1, {k}, {vocab}]")));
    }
    Ok(())
}

fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: renormalise the fraction.
            let shift = frac.leading_zeros() - 21;
            sign | ((113 - shift) << 23) | ((frac << (shift + 1)) & 0x3ff) << 13
        }
        (0x1f, _) => sign | 0x7f80_0000 | (frac << 13),
        _ => sign | ((exp + 112) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

fn spec_of(o: &ort::value::Outlet) -> TensorSpec {
    let (elem, shape) = match o.dtype() {
        ValueType::Tensor { ty, shape, .. } => (
            match ty {
                TensorElementType::Float32 => ElemType::F32,
                TensorElementType::Float16 => ElemType::F16,
                TensorElementType::Bfloat16 => ElemType::BF16,
                TensorElementType::Int64 => ElemType::I64,
                TensorElementType::Int32 => ElemType::I32,
                TensorElementType::Bool => ElemType::Bool,
                _ => ElemType::Other,
            },
            shape.iter().copied().collect(),
        ),
        _ => (ElemType::Other, Vec::new()),
    };
    TensorSpec { name: o.name().to_string(), elem, shape }
}

/// The .onnx file and the folder holding its config files.
fn locate(path: &Path) -> Result<(PathBuf, PathBuf)> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        let onnx = path.join("model.onnx");
        if !onnx.is_file() {
            return Err(Error::io(path, "folder has no model.onnx"));
        }
        Ok((onnx, path.to_path_buf()))
    } else if !meta.is_file() {
        // A device or a FIFO: reading it may never end.
        Err(Error::io(path, "not a regular file or folder"))
    } else {
        let folder = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok((path.to_path_buf(), if folder.as_os_str().is_empty() { PathBuf::from(".") } else { folder }))
    }
}

fn read_json(path: &Path) -> Result<Option<serde_json::Value>> {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => return Err(Error::io(path, "not a regular file")),
        _ => {}
    }
    match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| Error::io(path, format!("invalid JSON: {e}"))),
    }
}

fn json_usize(v: Option<&serde_json::Value>, keys: &[&str]) -> Option<usize> {
    let v = v?;
    keys.iter().find_map(|k| v.get(*k).and_then(|x| x.as_u64())).map(|x| x as usize)
}

/// Ids as found: wider than u32 is kept so that the vocabulary check sees it instead of a
/// truncated value.
fn json_ids(v: Option<&serde_json::Value>, key: &str) -> Option<Vec<u64>> {
    match v?.get(key)? {
        serde_json::Value::Number(n) => n.as_u64().map(|x| vec![x]),
        serde_json::Value::Array(a) => Some(a.iter().filter_map(|x| x.as_u64()).collect()),
        _ => None,
    }
}

/// FNV-1a over the canonical JSON of the token→id map and the added tokens (serde_json keeps
/// object keys sorted, so equal vocabularies hash equally).
fn vocabulary_fingerprint(tokenizer: &serde_json::Value) -> u64 {
    let vocab = tokenizer.pointer("/model/vocab").map(|v| v.to_string()).unwrap_or_default();
    let added = tokenizer.get("added_tokens").map(|v| v.to_string()).unwrap_or_default();
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in vocab.bytes().chain([0]).chain(added.bytes()) {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// What [`Model::load`] derives from a session's input/output metadata and the folder's
/// config.json and generation_config.json (bytes; `None` for an absent file), without ONNX
/// Runtime. For the fuzzer; errors are the load path's `UnsupportedLayout` reasons.
#[doc(hidden)]
pub fn info_from_metadata(
    inputs: &[TensorSpec],
    outputs: &[TensorSpec],
    config: Option<&[u8]>,
    generation: Option<&[u8]>,
) -> Result<(Layout, ModelInfo), String> {
    let json = |b: Option<&[u8]>| {
        b.map(serde_json::from_slice::<serde_json::Value>).transpose().map_err(|e| format!("invalid JSON: {e}"))
    };
    let (config, generation) = (json(config)?, json(generation)?);
    let layout = layout::parse(inputs, outputs)?;
    let info = model_info(&layout, config.as_ref(), generation.as_ref(), None)?;
    Ok((layout, info))
}

/// Combine what the graph states with config.json; the graph wins where both speak.
fn model_info(
    layout: &Layout,
    config: Option<&serde_json::Value>,
    generation: Option<&serde_json::Value>,
    tokenizer_fingerprint: Option<u64>,
) -> Result<ModelInfo, String> {
    let vocab_size = match (layout.vocab_size, json_usize(config, &["vocab_size"])) {
        (Some(v), _) | (None, Some(v)) => v,
        (None, None) => {
            return Err("vocabulary size unknown: logits dimension is symbolic and config.json has no vocab_size".into())
        }
    };
    let heads = json_usize(config, &["num_attention_heads", "n_head"]);
    let kv_heads = layout
        .kv_heads
        .or_else(|| json_usize(config, &["num_key_value_heads"]))
        .or(heads)
        .ok_or("KV head count unknown: symbolic in the graph and absent from config.json")?;
    let head_dim = layout
        .head_dim
        .or_else(|| json_usize(config, &["head_dim"]))
        .or_else(|| Some(json_usize(config, &["hidden_size", "n_embd"])?.checked_div(heads?)?))
        .ok_or("head size unknown: symbolic in the graph and absent from config.json")?;
    let context_limit = json_usize(config, &["max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length"])
        .unwrap_or(DEFAULT_CONTEXT_LIMIT);
    // Zero would make every call fail later with a confusing error (or divide by zero); absurdly
    // large values would make the first generation try to allocate it all. Refuse both here.
    for (what, value, max) in [
        ("vocabulary size", vocab_size, MAX_VOCAB),
        ("KV head count", kv_heads, MAX_KV_DIM),
        ("head size", head_dim, MAX_KV_DIM),
        ("context length", context_limit, usize::MAX),
    ] {
        if value == 0 || value > max {
            return Err(format!("implausible {what} {value} (from the graph or config.json)"));
        }
    }
    let eos_ids = json_ids(generation, "eos_token_id").or_else(|| json_ids(config, "eos_token_id")).unwrap_or_default();
    if let Some(&bad) = eos_ids.iter().find(|&&e| e >= vocab_size as u64) {
        return Err(format!("eos_token_id {bad} is outside the vocabulary of {vocab_size}"));
    }
    let eos_ids = eos_ids.into_iter().map(|e| e as u32).collect();
    Ok(ModelInfo { vocab_size, context_limit, eos_ids, layers: layout.layers.len(), kv_heads, head_dim, tokenizer_fingerprint })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_floats_convert_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x0200), 2f32.powi(-15));
        assert!(f16_to_f32(0x7c00).is_infinite());
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
    }

    fn symbolic_decoder() -> (Vec<TensorSpec>, Vec<TensorSpec>) {
        let t = |name: &str, elem, shape: &[i64]| TensorSpec { name: name.into(), elem, shape: shape.to_vec() };
        let i = vec![
            t("input_ids", ElemType::I64, &[-1, -1]),
            t("past_key_values.0.key", ElemType::F32, &[-1, -1, -1, -1]),
            t("past_key_values.0.value", ElemType::F32, &[-1, -1, -1, -1]),
        ];
        let o = vec![
            t("logits", ElemType::F32, &[-1, -1, -1]),
            t("present.0.key", ElemType::F32, &[-1, -1, -1, -1]),
            t("present.0.value", ElemType::F32, &[-1, -1, -1, -1]),
        ];
        (i, o)
    }

    #[test]
    fn config_values_that_cannot_work_are_refused_at_load() {
        let (i, o) = symbolic_decoder();
        let info = |config: &str, generation: Option<&str>| {
            info_from_metadata(&i, &o, Some(config.as_bytes()), generation.map(str::as_bytes))
        };
        let good = r#"{"vocab_size": 512, "num_attention_heads": 4, "hidden_size": 64, "max_position_embeddings": 128}"#;
        let (_, ok) = info(good, Some(r#"{"eos_token_id": [2, 3]}"#)).unwrap();
        assert_eq!(
            (ok.vocab_size, ok.kv_heads, ok.head_dim, ok.context_limit, ok.eos_ids.clone()),
            (512, 4, 16, 128, vec![2, 3])
        );
        // Found by the layout fuzz target: zero heads divided by zero.
        let e = info(r#"{"vocab_size": 512, "num_attention_heads": 0, "hidden_size": 64}"#, None).unwrap_err();
        assert!(e.contains("head"), "{e}");
        for (config, needle) in [
            (r#"{"vocab_size": 0, "num_attention_heads": 4, "hidden_size": 64}"#, "vocabulary size 0"),
            (r#"{"vocab_size": 512, "num_attention_heads": 128, "hidden_size": 64}"#, "head size 0"),
            (r#"{"vocab_size": 512, "num_attention_heads": 4, "num_key_value_heads": 0, "hidden_size": 64}"#, "KV head count 0"),
            (r#"{"vocab_size": 512, "num_attention_heads": 4, "hidden_size": 64, "n_positions": 0}"#, "context length 0"),
            (r#"{"vocab_size": 1099511627776, "num_attention_heads": 4, "hidden_size": 64}"#, "vocabulary size 1099511627776"),
        ] {
            let e = info(config, None).unwrap_err();
            assert!(e.contains(needle), "{config}: {e}");
        }
        // An EOS id that only fits the vocabulary once truncated to 32 bits.
        let e = info(good, Some(r#"{"eos_token_id": 4294967298}"#)).unwrap_err();
        assert!(e.contains("4294967298"), "{e}");
        assert!(info("{", None).unwrap_err().contains("invalid JSON"));
    }

    #[test]
    fn devices_parse() {
        assert_eq!("cpu".parse::<Device>().unwrap(), Device::Cpu);
        assert_eq!("cuda:1".parse::<Device>().unwrap(), Device::Cuda(1));
        assert!("gpu".parse::<Device>().is_err());
    }
}
