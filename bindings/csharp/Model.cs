// Model.cs: models and their load options. Part of the C# binding of libspecdec (bindings/csharp/README.md;
// conventions shared by every file: Library.cs).

using System;
using System.Collections.Generic;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;

namespace Specdec
{
    /// <summary>
    /// A loaded decoder model (a folder with model.onnx, config.json, generation_config.json, or
    /// an .onnx file). Immutable and thread-safe: share one Model among generators and threads.
    /// </summary>
    public sealed class Model : IDisposable
    {
        internal readonly ModelHandle Handle;

        private Model(ModelHandle handle)
        {
            Handle = handle;
        }

        /// <summary>
        /// Load a model. <paramref name="device"/>: "cpu", "cuda" or "cuda:N" (null: "cpu");
        /// <paramref name="intraThreads"/>: ONNX Runtime intra-op threads, 0 lets it choose.
        /// Throws SpecdecException: Io (missing path), InvalidModel, UnsupportedLayout,
        /// InvalidArgument (unknown device, negative threads), Unavailable (cuda where it
        /// cannot run), RuntimeLoad. For the other options see Load(string, ModelOptions).
        /// </summary>
        public static Model Load(string path, string device = "cpu", int intraThreads = 0)
        {
            if (intraThreads < 0)
            {
                throw new SpecdecException(Status.InvalidArgument, "intraThreads must be >= 0, got " + intraThreads);
            }
            return Load(path, new ModelOptions { Device = device, IntraThreads = (uint)intraThreads });
        }

        /// <summary>
        /// Load a model with <paramref name="options"/> (null: the defaults). Throws
        /// SpecdecException: Io (missing path, unknown Variant), InvalidModel, UnsupportedLayout,
        /// InvalidArgument (a bad option, or a folder holding several variants and no Variant:
        /// the message names them), Unavailable (cuda where it cannot run, without CudaFallback),
        /// RuntimeLoad.
        /// </summary>
        public static Model Load(string path, ModelOptions options)
        {
            Library.CheckAbi();
            if (path == null) throw new ArgumentNullException("path");
            byte[] p = Interop.Utf8Z(path, "path");
            using (ModelOptionsHandle native = (options ?? new ModelOptions()).ToNative())
            {
                ModelHandle handle;
                IntPtr err = IntPtr.Zero;
                Status status = NativeMethods.specdec_model_load(p, native, out handle, ref err);
                if (status != Status.Ok)
                {
                    if (handle != null) handle.Dispose();
                    throw Interop.TakeError(status, err);
                }
                Interop.FreeError(err);
                return new Model(handle);
            }
        }

        /// <summary>
        /// Load a single-file model (no external data) from <paramref name="data"/> (copied by
        /// the library), with the texts of its config.json and generation_config.json (null:
        /// none). The model has no tokenizer fingerprint. Throws as Load, and SpecdecException
        /// Io for invalid JSON, InvalidArgument or NullParameter for empty data.
        /// </summary>
        public static Model LoadFromMemory(byte[] data, string configJson, string generationConfigJson = null,
                                           ModelOptions options = null)
        {
            Library.CheckAbi();
            if (data == null) throw new ArgumentNullException("data");
            byte[] cfg = configJson == null ? null : Interop.Utf8Z(configJson, "configJson");
            byte[] gen = generationConfigJson == null ? null : Interop.Utf8Z(generationConfigJson, "generationConfigJson");
            using (ModelOptionsHandle native = (options ?? new ModelOptions()).ToNative())
            {
                ModelHandle handle;
                IntPtr err = IntPtr.Zero;
                Status status = NativeMethods.specdec_model_load_from_memory(data.Length == 0 ? null : data,
                    (UIntPtr)data.Length, cfg, gen, native, out handle, ref err);
                if (status != Status.Ok)
                {
                    if (handle != null) handle.Dispose();
                    throw Interop.TakeError(status, err);
                }
                Interop.FreeError(err);
                return new Model(handle);
            }
        }

