// TokenLogprob.cs: log-probabilities of generated tokens. Part of the C# binding of libspecdec
// (bindings/csharp/README.md; conventions shared by every file: Library.cs).

using System;
using System.Collections.Generic;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;

namespace Specdec
{
    /// <summary>
    /// The log-probabilities of one token at one position, from the target's distribution there
    /// (what target-only decoding samples from): the C struct specdec_logprob.
    /// </summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct TokenLogprob
    {
        public uint Token;
        /// <summary>
        /// ln p(Token) in the distribution sampled from (after the repetition penalty,
        /// temperature, top-k, top-p and min-p); -Infinity for a token they cut. Greedy: 0 for the
        /// token it picks, -Infinity for every other.
        /// </summary>
        public float Logprob;
        /// <summary>log_softmax of the target's raw logits.</summary>
        public float RawLogprob;
    }

    /// <summary>One generated token's log-probabilities and its most likely alternatives (Generator.Logprobs).</summary>
    public sealed class TokenLogprobs
    {
        internal TokenLogprobs(TokenLogprob chosen, TokenLogprob[] top)
        {
            Chosen = chosen;
            Top = top;
        }

        /// <summary>The generated token.</summary>
        public TokenLogprob Chosen { get; private set; }

        /// <summary>The most likely alternatives, most likely first (GenerationOptions.Logprobs of them).</summary>
        public TokenLogprob[] Top { get; private set; }
    }
}
