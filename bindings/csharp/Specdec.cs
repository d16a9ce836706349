// Specdec.cs: a P/Invoke binding of the specdec C ABI (include/specdec.h) for .NET and Mono.
//
// One file, no dependencies beyond mscorlib/netstandard2.0, C# 7 syntax (mcs accepts it):
//   mcs -target:library -out:Specdec.dll bindings/csharp/Specdec.cs
//
// Conventions shared by every class here:
// - Native library: every import names "specdec", so the runtime looks for libspecdec.so
//   (specdec.dll on Windows, libspecdec.dylib on macOS). Mono: beside the assembly, then
//   dlopen's search (LD_LIBRARY_PATH, ld.so.cache), or a <dllmap dll="specdec" target="..."/> in
//   a .config file. .NET: the app's folder and the NuGet runtimes/<rid>/native folders, then
//   dlopen's search; NativeLibrary.SetDllImportResolver(typeof(Specdec.Model).Assembly, ...) can
//   point it anywhere. ONNX Runtime is found by libspecdec itself (see bindings/csharp/README.md).
// - Errors: every failing call throws SpecdecException, whose Code is the library's status and
//   whose Message is the library's message; the native error object is always freed first.
//   Using an object after Dispose throws ObjectDisposedException (the SafeHandle does that).
//   The one exception is cancellation through a CancellationToken, see Generator.Generate.
// - Ownership: each class owns one native handle inside a SafeHandle, whose ReleaseHandle calls
//   the matching specdec_*_free exactly once (on Dispose, or from the finalizer). Dispose may be
//   called any number of times. A SafeHandle passed to a native call is reference-counted for
//   the duration of the call, so a Dispose racing with a call frees the handle only afterwards.
//   The library reference-counts models and tokenizers itself: a Generator keeps working after
//   the Model objects it was built from are disposed.
// - Thread-safety (as in the C ABI): Model and Tokenizer are immutable and may be used from many
//   threads at once. Generator and StreamDecoder need one thread at a time, except
//   Generator.Cancel() and ClearCancel(), which any thread may call at any time. Drafters are
//   immutable recipes that many generators and threads may share.
// - Strings cross the boundary as UTF-8, marshalled by hand (Encoding.UTF8 into a NUL-terminated
//   byte[] on the way in; byte copies decoded as UTF-8 on the way out), never with the
//   runtime's default string marshalling, which is not UTF-8 on .NET Framework / Windows.
// - Sizes (size_t) are UIntPtr in the imports; the public API uses int and uint[].

using System;
using System.Collections.Generic;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;

namespace Specdec
{
    // ------------------------------------------------------------------------------------------
    // Status codes and finish reasons (values as in include/specdec.h)

    /// <summary>The specdec_status of a call (SPECDEC_STATUS_*).</summary>
    public enum Status : uint
    {
        Ok = 0,
        /// <summary>A required pointer argument was NULL.</summary>
        NullParameter = 7000,
        /// <summary>A value is out of its documented range.</summary>
        InvalidArgument = 7001,
        /// <summary>ONNX Runtime could not be loaded.</summary>
        RuntimeLoad = 7002,
        /// <summary>A file or folder could not be read.</summary>
        Io = 7003,
        /// <summary>The file is not a loadable ONNX model.</summary>
        InvalidModel = 7004,
        /// <summary>The model is not a decoder layout specdec can drive.</summary>
        UnsupportedLayout = 7005,
        /// <summary>Draft and target vocabularies differ.</summary>
        VocabMismatch = 7006,
        /// <summary>A token id is not below the vocabulary size.</summary>
        TokenOutOfRange = 7007,
        /// <summary>The sequence would exceed the model's context length.</summary>
        ContextLimit = 7008,
        /// <summary>Tokenizer loading, encoding or decoding failed.</summary>
        Tokenizer = 7009,
        /// <summary>Generation was cancelled.</summary>
        Cancelled = 7010,
        /// <summary>ONNX Runtime failed while running a model.</summary>
        Inference = 7011,
        /// <summary>Not available in this build (for example the CUDA execution provider).</summary>
        Unavailable = 7012,
        /// <summary>The caller's buffer is too small (handled inside this binding).</summary>
        BufferTooSmall = 7013,
        /// <summary>A string argument is not valid UTF-8 (or, here, not encodable as UTF-8).</summary>
        InvalidUtf8 = 7014,
        /// <summary>The generator is in use by another call (for example from inside its own callback).</summary>
        Busy = 7015,
        /// <summary>The request's KV caches would exceed the generator's KV memory limit.</summary>
        MemoryBudget = 7016,
        /// <summary>A host callback (a draft callback) reported failure.</summary>
        Callback = 7020,
        /// <summary>An internal error (a bug in specdec) was caught at the ABI boundary.</summary>
        Panic = 7099,
    }

    /// <summary>Why a generation ended (specdec_finish_reason).</summary>
    public enum FinishReason : uint
    {
        /// <summary>Not finished yet.</summary>
        None = 0,
        /// <summary>An end-of-sequence token was generated (it is part of the tokens).</summary>
        Eos = 1,
        /// <summary>MaxNewTokens were generated.</summary>
        MaxTokens = 2,
        /// <summary>A stop sequence was generated (it is part of the tokens).</summary>
        StopSequence = 3,
        /// <summary>The callback asked to stop (returned false or threw).</summary>
        Stopped = 4,
    }

    /// <summary>How the draft length of each round is chosen (specdec_draft_policy).</summary>
    public enum DraftPolicy : uint
    {
        /// <summary>Gamma proposals every round (fewer only when the drafter runs out or near the end). The default.</summary>
        Fixed = 0,
        /// <summary>Start at Gamma; +2 after a round whose proposals were all accepted, -1 otherwise.</summary>
        Heuristic = 1,
        /// <summary>
        /// Gamma in 0..16 chosen every round from the measured acceptance and costs, drafting stopped
        /// early after unsure guesses, learning carried to later generations on the same models.
        /// Sampled output with a fixed seed is then reproducible only in distribution; greedy output
        /// is the target's own whatever the policy.
        /// </summary>
        Auto = 2,
    }

    /// <summary>The order of a <see cref="CountsDrafter"/>.</summary>
    public enum CountsOrder : uint
    {
        /// <summary>The most frequent tokens.</summary>
        Unigram = 1,
        /// <summary>The most frequent successors of the last token.</summary>
        Bigram = 2,
    }

    // ------------------------------------------------------------------------------------------
    // Errors

    /// <summary>
    /// Thrown by every failing call. <see cref="Code"/> is the library's status, <see
    /// cref="Exception.Message"/> the library's message.
    /// </summary>
    public class SpecdecException : Exception
    {
        public SpecdecException(Status code, string message) : base(message)
        {
            Code = code;
        }

        public SpecdecException(Status code, string message, Exception inner) : base(message, inner)
        {
            Code = code;
        }

        /// <summary>The status code.</summary>
        public Status Code { get; private set; }

        /// <summary>"SPECDEC_STATUS_IO", ... (from the library).</summary>
        public string CodeName { get { return Library.StatusName(Code); } }
    }

    // ------------------------------------------------------------------------------------------
    // Statistics

    /// <summary>
    /// Counters and timings of a generator, cumulative over its prompts: the C struct
    /// specdec_stats, field for field. <see cref="StructSize"/> is set by <see
    /// cref="Generator.Stats"/> to Marshal.SizeOf(typeof(Stats)) (120 bytes: SPECDEC_STATS_V1_SIZE,
    /// 104, plus the fields added in 0.2).
    /// </summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct Stats
    {
        /// <summary>size_t struct_size: the bytes the library may write.</summary>
        public UIntPtr StructSize;
        /// <summary>ONNX Runtime calls of the target.</summary>
        public ulong TargetCalls;
        /// <summary>ONNX Runtime calls of the draft.</summary>
        public ulong DraftCalls;
        /// <summary>Iterations (one verification each).</summary>
        public ulong Rounds;
        /// <summary>Tokens proposed by the draft.</summary>
        public ulong Drafted;
        /// <summary>Drafted tokens the target accepted.</summary>
        public ulong Accepted;
        /// <summary>Tokens generated.</summary>
        public ulong NewTokens;
        /// <summary>Accepted / Drafted (0 when nothing was drafted).</summary>
        public double AcceptanceRate;
        /// <summary>NewTokens / Rounds.</summary>
        public double TokensPerTargetCall;
        /// <summary>Wall time in ONNX Runtime calls of the draft.</summary>
        public double DraftSeconds;
        /// <summary>Wall time in ONNX Runtime calls of the target.</summary>
        public double TargetSeconds;
        /// <summary>Everything else.</summary>
        public double OtherSeconds;
        /// <summary>All of it.</summary>
        public double TotalSeconds;
        /// <summary>(Since 0.2) Rounds that ended in a rejection; the others accepted every proposal.</summary>
        public ulong Rejected;
        /// <summary>
        /// (Since 0.2) The paper's acceptance rate per verified position: Accepted / (Accepted +
        /// Rejected); proposals after a rejection are never judged and do not count.
        /// </summary>
        public double Alpha;
    }

