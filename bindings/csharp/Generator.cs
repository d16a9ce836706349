// Generator.cs: one sequence being generated. Part of the C# binding of libspecdec (bindings/csharp/README.md;
// conventions shared by every file: Library.cs).

using System;
using System.Collections.Generic;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

namespace Specdec
{
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
        /// throws SpecdecException (Busy, as the C ABI's SPECDEC_STATUS_BUSY), because the native
        /// generator is held for the whole call.</para>
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
        /// <see cref="Generate(Func{uint[], bool}, CancellationToken)"/> on a thread-pool thread:
        /// the task completes with the finish reason, faults with SpecdecException, or is
        /// cancelled (awaiting it throws OperationCanceledException) when <paramref name="ct"/>
        /// is cancelled: the running iteration is interrupted through specdec_generator_cancel
        /// and the generation stops at its end. The generator must not be used until the task
        /// has completed (except Cancel).
        /// </summary>
        public Task<FinishReason> GenerateAsync(Func<uint[], bool> onTokens = null, CancellationToken ct = default(CancellationToken))
        {
            EnsureNotInCallback("GenerateAsync");
            return Task.Run(() => Generate(onTokens, ct), ct);
        }

        /// <summary>
        /// Stream the generated text to <paramref name="onText"/> on a thread-pool thread (whole
        /// UTF-8 characters, never an empty string; the text the stream decoder held back comes
        /// last). Makes <paramref name="tok"/> the generator's tokenizer, so StopTexts work.
        /// Cancellation and errors as <see cref="GenerateAsync"/>; an exception thrown by
        /// <paramref name="onText"/> stops the generation and faults the task with it. The
        /// generation runs in one native call (specdec_generator_generate), so
        /// <paramref name="onText"/> runs inside it: there the generator answers Busy (Cancel
        /// excepted). (mcs, Mono's C# compiler, has no C# 8 async streams, so this is a callback
        /// rather than an IAsyncEnumerable; <see cref="GenerateText"/> is the pull-style
        /// enumerable.)
        /// </summary>
        public Task<FinishReason> GenerateStreamAsync(Tokenizer tok, Action<string> onText, CancellationToken ct = default(CancellationToken))
        {
            if (tok == null) throw new ArgumentNullException("tok");
            if (onText == null) throw new ArgumentNullException("onText");
            EnsureNotInCallback("GenerateStreamAsync");
            return Task.Run(() =>
            {
                bool onTextFailed = false;
                SetTokenizer(tok);
                using (StreamDecoder decoder = new StreamDecoder(tok))
                {
                    FinishReason reason;
                    try
                    {
                        reason = Generate(tokens =>
                        {
                            string text = decoder.Push(tokens);
                            if (text.Length > 0)
                            {
                                try { onText(text); }
                                catch { onTextFailed = true; throw; }
                            }
                            return true;
                        }, ct);
                    }
                    finally
                    {
                        // What the decoder held back, also after a cancellation or an error.
                        if (!onTextFailed)
                        {
                            string rest = decoder.Flush();
                            if (rest.Length > 0) onText(rest);
                        }
                    }
                    return reason;
                }
            }, ct);
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
        /// <summary>
        /// The log-probabilities of the current generation's last generated tokens (all of them
        /// unless SetConfig turned them on during it): entry i belongs to token
        /// Tokens.Length - result.Length + i. Empty with GenerationOptions.Logprobs off.
        /// </summary>
        public TokenLogprobs[] Logprobs()
        {
            EnsureNotInCallback("Logprobs");
            IntPtr chosen, top;
            UIntPtr n, topN;
            IntPtr err = IntPtr.Zero;
            Interop.Check(NativeMethods.specdec_generator_logprobs(handle, out chosen, out n, out top, out topN, ref err), err);
            int count = checked((int)n.ToUInt64()), k = checked((int)topN.ToUInt64());
            int size = Marshal.SizeOf(typeof(TokenLogprob));
            TokenLogprobs[] result = new TokenLogprobs[count];
            for (int i = 0; i < count; i++)
            {
                TokenLogprob c = (TokenLogprob)Marshal.PtrToStructure(new IntPtr(chosen.ToInt64() + (long)i * size), typeof(TokenLogprob));
                TokenLogprob[] alternatives = new TokenLogprob[top == IntPtr.Zero ? 0 : k];
                for (int j = 0; j < alternatives.Length; j++)
                {
                    alternatives[j] = (TokenLogprob)Marshal.PtrToStructure(
                        new IntPtr(top.ToInt64() + ((long)i * k + j) * size), typeof(TokenLogprob));
                }
                result[i] = new TokenLogprobs(c, alternatives);
            }
            return result;
        }

        /// <summary>Rounds of the current generation so far.</summary>
        public int RoundCount
        {
            get
            {
                EnsureNotInCallback("RoundCount");
                return checked((int)NativeMethods.specdec_generator_round_count(handle).ToUInt64());
            }
        }

        /// <summary>Round <paramref name="index"/> (below RoundCount) of the current generation. Throws InvalidArgument out of range.</summary>
        public Round GetRound(int index)
        {
            if (index < 0) throw new SpecdecException(Status.InvalidArgument, "round index must be >= 0, got " + index);
            EnsureNotInCallback("GetRound");
            Round r = new Round();
            r.StructSize = (UIntPtr)Marshal.SizeOf(typeof(Round));
            IntPtr err = IntPtr.Zero;
            Interop.Check(NativeMethods.specdec_generator_round(handle, (UIntPtr)index, ref r, ref err), err);
            return r;
        }

        /// <summary>Every round of the current generation so far.</summary>
        public Round[] Rounds()
        {
            int n = RoundCount;
            Round[] result = new Round[n];
            for (int i = 0; i < n; i++) result[i] = GetRound(i);
            return result;
        }

        /// <summary>Tokens that still fit in the context after the sequence.</summary>
        public int ContextRoom
        {
            get
            {
                EnsureNotInCallback("ContextRoom");
                return checked((int)NativeMethods.specdec_generator_context_room(handle).ToUInt64());
            }
        }

        /// <summary>
        /// Keep the first <paramref name="nTokens"/> tokens and forget the rest (KV caches too).
        /// Inside the current generation it continues from there with what is left of
        /// MaxNewTokens; inside the prompt the next generation starts after it. Clears the finish
        /// reason. Throws SpecdecException InvalidArgument (beyond the sequence; nothing changes).
        /// </summary>
        public void Rewind(int nTokens)
        {
            if (nTokens < 0) throw new SpecdecException(Status.InvalidArgument, "nTokens must be >= 0, got " + nTokens);
            EnsureNotInCallback("Rewind");
            IntPtr err = IntPtr.Zero;
            Interop.Check(NativeMethods.specdec_generator_rewind(handle, (UIntPtr)nTokens, ref err), err);
        }

        /// <summary>
        /// The generator's current settings, every property set: change some and pass them to
        /// SetConfig. (EosIds is null when the target's own apply.)
        /// </summary>
        public GenerationOptions GetConfig()
        {
            EnsureNotInCallback("GetConfig");
            GenConfigHandle c;
            IntPtr err = IntPtr.Zero;
            Status st = NativeMethods.specdec_generator_get_config(handle, out c, ref err);
            if (st != Status.Ok)
            {
                if (c != null) c.Dispose();
                throw Interop.TakeError(st, err);
            }
            Interop.FreeError(err);
            using (c) return GenerationOptions.FromNative(c);
        }

        /// <summary>
        /// Replace the settings (between turns or iterations) with <paramref name="options"/>
        /// (null properties: the library's defaults; start from GetConfig() to change a few). All
        /// or nothing. Throws SpecdecException InvalidArgument, TokenOutOfRange.
        /// </summary>
        public void SetConfig(GenerationOptions options)
        {
            if (options == null) throw new ArgumentNullException("options");
            EnsureNotInCallback("SetConfig");
            using (GenConfigHandle c = options.ToNative())
            {
                IntPtr err = IntPtr.Zero;
                Interop.Check(NativeMethods.specdec_generator_set_config(handle, c, ref err), err);
            }
        }

        /// <summary>
        /// Feed the sequence to both models now without generating, so that the next iteration
        /// or a Fork only computes what follows.
        /// </summary>
        public void Prefill()
        {
            EnsureNotInCallback("Prefill");
            IntPtr err = IntPtr.Zero;
            Interop.Check(NativeMethods.specdec_generator_prefill(handle, ref err), err);
        }

        /// <summary>
        /// A new generator holding the first <paramref name="nTokens"/> tokens, their KV copied,
        /// starting a generation after them, with <paramref name="options"/> (null: this
        /// generator's settings), its drafter kind and tokenizer. This generator is not changed.
        /// Throws SpecdecException InvalidArgument, ContextLimit, MemoryBudget, Unavailable (a
        /// drafter that cannot be forked, such as a CallbackDrafter).
        /// </summary>
        public Generator Fork(int nTokens, GenerationOptions options = null)
        {
            if (nTokens < 0) throw new SpecdecException(Status.InvalidArgument, "nTokens must be >= 0, got " + nTokens);
            EnsureNotInCallback("Fork");
            if (handle.Anchor != null) throw new SpecdecException(Status.Unavailable, "a callback drafter cannot be forked");
            GenConfigHandle c = options == null ? null : options.ToNative();
            try
            {
                GeneratorHandle fork;
                IntPtr err = IntPtr.Zero;
                Status st = c == null
                    ? NativeMethods.specdec_generator_fork_same_config(handle, (UIntPtr)nTokens, IntPtr.Zero, out fork, ref err)
                    : NativeMethods.specdec_generator_fork(handle, (UIntPtr)nTokens, c, out fork, ref err);
                if (st != Status.Ok)
                {
                    if (fork != null) fork.Dispose();
                    throw Interop.TakeError(st, err);
                }
                Interop.FreeError(err);
                return new Generator(fork);
            }
            finally
            {
                if (c != null) c.Dispose();
            }
        }

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
                throw new SpecdecException(Status.Busy, "Generator." + member +
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
}
