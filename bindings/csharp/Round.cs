// Round.cs: one round of a generation. Part of the C# binding of libspecdec (bindings/csharp/README.md;
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
    /// One round (iteration) of the current generation, timed from the generation's start (its
    /// first iteration after Append, Rewind or Fork): the C struct specdec_round, field for field.
    /// <see cref="Generator.GetRound"/> sets <see cref="StructSize"/>.
    /// </summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct Round
    {
        /// <summary>size_t struct_size: the bytes the library may write.</summary>
        public UIntPtr StructSize;
        /// <summary>When the round started and ended, in seconds since the generation's start.</summary>
        public double StartSeconds;
        public double EndSeconds;
        /// <summary>Time in the drafter and in the target's ONNX Runtime calls during the round.</summary>
        public double DraftSeconds;
        public double TargetSeconds;
        /// <summary>Proposals verified.</summary>
        public ulong Proposed;
        /// <summary>Proposals accepted.</summary>
        public ulong Accepted;
        /// <summary>Tokens the round added to the sequence.</summary>
        public ulong Emitted;
    }
}
