// ChatMessage.cs: one message of a conversation, for Tokenizer.ApplyChatTemplate. Part of the C# binding of libspecdec
// (bindings/csharp/README.md; conventions shared by every file: Library.cs).

using System;

namespace Specdec
{
    /// <summary>
    /// One message of a conversation for <see cref="Tokenizer.ApplyChatTemplate"/>: its role
    /// ("system", "user", "assistant", ...) and content.
    /// </summary>
    public struct ChatMessage
    {
        public ChatMessage(string role, string content)
        {
            if (role == null) throw new ArgumentNullException("role");
            if (content == null) throw new ArgumentNullException("content");
            Role = role;
            Content = content;
        }

        /// <summary>"system", "user", "assistant", ...</summary>
        public string Role { get; private set; }

        /// <summary>The message text.</summary>
        public string Content { get; private set; }

        public override string ToString()
        {
            return Role + ": " + Content;
        }
    }
}