    // ------------------------------------------------------------------------------------------
    // Library-wide functions

    /// <summary>Version, ABI check, ONNX Runtime loading, status names.</summary>
    public static class Library
    {
        /// <summary>The ABI version this binding was written for (SPECDEC_ABI_VERSION).</summary>
        public const uint AbiVersion = 1;

        /// <summary>Largest draft length a generation accepts (SPECDEC_MAX_GAMMA).</summary>
        public const uint MaxGamma = 64;

        /// <summary>Size of the first version of specdec_stats (SPECDEC_STATS_V1_SIZE).</summary>
        public const int StatsV1Size = 104;

        private static int abiChecked; // 0: not yet, 1: checked and equal

        /// <summary>The loaded library's version, "MAJOR.MINOR.PATCH".</summary>
        public static string Version
        {
            get { return Interop.PtrToUtf8(NativeMethods.specdec_version()); }
        }

        /// <summary>The loaded library's ABI version (must equal <see cref="AbiVersion"/>).</summary>
        public static uint LoadedAbiVersion
        {
            get { return NativeMethods.specdec_abi_version(); }
        }

        /// <summary>
        /// Throws SpecdecException (Unavailable) when the loaded libspecdec has another ABI than
        /// this binding. Model.Load and Tokenizer.Load call it once per process.
        /// </summary>
        public static void CheckAbi()
        {
            if (Volatile.Read(ref abiChecked) == 1) return;
            uint loaded = NativeMethods.specdec_abi_version();
            if (loaded != AbiVersion)
            {
                throw new SpecdecException(Status.Unavailable,
                    "libspecdec has ABI version " + loaded + " but this binding was written for " + AbiVersion);
            }
            Volatile.Write(ref abiChecked, 1);
        }

        /// <summary>
        /// Load ONNX Runtime for the process from <paramref name="ortLibraryPath"/>; null uses
        /// $ORT_DYLIB_PATH, then libonnxruntime.so beside libspecdec, then the source checkout's
        /// .deps/onnxruntime. Optional: loading a model does it with the defaults. Throws
        /// SpecdecException (RuntimeLoad). Thread-safe.
        /// </summary>
        public static void InitRuntime(string ortLibraryPath = null)
        {
            CheckAbi();
            byte[] path = ortLibraryPath == null ? null : Interop.Utf8Z(ortLibraryPath, "ortLibraryPath");
            IntPtr err = IntPtr.Zero;
            Status st = NativeMethods.specdec_runtime_init(path, ref err);
            Interop.Check(st, err);
        }

        /// <summary>"SPECDEC_STATUS_OK", ... for any status ("SPECDEC_STATUS_UNKNOWN" otherwise).</summary>
        public static string StatusName(Status status)
        {
            return Interop.PtrToUtf8(NativeMethods.specdec_status_name((uint)status));
        }
    }

    // ------------------------------------------------------------------------------------------
    // Model

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

        /// <summary>ONNX Runtime intra-op threads; 0 (default) lets ONNX Runtime choose.</summary>
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

        /// <summary>Whether idle ONNX Runtime worker threads spin before sleeping (default true).</summary>
        public bool? Spinning { get; set; }

        /// <summary>ONNX Runtime graph optimization level, 0 (none) to 3 (all, the default).</summary>
        public uint? OptimizationLevel { get; set; }

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
                if (Spinning.HasValue) { Interop.Check(NativeMethods.specdec_model_options_set_spinning(o, Spinning.Value, ref err), err); err = IntPtr.Zero; }
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

    // ------------------------------------------------------------------------------------------
    // Tokenizer

    /// <summary>A tokenizer.json. Immutable and thread-safe.</summary>
    public sealed class Tokenizer : IDisposable
    {
        internal readonly TokenizerHandle Handle;

        private Tokenizer(TokenizerHandle handle)
        {
            Handle = handle;
        }

        /// <summary>
        /// Load a tokenizer.json, or a folder holding one (a model folder works). Throws
        /// SpecdecException: Io, Tokenizer.
        /// </summary>
        public static Tokenizer Load(string path)
        {
            Library.CheckAbi();
            if (path == null) throw new ArgumentNullException("path");
            byte[] p = Interop.Utf8Z(path, "path");
            TokenizerHandle handle;
            IntPtr err = IntPtr.Zero;
            Status st = NativeMethods.specdec_tokenizer_load(p, out handle, ref err);
            if (st != Status.Ok)
            {
                if (handle != null) handle.Dispose();
                throw Interop.TakeError(st, err);
            }
            Interop.FreeError(err);
            return new Tokenizer(handle);
        }

        /// <summary>
        /// Token ids of <paramref name="text"/> (special tokens are not added). Negotiates the
        /// buffer: asks with capacity 0, gets the size with BufferTooSmall, calls again. Throws
        /// SpecdecException: InvalidUtf8 (a lone surrogate), Tokenizer.
        /// </summary>
        public uint[] Encode(string text)
        {
            if (text == null) throw new ArgumentNullException("text");
            byte[] bytes = Interop.Utf8(text, "text"); // length-delimited: no terminator needed
            uint[] ids = null;
            while (true)
            {
                int capacity = ids == null ? 0 : ids.Length;
                UIntPtr needed;
                IntPtr err = IntPtr.Zero;
                Status st = NativeMethods.specdec_tokenizer_encode(Handle, bytes, (UIntPtr)bytes.Length, ids,
                    (UIntPtr)capacity, out needed, ref err);
                int n = checked((int)needed.ToUInt64());
                if (st == Status.BufferTooSmall && n > capacity)
                {
                    Interop.FreeError(err);
                    ids = new uint[n];
                    continue;
                }
                Interop.Check(st, err);
                if (ids == null || n == 0) return new uint[0];
                if (n < ids.Length) Array.Resize(ref ids, n);
                return ids;
            }
        }

        /// <summary>
        /// UTF-8 text of <paramref name="ids"/> (special tokens skipped), with the same size
        /// negotiation as Encode. Throws SpecdecException: TokenOutOfRange, Tokenizer.
        /// </summary>
        public string Decode(uint[] ids)
        {
            if (ids == null) throw new ArgumentNullException("ids");
            byte[] buf = null;
            while (true)
            {
                int capacity = buf == null ? 0 : buf.Length;
                UIntPtr len;
                IntPtr err = IntPtr.Zero;
                Status st = NativeMethods.specdec_tokenizer_decode(Handle, Interop.NonEmpty(ids), (UIntPtr)ids.Length, buf,
                    (UIntPtr)capacity, out len, ref err);
                int n = checked((int)len.ToUInt64());
                if (st == Status.BufferTooSmall && n + 1 > capacity)
                {
                    Interop.FreeError(err);
                    buf = new byte[n + 1]; // room for the NUL
                    continue;
                }
                Interop.Check(st, err);
                return n == 0 ? string.Empty : Encoding.UTF8.GetString(buf, 0, n);
            }
        }

        /// <summary>Vocabulary size, added tokens included.</summary>
        public int VocabSize
        {
            get { return checked((int)NativeMethods.specdec_tokenizer_vocab_size(Handle).ToUInt64()); }
        }

        /// <summary>Release this handle (stream decoders and generators keep it alive). Idempotent.</summary>
        public void Dispose()
        {
            Handle.Dispose();
        }
    }

    // ------------------------------------------------------------------------------------------
    // StreamDecoder

    /// <summary>
    /// Incremental detokenisation for streaming: Push returns only whole UTF-8 characters, holding
    /// a partial one back until the token completing it arrives; Flush returns the rest. The
    /// concatenation of all pushes and the flush equals Tokenizer.Decode of all ids. One decoder
    /// per stream; not thread-safe.
    /// </summary>
    public sealed class StreamDecoder : IDisposable
    {
        private readonly StreamDecoderHandle handle;