        /// <summary>End-of-sequence ids (generation_config.json, else config.json); empty when none is stated.</summary>
        public uint[] EosIds
        {
            get
            {
                IntPtr ids;
                UIntPtr n;
                IntPtr err = IntPtr.Zero;
                Interop.Check(NativeMethods.specdec_model_eos_ids(Handle, out ids, out n, ref err), err);
                return Interop.CopyTokens(ids, n);
            }
        }

        /// <summary>The beginning-of-sequence id, or null when none is stated.</summary>
        public uint? BosId
        {
            get { long v = NativeMethods.specdec_model_bos_id(Handle); return v < 0 ? (uint?)null : (uint)v; }
        }

        /// <summary>The padding id, or null when none is stated.</summary>
        public uint? PadId
        {
            get { long v = NativeMethods.specdec_model_pad_id(Handle); return v < 0 ? (uint?)null : (uint)v; }
        }

        /// <summary>config.json's architectures[0] (e.g. "LlamaForCausalLM"), else its model_type; "" when unknown.</summary>
        public string Architecture
        {
            get { return Interop.PtrToUtf8(NativeMethods.specdec_model_architecture(Handle)); }
        }

        /// <summary>Decoder layers.</summary>
        public int LayerCount
        {
            get { return checked((int)NativeMethods.specdec_model_layer_count(Handle).ToUInt64()); }
        }

        /// <summary>Key/value heads per layer (fewer than the attention heads under grouped-query attention).</summary>
        public int KvHeadCount
        {
            get { return checked((int)NativeMethods.specdec_model_kv_head_count(Handle).ToUInt64()); }
        }

        /// <summary>Size of one attention head.</summary>
        public int HeadSize
        {
            get { return checked((int)NativeMethods.specdec_model_head_size(Handle).ToUInt64()); }
        }

        /// <summary>Bytes of KV cache one token takes (keys and values of every layer).</summary>
        public long KvBytesPerToken
        {
            get { return checked((long)NativeMethods.specdec_model_kv_bytes_per_token(Handle).ToUInt64()); }
        }

        /// <summary>Element type of the KV cache: "float32", "float16" or "bfloat16".</summary>
        public string KvDtype
        {
            get { return Interop.PtrToUtf8(NativeMethods.specdec_model_kv_dtype(Handle)); }
        }

        /// <summary>Where the model runs: "cpu" or "cuda:N".</summary>
        public string Device
        {
            get { return Interop.PtrToUtf8(NativeMethods.specdec_model_device(Handle)); }
        }

        /// <summary>Where <see cref="ContextLimit"/> comes from.</summary>
        public ContextLimitSource ContextLimitSource
        {
            get { return NativeMethods.specdec_model_context_limit_source(Handle); }
        }

        /// <summary>
        /// The CUDA device the model runs on, or -1 when it runs on the CPU (also after a CUDA
        /// fallback, see ModelOptions.CudaFallback).
        /// </summary>
        public int CudaDevice
        {
            get { return NativeMethods.specdec_model_cuda_device(Handle); }
        }

        /// <summary>Vocabulary size of the model.</summary>
        public int VocabSize
        {
            get { return checked((int)NativeMethods.specdec_model_vocab_size(Handle).ToUInt64()); }
        }

        /// <summary>Longest sequence (prompt + generated tokens) the model accepts.</summary>
        public int ContextLimit
        {
            get { return checked((int)NativeMethods.specdec_model_context_limit(Handle).ToUInt64()); }
        }

        /// <summary>Release this handle (generators built from the model keep it alive). Idempotent.</summary>
        public void Dispose()
        {
            Handle.Dispose();
        }
    }

    // ------------------------------------------------------------------------------------------
    // ModelOptions

    /// <summary>
    /// Options for <see cref="Model.Load(string, ModelOptions)"/>, a plain managed object: a null
    /// property keeps the library's default. Values are validated by the library when loading.
    /// </summary>
    public sealed class ModelOptions
    {
        /// <summary>"cpu" (default), "cuda" or "cuda:N".</summary>
        public string Device { get; set; }

        /// <summary>ONNX Runtime intra-op threads of a pool of the model's own; 0 (default) runs the model on the process's shared pool (one thread per core), which a target and its draft share.</summary>
        public uint? IntraThreads { get; set; }

