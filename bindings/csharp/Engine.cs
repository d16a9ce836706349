// Engine.cs: many sequences over one pair of models, batched round by round (specdec_engine_*).
// Part of the C# binding of libspecdec (bindings/csharp/README.md; conventions shared by every
// file: Library.cs).

using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;

namespace Specdec
{
    /// <summary>A sequence's state in an <see cref="Engine"/> (specdec_seq_state).</summary>
    public enum SeqState : uint
    {
        /// <summary>Added, waiting for a slot (the batch or the KV budget is full).</summary>
        Waiting = 0,
        /// <summary>In the running batch.</summary>
        Running = 1,
        /// <summary>Ended: see its FinishReason (Cancelled after Engine.Cancel).</summary>
        Finished = 2,
        /// <summary>Ended by an error, which Engine.Poll reports once the tokens are drained.</summary>
        Failed = 3,
    }

    /// <summary>What Engine.Add does with a sequence the engine has no room for (specdec_admission).</summary>
    public enum Admission : uint
    {
        /// <summary>It waits until room frees (the default).</summary>
        Wait = 0,
        /// <summary>Add throws SpecdecException (MemoryBudget).</summary>
        Refuse = 1,
    }

    /// <summary>
    /// An engine's counters: the C struct specdec_engine_stats, field for field (<see
    /// cref="StructSize"/> is set by <see cref="Engine.Stats"/>).
    /// </summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct EngineStats
    {
        /// <summary>size_t struct_size: the bytes the library may write.</summary>
        public UIntPtr StructSize;
        /// <summary>Rounds run.</summary>
        public ulong Rounds;
        /// <summary>Sequences running now.</summary>
        public ulong Active;
        /// <summary>Sequences waiting for a slot.</summary>
        public ulong Waiting;
        /// <summary>Sequences that ended (finished or failed) and are not removed yet.</summary>
        public ulong Finished;
        /// <summary>Tokens generated, all sequences.</summary>
        public ulong NewTokens;
        /// <summary>Draft proposals, all sequences.</summary>
        public ulong Drafted;
        /// <summary>Proposals the target accepted.</summary>
        public ulong Accepted;
        /// <summary>KV cache bytes the running sequences hold now.</summary>
        public ulong KvBytesUsed;
        /// <summary>The engine's KV limit (0: none).</summary>
        public ulong KvBytesLimit;
        /// <summary>Wall time in the target's calls.</summary>
        public double TargetSeconds;
        /// <summary>Wall time in the draft's calls.</summary>
        public double DraftSeconds;
        /// <summary>Wall time in rounds.</summary>
        public double TotalSeconds;

        /// <summary>Accepted / Drafted (0 when nothing was drafted).</summary>
        public double AcceptanceRate { get { return Drafted == 0 ? 0 : (double)Accepted / Drafted; } }
    }

    /// <summary>Settings of an <see cref="Engine"/>; null members keep the library's defaults.</summary>
    public sealed class EngineOptions
    {
        /// <summary>Most sequences running at once (rows of one batched round; default 16).</summary>
        public uint? MaxBatch;
        /// <summary>Bytes of KV cache all sequences may hold together (0: no limit, the default).</summary>
        public ulong? KvMemoryLimit;
        /// <summary>Queue (Wait, the default) or refuse sequences that do not fit.</summary>
        public Admission? Admission;

        internal EngineOptionsHandle ToNative()
        {
            EngineOptionsHandle o = EngineNative.specdec_engine_options_new();
            if (o.IsInvalid)
            {
                o.Dispose();
                throw new SpecdecException(Status.Panic, "specdec_engine_options_new failed");
            }
            try
            {
                IntPtr err = IntPtr.Zero;
                if (MaxBatch.HasValue) { Interop.Check(EngineNative.specdec_engine_options_set_max_batch(o, MaxBatch.Value, ref err), err); err = IntPtr.Zero; }
                if (KvMemoryLimit.HasValue) { Interop.Check(EngineNative.specdec_engine_options_set_kv_memory_limit(o, KvMemoryLimit.Value, ref err), err); err = IntPtr.Zero; }
                if (Admission.HasValue) { Interop.Check(EngineNative.specdec_engine_options_set_admission(o, (uint)Admission.Value, ref err), err); }
                return o;
            }
            catch
            {
                o.Dispose();
                throw;
            }
        }
    }