        public StreamDecoder(Tokenizer tokenizer)
        {
            if (tokenizer == null) throw new ArgumentNullException("tokenizer");
            IntPtr err = IntPtr.Zero;
            Status st = NativeMethods.specdec_stream_decoder_new(tokenizer.Handle, out handle, ref err);
            if (st != Status.Ok)
            {
                if (handle != null) handle.Dispose();
                throw Interop.TakeError(st, err);
            }
            Interop.FreeError(err);
        }

        /// <summary>Add generated ids; returns the newly completed text (possibly empty).</summary>
        public string Push(uint[] ids)
        {
            if (ids == null) throw new ArgumentNullException("ids");
            IntPtr text;
            UIntPtr len;
            IntPtr err = IntPtr.Zero;
            Status st = NativeMethods.specdec_stream_decoder_push(handle, Interop.NonEmpty(ids), (UIntPtr)ids.Length,
                out text, out len, ref err);
            Interop.Check(st, err);
            return Interop.PtrToUtf8(text, len);
        }

        /// <summary>Whatever text is still held back (at the end of a stream).</summary>
        public string Flush()
        {
            IntPtr text;
            UIntPtr len;
            IntPtr err = IntPtr.Zero;
            Status st = NativeMethods.specdec_stream_decoder_flush(handle, out text, out len, ref err);
            Interop.Check(st, err);
            return Interop.PtrToUtf8(text, len);
        }

        public void Dispose()
        {
            handle.Dispose();
        }
    }

    // ------------------------------------------------------------------------------------------
    // GenerationOptions

    /// <summary>
    /// Generation settings, a plain managed object: copied into a native specdec_gen_config
    /// when a <see cref="Generator"/> is created, so it may change afterwards. A null property
    /// keeps the library's default; values are validated by the library when the Generator is
    /// created (SpecdecException InvalidArgument, or TokenOutOfRange for an EOS id).
    /// </summary>
    public sealed class GenerationOptions
    {
        public GenerationOptions()
        {
            StopTokens = new List<uint[]>();
            StopTexts = new List<string>();
        }

        /// <summary>Draft tokens per iteration, 1..Library.MaxGamma (default 4). Ignored without a draft.</summary>
        public uint? Gamma { get; set; }

        /// <summary>Finite and >= 0; 0 is greedy (default 0).</summary>
        public float? Temperature { get; set; }

        /// <summary>Keep the k most likely tokens; 0 is off (default 0).</summary>
        public uint? TopK { get; set; }

        /// <summary>Nucleus threshold in (0, 1]; 1 is off (default 1).</summary>
        public float? TopP { get; set; }

        /// <summary>In [0, 1]; 0 is off (default 0).</summary>
        public float? MinP { get; set; }

        /// <summary>Finite and > 0; 1 is off (default 1).</summary>
        public float? RepetitionPenalty { get; set; }

        /// <summary>Seed of the random stream (default 0): same seed, settings and models give the same output.</summary>
        public ulong? Seed { get; set; }

        /// <summary>Most tokens generated per prompt (default 128); 0 generates nothing.</summary>
        public uint? MaxNewTokens { get; set; }

        /// <summary>
        /// End-of-sequence ids. null (default): those of the target's generation_config.json;
        /// an empty array: no EOS at all; otherwise exactly these ids.
        /// </summary>
        public uint[] EosIds { get; set; }

        /// <summary>Stop sequences of tokens (each non-empty): generation ends once the generated tokens end with one.</summary>
        public IList<uint[]> StopTokens { get; private set; }

        /// <summary>
        /// Stop texts (each non-empty): generation ends once the generated text contains one.
        /// Needs a tokenizer on the generator (Generator.SetTokenizer, or GenerateText).
        /// </summary>
        public IList<string> StopTexts { get; private set; }

        /// <summary>How the draft length is chosen (default DraftPolicy.Fixed).</summary>
        public DraftPolicy? DraftPolicy { get; set; }

        /// <summary>
        /// Stop a round's drafting once the draft's top probability falls below this, in [0, 1]; 0
        /// is off (default). For score-based drafters (a draft model, counts); combines with any
        /// policy.
        /// </summary>
        public float? ConfidenceStop { get; set; }

        /// <summary>
        /// Most bytes the KV caches of one generator (target and draft) may use; 0 is no limit
        /// (default). Append throws SpecdecException (MemoryBudget), changing nothing, for a
        /// request (prompt + MaxNewTokens + a round's proposals) that could outgrow it.
        /// </summary>
        public ulong? KvMemoryLimit { get; set; }

        internal GenConfigHandle ToNative()
        {
            GenConfigHandle c = NativeMethods.specdec_gen_config_new();
            if (c.IsInvalid)
            {
                c.Dispose();
                throw new SpecdecException(Status.Panic, "specdec_gen_config_new failed");
            }
            try
            {
                IntPtr err = IntPtr.Zero;
                if (Gamma.HasValue) { Interop.Check(NativeMethods.specdec_gen_config_set_gamma(c, Gamma.Value, ref err), err); err = IntPtr.Zero; }
                if (Temperature.HasValue) { Interop.Check(NativeMethods.specdec_gen_config_set_temperature(c, Temperature.Value, ref err), err); err = IntPtr.Zero; }
                if (TopK.HasValue) { Interop.Check(NativeMethods.specdec_gen_config_set_top_k(c, TopK.Value, ref err), err); err = IntPtr.Zero; }
                if (TopP.HasValue) { Interop.Check(NativeMethods.specdec_gen_config_set_top_p(c, TopP.Value, ref err), err); err = IntPtr.Zero; }
                if (MinP.HasValue) { Interop.Check(NativeMethods.specdec_gen_config_set_min_p(c, MinP.Value, ref err), err); err = IntPtr.Zero; }
                if (RepetitionPenalty.HasValue) { Interop.Check(NativeMethods.specdec_gen_config_set_repetition_penalty(c, RepetitionPenalty.Value, ref err), err); err = IntPtr.Zero; }
                if (Seed.HasValue) { Interop.Check(NativeMethods.specdec_gen_config_set_seed(c, Seed.Value, ref err), err); err = IntPtr.Zero; }
                if (MaxNewTokens.HasValue) { Interop.Check(NativeMethods.specdec_gen_config_set_max_new_tokens(c, MaxNewTokens.Value, ref err), err); err = IntPtr.Zero; }
                if (DraftPolicy.HasValue) { Interop.Check(NativeMethods.specdec_gen_config_set_draft_policy(c, (uint)DraftPolicy.Value, ref err), err); err = IntPtr.Zero; }
                if (ConfidenceStop.HasValue) { Interop.Check(NativeMethods.specdec_gen_config_set_confidence_stop(c, ConfidenceStop.Value, ref err), err); err = IntPtr.Zero; }
                if (KvMemoryLimit.HasValue) { Interop.Check(NativeMethods.specdec_gen_config_set_kv_memory_limit(c, KvMemoryLimit.Value, ref err), err); err = IntPtr.Zero; }
                if (EosIds == null)
                {
                    Interop.Check(NativeMethods.specdec_gen_config_use_model_eos_ids(c, ref err), err);
                }
                else
                {
                    // n_ids 0 means "no EOS"; NULL is allowed then.
                    Interop.Check(NativeMethods.specdec_gen_config_set_eos_ids(c, EosIds.Length == 0 ? null : EosIds,
                        (UIntPtr)EosIds.Length, ref err), err);
                }
                foreach (uint[] stop in StopTokens)
                {
                    if (stop == null) throw new SpecdecException(Status.InvalidArgument, "a stop token sequence is null");
                    err = IntPtr.Zero;
                    Interop.Check(NativeMethods.specdec_gen_config_add_stop_tokens(c, Interop.NonEmpty(stop), (UIntPtr)stop.Length, ref err), err);
                }
                foreach (string stop in StopTexts)
                {
                    if (stop == null) throw new SpecdecException(Status.InvalidArgument, "a stop text is null");
                    err = IntPtr.Zero;
                    Interop.Check(NativeMethods.specdec_gen_config_add_stop_text(c, Interop.Utf8Z(stop, "stop text"), ref err), err);
                }
                return c;
            }
            catch
            {
                c.Dispose();
                throw;
            }
        }
    }

    // ------------------------------------------------------------------------------------------
    // Drafters

