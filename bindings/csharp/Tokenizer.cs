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
    /// <summary>A tokenizer.json. Immutable and thread-safe.</summary>
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
