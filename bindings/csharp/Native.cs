// Native.cs: safe handles, marshalling helpers and the P/Invoke declarations. Part of the C# binding of libspecdec (bindings/csharp/README.md;
// conventions shared by every file: Library.cs).

using System;
using System.Collections.Generic;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;

namespace Specdec
{
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
        internal static extern Status specdec_gen_config_set_presence_penalty(GenConfigHandle config, float penalty, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_gen_config_set_frequency_penalty(GenConfigHandle config, float penalty, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_gen_config_set_logit_bias(GenConfigHandle config, [In] uint[] ids, [In] float[] biases, UIntPtr n, ref IntPtr err);

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
        internal static extern Status specdec_model_options_set_device_reductions(ModelOptionsHandle options,
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

        // specdec_tokenizer_encode_ex / decode_ex flags.
        internal const uint EncodeAddSpecialTokens = 1;  // SPECDEC_ENCODE_ADD_SPECIAL_TOKENS
        internal const uint DecodeKeepSpecialTokens = 1; // SPECDEC_DECODE_KEEP_SPECIAL_TOKENS

        // specdec_chat_message: two NUL-terminated UTF-8 strings (pinned by the caller).
        [StructLayout(LayoutKind.Sequential)]
        internal struct ChatMessageNative
        {
            internal IntPtr Role;
            internal IntPtr Content;
        }

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_tokenizer_encode_ex(TokenizerHandle tokenizer, [In] byte[] text, UIntPtr textLen,
            uint flags, [Out] uint[] ids, UIntPtr capacity, out UIntPtr nIds, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_tokenizer_decode_ex(TokenizerHandle tokenizer, [In] uint[] ids, UIntPtr nIds,
            uint flags, [Out] byte[] buf, UIntPtr capacity, out UIntPtr len, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_tokenizer_token_to_id(TokenizerHandle tokenizer, [In] byte[] token, UIntPtr tokenLen,
            out uint id, [MarshalAs(UnmanagedType.U1)] out bool found, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_tokenizer_id_to_token(TokenizerHandle tokenizer, uint id,
            [Out] byte[] buf, UIntPtr capacity, out UIntPtr len, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_tokenizer_apply_chat_template(TokenizerHandle tokenizer,
            [In] ChatMessageNative[] messages, UIntPtr nMessages, [MarshalAs(UnmanagedType.U1)] bool addGenerationPrompt,
            [Out] byte[] buf, UIntPtr capacity, out UIntPtr len, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_tokenizer_set_chat_template(TokenizerHandle tokenizer, [In] byte[] chatTemplate,
            ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_stream_decoder_new(TokenizerHandle tokenizer, out StreamDecoderHandle decoder, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_stream_decoder_push(StreamDecoderHandle decoder, [In] uint[] ids, UIntPtr nIds,
            out IntPtr text, out UIntPtr len, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_stream_decoder_flush(StreamDecoderHandle decoder, out IntPtr text, out UIntPtr len, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void specdec_stream_decoder_free(IntPtr decoder);

        // -- the embedder API

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void LogCallback(IntPtr userData, LogLevel level, IntPtr source, IntPtr message);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_gen_config_set_logprobs(GenConfigHandle config, uint topN, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_gen_config_set_reserve_max_new_tokens(GenConfigHandle config, [MarshalAs(UnmanagedType.U1)] bool reserve, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_gen_config_set_finish_at_context_limit(GenConfigHandle config, [MarshalAs(UnmanagedType.U1)] bool finish, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern uint specdec_gen_config_get_gamma(GenConfigHandle config);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern float specdec_gen_config_get_temperature(GenConfigHandle config);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern uint specdec_gen_config_get_top_k(GenConfigHandle config);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern float specdec_gen_config_get_top_p(GenConfigHandle config);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern float specdec_gen_config_get_min_p(GenConfigHandle config);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern float specdec_gen_config_get_repetition_penalty(GenConfigHandle config);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern float specdec_gen_config_get_presence_penalty(GenConfigHandle config);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern float specdec_gen_config_get_frequency_penalty(GenConfigHandle config);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_gen_config_get_logit_bias(GenConfigHandle config, [Out] uint[] ids, [Out] float[] biases, UIntPtr capacity, out UIntPtr nTotal, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern ulong specdec_gen_config_get_seed(GenConfigHandle config);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern uint specdec_gen_config_get_max_new_tokens(GenConfigHandle config);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern uint specdec_gen_config_get_draft_policy(GenConfigHandle config);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern float specdec_gen_config_get_confidence_stop(GenConfigHandle config);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern ulong specdec_gen_config_get_kv_memory_limit(GenConfigHandle config);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern uint specdec_gen_config_get_logprobs(GenConfigHandle config);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        [return: MarshalAs(UnmanagedType.U1)]
        internal static extern bool specdec_gen_config_get_reserve_max_new_tokens(GenConfigHandle config);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        [return: MarshalAs(UnmanagedType.U1)]
        internal static extern bool specdec_gen_config_get_finish_at_context_limit(GenConfigHandle config);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_gen_config_get_eos_ids(GenConfigHandle config, out IntPtr ids, out UIntPtr nIds, [MarshalAs(UnmanagedType.U1)] out bool fromModel, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern UIntPtr specdec_gen_config_get_stop_token_count(GenConfigHandle config);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_gen_config_get_stop_tokens(GenConfigHandle config, UIntPtr index, out IntPtr ids, out UIntPtr nIds, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern UIntPtr specdec_gen_config_get_stop_text_count(GenConfigHandle config);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern IntPtr specdec_gen_config_get_stop_text(GenConfigHandle config, UIntPtr index);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_generator_logprobs(GeneratorHandle generator, out IntPtr chosen, out UIntPtr nTokens, out IntPtr top, out UIntPtr topN, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern UIntPtr specdec_generator_round_count(GeneratorHandle generator);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_generator_round(GeneratorHandle generator, UIntPtr index, ref Round round, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern UIntPtr specdec_generator_context_room(GeneratorHandle generator);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_generator_rewind(GeneratorHandle generator, UIntPtr nTokens, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_generator_set_config(GeneratorHandle generator, GenConfigHandle config, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_generator_get_config(GeneratorHandle generator, out GenConfigHandle config, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_generator_prefill(GeneratorHandle generator, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_generator_fork(GeneratorHandle source, UIntPtr nTokens, GenConfigHandle config, out GeneratorHandle fork, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, EntryPoint = "specdec_generator_fork")]
        internal static extern Status specdec_generator_fork_same_config(GeneratorHandle source, UIntPtr nTokens, IntPtr config, out GeneratorHandle fork, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_set_log_level(uint level, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern LogLevel specdec_get_log_level();

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_set_log_callback(LogCallback callback, IntPtr userData, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_model_options_set_context_limit(ModelOptionsHandle options, UIntPtr nTokens, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_model_load_from_memory([In] byte[] data, UIntPtr size, [In] byte[] configJson, [In] byte[] generationConfigJson, ModelOptionsHandle options, out ModelHandle model, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern Status specdec_model_eos_ids(ModelHandle model, out IntPtr ids, out UIntPtr nIds, ref IntPtr err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern long specdec_model_bos_id(ModelHandle model);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern long specdec_model_pad_id(ModelHandle model);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern IntPtr specdec_model_architecture(ModelHandle model);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern UIntPtr specdec_model_layer_count(ModelHandle model);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern UIntPtr specdec_model_kv_head_count(ModelHandle model);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern UIntPtr specdec_model_head_size(ModelHandle model);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern UIntPtr specdec_model_kv_bytes_per_token(ModelHandle model);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern IntPtr specdec_model_kv_dtype(ModelHandle model);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern IntPtr specdec_model_device(ModelHandle model);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern ContextLimitSource specdec_model_context_limit_source(ModelHandle model);
    }
}