    /// <summary>
    /// A draft source for <see cref="Generator.Create"/>: <see cref="ModelDrafter"/>, <see
    /// cref="NGramDrafter"/>, <see cref="CountsDrafter"/>, or the host's own <see
    /// cref="CallbackDrafter"/> / <see cref="DelegateDrafter"/>. A recipe: every Generator made
    /// from it gets its own drafter state, so one Drafter serves many generators on many threads.
    /// Owns a native specdec_drafter in a SafeHandle; Dispose (idempotent) releases it, and the
    /// generators already made keep what they need.
    /// </summary>
    public abstract class Drafter : IDisposable
    {
        internal readonly DrafterHandle Handle;

        internal Drafter(DrafterHandle handle)
        {
            Handle = handle;
        }

        // The handle a successful specdec_drafter_new_* call returned, or the exception.
        internal static DrafterHandle Made(Status st, DrafterHandle handle, IntPtr err)
        {
            if (st != Status.Ok)
            {
                if (handle != null) handle.Dispose();
                throw Interop.TakeError(st, err);
            }
            Interop.FreeError(err);
            return handle;
        }

        /// <summary>Release the native drafter (generators made from it keep working). Idempotent.</summary>
        public void Dispose()
        {
            Handle.Dispose();
        }
    }

    /// <summary>
    /// Drafts with an ONNX draft model (kept alive natively), which must share the target's
    /// vocabulary (Generator.Create throws VocabMismatch otherwise). Generator.Create(target, new
    /// ModelDrafter(draft), o) is new Generator(target, draft, o).
    /// </summary>
    public sealed class ModelDrafter : Drafter
    {
        public ModelDrafter(Model draft) : base(Create(draft)) { }

        private static DrafterHandle Create(Model draft)
        {
            Library.CheckAbi();
            if (draft == null) throw new ArgumentNullException("draft");
            DrafterHandle h;
            IntPtr err = IntPtr.Zero;
            Status st = NativeMethods.specdec_drafter_new_model(draft.Handle, out h, ref err);
            return Made(st, h, err);
        }
    }

    /// <summary>
    /// Prompt lookup: matches the last n tokens (nMax down to nMin) against the sequence so far and
    /// proposes up to maxProposal tokens that followed the latest match; no model. Throws
    /// SpecdecException (InvalidArgument) unless 1 &lt;= nMin &lt;= nMax &lt;= 64 and 1 &lt;=
    /// maxProposal &lt;= Library.MaxGamma.
    /// </summary>
    public sealed class NGramDrafter : Drafter
    {
        public NGramDrafter(uint nMin, uint nMax, uint maxProposal) : base(Create(nMin, nMax, maxProposal)) { }

        private static DrafterHandle Create(uint nMin, uint nMax, uint maxProposal)
        {
            Library.CheckAbi();
            DrafterHandle h;
            IntPtr err = IntPtr.Zero;
            Status st = NativeMethods.specdec_drafter_new_ngram(nMin, nMax, maxProposal, out h, ref err);
            return Made(st, h, err);
        }
    }

    /// <summary>
    /// Unigram or bigram counts, from a count file (lines "&lt;id&gt; &lt;count&gt;" and "&lt;prev&gt;
    /// &lt;id&gt; &lt;count&gt;", as `specdec counts` writes) or, with a null path, learnt from the
    /// sequence itself. Throws SpecdecException: InvalidArgument (order), Io (unreadable or
    /// malformed file).
    /// </summary>
    public sealed class CountsDrafter : Drafter
    {
        public CountsDrafter(CountsOrder order, string countsPath = null) : base(Create(order, countsPath)) { }

        private static DrafterHandle Create(CountsOrder order, string countsPath)
        {
            Library.CheckAbi();
            byte[] path = countsPath == null ? null : Interop.Utf8Z(countsPath, "countsPath");
            DrafterHandle h;
            IntPtr err = IntPtr.Zero;
            Status st = NativeMethods.specdec_drafter_new_counts((uint)order, path, out h, ref err);
            return Made(st, h, err);
        }
    }

    /// <summary>
    /// A draft source implemented by the host: override <see cref="Propose"/>. Whatever it
    /// proposes, the output stays exact (the target verifies every proposal).
    /// <para>Calls: Propose runs on the thread running a generator made from this drafter, from
    /// inside the native call (Step, Generate), possibly for several generators on several threads
    /// at once, so it must be thread-safe when shared. It must not use the generator that called it
    /// (the native generator is busy: SpecdecException Busy).</para>
    /// <para>Failure: an exception thrown by Propose never enters native code. It fails that round,
    /// and the generator call throws SpecdecException with Code Callback whose InnerException is
    /// that exception; a negative return fails the round the same way. The generator stays usable.</para>
    /// <para>Lifetime: the native drafter calls back through one static delegate (never collected)
    /// with a GCHandle as user_data; the handle keeps this object reachable while any generator
    /// made from it exists, and is freed once the drafter and all those generators are released,
    /// so Dispose (or the finalizers) never leave native code a dangling callback.</para>
    /// </summary>
    public abstract class CallbackDrafter : Drafter
    {
        /// <param name="withProbabilities">false: the proposals are verified as fixed tokens.
        /// true: Propose also gives the distribution each proposal was sampled from (<see
        /// cref="DraftRequest.SetDistribution"/>), which accepts more when sampling.</param>
        protected CallbackDrafter(bool withProbabilities = false) : base(Create(withProbabilities))
        {
            WithProbabilities = withProbabilities;
        }

        /// <summary>Whether Propose gives distributions with its proposals.</summary>
        public bool WithProbabilities { get; private set; }

        /// <summary>
        /// Write up to request.MaxProposals tokens continuing request.Tokens to request.Proposals
        /// (from index 0) and return how many (0 proposes nothing this round; more than
        /// MaxProposals fails the round with InvalidArgument).
        /// </summary>
        protected abstract int Propose(DraftRequest request);

        private static DrafterHandle Create(bool withProbabilities)
        {
            Library.CheckAbi();
            var anchor = new CallbackAnchor();
            DrafterHandle h = null;
            try
            {
                IntPtr err = IntPtr.Zero;
                Status st = NativeMethods.specdec_drafter_new_callback(DraftTrampoline, anchor.UserData, withProbabilities, out h, ref err);
                h = Made(st, h, err);
                h.Anchor = anchor;
                return h;
            }
            finally
            {
                if (h == null || h.Anchor == null) anchor.ReleaseDrafter();
            }
        }

        // One delegate for the whole process: a static field keeps it (and the native thunk the
        // runtime made for it) alive forever.
        private static readonly NativeMethods.DraftCallback DraftTrampoline = OnNativeDraft;

        // Runs inside the native step, on the generator's thread. Never lets an exception escape
        // into native code: it is recorded for the generator call (DraftErrors) and the round
        // fails (-1).
        private static int OnNativeDraft(IntPtr userData, IntPtr tokens, UIntPtr nTokens, UIntPtr maxProposals,
            UIntPtr vocabSize, IntPtr proposals, IntPtr probs)
        {
            DraftRequest request = null;
            try
            {
                CallbackAnchor anchor = (CallbackAnchor)GCHandle.FromIntPtr(userData).Target;
                CallbackDrafter drafter = anchor.Drafter;
                if (drafter == null) throw new ObjectDisposedException("CallbackDrafter");
                request = new DraftRequest(tokens, nTokens, maxProposals, vocabSize, probs);
                int n = drafter.Propose(request);
                if (n < 0)
                {
                    DraftErrors.Record(new InvalidOperationException(drafter.GetType().Name + ".Propose returned " + n));
                    return -1;
                }
                uint[] written = request.Proposals;
                int copy = Math.Min(n, Math.Min(written.Length, request.MaxProposals));
                for (int i = 0; i < copy; i++) Marshal.WriteInt32(proposals, i * sizeof(uint), unchecked((int)written[i]));
                return n; // more than MaxProposals is refused by the library
            }
            catch (Exception e)
            {
                DraftErrors.Record(e);
                return -1;
            }
            finally
            {
                if (request != null) request.Close();
            }
        }
    }

    /// <summary>A <see cref="CallbackDrafter"/> whose Propose is a delegate.</summary>
    public sealed class DelegateDrafter : CallbackDrafter
    {
        private readonly Func<DraftRequest, int> propose;

        public DelegateDrafter(Func<DraftRequest, int> propose, bool withProbabilities = false) : base(withProbabilities)
        {
            if (propose == null)
            {
                Dispose();
                throw new ArgumentNullException("propose");
            }
            this.propose = propose;
        }

        protected override int Propose(DraftRequest request)
        {
            return propose(request);
        }
    }

