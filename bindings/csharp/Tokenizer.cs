// Tokenizer.cs: tokenizers and the streaming decoder. Part of the C# binding of libspecdec (bindings/csharp/README.md;
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
    /// A tokenizer.json. Thread-safe, and immutable but for SetChatTemplate (call it before
    /// sharing the tokenizer).
    /// </summary>
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

        /// <summary>
        /// Token ids of <paramref name="text"/>; <paramref name="addSpecialTokens"/> adds the
        /// special tokens the tokenizer's post-processor adds (a BOS, say), as transformers'
        /// encode does by default. A prompt from ApplyChatTemplate already holds its special
        /// tokens: encode it with false. Throws SpecdecException: InvalidUtf8, Tokenizer.
        /// </summary>
        public uint[] Encode(string text, bool addSpecialTokens)
        {
            if (text == null) throw new ArgumentNullException("text");
            byte[] bytes = Interop.Utf8(text, "text");
            uint flags = addSpecialTokens ? NativeMethods.EncodeAddSpecialTokens : 0u;
            uint[] ids = null;
            while (true)
            {
                int capacity = ids == null ? 0 : ids.Length;
                UIntPtr needed;
                IntPtr err = IntPtr.Zero;
                Status st = NativeMethods.specdec_tokenizer_encode_ex(Handle, bytes, (UIntPtr)bytes.Length, flags, ids,
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
        /// UTF-8 text of <paramref name="ids"/>; with <paramref name="skipSpecialTokens"/> false
        /// the special tokens ("&lt;|eot_id|&gt;", "&lt;/s&gt;", ...) stay in the text. Throws
        /// SpecdecException: TokenOutOfRange, Tokenizer.
        /// </summary>
        public string Decode(uint[] ids, bool skipSpecialTokens)
        {
            if (ids == null) throw new ArgumentNullException("ids");
            uint flags = skipSpecialTokens ? 0u : NativeMethods.DecodeKeepSpecialTokens;
            return FillString(0, delegate(byte[] buf, UIntPtr capacity, out UIntPtr len, ref IntPtr err)
            {
                return NativeMethods.specdec_tokenizer_decode_ex(Handle, Interop.NonEmpty(ids), (UIntPtr)ids.Length, flags,
                    buf, capacity, out len, ref err);
            });
        }

        /// <summary>
        /// The id of <paramref name="token"/> as written in tokenizer.json ("&lt;|endoftext|&gt;",
        /// "Ġthe"), or null when the tokenizer has no such token (not an error). Throws
        /// SpecdecException: InvalidUtf8.
        /// </summary>
        public uint? TokenToId(string token)
        {
            if (token == null) throw new ArgumentNullException("token");
            byte[] bytes = Interop.Utf8(token, "token");
            uint id;
            bool found;
            IntPtr err = IntPtr.Zero;
            // A zero-length byte[] may be marshalled as NULL, which the C ABI refuses: pass one byte.
            Status st = NativeMethods.specdec_tokenizer_token_to_id(Handle, bytes.Length == 0 ? new byte[1] : bytes,
                (UIntPtr)bytes.Length, out id, out found, ref err);
            Interop.Check(st, err);
            return found ? id : (uint?)null;
        }

        /// <summary>
        /// The token string of <paramref name="id"/> as written in tokenizer.json. Throws
        /// SpecdecException: TokenOutOfRange (an id the tokenizer does not have).
        /// </summary>
        public string IdToToken(uint id)
        {
            return FillString(32, delegate(byte[] buf, UIntPtr capacity, out UIntPtr len, ref IntPtr err)
            {
                return NativeMethods.specdec_tokenizer_id_to_token(Handle, id, buf, capacity, out len, ref err);
            });
        }

        /// <summary>
        /// Render <paramref name="messages"/> with the tokenizer's chat template (the one set with
        /// SetChatTemplate, else the folder's chat_template.jinja or tokenizer_config.json), byte
        /// for byte as transformers' apply_chat_template(messages, tokenize=False,
        /// add_generation_prompt=...). With <paramref name="addGenerationPrompt"/> the text ends
        /// with the header of an assistant turn. Encode the result with Encode(prompt): the
        /// template writes the special tokens itself. Throws SpecdecException: Tokenizer (no
        /// template, or rendering failed, e.g. the template's raise_exception: the message says
        /// why), InvalidUtf8, InvalidArgument (a NUL character in a message).
        /// </summary>
        public string ApplyChatTemplate(IList<ChatMessage> messages, bool addGenerationPrompt)
        {
            if (messages == null) throw new ArgumentNullException("messages");
            int n = messages.Count;
            var pins = new List<GCHandle>(2 * n);
            try
            {
                // At least one element: the runtime may pass NULL for an empty array (n = 0 allows it anyway).
                var native = new NativeMethods.ChatMessageNative[Math.Max(n, 1)];
                int guess = 256;
                for (int i = 0; i < n; i++)
                {
                    ChatMessage m = messages[i];
                    if (m.Role == null || m.Content == null) throw new ArgumentNullException("messages", "message " + i + " has no role or content");
                    byte[] role = Interop.Utf8Z(m.Role, "chat message role");
                    byte[] content = Interop.Utf8Z(m.Content, "chat message content");
                    GCHandle r = GCHandle.Alloc(role, GCHandleType.Pinned);
                    pins.Add(r);
                    GCHandle c = GCHandle.Alloc(content, GCHandleType.Pinned);
                    pins.Add(c);
                    native[i].Role = r.AddrOfPinnedObject();
                    native[i].Content = c.AddrOfPinnedObject();
                    guess += role.Length + content.Length + 32;
                }
                return FillString(guess, delegate(byte[] buf, UIntPtr capacity, out UIntPtr len, ref IntPtr err)
                {
                    return NativeMethods.specdec_tokenizer_apply_chat_template(Handle, native, (UIntPtr)n, addGenerationPrompt,
                        buf, capacity, out len, ref err);
                });
            }
            finally
            {
                foreach (GCHandle h in pins) h.Free();
            }
        }

        /// <summary>
        /// Use <paramref name="chatTemplate"/> (Jinja source) as the chat template instead of the
        /// folder's; the special tokens stay the folder's. On failure the template in use is
        /// unchanged. Not thread-safe: call it before sharing the tokenizer. Throws
        /// SpecdecException: Tokenizer (it does not compile; the message gives the line),
        /// InvalidUtf8, InvalidArgument (a NUL character).
        /// </summary>
        public void SetChatTemplate(string chatTemplate)
        {
            if (chatTemplate == null) throw new ArgumentNullException("chatTemplate");
            byte[] t = Interop.Utf8Z(chatTemplate, "chat template");
            IntPtr err = IntPtr.Zero;
            Status st = NativeMethods.specdec_tokenizer_set_chat_template(Handle, t, ref err);
            Interop.Check(st, err);
        }

        private delegate Status BufferCall(byte[] buf, UIntPtr capacity, out UIntPtr len, ref IntPtr err);

        // The buffer protocol of specdec_tokenizer_decode: a NUL-terminated string into buf, or
        // BufferTooSmall and its length. Tries `guess` bytes (0: asks for the size), then the exact size.
        private static string FillString(int guess, BufferCall call)
        {
            byte[] buf = guess > 0 ? new byte[guess + 1] : null;
            while (true)
            {
                int capacity = buf == null ? 0 : buf.Length;
                UIntPtr len;
                IntPtr err = IntPtr.Zero;
                Status st = call(buf, (UIntPtr)capacity, out len, ref err);
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
}
