// Stats.cs: a generator's counters. Part of the C# binding of libspecdec (bindings/csharp/README.md;
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
    /// Counters and timings of a generator, cumulative over its prompts: the C struct
    /// specdec_stats, field for field. <see cref="StructSize"/> is set by <see
    /// cref="Generator.Stats"/> to Marshal.SizeOf(typeof(Stats)) (128 bytes: SPECDEC_STATS_V1_SIZE,
    /// 104, plus the fields added in 0.2 and 0.3).
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
        /// <summary>
        /// (Since 0.3) Time to first token of the latest generation: from the start of its first
        /// iteration (prefill included) to the end of the iteration that produced its first
        /// token; 0 until then.
        /// </summary>
        public double TimeToFirstTokenSeconds;
    }
}
