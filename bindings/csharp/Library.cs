// The C# binding: a P/Invoke binding of the specdec C ABI (include/specdec.h) for .NET and Mono.
//
// One file per public type (or small group), no dependencies beyond mscorlib/netstandard2.0,
// C# 7 syntax (mcs accepts it):
//   mcs -target:library -out:Specdec.dll bindings/csharp/*.cs
// (Library.cs Status.cs SpecdecException.cs Stats.cs Model.cs Tokenizer.cs ChatMessage.cs
// GenerationOptions.cs Drafter.cs Generator.cs Native.cs; Specdec.csproj takes every .cs file of the folder.)
//
// Conventions shared by every class here:
// - Native library: every import names "specdec", so the runtime looks for libspecdec.so
//   (specdec.dll on Windows, libspecdec.dylib on macOS). Mono: beside the assembly, then
//   dlopen's search (LD_LIBRARY_PATH, ld.so.cache), or a <dllmap dll="specdec" target="..."/> in
//   a .config file. .NET: the app's folder and the NuGet runtimes/<rid>/native folders, then
//   dlopen's search; NativeLibrary.SetDllImportResolver(typeof(Specdec.Model).Assembly, ...) can
//   point it anywhere. ONNX Runtime is found by libspecdec itself (see bindings/csharp/README.md).
// - Errors: every failing call throws SpecdecException, whose Code is the library's status and
//   whose Message is the library's message; the native error object is always freed first.
//   Using an object after Dispose throws ObjectDisposedException (the SafeHandle does that).
//   The one exception is cancellation through a CancellationToken, see Generator.Generate.
// - Ownership: each class owns one native handle inside a SafeHandle, whose ReleaseHandle calls
//   the matching specdec_*_free exactly once (on Dispose, or from the finalizer). Dispose may be
//   called any number of times. A SafeHandle passed to a native call is reference-counted for
//   the duration of the call, so a Dispose racing with a call frees the handle only afterwards.
//   The library reference-counts models and tokenizers itself: a Generator keeps working after
//   the Model objects it was built from are disposed.
// - Thread-safety (as in the C ABI): Model and Tokenizer are immutable and may be used from many
//   threads at once. Generator and StreamDecoder need one thread at a time, except
//   Generator.Cancel() and ClearCancel(), which any thread may call at any time. Drafters are
//   immutable recipes that many generators and threads may share.
// - Strings cross the boundary as UTF-8, marshalled by hand (Encoding.UTF8 into a NUL-terminated
//   byte[] on the way in; byte copies decoded as UTF-8 on the way out), never with the
//   runtime's default string marshalling, which is not UTF-8 on .NET Framework / Windows.
// - Sizes (size_t) are UIntPtr in the imports; the public API uses int and uint[].

using System;
using System.Collections.Generic;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;

namespace Specdec
{
    /// <summary>Version, ABI check, ONNX Runtime loading, status names.</summary>
    public static class Library
    {
        /// <summary>The ABI version this binding was written for (SPECDEC_ABI_VERSION).</summary>
        public const uint AbiVersion = 1;

        /// <summary>Largest draft length a generation accepts (SPECDEC_MAX_GAMMA).</summary>
        public const uint MaxGamma = 64;

        /// <summary>Most alternatives GenerationOptions.Logprobs accepts per token (SPECDEC_MAX_LOGPROBS).</summary>
        public const uint MaxLogprobs = 256;

        /// <summary>Size of the first version of specdec_stats (SPECDEC_STATS_V1_SIZE).</summary>
        public const int StatsV1Size = 104;

        private static int abiChecked; // 0: not yet, 1: checked and equal

        /// <summary>The loaded library's version, "MAJOR.MINOR.PATCH".</summary>
        public static string Version
        {
            get { return Interop.PtrToUtf8(NativeMethods.specdec_version()); }
        }

        /// <summary>The loaded library's ABI version (must equal <see cref="AbiVersion"/>).</summary>
        public static uint LoadedAbiVersion
        {
            get { return NativeMethods.specdec_abi_version(); }
        }

        /// <summary>
        /// Throws SpecdecException (Unavailable) when the loaded libspecdec has another ABI than
        /// this binding. Model.Load and Tokenizer.Load call it once per process.
        /// </summary>
        public static void CheckAbi()
        {
            if (Volatile.Read(ref abiChecked) == 1) return;
            uint loaded = NativeMethods.specdec_abi_version();
            if (loaded != AbiVersion)
            {
                throw new SpecdecException(Status.Unavailable,
                    "libspecdec has ABI version " + loaded + " but this binding was written for " + AbiVersion);
            }
            Volatile.Write(ref abiChecked, 1);
        }

        /// <summary>
        /// Load ONNX Runtime for the process from <paramref name="ortLibraryPath"/>; null uses
        /// $ORT_DYLIB_PATH, then libonnxruntime.so beside libspecdec, then the source checkout's
        /// .deps/onnxruntime. Optional: loading a model does it with the defaults. Throws
        /// SpecdecException (RuntimeLoad). Thread-safe.
        /// </summary>
        public static void InitRuntime(string ortLibraryPath = null)
        {
            CheckAbi();
            byte[] path = ortLibraryPath == null ? null : Interop.Utf8Z(ortLibraryPath, "ortLibraryPath");
            IntPtr err = IntPtr.Zero;
            Status st = NativeMethods.specdec_runtime_init(path, ref err);
            Interop.Check(st, err);
        }

        /// <summary>"SPECDEC_STATUS_OK", ... for any status ("SPECDEC_STATUS_UNKNOWN" otherwise).</summary>
        public static string StatusName(Status status)
        {
            return Interop.PtrToUtf8(NativeMethods.specdec_status_name((uint)status));
        }
    }
}