    /// <summary>
    /// One round's question to a <see cref="CallbackDrafter"/>. Valid only during the Propose call
    /// (its native buffers die with it).
    /// </summary>
    public sealed class DraftRequest
    {
        private readonly IntPtr tokens;
        private readonly int nTokens;
        private IntPtr probs;
        private uint[] tokenCopy;
        private bool closed;

        internal DraftRequest(IntPtr tokens, UIntPtr nTokens, UIntPtr maxProposals, UIntPtr vocabSize, IntPtr probs)
        {
            this.tokens = tokens;
            this.nTokens = checked((int)nTokens.ToUInt64());
            MaxProposals = checked((int)maxProposals.ToUInt64());
            VocabSize = checked((int)vocabSize.ToUInt64());
            this.probs = probs;
            Proposals = new uint[MaxProposals];
        }

        /// <summary>The sequence so far: prompts and generated tokens (a copy, made on first use).</summary>
        public uint[] Tokens
        {
            get
            {
                if (tokenCopy == null)
                {
                    EnsureOpen();
                    tokenCopy = Interop.CopyTokens(tokens, (UIntPtr)nTokens);
                }
                return tokenCopy;
            }
        }

        /// <summary>Length of the sequence so far (without copying it).</summary>
        public int TokenCount { get { return nTokens; } }

        /// <summary>The most tokens this round may propose.</summary>
        public int MaxProposals { get; private set; }

        /// <summary>Write the proposals here, from index 0 (MaxProposals long).</summary>
        public uint[] Proposals { get; private set; }

        /// <summary>The target's vocabulary size (the length of a distribution).</summary>
        public int VocabSize { get; private set; }

        /// <summary>Whether the drafter gives distributions (then SetDistribution each proposal's).</summary>
        public bool WithProbabilities { get { return probs != IntPtr.Zero; } }

        /// <summary>
        /// Give the distribution proposal <paramref name="index"/> was sampled from: VocabSize
        /// probabilities, giving the proposal a positive one, summing to 1 (the library checks).
        /// Only for a drafter made with probabilities.
        /// </summary>
        public void SetDistribution(int index, float[] distribution)
        {
            EnsureOpen();
            if (probs == IntPtr.Zero) throw new InvalidOperationException("the drafter was made without probabilities");
            if (distribution == null) throw new ArgumentNullException("distribution");
            if (index < 0 || index >= MaxProposals) throw new ArgumentOutOfRangeException("index");
            if (distribution.Length != VocabSize)
            {
                throw new ArgumentException("a distribution has " + VocabSize + " entries, got " + distribution.Length, "distribution");
            }
            Marshal.Copy(distribution, 0, new IntPtr(probs.ToInt64() + (long)index * VocabSize * sizeof(float)), VocabSize);
        }

        internal void Close()
        {
            closed = true;
            probs = IntPtr.Zero;
        }

        private void EnsureOpen()
        {
            if (closed) throw new InvalidOperationException("a DraftRequest is valid only during its Propose call");
        }
    }

    // The exception a draft callback threw on this thread during the native call in progress (the
    // library calls a draft callback on the thread running the generator).
    internal static class DraftErrors
    {
        [ThreadStatic] private static Exception current;

        internal static Exception Swap(Exception e)
        {
            Exception old = current;
            current = e;
            return old;
        }

        internal static void Record(Exception e)
        {
            if (current == null) current = e;
        }
    }

    // The user_data of a native callback drafter: a GCHandle to this object. It reaches the
    // CallbackDrafter only while generators made from it exist (so an abandoned drafter can still
    // be finalized), and is freed once the drafter's handle and all those generators are released.
    internal sealed class CallbackAnchor
    {
        private readonly object gate = new object();
        private GCHandle self;
        private CallbackDrafter drafter;
        private int generators;
        private bool drafterReleased;

        internal CallbackAnchor()
        {
            self = GCHandle.Alloc(this);
        }

        internal IntPtr UserData { get { return GCHandle.ToIntPtr(self); } }

        internal CallbackDrafter Drafter { get { return Volatile.Read(ref drafter); } }

        internal void AddGenerator(CallbackDrafter d)
        {
            lock (gate)
            {
                generators++;
                Volatile.Write(ref drafter, d);
            }
        }

        internal void ReleaseGenerator()
        {
            lock (gate)
            {
                if (--generators == 0) Volatile.Write(ref drafter, null);
                FreeIfUnused();
            }
        }

        internal void ReleaseDrafter()
        {
            lock (gate)
            {
                drafterReleased = true;
                FreeIfUnused();
            }
        }

        private void FreeIfUnused()
        {
            if (drafterReleased && generators == 0 && self.IsAllocated) self.Free();
        }
    }

    // ------------------------------------------------------------------------------------------
    // Generator

    /// <summary>
    /// One sequence being generated, speculatively with a draft model or target-only. Owns a
    /// native generator (with its KV caches). Not thread-safe: one thread at a time, except
    /// <see cref="Cancel"/>. Keeps its models (and tokenizer) alive natively.
    /// </summary>
    public sealed class Generator : IDisposable
    {
        private readonly GeneratorHandle handle;

        // The managed id of the thread that is inside the native specdec_generator_generate (0:
        // none). The native generator holds its lock for the whole call, so any other call on it
        // from the callback (same thread) would deadlock; EnsureNotInCallback refuses it instead.
        private int callbackThread;

        /// <summary>
        /// Create a generator over <paramref name="target"/>, speculating with <paramref
        /// name="draft"/> (null: target-only decoding), with <paramref name="options"/> (null:
        /// defaults). Throws SpecdecException: VocabMismatch, TokenOutOfRange (an EOS id),
        /// InvalidArgument (a setting out of range), Inference.
        /// </summary>
        public Generator(Model target, Model draft, GenerationOptions options)
        {
            if (target == null) throw new ArgumentNullException("target");
            GenConfigHandle config = (options ?? new GenerationOptions()).ToNative();
            try
            {
                IntPtr err = IntPtr.Zero;
                Status st = draft == null
                    ? NativeMethods.specdec_generator_new_target_only(target.Handle, IntPtr.Zero, config, out handle, ref err)
                    : NativeMethods.specdec_generator_new(target.Handle, draft.Handle, config, out handle, ref err);
                if (st != Status.Ok)
                {
                    if (handle != null) handle.Dispose();
                    throw Interop.TakeError(st, err);
                }
                Interop.FreeError(err);
            }
            finally
            {
                config.Dispose(); // the generator copied it
            }
        }

        /// <summary>Target-only generator with default options.</summary>
        public Generator(Model target) : this(target, null, null) { }

        private Generator(GeneratorHandle handle)
        {
            this.handle = handle;
        }

        /// <summary>
        /// Create a generator over <paramref name="target"/> drafting with <paramref
        /// name="drafter"/> (null: target-only decoding), with <paramref name="options"/> (null:
        /// defaults). The drafter may serve any number of generators. Throws as the constructor,
        /// and ObjectDisposedException for a disposed drafter.
        /// </summary>
        public static Generator Create(Model target, Drafter drafter, GenerationOptions options = null)
        {
            if (target == null) throw new ArgumentNullException("target");
            GenConfigHandle config = (options ?? new GenerationOptions()).ToNative();
            CallbackAnchor anchor = drafter == null ? null : drafter.Handle.Anchor;
            GeneratorHandle handle = null;
            bool attached = false;
            // A callback drafter's anchor reaches the drafter from now on (its callback can run
            // only once the generator exists, and until it is freed).
            if (anchor != null) anchor.AddGenerator((CallbackDrafter)drafter);
            try
            {
                IntPtr err = IntPtr.Zero;
                Status st = drafter == null
                    ? NativeMethods.specdec_generator_new_with_drafter_target_only(target.Handle, IntPtr.Zero, config, out handle, ref err)
                    : NativeMethods.specdec_generator_new_with_drafter(target.Handle, drafter.Handle, config, out handle, ref err);
                if (st != Status.Ok)
                {
                    if (handle != null) handle.Dispose();
                    throw Interop.TakeError(st, err);
                }
                Interop.FreeError(err);
                handle.Anchor = anchor;
                attached = true;
                return new Generator(handle);
            }
            finally
            {
                config.Dispose();
                if (anchor != null && !attached) anchor.ReleaseGenerator();
            }
        }

