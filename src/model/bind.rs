//! The IoBinding path: a model whose KV cache stays in its device's memory (CUDA, or the CPU when
//! forced so that this path is tested without a GPU). Besides the bound forward call it holds
//! helper sessions built with ONNX Runtime's model editor API: a Gather over the kept slots of
//! every KV tensor (a device cache's compaction), a Gather of the logits rows sampling reads and,
//! with device reductions, a Gather then TopK of those rows, so that only the k best logits of a
//! row (k = 1: the argmax) cross to the host instead of a whole vocabulary's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{IoBinding, Session};
use ort::value::{DynTensor, DynValue, Tensor, TensorElementType, TensorRefMut, ValueType};

use super::dtype::ElemType;
use super::io::{copy_last_rows, past_names, present_names, take_logits, take_presents, InputValue, Inputs};
use super::layout::Layout;
use super::session::{session_builder, with_cuda};
use super::{Device, ModelOptions};
use crate::error::{Error, Result};

/// The IoBinding path: presents bound to the device's memory and fed back as pasts as they are;
/// logits bound to host memory when every row is wanted, else left on the device and only the
/// wanted rows gathered to the host.
pub(super) struct Bound {
    pub(super) kv: Arc<DeviceKv>,
    /// CPU memory, for the logits rows that sampling reads.
    host: MemoryInfo<'static>,
    /// Inputs `x0` (the logits) and `keep` (row indices), output `y0` = Gather(x0, keep, axis 1),
    /// bound to `host`.
    rows: Mutex<Session>,
    /// With device reductions: inputs `x0` (the logits), `keep` (row indices) and `k` ([1] int64),
    /// outputs `values` and `indices` = TopK(Gather(x0, keep, axis 1), k, last axis, largest,
    /// sorted), bound to `host`. ONNX's TopK orders equal values by lower index first, which is
    /// the sampling transforms' tie-break (and ArgMax's), so k = 1 is the greedy choice.
    top: Option<Mutex<Session>>,
    /// Logits rows reduced by `top` so far (what tests and the GPU check read to see it used).
    reduced: AtomicU64,
    /// Whether the device is not the CPU (the empty first pasts are then allocated there).
    pub(super) off_host: bool,
}

impl Bound {
    pub(super) fn new(
        env: &ort::environment::Environment,
        device: Device,
        layout: &Layout,
        logits_type: TensorElementType,
        reductions: bool,
    ) -> Result<Bound> {
        let memory = match device {
            Device::Cpu => MemoryInfo::new(AllocationDevice::CPU, 0, AllocatorType::Device, MemoryType::Default)?,
            Device::Cuda(n) => MemoryInfo::new(AllocationDevice::CUDA, n as i32, AllocatorType::Device, MemoryType::Default)?,
        };
        let host = MemoryInfo::new(AllocationDevice::CPU, 0, AllocatorType::Device, MemoryType::Default)?;
        let kv_type = layout.kv_type.float_tensor_type();
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
        let top = match reductions {
            true => Some(Mutex::new(open(top_graph(logits_type).map_err(|e| unavailable(&e))?)?)),
            false => None,
        };
        Ok(Bound {
            kv: Arc::new(DeviceKv::new(memory, gather, n)),
            host,
            rows: Mutex::new(rows),
            top,
            reduced: AtomicU64::new(0),
            off_host: device != Device::Cpu,
        })
    }