    /// <summary>What <see cref="Engine.Poll"/> returns.</summary>
    public sealed class PollResult
    {
        /// <summary>The tokens generated since the previous poll.</summary>
        public uint[] Tokens;
        /// <summary>The sequence's state.</summary>
        public SeqState State;
        /// <summary>Why it finished (None while it runs).</summary>
        public FinishReason Reason;
        /// <summary>A failed sequence's error, once its tokens are drained (null otherwise).</summary>
        public SpecdecException Error;

        /// <summary>Finished or failed.</summary>
        public bool Done { get { return State == SeqState.Finished || State == SeqState.Failed; } }
    }

    /// <summary>
    /// Many sequences over one target (and optional draft) model, one batched round (<see
    /// cref="Step"/>) at a time: the target scores the proposals of every running sequence in one
    /// call. Thread-safe: one thread may call Step in a loop while others Add, Poll, Cancel and
    /// Remove sequences (which do not wait for a running Step); a second concurrent Step throws
    /// SpecdecException (Busy). Keeps its models alive natively.
    /// </summary>
    public sealed class Engine : IDisposable
    {
        private readonly EngineHandle handle;

        /// <summary>
        /// An engine over <paramref name="target"/>, speculating with <paramref name="draft"/>
        /// (null: target-only decoding), with <paramref name="options"/> (null: defaults). Throws
        /// SpecdecException: VocabMismatch, InvalidArgument.
        /// </summary>
        public Engine(Model target, Model draft = null, EngineOptions options = null)
        {
            if (target == null) throw new ArgumentNullException("target");
            EngineOptionsHandle opts = (options ?? new EngineOptions()).ToNative();
            try
            {
                IntPtr err = IntPtr.Zero;
                Status st = draft == null
                    ? EngineNative.specdec_engine_new_target_only(target.Handle, IntPtr.Zero, opts, out handle, ref err)
                    : EngineNative.specdec_engine_new(target.Handle, draft.Handle, opts, out handle, ref err);
                if (st != Status.Ok)
                {
                    if (handle != null) handle.Dispose();
                    throw Interop.TakeError(st, err);
                }
                Interop.FreeError(err);
            }
            finally
            {
                opts.Dispose(); // the engine copied them
            }
        }

        /// <summary>Match text stop sequences with <paramref name="tokenizer"/> (kept alive natively).</summary>
        public void SetTokenizer(Tokenizer tokenizer)
        {
            if (tokenizer == null) throw new ArgumentNullException("tokenizer");
            IntPtr err = IntPtr.Zero;
            Interop.Check(EngineNative.specdec_engine_set_tokenizer(handle, tokenizer.Handle, ref err), err);
        }

        /// <summary>
        /// Queue a sequence: <paramref name="prompt"/>, then a generation with <paramref
        /// name="options"/> (null: defaults). Returns its id at once; it runs in the following
        /// Steps. Throws SpecdecException: TokenOutOfRange, ContextLimit, InvalidArgument,
        /// MemoryBudget.
        /// </summary>
        public ulong Add(uint[] prompt, GenerationOptions options = null)
        {
            if (prompt == null) throw new ArgumentNullException("prompt");
            GenConfigHandle config = (options ?? new GenerationOptions()).ToNative();
            try
            {
                IntPtr err = IntPtr.Zero;
                ulong id;
                Interop.Check(EngineNative.specdec_engine_add(handle, Interop.NonEmpty(prompt), (UIntPtr)prompt.Length, config, out id, ref err), err);
                return id;
            }
            finally
            {
                config.Dispose();
            }
        }

        /// <summary>
        /// End a sequence before the next round (FinishReason.Cancelled; its KV memory is freed);
        /// its tokens stay readable until Remove. Throws SpecdecException (InvalidArgument) for an
        /// unknown id.
        /// </summary>
        public void Cancel(ulong id)
        {
            IntPtr err = IntPtr.Zero;
            Interop.Check(EngineNative.specdec_engine_cancel(handle, id, ref err), err);
        }

        /// <summary>One round over every running sequence; returns how many are still running or waiting.</summary>
        public int Step()
        {
            IntPtr err = IntPtr.Zero;
            UIntPtr n;
            Interop.Check(EngineNative.specdec_engine_step(handle, out n, ref err), err);
            return checked((int)n.ToUInt64());
        }