        /// <summary>Match text stop sequences with <paramref name="tokenizer"/> (kept alive natively).</summary>
        public void SetTokenizer(Tokenizer tokenizer)
        {
            if (tokenizer == null) throw new ArgumentNullException("tokenizer");
            EnsureNotInCallback("SetTokenizer");
            IntPtr err = IntPtr.Zero;
            Interop.Check(NativeMethods.specdec_generator_set_tokenizer(handle, tokenizer.Handle, ref err), err);
        }

        /// <summary>
        /// Append prompt tokens (a first prompt or a follow-up turn) and start a new generation
        /// of up to MaxNewTokens; an empty array continues the sequence with a fresh allowance.
        /// All or nothing. Throws SpecdecException: TokenOutOfRange, ContextLimit.
        /// </summary>
        public void Append(uint[] ids)
        {
            if (ids == null) throw new ArgumentNullException("ids");
            EnsureNotInCallback("Append");
            IntPtr err = IntPtr.Zero;
            Interop.Check(NativeMethods.specdec_generator_append_tokens(handle, Interop.NonEmpty(ids), (UIntPtr)ids.Length, ref err), err);
        }

        /// <summary>
        /// Run one iteration; returns the tokens it added (empty once finished). Throws
        /// SpecdecException: InvalidArgument (no prompt), Cancelled (after Cancel(); the
        /// generator stays usable), ContextLimit, Inference, Callback (a CallbackDrafter failed;
        /// InnerException is what it threw).
        /// </summary>
        public uint[] Step()
        {
            EnsureNotInCallback("Step");
            IntPtr tokens;
            UIntPtr n;
            IntPtr err = IntPtr.Zero;
            Exception saved = DraftErrors.Swap(null);
            Status st;
            Exception drafted;
            try
            {
                st = NativeMethods.specdec_generator_step(handle, out tokens, out n, ref err);
            }
            finally
            {
                drafted = DraftErrors.Swap(saved);
            }
            CheckDrafted(st, err, drafted);
            return Interop.CopyTokens(tokens, n);
        }

        // Interop.Check, except that a failure whose draft callback threw becomes
        // SpecdecException(Callback) with that exception inside.
        private static void CheckDrafted(Status st, IntPtr err, Exception drafted)
        {
            if (st == Status.Ok || drafted == null)
            {
                Interop.Check(st, err);
                return;
            }
            SpecdecException native = Interop.TakeError(st, err);
            throw new SpecdecException(Status.Callback, native.Message + ": " + drafted.Message, drafted);
        }

        /// <summary>Generate until EOS, a stop sequence or MaxNewTokens; returns why it ended.</summary>
        public FinishReason Generate()
        {
            return Generate(null, CancellationToken.None);
        }

        /// <summary>As Generate(onTokens, ct) without a cancellation token.</summary>
        public FinishReason Generate(Func<uint[], bool> onTokens)
        {
            return Generate(onTokens, CancellationToken.None);
        }

        /// <summary>
        /// Generate until EOS, a stop sequence, MaxNewTokens, or <paramref name="onTokens"/>
        /// (may be null) returning false (FinishReason.Stopped). <paramref name="onTokens"/>
        /// receives each iteration's tokens, on this thread.
        /// <para>Cancellation: when <paramref name="ct"/> is cancelled, the generation stops at
        /// the next iteration and this method throws <see cref="OperationCanceledException"/>
        /// whose CancellationToken is <paramref name="ct"/> and whose InnerException is the
        /// library's SpecdecException (Code Cancelled) - the usual .NET convention, so
        /// `catch (OperationCanceledException)` and Task cancellation work. A token already
        /// cancelled throws before anything runs. Cancelled through <see cref="Cancel"/>
        /// instead, it throws SpecdecException with Code Cancelled. Either way the tokens
        /// generated so far stay, FinishReason stays None, and generating again resumes.</para>
        /// <para>Callback exceptions: an exception thrown by <paramref name="onTokens"/> never
        /// crosses into native code. It is caught, generation stops (FinishReason.Stopped, the
        /// tokens so far are kept), and the same exception object is rethrown here once the
        /// native call has returned (with its original stack trace). The generator stays
        /// usable.</para>
        /// <para>Re-entrancy: inside <paramref name="onTokens"/> only Cancel() (and Dispose,
        /// which takes effect after the call) may be used on this generator; any other member
        /// throws SpecdecException (InvalidArgument), because the native generator is locked for
        /// the whole call and would deadlock.</para>
        /// </summary>
        public FinishReason Generate(Func<uint[], bool> onTokens, CancellationToken ct)
        {
            EnsureNotInCallback("Generate");
            ct.ThrowIfCancellationRequested();
            CallbackState state = onTokens == null ? null : new CallbackState(onTokens);
            GCHandle stateHandle = default(GCHandle);
            FinishReason reason = FinishReason.None;
            IntPtr err = IntPtr.Zero;
            Status st;
            CancellationTokenRegistration registration = default(CancellationTokenRegistration);
            Exception savedDraftError = DraftErrors.Swap(null);
            Exception drafted = null;
            try
            {
                if (state != null) stateHandle = GCHandle.Alloc(state);
                if (ct.CanBeCanceled)
                {
                    registration = ct.Register(s => ((Generator)s).Cancel(), this);
                }
                Volatile.Write(ref callbackThread, Thread.CurrentThread.ManagedThreadId);
                // The delegate handed to native code is a static field (never collected); the
                // state reaches it as user_data through a GCHandle that lives until the call
                // returns. GC.KeepAlive below documents (and enforces) both lifetimes.
                st = NativeMethods.specdec_generator_generate(handle,
                    state == null ? null : Trampoline,
                    state == null ? IntPtr.Zero : GCHandle.ToIntPtr(stateHandle),
                    out reason, ref err);
                GC.KeepAlive(Trampoline);
                GC.KeepAlive(state);
            }
            finally
            {
                // Dispose waits for a cancel callback that is running on another thread. A cancel
                // request that lands after the generation finished stays pending in the native
                // generator; it is harmless there (a finished generator's Step returns nothing
                // and Append clears the request).
                Volatile.Write(ref callbackThread, 0);
                registration.Dispose();
                if (stateHandle.IsAllocated) stateHandle.Free();
                drafted = DraftErrors.Swap(savedDraftError);
            }
            if (state != null && state.Error != null)
            {
                Interop.FreeError(err);
                ExceptionDispatchInfo.Capture(state.Error).Throw();
            }
            if (st == Status.Cancelled && ct.IsCancellationRequested)
            {
                SpecdecException inner = Interop.TakeError(st, err);
                throw new OperationCanceledException("specdec generation was cancelled: " + inner.Message, inner, ct);
            }
            CheckDrafted(st, err, drafted);
            return reason;
        }

        /// <summary>
        /// Stream the generated text: runs Step() until the generation finishes, yielding the
        /// newly completed text of each iteration (whole UTF-8 characters; never an empty
        /// string), then whatever the stream decoder held back. Also sets <paramref name="tok"/>
        /// as the generator's tokenizer, so StopTexts work. Lazy: nothing runs until the
        /// enumeration starts; append a prompt first. When <paramref name="ct"/> is cancelled,
        /// MoveNext throws OperationCanceledException before the next iteration (the generator
        /// stays usable). Errors of Step are thrown as SpecdecException.
        /// </summary>
        public IEnumerable<string> GenerateText(Tokenizer tok, CancellationToken ct = default(CancellationToken))
        {
            if (tok == null) throw new ArgumentNullException("tok");
            return GenerateTextIterator(tok, ct);
        }

        private IEnumerable<string> GenerateTextIterator(Tokenizer tok, CancellationToken ct)
        {
            SetTokenizer(tok);
            using (StreamDecoder decoder = new StreamDecoder(tok))
            {
                while (true)
                {
                    // Checked between iterations rather than through specdec_generator_cancel:
                    // Step checks the native request only at its start anyway, and this leaves
                    // no stale request behind in the generator.
                    ct.ThrowIfCancellationRequested();
                    uint[] tokens = Step();
                    if (tokens.Length > 0)
                    {
                        string text = decoder.Push(tokens);
                        if (text.Length > 0) yield return text;
                    }
                    if (FinishReason != FinishReason.None) break;
                }
                string rest = decoder.Flush();
                if (rest.Length > 0) yield return rest;
            }
        }