    /// The last `rows` of `k` logits rows, gathered where the logits are and copied to the host.
    pub(super) fn gather_rows(&self, logits: &DynValue, k: usize, rows: usize, vocab: usize, out: &mut Vec<f32>) -> Result<()> {
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

    /// Whether the top-k helper session exists (device reductions on).
    pub(super) fn reduces(&self) -> bool {
        self.top.is_some()
    }

    /// The `k` best logits of each of the last `rows` of `kk` logits rows, reduced where the logits
    /// are: `ids` and `values` get rows × k entries, each row's in the transforms' order (value
    /// descending, lower id first among equals).
    pub(super) fn top_rows(
        &self,
        logits: &DynValue,
        kk: usize,
        rows: usize,
        k: usize,
        ids: &mut Vec<u32>,
        values: &mut Vec<f32>,
    ) -> Result<()> {
        let top = self.top.as_ref().ok_or_else(|| Error::Inference("device reductions are off for this model".into()))?;
        let keep = Tensor::from_array(([rows], ((kk - rows) as i64..kk as i64).collect::<Vec<_>>()))?;
        let count = Tensor::from_array(([1usize], vec![k as i64]))?;
        let mut session = top.lock().unwrap_or_else(|e| e.into_inner());
        let mut binding = session.create_binding()?;
        binding.bind_input("x0", logits)?;
        binding.bind_input("keep", &keep)?;
        binding.bind_input("k", &count)?;
        binding.bind_output_to_device("values", &self.host)?;
        binding.bind_output_to_device("indices", &self.host)?;
        let mut outputs = session.run_binding(&binding)?;
        let none = |name: &str| Error::Inference(format!("logits top-k gave no `{name}`"));
        let picked = outputs.remove("values").ok_or_else(|| none("values"))?;
        // [1, rows, k] values, read as rows of k like any logits rows.
        copy_last_rows(&picked, rows, rows, k, values)?;
        let indices = outputs.remove("indices").ok_or_else(|| none("indices"))?;
        let (shape, data) = indices.try_extract_tensor::<i64>()?;
        if data.len() != rows * k {
            return Err(Error::Inference(format!("logits top-k indices shaped {shape:?}, expected [1, {rows}, {k}]")));
        }
        ids.clear();
        ids.extend(data.iter().map(|&i| i as u32));
        self.reduced.fetch_add(rows as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Logits rows reduced on the device so far.
    pub(super) fn reduced_rows(&self) -> u64 {
        self.reduced.load(Ordering::Relaxed)
    }

    /// One forward call through IoBinding: the pasts are bound where they are, the presents to the
    /// device's memory (they stay there and become the next pasts) or, with `shared` buffers, to
    /// those same buffers (past and present at once, written in place by the graph); the logits
    /// where `logits` says. Returns the new presents (none with shared buffers) and the logits
    /// (none when they went to the caller's buffer).
    pub(super) fn call(
        &self,
        session: &mut Session,
        layout: &Layout,
        inputs: &Inputs<'_>,
        shared: Option<(&mut [DynTensor], &mut Option<KeptBinding>)>,
        logits: LogitsTo<'_>,
    ) -> Result<(Option<Vec<DynTensor>>, Option<DynValue>)> {
        // IoBinding keeps owned inputs without a copy; the pasts are bound as they are.
        let mut owned: Vec<(&str, DynTensor)> = Vec::new();
        let mut pasts: Vec<(&str, &DynTensor)> = Vec::new();
        for (name, value) in inputs.named() {
            match value {
                InputValue::Ints(elem, data) => owned.push((name, owned_int_tensor(elem, data)?)),
                InputValue::Flag(b) => owned.push((name, Tensor::from_array(([1usize], vec![b]))?.upcast())),
                InputValue::Past(t) => pasts.push((name, t)),
            }
        }
        let fresh = shared.is_none();
        let mut local;
        let binding = match shared {
            Some((buffers, kept)) => KeptBinding::for_buffers(kept, session, layout, buffers)?,
            None => {
                local = session.create_binding()?;
                for name in present_names(layout) {
                    local.bind_output_to_device(name, &self.kv.memory)?;
                }
                &mut local
            }
        };
        for (name, t) in owned.iter().map(|(n, t)| (*n, t)).chain(pasts) {
            binding.bind_input(name, t)?;
        }
        let name = layout.names.logits.as_str();
        let direct = match logits {
            LogitsTo::Buffer(buf, k) => {
                let shape = [1, k, buf.len() / k.max(1)];
                binding.bind_output(name, TensorRefMut::from_array_view_mut((shape, buf))?)?;
                Some(shape)
            }
            LogitsTo::Host => binding.bind_output_to_device(name, &self.host).map(|()| None)?,
            LogitsTo::Device => binding.bind_output_to_device(name, &self.kv.memory).map(|()| None)?,
        };
        // A graph whose logits are not [1, k, vocab] fails here rather than in the shape check
        // a copy would have made: say what was bound.
        let mut outputs = session.run_binding(binding).map_err(|e| match direct {
            Some(shape) => Error::Inference(format!("{e} (`{name}` bound as f32 {shape:?}: [batch, tokens fed, vocabulary])")),
            None => e.into(),
        })?;
        let presents = if fresh { Some(take_presents(layout, &mut outputs)?) } else { None };
        let logits = if direct.is_some() { None } else { Some(take_logits(layout, &mut outputs)?) };
        Ok((presents, logits))
    }
}

/// A shared-buffer cache's IoBinding, kept from call to call: its buffers stay bound as past and
/// present, so that a call binds only its small inputs and the logits (on a model of a few
/// megabytes, binding every layer's buffers twice a call was a fifth of a draft step).
pub(crate) struct KeptBinding {
    binding: IoBinding,
    /// The bound buffers' data, to notice buffers replaced since (their addresses, not borrowed).
    buffers: Vec<usize>,
}

impl KeptBinding {
    /// The binding of `buffers`, made (or made again, when the buffers changed) in `kept`.
    fn for_buffers<'k>(
        kept: &'k mut Option<KeptBinding>,
        session: &mut Session,
        layout: &Layout,
        buffers: &mut [DynTensor],
    ) -> Result<&'k mut IoBinding> {
        let address = |t: &DynTensor| t.data_ptr() as usize;
        let current = match kept.take() {
            // The per-token path: compared in place, nothing allocated.
            Some(k) if k.buffers.iter().copied().eq(buffers.iter().map(address)) => k,
            _ => {
                let mut binding = session.create_binding()?;
                for ((past, present), buffer) in past_names(layout).zip(present_names(layout)).zip(buffers.iter_mut()) {
                    binding.bind_input(past, buffer)?;
                    binding.bind_output(present, buffer)?;
                }
                KeptBinding { binding, buffers: buffers.iter().map(address).collect() }
            }
        };
        Ok(&mut kept.insert(current).binding)
    }
}

impl std::fmt::Debug for KeptBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptBinding").field("buffers", &self.buffers.len()).finish()
    }
}

