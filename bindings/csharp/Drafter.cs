// Drafter.cs: draft sources. Part of the C# binding of libspecdec (bindings/csharp/README.md;
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
}