        /// <summary>
        /// Which graph of a folder holding several to load: "q4" is model_q4.onnx (in the onnx/
        /// subfolder of onnx-community layouts), "fp16" model_fp16.onnx, "default" model.onnx.
        /// null (default): the folder's only graph; a folder with several is refused, naming them.
        /// </summary>
        public string Variant { get; set; }

        /// <summary>
        /// Whether a model asked to run on CUDA may load on the CPU where CUDA cannot be used
        /// (default false: loading throws Unavailable). Model.CudaDevice tells where it runs.
        /// </summary>
        public bool? CudaFallback { get; set; }

        /// <summary>
        /// Every call through ONNX Runtime's IoBinding with the KV cache in the device's memory
        /// (always on for CUDA; default false on the CPU, where it runs the CUDA code path and
        /// gives the same output).
        /// </summary>
        public bool? IoBinding { get; set; }

        /// <summary>
        /// Reduce logits on the model's device where sampling needs only the best of each row (the
        /// argmax, or the top-k candidates, cross to the host instead of whole rows). Null (default):
        /// on for CUDA, off on the CPU; on the CPU it gives the same tokens.
        /// </summary>
        public bool? DeviceReductions { get; set; }

        /// <summary>Whether idle ONNX Runtime worker threads spin before sleeping (default true).</summary>
        public bool? Spinning { get; set; }

        /// <summary>ONNX Runtime graph optimization level, 0 (none) to 3 (all, the default).</summary>
        public uint? OptimizationLevel { get; set; }

        /// <summary>
        /// The context limit, whatever config.json and the graph say; 0 or null (default) takes
        /// config.json's, else a learned position table's rows, else 2048 (with a warning).
        /// </summary>
        public ulong? ContextLimit { get; set; }

        internal ModelOptionsHandle ToNative()
        {
            ModelOptionsHandle o = NativeMethods.specdec_model_options_new();
            if (o.IsInvalid)
            {
                o.Dispose();
                throw new SpecdecException(Status.Panic, "specdec_model_options_new failed");
            }
            try
            {
                IntPtr err = IntPtr.Zero;
                if (Device != null) { Interop.Check(NativeMethods.specdec_model_options_set_device(o, Interop.Utf8Z(Device, "device"), ref err), err); err = IntPtr.Zero; }
                if (IntraThreads.HasValue) { Interop.Check(NativeMethods.specdec_model_options_set_intra_threads(o, IntraThreads.Value, ref err), err); err = IntPtr.Zero; }
                if (Variant != null) { Interop.Check(NativeMethods.specdec_model_options_set_variant(o, Interop.Utf8Z(Variant, "variant"), ref err), err); err = IntPtr.Zero; }
                if (CudaFallback.HasValue) { Interop.Check(NativeMethods.specdec_model_options_set_cuda_fallback(o, CudaFallback.Value, ref err), err); err = IntPtr.Zero; }
                if (IoBinding.HasValue) { Interop.Check(NativeMethods.specdec_model_options_set_io_binding(o, IoBinding.Value, ref err), err); err = IntPtr.Zero; }
                if (DeviceReductions.HasValue) { Interop.Check(NativeMethods.specdec_model_options_set_device_reductions(o, DeviceReductions.Value, ref err), err); err = IntPtr.Zero; }
                if (Spinning.HasValue) { Interop.Check(NativeMethods.specdec_model_options_set_spinning(o, Spinning.Value, ref err), err); err = IntPtr.Zero; }
                if (ContextLimit.HasValue) { Interop.Check(NativeMethods.specdec_model_options_set_context_limit(o, (UIntPtr)ContextLimit.Value, ref err), err); err = IntPtr.Zero; }
                if (OptimizationLevel.HasValue) { Interop.Check(NativeMethods.specdec_model_options_set_optimization_level(o, OptimizationLevel.Value, ref err), err); err = IntPtr.Zero; }
                return o;
            }
            catch
            {
                o.Dispose();
                throw;
            }
        }
    }
}