        /// <summary>
        /// The tokens generated since the previous poll and the sequence's state. A failed
        /// sequence's error is in the result (not thrown) once its tokens are drained; an unknown
        /// id throws SpecdecException (InvalidArgument).
        /// </summary>
        public PollResult Poll(ulong id)
        {
            var tokens = new List<uint>();
            uint[] buf = new uint[256];
            while (true)
            {
                IntPtr err = IntPtr.Zero;
                UIntPtr n;
                SeqState state;
                FinishReason reason;
                Status st = EngineNative.specdec_engine_poll(handle, id, buf, (UIntPtr)buf.Length, out n, out state, out reason, ref err);
                int got = (int)Math.Min(n.ToUInt64(), (ulong)buf.Length);
                if (st == Status.BufferTooSmall && n.ToUInt64() > (ulong)buf.Length)
                {
                    Interop.FreeError(err);
                    buf = new uint[checked((int)n.ToUInt64())];
                    continue;
                }
                for (int i = 0; i < got; i++) tokens.Add(buf[i]);
                if (st != Status.Ok)
                {
                    SpecdecException e = Interop.TakeError(st, err);
                    if (state != SeqState.Failed) throw e;
                    return new PollResult { Tokens = tokens.ToArray(), State = state, Reason = reason, Error = e };
                }
                Interop.FreeError(err);
                if (got < buf.Length)
                {
                    return new PollResult { Tokens = tokens.ToArray(), State = state, Reason = reason };
                }
            }
        }

        /// <summary>Forget a sequence (cancelling it if it runs or waits) and free what it holds.</summary>
        public void Remove(ulong id)
        {
            IntPtr err = IntPtr.Zero;
            Interop.Check(EngineNative.specdec_engine_remove(handle, id, ref err), err);
        }

        /// <summary>One sequence's counters and timings (as of the last round).</summary>
        public Stats SeqStats(ulong id)
        {
            var s = new Stats { StructSize = (UIntPtr)Marshal.SizeOf(typeof(Stats)) };
            IntPtr err = IntPtr.Zero;
            Interop.Check(EngineNative.specdec_engine_seq_stats(handle, id, ref s, ref err), err);
            return s;
        }

        /// <summary>The engine's counters.</summary>
        public EngineStats Stats()
        {
            var s = new EngineStats { StructSize = (UIntPtr)Marshal.SizeOf(typeof(EngineStats)) };
            IntPtr err = IntPtr.Zero;
            Interop.Check(EngineNative.specdec_engine_get_stats(handle, ref s, ref err), err);
            return s;
        }

        /// <summary>Free the engine and its sequences (after calls in progress on other threads).</summary>
        public void Dispose()
        {
            handle.Dispose();
        }
    }

    internal sealed class EngineHandle : SafeHandle
    {
        private EngineHandle() : base(IntPtr.Zero, true) { }
        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }
        protected override bool ReleaseHandle() { EngineNative.specdec_engine_free(handle); return true; }
    }

    internal sealed class EngineOptionsHandle : SafeHandle
    {
        private EngineOptionsHandle() : base(IntPtr.Zero, true) { }
        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }
        protected override bool ReleaseHandle() { EngineNative.specdec_engine_options_free(handle); return true; }
    }

    // The engine's imports (conventions as NativeMethods in Native.cs).
    internal static class EngineNative
    {
        private const string Lib = NativeMethods.Lib;

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern EngineOptionsHandle specdec_engine_options_new();

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void specdec_engine_options_free(IntPtr options);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_engine_options_set_max_batch(EngineOptionsHandle options, uint maxRows, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_engine_options_set_kv_memory_limit(EngineOptionsHandle options, ulong totalBytes, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_engine_options_set_admission(EngineOptionsHandle options, uint mode, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_engine_new(ModelHandle target, ModelHandle draft, EngineOptionsHandle options,
            out EngineHandle engine, ref IntPtr err);

        // The same entry point with a NULL draft (target-only decoding).
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, EntryPoint = "specdec_engine_new")]
        internal static extern Status specdec_engine_new_target_only(ModelHandle target, IntPtr draft, EngineOptionsHandle options,
            out EngineHandle engine, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void specdec_engine_free(IntPtr engine);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_engine_set_tokenizer(EngineHandle engine, TokenizerHandle tokenizer, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_engine_add(EngineHandle engine, [In] uint[] prompt, UIntPtr nPrompt, GenConfigHandle config,
            out ulong id, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_engine_cancel(EngineHandle engine, ulong id, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_engine_step(EngineHandle engine, out UIntPtr nActive, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_engine_poll(EngineHandle engine, ulong id, [Out] uint[] tokens, UIntPtr capacity,
            out UIntPtr nTokens, out SeqState state, out FinishReason reason, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_engine_remove(EngineHandle engine, ulong id, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_engine_seq_stats(EngineHandle engine, ulong id, ref Stats stats, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_engine_get_stats(EngineHandle engine, ref EngineStats stats, ref IntPtr err);
    }
}