        /// <summary>
        /// Ask a running or future generation to stop: its next iteration fails with Cancelled
        /// (the request is then consumed; Append clears a pending one). Thread-safe; never
        /// throws; a no-op on a disposed generator.
        /// </summary>
        public void Cancel()
        {
            bool added = false;
            try
            {
                handle.DangerousAddRef(ref added);
                NativeMethods.specdec_generator_cancel(handle.DangerousGetHandle());
            }
            catch (ObjectDisposedException)
            {
                // Disposed: nothing to cancel.
            }
            finally
            {
                if (added) handle.DangerousRelease();
            }
        }

        /// <summary>
        /// Withdraw a cancellation request that no iteration has consumed yet (for example one
        /// that arrived just after the last iteration of a generation had begun), so that it
        /// cannot cancel a later call. Thread-safe; never throws; a no-op on a disposed generator.
        /// </summary>
        public void ClearCancel()
        {
            bool added = false;
            try
            {
                handle.DangerousAddRef(ref added);
                NativeMethods.specdec_generator_clear_cancel(handle.DangerousGetHandle());
            }
            catch (ObjectDisposedException)
            {
                // Disposed: nothing to withdraw.
            }
            finally
            {
                if (added) handle.DangerousRelease();
            }
        }

        /// <summary>The whole sequence: prompts and generated tokens (a copy).</summary>
        public uint[] Tokens
        {
            get
            {
                EnsureNotInCallback("Tokens");
                IntPtr tokens;
                UIntPtr n;
                IntPtr err = IntPtr.Zero;
                Interop.Check(NativeMethods.specdec_generator_tokens(handle, out tokens, out n, ref err), err);
                return Interop.CopyTokens(tokens, n);
            }
        }

        /// <summary>Why the current generation ended (None while it runs or has not started).</summary>
        public FinishReason FinishReason
        {
            get
            {
                EnsureNotInCallback("FinishReason");
                return NativeMethods.specdec_generator_finish_reason(handle);
            }
        }

        /// <summary>Cumulative counters and timings.</summary>
        public Stats Stats
        {
            get
            {
                EnsureNotInCallback("Stats");
                Stats s = new Stats();
                s.StructSize = (UIntPtr)Marshal.SizeOf(typeof(Stats));
                IntPtr err = IntPtr.Zero;
                Interop.Check(NativeMethods.specdec_generator_stats(handle, ref s, ref err), err);
                return s;
            }
        }

        /// <summary>Free the native generator (after any call in flight). Idempotent.</summary>
        public void Dispose()
        {
            handle.Dispose();
        }

        private void EnsureNotInCallback(string member)
        {
            if (Volatile.Read(ref callbackThread) == Thread.CurrentThread.ManagedThreadId)
            {
                throw new SpecdecException(Status.InvalidArgument, "Generator." + member +
                    " cannot be called from inside a Generate callback (the native generator is busy and the call " +
                    "would deadlock); use the tokens passed to the callback, or Cancel()");
            }
        }

        // -- the native callback ---------------------------------------------------------------

        private sealed class CallbackState
        {
            internal readonly Func<uint[], bool> Func;
            internal Exception Error;

            internal CallbackState(Func<uint[], bool> func)
            {
                Func = func;
            }
        }

        // One delegate for the whole process: a static field keeps it (and the native thunk the
        // runtime made for it) alive forever, so native code can never call a collected delegate.
        private static readonly NativeMethods.TokenCallback Trampoline = OnNativeTokens;

        // Runs on the thread that called Generate, inside specdec_generator_generate. Must not
        // let any exception escape into native code: it records it and returns 1 (stop).
        private static int OnNativeTokens(IntPtr userData, IntPtr tokens, UIntPtr nTokens)
        {
            CallbackState state = null;
            try
            {
                state = (CallbackState)GCHandle.FromIntPtr(userData).Target;
                if (state.Error != null) return 1;
                return state.Func(Interop.CopyTokens(tokens, nTokens)) ? 0 : 1;
            }
            catch (Exception e)
            {
                if (state != null && state.Error == null) state.Error = e;
                return 1;
            }
        }
    }

    // ------------------------------------------------------------------------------------------
    // SafeHandles: each ReleaseHandle calls the matching specdec_*_free.

