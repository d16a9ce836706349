// Logging.cs: the library's log messages. Part of the C# binding of libspecdec (bindings/csharp/README.md;
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
    /// The threshold of specdec's and ONNX Runtime's log messages, and a managed receiver of them.
    /// </summary>
    public static class Logging
    {
        private static readonly object Gate = new object();
        // The delegate handed to the library and the handler it calls, kept alive (rooted here)
        // for as long as the library may call them.
#pragma warning disable 414 // only kept alive, never read
        private static NativeMethods.LogCallback native;
#pragma warning restore 414
        private static Action<LogLevel, string, string> handler;

        /// <summary>
        /// The threshold of every message, specdec's own and ONNX Runtime's (Off silences both);
        /// reading gives specdec's (Warning until set). Takes effect at once, also for loaded
        /// models. Thread-safe. Setting an unknown level throws SpecdecException (InvalidArgument).
        /// </summary>
        public static LogLevel Level
        {
            get { return NativeMethods.specdec_get_log_level(); }
            set
            {
                IntPtr err = IntPtr.Zero;
                Interop.Check(NativeMethods.specdec_set_log_level((uint)value, ref err), err);
            }
        }

        /// <summary>
        /// Send every message that passes the threshold to <paramref name="onMessage"/> (level,
        /// source "specdec" or "onnxruntime", text); null restores the default (a line per message
        /// on stderr). The handler runs on any thread, several at once, so it must be thread-safe;
        /// an exception it throws is swallowed (it never crosses into native code). Replacing it
        /// waits for running calls of the previous one. Throws SpecdecException (Busy) from inside
        /// a handler.
        /// </summary>
        public static void SetCallback(Action<LogLevel, string, string> onMessage)
        {
            lock (Gate)
            {
                NativeMethods.LogCallback next = onMessage == null ? null : new NativeMethods.LogCallback(Trampoline);
                Action<LogLevel, string, string> previous = handler;
                // Installed before the library can call it; the library reads it per message.
                if (onMessage != null) handler = onMessage;
                IntPtr err = IntPtr.Zero;
                Status st = NativeMethods.specdec_set_log_callback(next, IntPtr.Zero, ref err);
                if (st != Status.Ok)
                {
                    handler = previous;
                    throw Interop.TakeError(st, err);
                }
                Interop.FreeError(err);
                handler = onMessage;
                native = next; // the old delegate is no longer called: it may be collected
            }
        }

        private static void Trampoline(IntPtr userData, LogLevel level, IntPtr source, IntPtr message)
        {
            try
            {
                Action<LogLevel, string, string> h = Volatile.Read(ref handler);
                if (h != null) h(level, Interop.PtrToUtf8(source), Interop.PtrToUtf8(message));
            }
            catch
            {
                // Nothing may unwind into the library; the message is dropped.
            }
        }
    }
}