/// Where a bound call puts its logits.
pub(super) enum LogitsTo<'a> {
    /// Straight into the caller's row buffer (f32 logits, every one of the call's `k` rows read):
    /// no copy afterwards, and memory that stays warm from call to call.
    Buffer(&'a mut [f32], usize),
    /// Host memory that ONNX Runtime allocates, to be copied from.
    Host,
    /// The device, to be gathered or reduced there ([`Bound::gather_rows`], [`Bound::top_rows`]).
    Device,
}

/// An owned integer tensor [1, len] of the input's element type.
fn owned_int_tensor(elem: ElemType, data: &[i64]) -> Result<DynTensor> {
    Ok(match elem {
        ElemType::I32 => Tensor::from_array(([1usize, data.len()], data.iter().map(|&v| v as i32).collect::<Vec<_>>()))?.upcast(),
        _ => Tensor::from_array(([1usize, data.len()], data.to_vec()))?.upcast(),
    })
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

/// Gather the kept rows of [1, n, vocab] logits `x0` (`keep`, int64) and take the `k` best of
/// each: outputs `values` (the logits' type) and `indices` (int64), [1, rows, k].
fn top_graph(elem: TensorElementType) -> ort::Result<ort::editor::Model> {
    use ort::editor::{Graph, Node, Opset, ONNX_DOMAIN};
    use ort::operator::Attribute;
    use ort::value::{Outlet, Shape, SymbolicDimensions};
    let tensor = |name: &str, ty, rank: usize| {
        Outlet::new(
            name,
            ValueType::Tensor { ty, shape: Shape::new(vec![-1i64; rank]), dimension_symbols: SymbolicDimensions::empty(rank) },
        )
    };
    let mut graph = Graph::new()?;
    graph.set_inputs([
        tensor("x0", elem, 3),
        tensor("keep", TensorElementType::Int64, 1),
        tensor("k", TensorElementType::Int64, 1),
    ])?;
    graph.set_outputs([tensor("values", elem, 3), tensor("indices", TensorElementType::Int64, 3)])?;
    graph.add_node(Node::new("Gather", ONNX_DOMAIN, "gather", ["x0", "keep"], ["rows"], [Attribute::new("axis", 1i64)?])?)?;
    let attrs = [Attribute::new("axis", -1i64)?, Attribute::new("largest", 1i64)?, Attribute::new("sorted", 1i64)?];
    graph.add_node(Node::new("TopK", ONNX_DOMAIN, "topk", ["rows", "k"], ["values", "indices"], attrs)?)?;
    let mut model = ort::editor::Model::new([Opset::new(ONNX_DOMAIN, 18)?])?;
    model.set_graph(graph)?;
    Ok(model)
}

/// What a device-resident cache needs from its model: the memory its tensors are bound to and a
/// session that gathers the kept slots of every KV tensor in one call on the model's execution
/// provider (the compaction of a device cache, with no copy through host memory).
pub(super) struct DeviceKv {
    pub(super) memory: MemoryInfo<'static>,
    /// Inputs `x0..x{n-1}` and `keep` (int64 slot indices), outputs `y0..y{n-1}` = Gather(x, keep, axis 2).
    gather: Mutex<Session>,
    tensors: usize,
}

impl DeviceKv {
    pub(super) fn new(memory: MemoryInfo<'static>, gather: Session, tensors: usize) -> Self {
        DeviceKv { memory, gather: Mutex::new(gather), tensors }
    }

    /// Fresh tensors holding only the slots in `keep`, on the device.
    pub(super) fn gather_slots(&self, tensors: &[DynTensor], keep: Vec<i64>) -> Result<Vec<DynTensor>> {
        if tensors.len() != self.tensors {
            return Err(Error::Inference(format!("KV gather built for {} tensors, given {}", self.tensors, tensors.len())));
        }
        let n = keep.len();
        let keep = Tensor::from_array(([n], keep))?;
        let mut session = self.gather.lock().unwrap_or_else(|e| e.into_inner());
        let mut binding = session.create_binding()?;
        for (i, t) in tensors.iter().enumerate() {
            binding.bind_input(format!("x{i}"), t)?;
        }
        binding.bind_input("keep", &keep)?;
        for i in 0..tensors.len() {
            binding.bind_output_to_device(format!("y{i}"), &self.memory)?;
        }
        let mut outputs = session.run_binding(&binding)?;
        let mut out = Vec::with_capacity(tensors.len());
        for i in 0..tensors.len() {
            let name = format!("y{i}");
            let v = outputs.remove(name.as_str()).ok_or_else(|| Error::Inference(format!("KV gather gave no `{name}`")))?;
            out.push(v.downcast()?);
        }
        Ok(out)
    }
}