    internal sealed class ModelHandle : SafeHandle
    {
        private ModelHandle() : base(IntPtr.Zero, true) { }
        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }
        protected override bool ReleaseHandle() { NativeMethods.specdec_model_free(handle); return true; }
    }

    internal sealed class TokenizerHandle : SafeHandle
    {
        private TokenizerHandle() : base(IntPtr.Zero, true) { }
        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }
        protected override bool ReleaseHandle() { NativeMethods.specdec_tokenizer_free(handle); return true; }
    }

    internal sealed class StreamDecoderHandle : SafeHandle
    {
        private StreamDecoderHandle() : base(IntPtr.Zero, true) { }
        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }
        protected override bool ReleaseHandle() { NativeMethods.specdec_stream_decoder_free(handle); return true; }
    }

    internal sealed class GenConfigHandle : SafeHandle
    {
        private GenConfigHandle() : base(IntPtr.Zero, true) { }
        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }
        protected override bool ReleaseHandle() { NativeMethods.specdec_gen_config_free(handle); return true; }
    }

    internal sealed class GeneratorHandle : SafeHandle
    {
        // The anchor of the callback drafter the generator was made from (null for none),
        // released after the native generator, which is what may call it.
        internal CallbackAnchor Anchor;

        private GeneratorHandle() : base(IntPtr.Zero, true) { }
        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }
        protected override bool ReleaseHandle()
        {
            NativeMethods.specdec_generator_free(handle);
            if (Anchor != null) Anchor.ReleaseGenerator();
            return true;
        }
    }

    internal sealed class DrafterHandle : SafeHandle
    {
        // A callback drafter's anchor (null for the others), released after the native drafter.
        internal CallbackAnchor Anchor;

        private DrafterHandle() : base(IntPtr.Zero, true) { }
        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }
        protected override bool ReleaseHandle()
        {
            NativeMethods.specdec_drafter_free(handle);
            if (Anchor != null) Anchor.ReleaseDrafter();
            return true;
        }
    }

    internal sealed class ModelOptionsHandle : SafeHandle
    {
        private ModelOptionsHandle() : base(IntPtr.Zero, true) { }
        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }
        protected override bool ReleaseHandle() { NativeMethods.specdec_model_options_free(handle); return true; }
    }

    // ------------------------------------------------------------------------------------------
    // Marshalling helpers

    internal static class Interop
    {
        private static readonly UTF8Encoding StrictUtf8 = new UTF8Encoding(false, true);
        private static readonly uint[] OneToken = new uint[1];

        // UTF-8 bytes of s (length-delimited use). A lone surrogate cannot be encoded.
        internal static byte[] Utf8(string s, string what)
        {
            try
            {
                return StrictUtf8.GetBytes(s);
            }
            catch (EncoderFallbackException e)
            {
                throw new SpecdecException(Status.InvalidUtf8, what + " is not valid Unicode (lone surrogate)", e);
            }
        }

        // NUL-terminated UTF-8 for a C string parameter. An embedded NUL would silently truncate
        // the string on the C side: refuse it instead.
        internal static byte[] Utf8Z(string s, string what)
        {
            if (s.IndexOf('\0') >= 0)
            {
                throw new SpecdecException(Status.InvalidArgument, what + " contains a NUL character");
            }
            byte[] bytes = Utf8(s, what);
            byte[] z = new byte[bytes.Length + 1];
            Buffer.BlockCopy(bytes, 0, z, 0, bytes.Length);
            return z;
        }

        // A NUL-terminated UTF-8 string owned by the library.
        internal static string PtrToUtf8(IntPtr p)
        {
            if (p == IntPtr.Zero) return string.Empty;
            int len = 0;
            while (Marshal.ReadByte(p, len) != 0) len++;
            return PtrToUtf8(p, (UIntPtr)len);
        }

        // `len` bytes of UTF-8 owned by the library.
        internal static string PtrToUtf8(IntPtr p, UIntPtr len)
        {
            int n = checked((int)len.ToUInt64());
            if (p == IntPtr.Zero || n == 0) return string.Empty;
            byte[] bytes = new byte[n];
            Marshal.Copy(p, bytes, 0, n);
            return Encoding.UTF8.GetString(bytes);
        }

        // A copy of `n` token ids owned by the library.
        internal static uint[] CopyTokens(IntPtr p, UIntPtr n)
        {
            int count = checked((int)n.ToUInt64());
            if (p == IntPtr.Zero || count == 0) return new uint[0];
            int[] tmp = new int[count];
            Marshal.Copy(p, tmp, 0, count);
            uint[] ids = new uint[count];
            Buffer.BlockCopy(tmp, 0, ids, 0, count * sizeof(uint));
            return ids;
        }

        // The C ABI accepts NULL with length 0; some runtimes pass NULL for an empty array and
        // some do not. Pass a real (unread) array either way.
        internal static uint[] NonEmpty(uint[] ids)
        {
            return ids.Length == 0 ? OneToken : ids;
        }

        internal static void FreeError(IntPtr err)
        {
            if (err != IntPtr.Zero) NativeMethods.specdec_error_free(err);
        }

        // The exception for a failed call; frees the error object.
        internal static SpecdecException TakeError(Status status, IntPtr err)
        {
            if (err == IntPtr.Zero)
            {
                return new SpecdecException(status, Library.StatusName(status));
            }
            try
            {
                Status code = NativeMethods.specdec_error_code(err);
                string message = PtrToUtf8(NativeMethods.specdec_error_message(err));
                return new SpecdecException(code, message);
            }
            finally
            {
                NativeMethods.specdec_error_free(err);
            }
        }

        internal static void Check(Status status, IntPtr err)
        {
            if (status == Status.Ok)
            {
                FreeError(err);
                return;
            }
            throw TakeError(status, err);
        }
    }

    // ------------------------------------------------------------------------------------------
    // The imports (include/specdec.h, ABI 1). Cdecl everywhere; size_t is UIntPtr; C strings in
    // are byte[] holding NUL-terminated UTF-8; specdec_error** is `ref IntPtr` (set to Zero
    // before the call; the library writes it only on failure).

    internal static class NativeMethods
    {
        internal const string Lib = "specdec";

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate int TokenCallback(IntPtr userData, IntPtr tokens, UIntPtr nTokens);

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate int DraftCallback(IntPtr userData, IntPtr tokens, UIntPtr nTokens, UIntPtr maxProposals,
            UIntPtr vocabSize, IntPtr proposals, IntPtr probs);

        // -- library

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern IntPtr specdec_version();

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern uint specdec_abi_version();

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_runtime_init([In] byte[] ortLibraryPath, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern IntPtr specdec_status_name(uint status);

        // -- errors

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_error_code(IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern IntPtr specdec_error_message(IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void specdec_error_free(IntPtr err);

        // -- generation config

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern GenConfigHandle specdec_gen_config_new();

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void specdec_gen_config_free(IntPtr config);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_gen_config_set_gamma(GenConfigHandle config, uint gamma, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_gen_config_set_temperature(GenConfigHandle config, float temperature, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_gen_config_set_top_k(GenConfigHandle config, uint topK, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_gen_config_set_top_p(GenConfigHandle config, float topP, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_gen_config_set_min_p(GenConfigHandle config, float minP, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_gen_config_set_repetition_penalty(GenConfigHandle config, float penalty, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_gen_config_set_seed(GenConfigHandle config, ulong seed, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_gen_config_set_max_new_tokens(GenConfigHandle config, uint maxNewTokens, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_gen_config_set_eos_ids(GenConfigHandle config, [In] uint[] ids, UIntPtr nIds, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_gen_config_use_model_eos_ids(GenConfigHandle config, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_gen_config_add_stop_tokens(GenConfigHandle config, [In] uint[] ids, UIntPtr nIds, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_gen_config_add_stop_text(GenConfigHandle config, [In] byte[] text, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_gen_config_clear_stops(GenConfigHandle config, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_gen_config_set_draft_policy(GenConfigHandle config, uint policy, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_gen_config_set_confidence_stop(GenConfigHandle config, float pMin, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_gen_config_set_kv_memory_limit(GenConfigHandle config, ulong bytes, ref IntPtr err);

        // -- drafters

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_drafter_new_model(ModelHandle draft, out DrafterHandle drafter, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_drafter_new_ngram(uint nMin, uint nMax, uint maxProposal, out DrafterHandle drafter, ref IntPtr err);

        // countsPath null passes NULL (learn the counts from the sequence).
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_drafter_new_counts(uint order, [In] byte[] countsPath, out DrafterHandle drafter, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_drafter_new_callback(DraftCallback callback, IntPtr userData,
            [MarshalAs(UnmanagedType.U1)] bool withProbs, out DrafterHandle drafter, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void specdec_drafter_free(IntPtr drafter);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_generator_new_with_drafter(ModelHandle target, DrafterHandle drafter, GenConfigHandle config,
            out GeneratorHandle generator, ref IntPtr err);

        // The same function with a NULL drafter (target-only).
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, EntryPoint = "specdec_generator_new_with_drafter")]
        internal static extern Status specdec_generator_new_with_drafter_target_only(ModelHandle target, IntPtr drafter, GenConfigHandle config,
            out GeneratorHandle generator, ref IntPtr err);

        // -- generator

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_generator_new(ModelHandle target, ModelHandle draft, GenConfigHandle config,
            out GeneratorHandle generator, ref IntPtr err);

        // The same function with a NULL draft (a SafeHandle parameter cannot be null).
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, EntryPoint = "specdec_generator_new")]
        internal static extern Status specdec_generator_new_target_only(ModelHandle target, IntPtr draft, GenConfigHandle config,
            out GeneratorHandle generator, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void specdec_generator_free(IntPtr generator);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_generator_set_tokenizer(GeneratorHandle generator, TokenizerHandle tokenizer, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_generator_append_tokens(GeneratorHandle generator, [In] uint[] ids, UIntPtr nIds, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_generator_step(GeneratorHandle generator, out IntPtr tokens, out UIntPtr nTokens, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_generator_generate(GeneratorHandle generator, TokenCallback callback, IntPtr userData,
            out FinishReason reason, ref IntPtr err);

        // Takes the raw pointer: Generator.Cancel manages the SafeHandle's reference count itself
        // so that cancelling a disposed generator is a no-op rather than an exception.
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void specdec_generator_cancel(IntPtr generator);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void specdec_generator_clear_cancel(IntPtr generator);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_generator_tokens(GeneratorHandle generator, out IntPtr tokens, out UIntPtr nTokens, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern FinishReason specdec_generator_finish_reason(GeneratorHandle generator);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_generator_stats(GeneratorHandle generator, ref Stats stats, ref IntPtr err);

        // -- model

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern ModelOptionsHandle specdec_model_options_new();

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void specdec_model_options_free(IntPtr options);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_model_options_set_device(ModelOptionsHandle options, [In] byte[] device, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_model_options_set_intra_threads(ModelOptionsHandle options, uint threads, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_model_options_set_variant(ModelOptionsHandle options, [In] byte[] variant, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_model_options_set_cuda_fallback(ModelOptionsHandle options,
            [MarshalAs(UnmanagedType.U1)] bool fallback, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_model_options_set_io_binding(ModelOptionsHandle options,
            [MarshalAs(UnmanagedType.U1)] bool enable, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_model_options_set_spinning(ModelOptionsHandle options,
            [MarshalAs(UnmanagedType.U1)] bool spinning, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_model_options_set_optimization_level(ModelOptionsHandle options, uint level, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int specdec_model_cuda_device(ModelHandle model);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_model_load([In] byte[] path, ModelOptionsHandle options, out ModelHandle model, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void specdec_model_free(IntPtr model);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern UIntPtr specdec_model_vocab_size(ModelHandle model);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern UIntPtr specdec_model_context_limit(ModelHandle model);

        // -- tokenizer

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_tokenizer_load([In] byte[] path, out TokenizerHandle tokenizer, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void specdec_tokenizer_free(IntPtr tokenizer);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_tokenizer_encode(TokenizerHandle tokenizer, [In] byte[] text, UIntPtr textLen,
            [Out] uint[] ids, UIntPtr capacity, out UIntPtr nIds, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_tokenizer_decode(TokenizerHandle tokenizer, [In] uint[] ids, UIntPtr nIds,
            [Out] byte[] buf, UIntPtr capacity, out UIntPtr len, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern UIntPtr specdec_tokenizer_vocab_size(TokenizerHandle tokenizer);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_stream_decoder_new(TokenizerHandle tokenizer, out StreamDecoderHandle decoder, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_stream_decoder_push(StreamDecoderHandle decoder, [In] uint[] ids, UIntPtr nIds,
            out IntPtr text, out UIntPtr len, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_stream_decoder_flush(StreamDecoderHandle decoder, out IntPtr text, out UIntPtr len, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void specdec_stream_decoder_free(IntPtr decoder);
    }
}
