// SpecdecException.cs: the exception every failing call throws. Part of the C# binding of libspecdec (bindings/csharp/README.md;
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
    /// Thrown by every failing call. <see cref="Code"/> is the library's status, <see
    /// cref="Exception.Message"/> the library's message.
    /// </summary>
    public class SpecdecException : Exception
    {
        public SpecdecException(Status code, string message) : base(message)
        {
            Code = code;
        }

        public SpecdecException(Status code, string message, Exception inner) : base(message, inner)
        {
            Code = code;
        }

        /// <summary>The status code.</summary>
        public Status Code { get; private set; }

        /// <summary>"SPECDEC_STATUS_IO", ... (from the library).</summary>
        public string CodeName { get { return Library.StatusName(Code); } }
    }
}
