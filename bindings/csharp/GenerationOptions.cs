// GenerationOptions.cs: generation settings. Part of the C# binding of libspecdec (bindings/csharp/README.md;
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

        /// <summary>
        /// OpenAI-style presence penalty, finite; 0 is off (default 0): subtracted once from the
        /// logit of every token the current generation has produced.
        /// </summary>
        public float? PresencePenalty { get; set; }

        /// <summary>
        /// OpenAI-style frequency penalty, finite; 0 is off (default 0): subtracted from a token's
        /// logit once per time the current generation has produced it.
        /// </summary>
        public float? FrequencyPenalty { get; set; }

        /// <summary>
        /// Added to the logits of the given token ids after the penalties (greedy included; -100
        /// bans a token in practice). null (default) leaves the bias unset; an empty dictionary
        /// clears it. Biases must be finite; ids are checked against the vocabulary when a
        /// generator is created (Status.TokenOutOfRange).
        /// </summary>
        public IDictionary<uint, float> LogitBias { get; set; }

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

        /// <summary>
        /// Record each generated token's log-probabilities with this many most likely
        /// alternatives (Generator.Logprobs; at most Library.MaxLogprobs); 0 is off (default).
        /// Changes no generated token.
        /// </summary>
        public uint? Logprobs { get; set; }

        /// <summary>
        /// Whether Append throws ContextLimit when fewer than MaxNewTokens fit after the prompt
        /// (default false: room for one token is enough).
        /// </summary>
        public bool? ReserveMaxNewTokens { get; set; }

        /// <summary>
        /// Whether a generation that fills the context ends with FinishReason.Length (true) or its
        /// next iteration throws ContextLimit (false, the default).
        /// </summary>
        public bool? FinishAtContextLimit { get; set; }

        // Every setting of a native config (Generator.GetConfig), all properties set.
        internal static GenerationOptions FromNative(GenConfigHandle c)
        {
            GenerationOptions o = new GenerationOptions
            {
                Gamma = NativeMethods.specdec_gen_config_get_gamma(c),
                Temperature = NativeMethods.specdec_gen_config_get_temperature(c),
                TopK = NativeMethods.specdec_gen_config_get_top_k(c),
                TopP = NativeMethods.specdec_gen_config_get_top_p(c),
                MinP = NativeMethods.specdec_gen_config_get_min_p(c),
                RepetitionPenalty = NativeMethods.specdec_gen_config_get_repetition_penalty(c),
                PresencePenalty = NativeMethods.specdec_gen_config_get_presence_penalty(c),
                FrequencyPenalty = NativeMethods.specdec_gen_config_get_frequency_penalty(c),
                Seed = NativeMethods.specdec_gen_config_get_seed(c),
                MaxNewTokens = NativeMethods.specdec_gen_config_get_max_new_tokens(c),
                DraftPolicy = (Specdec.DraftPolicy)NativeMethods.specdec_gen_config_get_draft_policy(c),
                ConfidenceStop = NativeMethods.specdec_gen_config_get_confidence_stop(c),
                KvMemoryLimit = NativeMethods.specdec_gen_config_get_kv_memory_limit(c),
                Logprobs = NativeMethods.specdec_gen_config_get_logprobs(c),
                ReserveMaxNewTokens = NativeMethods.specdec_gen_config_get_reserve_max_new_tokens(c),
                FinishAtContextLimit = NativeMethods.specdec_gen_config_get_finish_at_context_limit(c),
            };
            IntPtr ids;
            UIntPtr n;
            bool fromModel;
            IntPtr err = IntPtr.Zero;
            Interop.Check(NativeMethods.specdec_gen_config_get_eos_ids(c, out ids, out n, out fromModel, ref err), err);
            o.EosIds = fromModel ? null : Interop.CopyTokens(ids, n);
            err = IntPtr.Zero;
            UIntPtr nBias;
            Interop.Check(NativeMethods.specdec_gen_config_get_logit_bias(c, null, null, UIntPtr.Zero, out nBias, ref err), err);
            uint[] biasIds = new uint[(int)nBias.ToUInt64()];
            float[] biases = new float[biasIds.Length];
            if (biasIds.Length > 0)
            {
                err = IntPtr.Zero;
                Interop.Check(NativeMethods.specdec_gen_config_get_logit_bias(c, biasIds, biases, (UIntPtr)biasIds.Length, out nBias, ref err), err);
            }
            o.LogitBias = new Dictionary<uint, float>();
            for (int i = 0; i < biasIds.Length; i++)
            {
                o.LogitBias[biasIds[i]] = biases[i];
            }
            ulong stops = NativeMethods.specdec_gen_config_get_stop_token_count(c).ToUInt64();
            for (ulong i = 0; i < stops; i++)
            {
                err = IntPtr.Zero;
                Interop.Check(NativeMethods.specdec_gen_config_get_stop_tokens(c, (UIntPtr)i, out ids, out n, ref err), err);
                o.StopTokens.Add(Interop.CopyTokens(ids, n));
            }
            ulong texts = NativeMethods.specdec_gen_config_get_stop_text_count(c).ToUInt64();
            for (ulong i = 0; i < texts; i++)
            {
                o.StopTexts.Add(Interop.PtrToUtf8(NativeMethods.specdec_gen_config_get_stop_text(c, (UIntPtr)i)));
            }
            return o;
        }

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
                if (PresencePenalty.HasValue) { Interop.Check(NativeMethods.specdec_gen_config_set_presence_penalty(c, PresencePenalty.Value, ref err), err); err = IntPtr.Zero; }
                if (FrequencyPenalty.HasValue) { Interop.Check(NativeMethods.specdec_gen_config_set_frequency_penalty(c, FrequencyPenalty.Value, ref err), err); err = IntPtr.Zero; }
                if (LogitBias != null)
                {
                    uint[] biasIds = new uint[LogitBias.Count];
                    LogitBias.Keys.CopyTo(biasIds, 0);
                    Array.Sort(biasIds);
                    float[] biases = new float[biasIds.Length];
                    for (int i = 0; i < biasIds.Length; i++) { biases[i] = LogitBias[biasIds[i]]; }
                    Interop.Check(NativeMethods.specdec_gen_config_set_logit_bias(c, biasIds.Length == 0 ? null : biasIds,
                        biasIds.Length == 0 ? null : biases, (UIntPtr)biasIds.Length, ref err), err);
                    err = IntPtr.Zero;
                }
                if (Seed.HasValue) { Interop.Check(NativeMethods.specdec_gen_config_set_seed(c, Seed.Value, ref err), err); err = IntPtr.Zero; }
                if (MaxNewTokens.HasValue) { Interop.Check(NativeMethods.specdec_gen_config_set_max_new_tokens(c, MaxNewTokens.Value, ref err), err); err = IntPtr.Zero; }
                if (DraftPolicy.HasValue) { Interop.Check(NativeMethods.specdec_gen_config_set_draft_policy(c, (uint)DraftPolicy.Value, ref err), err); err = IntPtr.Zero; }
                if (ConfidenceStop.HasValue) { Interop.Check(NativeMethods.specdec_gen_config_set_confidence_stop(c, ConfidenceStop.Value, ref err), err); err = IntPtr.Zero; }
                if (Logprobs.HasValue) { Interop.Check(NativeMethods.specdec_gen_config_set_logprobs(c, Logprobs.Value, ref err), err); err = IntPtr.Zero; }
                if (ReserveMaxNewTokens.HasValue) { Interop.Check(NativeMethods.specdec_gen_config_set_reserve_max_new_tokens(c, ReserveMaxNewTokens.Value, ref err), err); err = IntPtr.Zero; }
                if (FinishAtContextLimit.HasValue) { Interop.Check(NativeMethods.specdec_gen_config_set_finish_at_context_limit(c, FinishAtContextLimit.Value, ref err), err); err = IntPtr.Zero; }
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
}
