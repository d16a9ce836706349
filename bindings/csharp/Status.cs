// Status.cs: status codes, finish reasons and other enums of the C ABI. Part of the C# binding of libspecdec (bindings/csharp/README.md;
// conventions shared by every file: Library.cs).

using System;
using System.Collections.Generic;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;

namespace Specdec
{
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
        /// <summary>
        /// (Since 0.3) The sequence fills the context; only with
        /// GenerationOptions.FinishAtContextLimit (otherwise the next iteration throws ContextLimit).
        /// </summary>
        Length = 5,
        /// <summary>(Since 0.3) The sequence was cancelled with Engine.Cancel (batch engine only).</summary>
        Cancelled = 6,
    }

    /// <summary>Severity of a log message, and the threshold of Logging.Level (specdec_log_level).</summary>
    public enum LogLevel : uint
    {
        Verbose = 0,
        Info = 1,
        Warning = 2,
        Error = 3,
        Fatal = 4,
        /// <summary>As a threshold: no message at all.</summary>
        Off = 5,
    }

    /// <summary>Where a model's context limit comes from (Model.ContextLimitSource).</summary>
    public enum ContextLimitSource : uint
    {
        /// <summary>config.json (max_position_embeddings, n_positions, n_ctx or max_sequence_length).</summary>
        Config = 0,
        /// <summary>The rows of a learned position table in the graph.</summary>
        Graph = 1,
        /// <summary>ModelOptions.ContextLimit.</summary>
        Options = 2,
        /// <summary>Nothing stated it: 2048 is assumed (and a warning logged).</summary>
        Default = 3,
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
}
