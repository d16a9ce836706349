// Tests of the C# binding (bindings/csharp/*.cs) against the real library and the tiny test
// models. Build and run: scripts/check-csharp.sh (or see it for the mcs/mono lines).
//
//   mono Test.exe [FIXTURES_DIR]      (default models/fixtures, relative to the repository root)
//   dotnet run --project examples/csharp/Test.csproj -- [FIXTURES_DIR]
//
// Prints one line per test, then exactly "N passed, M failed"; exits non-zero on any failure.

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;
using System.Threading;
using System.Threading.Tasks;
using Specdec;

namespace Specdec.Examples
{
    public static class TestProgram
    {
        // ---------------------------------------------------------------------------------------
        // A minimal harness: a test fails if a Check fails or it throws.

        private static int checkFailures;

        private static void Check(bool cond, string what)
        {
            if (!cond)
            {
                Console.Error.WriteLine("    CHECK failed: " + what);
                checkFailures++;
            }
        }

        private static void CheckEq<T>(T actual, T expected, string what)
        {
            if (!EqualityComparer<T>.Default.Equals(actual, expected))
            {
                Console.Error.WriteLine("    CHECK failed: " + what + ": got " + actual + ", expected " + expected);
                checkFailures++;
            }
        }

        private static void CheckTokens(uint[] actual, uint[] expected, string what)
        {
            if (!SameTokens(actual, expected))
            {
                Console.Error.WriteLine("    CHECK failed: " + what + ": got [" + Join(actual) + "], expected [" + Join(expected) + "]");
                checkFailures++;
            }
        }

        // The SpecdecException `f` throws (null if none; any other exception escapes and fails
        // the test). Every error carries a message and a name consistent with its code.
        private static SpecdecException Catch(Action f)
        {
            try
            {
                f();
            }
            catch (SpecdecException e)
            {
                Check(!string.IsNullOrEmpty(e.Message), "empty message for " + e.Code);
                CheckEq(e.CodeName, Library.StatusName(e.Code), "CodeName");
                return e;
            }
            return null;
        }

        private static void CheckCode(Action f, Status expected, string what)
        {
            SpecdecException e = Catch(f);
            Status got = e == null ? Status.Ok : e.Code;
            if (got != expected)
            {
                Console.Error.WriteLine("    CHECK_CODE failed: " + what + " gave " + got + ", expected " + expected +
                                        (e != null ? " (" + e.Message + ")" : ""));
                checkFailures++;
            }
        }

        // ---------------------------------------------------------------------------------------
        // Fixtures, loaded once and shared read-only by every test (and by threads).

        private static string fixtures = "models/fixtures";
        private static Model target;
        private static Model draft;
        private static Tokenizer tokenizer;
        private static uint[] prompt;

        private const uint NewTokens = 48;
        private const uint LongTokens = 400;
        private static uint[] baseline;      // target-only greedy, NewTokens
        private static uint[] baselineLong;  // target-only greedy, LongTokens

        private static string Fixture(string name)
        {
            return Path.Combine(fixtures, name);
        }

        // Greedy settings without EOS, so every run generates exactly maxNew tokens.
        private static GenerationOptions Greedy(uint gamma = 4, uint maxNew = NewTokens)
        {
            return new GenerationOptions { Gamma = gamma, MaxNewTokens = maxNew, EosIds = new uint[0] };
        }

        private static uint[] Generated(Generator g, int promptLength)
        {
            uint[] all = g.Tokens;
            uint[] part = new uint[all.Length - promptLength];
            Array.Copy(all, promptLength, part, 0, part.Length);
            return part;
        }

        private static uint[] RunGreedy(Model draftModel, uint gamma, uint maxNew)
        {
            using (var g = new Generator(target, draftModel, Greedy(gamma, maxNew)))
            {
                g.Append(prompt);
                CheckEq(g.Generate(), FinishReason.MaxTokens, "finish reason");
                return Generated(g, prompt.Length);
            }
        }

        private static bool SameTokens(uint[] a, uint[] b)
        {
            if (a.Length != b.Length) return false;
            for (int i = 0; i < a.Length; i++)
            {
                if (a[i] != b[i]) return false;
            }
            return true;
        }

        private static uint[] Prefix(uint[] a, int n)
        {
            uint[] r = new uint[n];
            Array.Copy(a, r, n);
            return r;
        }

        private static string Join(uint[] a)
        {
            var sb = new StringBuilder();
            for (int i = 0; i < a.Length; i++)
            {
                if (i > 0) sb.Append(',');
                sb.Append(a[i]);
            }
            return sb.ToString();
        }

        // ---------------------------------------------------------------------------------------
        // Tests

        private static void VersionAndAbi()
        {
            Check(Regex.IsMatch(Library.Version, @"^\d+\.\d+\.\d+$"), "version format: " + Library.Version);
            CheckEq(Library.LoadedAbiVersion, Library.AbiVersion, "ABI version");
            Library.CheckAbi();
            Library.InitRuntime(); // idempotent with the default location
            // The first version (104 bytes) plus Rejected and Alpha (since 0.2).
            CheckEq(Marshal.SizeOf(typeof(Stats)), Library.StatsV1Size + 24, "sizeof(specdec_stats)");
            // Every enum value is a status the library knows, with the matching name.
            foreach (Status s in Enum.GetValues(typeof(Status)))
            {
                string snake = Regex.Replace(s.ToString(), @"(?<=[a-z0-9])([A-Z])", "_$1").ToUpperInvariant();
                CheckEq(Library.StatusName(s), "SPECDEC_STATUS_" + snake, "status name of " + s);
            }
            CheckEq(Library.StatusName((Status)1234), "SPECDEC_STATUS_UNKNOWN", "unknown status name");
        }

        private static void LoadModels()
        {
            CheckEq(target.VocabSize, 512, "target vocab");
            CheckEq(target.ContextLimit, 512, "target context");
            CheckEq(draft.VocabSize, 512, "draft vocab");
            CheckEq(tokenizer.VocabSize, 512, "tokenizer vocab");
            Check(prompt.Length > 0, "prompt encoded");
            using (Model m = Model.Load(Fixture("qwen2"), "cpu", 1))
            {
                CheckEq(m.VocabSize, 512, "qwen2 vocab");
            }
            using (Model m = Model.Load(Fixture("gpt2"), null))
            {
                CheckEq(m.VocabSize, 512, "gpt2 vocab");
            }
        }

        private static void GreedyExactnessGamma1To8()
        {
            CheckEq(baseline.Length, (int)NewTokens, "baseline length");
            for (uint gamma = 1; gamma <= 8; gamma++)
            {
                CheckTokens(RunGreedy(draft, gamma, NewTokens), baseline, "speculative gamma " + gamma);
            }
            // Default options with a draft: defaults are gamma 4 and greedy.
            using (var g = new Generator(target, draft, new GenerationOptions { MaxNewTokens = NewTokens, EosIds = new uint[0] }))
            {
                g.Append(prompt);
                g.Generate();
                CheckTokens(Generated(g, prompt.Length), baseline, "default options with draft");
            }
        }

        private static void StepEqualsGenerate()
        {
            using (var g = new Generator(target, draft, Greedy(3)))
            {
                g.Append(prompt);
                var got = new List<uint>();
                int steps = 0;
                while (g.FinishReason == FinishReason.None)
                {
                    uint[] t = g.Step();
                    got.AddRange(t);
                    steps++;
                    Check(steps < 1000, "step loop terminates");
                }
                CheckTokens(got.ToArray(), baseline, "step loop");
                CheckEq(g.FinishReason, FinishReason.MaxTokens, "finish reason");
                CheckEq(g.Step().Length, 0, "step once finished");
                Check(steps < (int)NewTokens + 1, "speculation saved steps (" + steps + ")");
            }
        }

        private static void Errors()
        {
            // A missing model folder: Io with the library's message.
            SpecdecException e = Catch(() => Model.Load(Fixture("no-such-model")));
            Check(e != null, "missing model throws");
            if (e != null)
            {
                CheckEq(e.Code, Status.Io, "missing model code");
                CheckEq(e.CodeName, "SPECDEC_STATUS_IO", "missing model code name");
                Check(e.Message.Contains("no-such-model"), "message names the path: " + e.Message);
            }
            CheckCode(() => Tokenizer.Load(Fixture("no-such-model")), Status.Io, "missing tokenizer");
            // A NUL inside a path is refused (the C string would be truncated).
            CheckCode(() => Model.Load("models\0x"), Status.InvalidArgument, "NUL in path");
            // A draft with another vocabulary.
            using (Model v600 = Model.Load(Fixture("vocab600")))
            {
                CheckEq(v600.VocabSize, 600, "vocab600 vocab");
                CheckCode(() => new Generator(target, v600, Greedy()), Status.VocabMismatch, "vocab600 draft");
            }
            // Token ids outside the vocabulary: all or nothing.
            using (var g = new Generator(target, draft, Greedy()))
            {
                CheckCode(() => g.Append(new uint[] { 1, 2, 512 }), Status.TokenOutOfRange, "token 512");
                CheckEq(g.Tokens.Length, 0, "nothing appended");
                CheckCode(() => g.Step(), Status.InvalidArgument, "step without prompt");
                CheckCode(() => g.Generate(), Status.InvalidArgument, "generate without prompt");
                g.Append(new uint[] { 1, 2, 511 });
                CheckEq(g.Tokens.Length, 3, "appended after the error");
            }
            CheckCode(() => tokenizer.Decode(new uint[] { 512 }), Status.TokenOutOfRange, "decode 512");
            using (var d = new StreamDecoder(tokenizer))
            {
                CheckCode(() => d.Push(new uint[] { 600 }), Status.TokenOutOfRange, "stream push 600");
            }
            CheckCode(() => new Generator(target, null, new GenerationOptions { EosIds = new uint[] { 512 } }),
                      Status.TokenOutOfRange, "EOS id 512");
            // Settings out of range.
            CheckCode(() => new Generator(target, draft, new GenerationOptions { Gamma = 0 }), Status.InvalidArgument, "gamma 0");
            CheckCode(() => new Generator(target, draft, new GenerationOptions { Gamma = Library.MaxGamma + 1 }),
                      Status.InvalidArgument, "gamma 65");
            CheckCode(() => new Generator(target, draft, new GenerationOptions { Gamma = Library.MaxGamma }), Status.Ok, "gamma 64");
            CheckCode(() => new Generator(target, null, new GenerationOptions { Temperature = float.NaN }),
                      Status.InvalidArgument, "temperature NaN");
            CheckCode(() => new Generator(target, null, new GenerationOptions { Temperature = -1 }), Status.InvalidArgument, "temperature -1");
            CheckCode(() => new Generator(target, null, new GenerationOptions { TopP = 0 }), Status.InvalidArgument, "top_p 0");
            CheckCode(() => new Generator(target, null, new GenerationOptions { MinP = 1.5f }), Status.InvalidArgument, "min_p 1.5");
            CheckCode(() => new Generator(target, null, new GenerationOptions { RepetitionPenalty = 0 }),
                      Status.InvalidArgument, "repetition penalty 0");
            var emptyStop = new GenerationOptions();
            emptyStop.StopTokens.Add(new uint[0]);
            CheckCode(() => new Generator(target, null, emptyStop), Status.InvalidArgument, "empty stop tokens");
            var emptyText = new GenerationOptions();
            emptyText.StopTexts.Add("");
            CheckCode(() => new Generator(target, null, emptyText), Status.InvalidArgument, "empty stop text");
            // Devices: unknown names, and CUDA where it cannot run (no GPU here).
            CheckCode(() => Model.Load(Fixture("llama"), "tpu"), Status.InvalidArgument, "device tpu");
            CheckCode(() => Model.Load(Fixture("llama"), "cuda"), Status.Unavailable, "device cuda");
            CheckCode(() => Model.Load(Fixture("llama"), "cuda:1"), Status.Unavailable, "device cuda:1");
            CheckCode(() => Model.Load(Fixture("llama"), "cpu", -1), Status.InvalidArgument, "negative threads");
            // Context limit: 512 prompt tokens leave no room for a generated one.
            using (var g = new Generator(target, null, Greedy()))
            {
                CheckCode(() => g.Append(new uint[512]), Status.ContextLimit, "512-token prompt");
                CheckCode(() => g.Append(new uint[511]), Status.Ok, "511-token prompt");
            }
            // Text errors: a lone surrogate cannot be UTF-8; a stop text needs a tokenizer.
            CheckCode(() => tokenizer.Encode("bad \ud800 surrogate"), Status.InvalidUtf8, "lone surrogate");
            var stopText = Greedy();
            stopText.StopTexts.Add("the");
            using (var g = new Generator(target, null, stopText))
            {
                g.Append(prompt);
                CheckCode(() => g.Generate(), Status.InvalidArgument, "stop text without tokenizer");
            }
            // SpecdecException is an Exception carrying the message.
            try
            {
                Model.Load(Fixture("no-such-model"));
                Check(false, "no exception");
            }
            catch (Exception ex)
            {
                var se = ex as SpecdecException;
                Check(se != null && se.Code == Status.Io, "a SpecdecException with Code Io");
            }
        }

        private static void CancelFromTimerMidGeneration()
        {
            // A generation of 400 tokens without EOS, cancelled by a timer (CancelAfter). The first
            // callback waits until the timer has fired, so the request surely lands mid-generation.
            using (var g = new Generator(target, draft, Greedy(4, LongTokens)))
            using (var cts = new CancellationTokenSource())
            {
                g.Append(prompt);
                var sw = new Stopwatch();
                long cancelledAtMs = -1;
                var delivered = new ManualResetEventSlim(false);
                // Registered before Generate registers its own (which calls Generator.Cancel), so
                // it normally runs after it: callbacks run in reverse order of registration. (The
                // token's WaitHandle is signalled before any callback runs, so the first callback
                // waits for this one rather than for the WaitHandle.)
                cts.Token.Register(() =>
                {
                    Interlocked.Exchange(ref cancelledAtMs, sw.ElapsedMilliseconds);
                    delivered.Set();
                });
                int calls = 0;
                OperationCanceledException caught = null;
                sw.Start();
                cts.CancelAfter(100);
                try
                {
                    g.Generate(tokens =>
                    {
                        if (++calls == 1) Check(delivered.Wait(10000), "the timer fired");
                        return true;
                    }, cts.Token);
                    Check(false, "Generate returned instead of throwing");
                }
                catch (OperationCanceledException ex)
                {
                    caught = ex;
                }
                long returnedAtMs = sw.ElapsedMilliseconds;
                Check(caught != null, "OperationCanceledException");
                if (caught != null)
                {
                    Check(caught.CancellationToken == cts.Token, "the exception carries the token");
                    var inner = caught.InnerException as SpecdecException;
                    Check(inner != null && inner.Code == Status.Cancelled, "inner SpecdecException Cancelled");
                }
                // The native request is checked at the start of each iteration: at most one more
                // iteration (and callback) after the cancel, none if the registrations ran in order.
                Check(calls == 1 || calls == 2, "callbacks before the cancellation took effect: " + calls);
                delivered.Dispose();
                Check(cancelledAtMs >= 0 && returnedAtMs - cancelledAtMs < 2000,
                      "returned promptly (" + (returnedAtMs - cancelledAtMs) + " ms after the cancel)");
                CheckEq(g.FinishReason, FinishReason.None, "finish reason after cancel");
                int generated = g.Tokens.Length - prompt.Length;
                Check(generated > 0 && generated < (int)LongTokens, "stopped mid-generation (" + generated + " tokens)");
                // The request was consumed: generating again resumes and finishes the same sequence.
                CheckEq(g.Generate(), FinishReason.MaxTokens, "resumed generation");
                CheckTokens(Generated(g, prompt.Length), baselineLong, "resumed sequence equals target-only");
            }
            // The model is still usable.
            CheckTokens(RunGreedy(draft, 2, NewTokens), baseline, "model usable after cancellation");

            // Generator.Cancel() from another thread (no token): SpecdecException Cancelled.
            using (var g = new Generator(target, null, Greedy(4, LongTokens)))
            using (var fired = new ManualResetEventSlim(false))
            {
                g.Append(prompt);
                var canceller = new Thread(() =>
                {
                    g.Cancel();
                    fired.Set();
                });
                int calls = 0;
                SpecdecException e = Catch(() => g.Generate(tokens =>
                {
                    if (++calls == 1)
                    {
                        canceller.Start();
                        Check(fired.Wait(10000), "the other thread cancelled");
                    }
                    return true;
                }));
                canceller.Join();
                Check(e != null && e.Code == Status.Cancelled, "Cancel() gives SpecdecException Cancelled");
                CheckEq(calls, 1, "callbacks before Cancel() took effect");
                CheckEq(g.Generate(), FinishReason.MaxTokens, "resumed after Cancel()");
                CheckTokens(Generated(g, prompt.Length), baselineLong, "resumed sequence after Cancel()");
            }

            // A token cancelled before the call: OperationCanceledException at once, nothing runs,
            // and no request is left behind in the generator.
            using (var g = new Generator(target, null, Greedy()))
            using (var cts = new CancellationTokenSource())
            {
                g.Append(prompt);
                cts.Cancel();
                bool threw = false;
                try
                {
                    g.Generate(null, cts.Token);
                }
                catch (OperationCanceledException)
                {
                    threw = true;
                }
                Check(threw, "pre-cancelled token throws");
                CheckEq(g.Tokens.Length, prompt.Length, "nothing generated");
                CheckEq(g.Generate(), FinishReason.MaxTokens, "generates afterwards");
                CheckTokens(Generated(g, prompt.Length), baseline, "sequence after a pre-cancelled token");
            }

            // A token that is never cancelled changes nothing.
            using (var g = new Generator(target, draft, Greedy()))
            using (var cts = new CancellationTokenSource())
            {
                g.Append(prompt);
                CheckEq(g.Generate(null, cts.Token), FinishReason.MaxTokens, "uncancelled token");
                CheckTokens(Generated(g, prompt.Length), baseline, "uncancelled token sequence");
            }
        }

        private static void CallbackExceptionPropagates()
        {
            using (var g = new Generator(target, draft, Greedy()))
            {
                g.Append(prompt);
                var boom = new InvalidOperationException("boom from the callback");
                int calls = 0, delivered = 0;
                Exception caught = null;
                try
                {
                    g.Generate(tokens =>
                    {
                        calls++;
                        delivered += tokens.Length;
                        if (calls == 2) throw boom;
                        return true;
                    });
                }
                catch (Exception ex)
                {
                    caught = ex;
                }
                Check(ReferenceEquals(caught, boom), "the same exception object surfaces (got " + caught + ")");
                Check(caught != null && caught.StackTrace != null && caught.StackTrace.Contains("CallbackExceptionPropagates"),
                      "the original stack trace is kept");
                CheckEq(calls, 2, "no callback after the exception");
                CheckEq(g.FinishReason, FinishReason.Stopped, "finish reason after the exception");
                CheckEq(g.Tokens.Length, prompt.Length + delivered, "tokens so far are kept");
                // Usable: continue with a fresh allowance; greedy continuation is deterministic.
                g.Append(new uint[0]);
                CheckEq(g.Generate(), FinishReason.MaxTokens, "generates after the exception");
                uint[] gen = Generated(g, prompt.Length);
                CheckEq(gen.Length, delivered + (int)NewTokens, "generated count after continuing");
                CheckTokens(Prefix(gen, (int)NewTokens), baseline, "sequence after the exception");
            }
            // Re-entrant calls from the callback are refused (the native generator is locked for
            // the whole Generate call; they would deadlock), except Cancel().
            using (var g = new Generator(target, draft, Greedy()))
            {
                g.Append(prompt);
                SpecdecException e = Catch(() => g.Generate(tokens =>
                {
                    uint[] all = g.Tokens; // throws
                    return all.Length > 0;
                }));
                Check(e != null && e.Code == Status.Busy && e.Message.Contains("callback"),
                      "g.Tokens inside the callback throws Busy (SPECDEC_STATUS_BUSY)");
                CheckEq(g.FinishReason, FinishReason.Stopped, "stopped by the refused call");
                int calls = 0;
                e = Catch(() => g.Generate(tokens =>
                {
                    calls++;
                    g.Cancel(); // allowed: the next iteration is cancelled
                    return true;
                }));
                Check(e == null, "a finished generation ignores Generate until Append");
                g.Append(new uint[0]);
                e = Catch(() => g.Generate(tokens =>
                {
                    calls++;
                    g.Cancel();
                    return true;
                }));
                Check(e != null && e.Code == Status.Cancelled, "Cancel() inside the callback");
                CheckEq(calls, 1, "one callback before the cancellation");
                CheckEq(g.Stats.NewTokens > 0, true, "stats readable after the callback");
            }
            // A callback returning false stops with FinishReason.Stopped.
            using (var g = new Generator(target, draft, Greedy()))
            {
                g.Append(prompt);
                int calls = 0;
                CheckEq(g.Generate(tokens => ++calls < 3), FinishReason.Stopped, "callback returning false");
                CheckEq(calls, 3, "callbacks until false");
                uint[] gen = Generated(g, prompt.Length);
                CheckTokens(gen, Prefix(baseline, gen.Length), "tokens before the stop");
            }
        }

        private static void TokenizerRoundTrip()
        {
            string[] texts =
            {
                "Once upon a time, there was a little girl named Lily.",
                "  leading spaces, tabs\tand\nnewlines  ",
                "UTF-8: caf\u00e9, na\u00efve, \u20ac 5, \u65e5\u672c, \U0001F642",
                "a",
                new string('x', 3000) + " long text to exercise the buffer negotiation",
            };
            foreach (string text in texts)
            {
                uint[] ids = tokenizer.Encode(text);
                Check(ids.Length > 0, "encoded something");
                foreach (uint id in ids) Check(id < 512 && id != 0, "id in range, not the special <|endoftext|> (0)");
                CheckEq(tokenizer.Decode(ids), text, "round trip");
            }
            CheckEq(tokenizer.Encode("a").Length, 1, "a single character is one token");
            CheckEq(tokenizer.Encode("").Length, 0, "encode empty");
            CheckEq(tokenizer.Decode(new uint[0]), "", "decode empty");
            CheckEq(tokenizer.Decode(new uint[] { 0 }), "", "special token skipped");
        }

        // ---------------------------------------------------------------------------------------
        // Chat templates and special tokens (tests/chat: transformers' renderings and ids).

        // Just enough JSON for tests/chat/*.json; every value keeps its source text (Raw) too.
        private sealed class Json
        {
            public enum Kind { Null, Bool, Number, String, Array, Object }
            public Kind Type;
            public bool B;
            public string S;
            public readonly List<string> Keys = new List<string>();
            public readonly List<Json> Items = new List<Json>();  // elements, or an object's values
            public string Raw;

            public Json this[string key]
            {
                get
                {
                    int i = Keys.IndexOf(key);
                    if (i < 0) throw new KeyNotFoundException(key);
                    return Items[i];
                }
            }

            public bool Has(string key) { return Keys.Contains(key); }

            public uint[] Ids()
            {
                var ids = new uint[Items.Count];
                for (int i = 0; i < ids.Length; i++) ids[i] = uint.Parse(Items[i].Raw);
                return ids;
            }

            public static Json Parse(string text)
            {
                int i = 0;
                return Value(text, ref i);
            }

            private static void Ws(string t, ref int i)
            {
                while (i < t.Length && char.IsWhiteSpace(t[i])) i++;
            }

            private static string Str(string t, ref int i)
            {
                if (t[i] != '"') throw new FormatException("string expected at " + i);
                i++;
                var sb = new StringBuilder();
                while (t[i] != '"')
                {
                    char c = t[i++];
                    if (c != '\\') { sb.Append(c); continue; }
                    char e = t[i++];
                    switch (e)
                    {
                        case 'n': sb.Append('\n'); break;
                        case 't': sb.Append('\t'); break;
                        case 'r': sb.Append('\r'); break;
                        case 'b': sb.Append('\b'); break;
                        case 'f': sb.Append('\f'); break;
                        case 'u':
                            sb.Append((char)Convert.ToInt32(t.Substring(i, 4), 16)); // UTF-16 units: pairs join up
                            i += 4;
                            break;
                        default: sb.Append(e); break;
                    }
                }
                i++;
                return sb.ToString();
            }

            private static Json Value(string t, ref int i)
            {
                Ws(t, ref i);
                var v = new Json();
                int start = i;
                char c = t[i];
                if (c == '{' || c == '[')
                {
                    v.Type = c == '{' ? Kind.Object : Kind.Array;
                    char close = c == '{' ? '}' : ']';
                    i++;
                    Ws(t, ref i);
                    while (t[i] != close)
                    {
                        if (v.Type == Kind.Object)
                        {
                            Ws(t, ref i);
                            v.Keys.Add(Str(t, ref i));
                            Ws(t, ref i);
                            if (t[i++] != ':') throw new FormatException(": expected at " + i);
                        }
                        v.Items.Add(Value(t, ref i));
                        Ws(t, ref i);
                        if (t[i] == ',') i++;
                        Ws(t, ref i);
                    }
                    i++;
                }
                else if (c == '"')
                {
                    v.Type = Kind.String;
                    v.S = Str(t, ref i);
                }
                else if (string.CompareOrdinal(t, i, "true", 0, 4) == 0 || string.CompareOrdinal(t, i, "false", 0, 5) == 0)
                {
                    v.Type = Kind.Bool;
                    v.B = c == 't';
                    i += v.B ? 4 : 5;
                }
                else if (string.CompareOrdinal(t, i, "null", 0, 4) == 0)
                {
                    i += 4;
                }
                else
                {
                    v.Type = Kind.Number;
                    while (i < t.Length && "+-.eE0123456789".IndexOf(t[i]) >= 0) i++;
                    if (i == start) throw new FormatException("value expected at " + i);
                }
                v.Raw = t.Substring(start, i - start);
                return v;
            }
        }

        // tests/chat, beside models/fixtures.
        private static string ChatDir(params string[] parts)
        {
            string dir = Path.Combine(Path.Combine(Path.Combine(fixtures, ".."), ".."), Path.Combine("tests", "chat"));
            foreach (string p in parts) dir = Path.Combine(dir, p);
            return dir;
        }

        private static Json LoadJson(string path)
        {
            return Json.Parse(File.ReadAllText(path, Encoding.UTF8));
        }

        private static List<ChatMessage> MessagesOf(Json conversation)
        {
            var msgs = new List<ChatMessage>();
            foreach (Json m in conversation.Items) msgs.Add(new ChatMessage(m["role"].S, m["content"].S));
            return msgs;
        }

        // Every tests/chat/*.json: its tokenizer_config.json beside the fixture tokenizer (as a
        // model folder), every conversation with and without the generation prompt, byte for byte.
        private static void ChatTemplatesMatchTransformers()
        {
            string scratch = Path.Combine(Path.GetTempPath(), "specdec-cs-chat-" + Process.GetCurrentProcess().Id);
            int files = 0, cases = 0, raised = 0;
            var utf8 = new UTF8Encoding(false);
            try
            {
                foreach (string file in Directory.GetFiles(ChatDir(), "*.json"))
                {
                    Json data = LoadJson(file);
                    if (Directory.Exists(scratch)) Directory.Delete(scratch, true);
                    Directory.CreateDirectory(scratch);
                    File.Copy(Path.Combine(Fixture("llama"), "tokenizer.json"), Path.Combine(scratch, "tokenizer.json"));
                    File.WriteAllText(Path.Combine(scratch, "tokenizer_config.json"), data["tokenizer_config"].Raw, utf8);
                    using (Tokenizer tok = Tokenizer.Load(scratch))
                    {
                        foreach (Json c in data["cases"].Items)
                        {
                            string conv = c["conversation"].S;
                            bool agp = c["add_generation_prompt"].B;
                            string where = Path.GetFileName(file) + "/" + conv + "/agp=" + agp;
                            List<ChatMessage> msgs = MessagesOf(data["conversations"][conv]);
                            if (c.Has("expected"))
                            {
                                CheckEq(tok.ApplyChatTemplate(msgs, agp), c["expected"].S, where);
                            }
                            else
                            {
                                SpecdecException e = Catch(() => tok.ApplyChatTemplate(msgs, agp));
                                Check(e != null && e.Code == Status.Tokenizer && e.Message.Contains(c["error"].S),
                                      where + ": raises " + c["error"].S);
                                raised++;
                            }
                            cases++;
                        }
                    }
                    files++;
                }
            }
            finally
            {
                if (Directory.Exists(scratch)) Directory.Delete(scratch, true);
            }
            Check(files >= 7, "tests/chat files: " + files);
            Check(cases >= 42, "cases: " + cases);
            Check(raised >= 2, "raise_exception cases: " + raised);
        }

        private static void SetChatTemplateOverrides()
        {
            Json qwen = LoadJson(ChatDir("qwen2.json"));
            using (Tokenizer tok = Tokenizer.Load(ChatDir("bos")))
            {
                List<ChatMessage> conv = MessagesOf(qwen["conversations"]["system_user_assistant_user"]);
                Check(tok.ApplyChatTemplate(conv, false).StartsWith("<|endoftext|><|start_header_id|>system", StringComparison.Ordinal),
                      "the folder's template");
                tok.SetChatTemplate(qwen["tokenizer_config"]["chat_template"].S);
                int n = 0;
                foreach (Json c in qwen["cases"].Items)
                {
                    CheckEq(tok.ApplyChatTemplate(MessagesOf(qwen["conversations"][c["conversation"].S]), c["add_generation_prompt"].B),
                            c["expected"].S, "qwen2 " + c["conversation"].S);
                    n++;
                }
                CheckEq(n, 6, "qwen2 cases");
                // Refused templates leave the one in use.
                string before = tok.ApplyChatTemplate(conv, true);
                CheckCode(() => tok.SetChatTemplate("{% for m in messages %}"), Status.Tokenizer, "does not compile");
                CheckCode(() => tok.SetChatTemplate("{{ 1 }}\0x"), Status.InvalidArgument, "NUL in a template");
                CheckCode(() => tok.SetChatTemplate("\ud800"), Status.InvalidUtf8, "lone surrogate in a template");
                CheckEq(tok.ApplyChatTemplate(conv, true), before, "template unchanged");
                // raise_exception; the special tokens stay the folder's; no messages.
                tok.SetChatTemplate("{{ bos_token }}{% if messages[0].role != 'user' %}{{ raise_exception('roles must alternate') }}{% endif %}");
                SpecdecException e = Catch(() => tok.ApplyChatTemplate(conv, true));
                Check(e != null && e.Code == Status.Tokenizer && e.Message.Contains("roles must alternate"), "raise_exception");
                CheckEq(tok.ApplyChatTemplate(new[] { new ChatMessage("user", "hi") }, false), "<|endoftext|>", "bos_token");
                tok.SetChatTemplate("[{{ messages | length }}]");
                CheckEq(tok.ApplyChatTemplate(new ChatMessage[0], true), "[0]", "no messages");
                CheckCode(() => tok.ApplyChatTemplate(new[] { new ChatMessage("user", "a\0b") }, true), Status.InvalidArgument, "NUL in a message");
                CheckCode(() => tok.ApplyChatTemplate(new[] { new ChatMessage("us\udc00", "hi") }, true), Status.InvalidUtf8, "lone surrogate in a message");
                try
                {
                    tok.ApplyChatTemplate(new[] { default(ChatMessage) }, true);
                    Check(false, "default(ChatMessage) is refused");
                }
                catch (ArgumentNullException)
                {
                }
            }
        }

        private static void ChatTemplateBufferRetry()
        {
            using (Tokenizer tok = Tokenizer.Load(ChatDir("bos")))
            {
                // Far longer than the first guess: the exact-size retry.
                tok.SetChatTemplate("{% for i in range(500) %}{{ messages[0].content }}{% endfor %}");
                var want = new StringBuilder();
                for (int i = 0; i < 500; i++) want.Append("caf\u00e9!");
                CheckEq(tok.ApplyChatTemplate(new[] { new ChatMessage("user", "caf\u00e9!") }, false), want.ToString(), "long prompt");
                tok.SetChatTemplate("");
                CheckEq(tok.ApplyChatTemplate(new[] { new ChatMessage("user", "x") }, true), "", "empty template");
            }
            // No template at all.
            SpecdecException e = Catch(() => tokenizer.ApplyChatTemplate(new[] { new ChatMessage("user", "hi") }, true));
            Check(e != null && e.Code == Status.Tokenizer && e.Message.Contains("no chat template"), "no template");
        }

        private static void SpecialTokensMatchTransformers()
        {
            Json exp = LoadJson(ChatDir("bos", "expected.json"));
            using (Tokenizer tok = Tokenizer.Load(ChatDir("bos")))
            {
                string text = exp["text"].S;
                uint[] with = exp["with_special_tokens"].Ids();
                CheckEq(with.Length, 11, "expected.json ids");
                CheckTokens(tok.Encode(text, true), with, "with special tokens");
                CheckTokens(tok.Encode(text, false), exp["without_special_tokens"].Ids(), "without special tokens");
                CheckTokens(tok.Encode(text), exp["without_special_tokens"].Ids(), "Encode(text)");
                CheckTokens(tok.Encode("", true), new uint[] { 0 }, "empty, with special tokens");
                CheckTokens(tok.Encode("", false), new uint[0], "empty, without");
                CheckEq(tok.Decode(with, false), exp["decode_keep_special"].S, "keep special");
                CheckEq(tok.Decode(with, true), exp["decode_skip_special"].S, "skip special");
                CheckEq(tok.Decode(with), exp["decode_skip_special"].S, "Decode(ids)");
                CheckEq(tok.Decode(new uint[0], false), "", "no ids");
                CheckCode(() => tok.Decode(new uint[] { 512 }, false), Status.TokenOutOfRange, "id 512");
                CheckCode(() => tok.Encode("bad \ud800", true), Status.InvalidUtf8, "lone surrogate");
                // The chat prompt holds its BOS already: encode it without special tokens.
                string chat = tok.ApplyChatTemplate(new List<ChatMessage> { new ChatMessage("user", "Hello!") }, true);
                CheckEq(chat, exp["prompt"].S, "chat prompt");
                uint[] ids = tok.Encode(chat, false);
                CheckTokens(ids, exp["prompt_ids"].Ids(), "chat prompt ids");
                CheckEq(tok.Decode(ids, false), exp["prompt_decode_keep_special"].S, "chat prompt decoded");
            }
        }

        private static void TokenIdLookupMatchesTransformers()
        {
            Json exp = LoadJson(ChatDir("bos", "expected.json"));
            using (Tokenizer tok = Tokenizer.Load(ChatDir("bos")))
            {
                Json tokens = exp["tokens"];
                CheckEq(tokens.Keys.Count, 4, "expected.json tokens");
                for (int i = 0; i < tokens.Keys.Count; i++)
                {
                    string token = tokens.Keys[i];
                    uint? id = tok.TokenToId(token);
                    if (tokens.Items[i].Type == Json.Kind.Null)
                    {
                        Check(!id.HasValue, token + ": not in the vocabulary");
                        continue;
                    }
                    uint want = uint.Parse(tokens.Items[i].Raw);
                    CheckEq(id, (uint?)want, token);
                    CheckEq(tok.IdToToken(want), token, "IdToToken " + want);
                }
                Check(!tok.TokenToId("no such token").HasValue, "a missing token is not an error");
                Check(!tok.TokenToId("").HasValue, "empty token");
                CheckCode(() => tok.TokenToId("\ud800"), Status.InvalidUtf8, "lone surrogate");
                CheckCode(() => tok.IdToToken((uint)tok.VocabSize), Status.TokenOutOfRange, "id past the vocabulary");
                // Tokens of 42 bytes and of exactly 32 (the first buffer holds 32 and the NUL).
                string t42 = "\u010a" + new string('\u0120', 20), t32 = "\u010a" + new string('\u0120', 15);
                CheckEq(tok.IdToToken(389), t42, "42-byte token (retry)");
                CheckEq(tok.IdToToken(331), t32, "32-byte token (fits)");
                CheckEq(tok.TokenToId(t42), (uint?)389, "TokenToId of a long token");
            }
            Tokenizer disposed = Tokenizer.Load(ChatDir("bos"));
            disposed.Dispose();
            foreach (Action a in new Action[]
                     {
                         () => disposed.ApplyChatTemplate(new ChatMessage[0], true), () => disposed.SetChatTemplate("x"),
                         () => disposed.Encode("x", true), () => disposed.Decode(new uint[] { 1 }, false),
                         () => disposed.TokenToId("x"), () => disposed.IdToToken(0),
                     })
            {
                try
                {
                    a();
                    Check(false, "a disposed tokenizer throws");
                }
                catch (ObjectDisposedException)
                {
                }
            }
        }

        private static void StreamingEqualsOneShotDecode()
        {
            // GenerateText concatenated equals the one-shot decode of the generated tokens.
            using (var g = new Generator(target, draft, Greedy()))
            {
                g.Append(prompt);
                var sb = new StringBuilder();
                int pieces = 0;
                foreach (string piece in g.GenerateText(tokenizer, CancellationToken.None))
                {
                    Check(piece.Length > 0, "no empty piece");
                    sb.Append(piece);
                    pieces++;
                }
                Check(pieces > 1, "streamed in several pieces (" + pieces + ")");
                CheckEq(g.FinishReason, FinishReason.MaxTokens, "GenerateText finish reason");
                uint[] gen = Generated(g, prompt.Length);
                CheckTokens(gen, baseline, "GenerateText tokens");
                CheckEq(sb.ToString(), tokenizer.Decode(gen), "streamed text equals decode");
            }
            // The stream decoder holds back partial UTF-8 characters: multi-byte text pushed one id
            // at a time still decodes to the same string.
            uint[] unicode = tokenizer.Encode("caf\u00e9 \u65e5\u672c \U0001F642 na\u00efve \u20ac");
            foreach (int chunk in new[] { 1, 3 })
            {
                using (var d = new StreamDecoder(tokenizer))
                {
                    var sb = new StringBuilder();
                    for (int i = 0; i < unicode.Length; i += chunk)
                    {
                        int n = Math.Min(chunk, unicode.Length - i);
                        uint[] part = new uint[n];
                        Array.Copy(unicode, i, part, 0, n);
                        sb.Append(d.Push(part));
                    }
                    sb.Append(d.Flush());
                    CheckEq(sb.ToString(), tokenizer.Decode(unicode), "stream decoder, chunk " + chunk);
                }
            }
            // A stop text while streaming (GenerateText sets the tokenizer).
            string whole = tokenizer.Decode(baseline);
            string[] words = whole.Split(new[] { ' ' }, StringSplitOptions.RemoveEmptyEntries);
            string stop = words.Length > 3 ? words[3] : words[words.Length - 1];
            var options = Greedy();
            options.StopTexts.Add(stop);
            using (var g = new Generator(target, draft, options))
            {
                g.Append(prompt);
                var sb = new StringBuilder();
                foreach (string piece in g.GenerateText(tokenizer)) sb.Append(piece);
                CheckEq(g.FinishReason, FinishReason.StopSequence, "stop text '" + stop + "'");
                Check(sb.ToString().Contains(stop), "streamed text contains the stop text");
                Check(whole.StartsWith(sb.ToString(), StringComparison.Ordinal), "stopped text is a prefix");
            }
            // GenerateText honours its token between iterations and leaves the generator usable.
            using (var g = new Generator(target, draft, Greedy()))
            using (var cts = new CancellationTokenSource())
            {
                g.Append(prompt);
                bool threw = false;
                int pieces = 0;
                try
                {
                    foreach (string piece in g.GenerateText(tokenizer, cts.Token))
                    {
                        if (++pieces == 2) cts.Cancel();
                    }
                }
                catch (OperationCanceledException)
                {
                    threw = true;
                }
                Check(threw, "GenerateText throws OperationCanceledException");
                CheckEq(pieces, 2, "no piece after the cancellation");
                CheckEq(g.FinishReason, FinishReason.None, "not finished");
                CheckEq(g.Generate(), FinishReason.MaxTokens, "generates after a cancelled stream");
                CheckTokens(Generated(g, prompt.Length), baseline, "sequence after a cancelled stream");
            }
        }

        private static void StatsAreSane()
        {
            using (var g = new Generator(target, null, Greedy()))
            {
                Stats s0 = g.Stats;
                CheckEq(s0.StructSize.ToUInt64(), (ulong)Marshal.SizeOf(typeof(Stats)), "struct size");
                CheckEq(s0.NewTokens, 0UL, "no tokens yet");
                g.Append(prompt);
                g.Generate();
                Stats s = g.Stats;
                CheckEq(s.NewTokens, (ulong)NewTokens, "target-only new tokens");
                CheckEq(s.DraftCalls, 0UL, "no draft calls");
                CheckEq(s.Drafted, 0UL, "nothing drafted");
                CheckEq(s.AcceptanceRate, 0.0, "acceptance rate without draft");
                CheckEq(s.Rounds, (ulong)NewTokens, "one round per token");
                Check(s.TargetCalls >= s.Rounds, "target calls >= rounds");
                Check(Math.Abs(s.TokensPerTargetCall - 1.0) < 1e-9, "tokens per round 1");
                Check(s.TargetSeconds > 0 && s.TotalSeconds >= s.TargetSeconds, "timings");
            }
            using (var g = new Generator(target, draft, Greedy(4)))
            {
                g.Append(prompt);
                g.Generate();
                Stats s = g.Stats;
                CheckEq(s.NewTokens, (ulong)NewTokens, "speculative new tokens");
                Check(s.Drafted > 0 && s.Accepted <= s.Drafted, "accepted <= drafted");
                Check(s.Rounds > 0 && s.Rounds <= s.NewTokens, "rounds <= tokens");
                Check(s.Drafted <= 4 * s.Rounds, "drafted <= gamma * rounds");
                Check(s.NewTokens <= s.Accepted + s.Rounds, "tokens <= accepted + rounds");
                Check(Math.Abs(s.AcceptanceRate - (double)s.Accepted / s.Drafted) < 1e-9, "acceptance rate");
                Check(Math.Abs(s.TokensPerTargetCall - (double)s.NewTokens / s.Rounds) < 1e-9, "tokens per target call");
                Check(s.AcceptanceRate >= 0 && s.AcceptanceRate <= 1, "acceptance rate in [0, 1]");
                Check(s.DraftCalls > 0 && s.TargetCalls >= s.Rounds, "calls");
                Check(s.DraftSeconds > 0 && s.TargetSeconds > 0, "timings");
                Check(s.TotalSeconds + 1e-9 >= s.DraftSeconds + s.TargetSeconds, "total time");
                Check(s.OtherSeconds >= 0, "other time");
                g.Append(new uint[] { 3, 4 });
                g.Generate();
                Stats s2 = g.Stats;
                CheckEq(s2.NewTokens, 2UL * NewTokens, "cumulative over prompts");
                Check(s2.Rounds > s.Rounds && s2.TotalSeconds >= s.TotalSeconds, "cumulative rounds and time");
            }
        }

        private static void StopTokensAndEos()
        {
            // Stop tokens: the pair at generated positions 10..11 ends generation at its first occurrence.
            uint[] stop = { baseline[10], baseline[11] };
            var options = Greedy();
            options.StopTokens.Add(stop);
            int end = -1;
            for (int i = 1; i < baseline.Length; i++)
            {
                if (baseline[i - 1] == stop[0] && baseline[i] == stop[1]) { end = i + 1; break; }
            }
            using (var g = new Generator(target, draft, options))
            {
                g.Append(prompt);
                CheckEq(g.Generate(), FinishReason.StopSequence, "stop tokens");
                CheckTokens(Generated(g, prompt.Length), Prefix(baseline, end), "ends with the stop tokens");
            }
            // An explicit EOS id: generation ends at its first occurrence (included).
            uint eos = baseline[5];
            int eosAt = Array.IndexOf(baseline, eos);
            using (var g = new Generator(target, draft, new GenerationOptions { MaxNewTokens = NewTokens, EosIds = new[] { eos } }))
            {
                g.Append(prompt);
                CheckEq(g.Generate(), FinishReason.Eos, "explicit EOS");
                CheckTokens(Generated(g, prompt.Length), Prefix(baseline, eosAt + 1), "ends with the EOS");
            }
            // EosIds null (the model's, id 0) versus empty (none): the same greedy tokens unless 0 appears.
            using (var g = new Generator(target, null, new GenerationOptions { MaxNewTokens = NewTokens }))
            {
                g.Append(prompt);
                FinishReason r = g.Generate();
                uint[] gen = Generated(g, prompt.Length);
                int zero = Array.IndexOf(baseline, 0u);
                if (zero < 0)
                {
                    CheckEq(r, FinishReason.MaxTokens, "model EOS never generated");
                    CheckTokens(gen, baseline, "model EOS, same tokens");
                }
                else
                {
                    CheckEq(r, FinishReason.Eos, "model EOS generated");
                    CheckTokens(gen, Prefix(baseline, zero + 1), "model EOS prefix");
                }
            }
        }

        private static void DisposeTwiceIsSafe()
        {
            Model m = Model.Load(Fixture("draft"));
            Tokenizer t = Tokenizer.Load(Fixture("llama"));
            var g = new Generator(target, m, Greedy());
            var d = new StreamDecoder(t);
            // The generator and the stream decoder keep their model and tokenizer alive natively.
            m.Dispose();
            m.Dispose();
            t.Dispose();
            t.Dispose();
            g.Append(prompt);
            CheckEq(g.Generate(), FinishReason.MaxTokens, "generator outlives its disposed models");
            CheckTokens(Generated(g, prompt.Length), baseline, "sequence with a disposed draft Model object");
            CheckEq(d.Push(baseline) + d.Flush(), tokenizer.Decode(baseline), "stream decoder outlives its tokenizer");
            g.Dispose();
            g.Dispose();
            d.Dispose();
            d.Dispose();
            g.Cancel(); // a no-op on a disposed generator
            bool threw = false;
            try { int unused = m.VocabSize; }
            catch (ObjectDisposedException) { threw = true; }
            Check(threw, "a disposed Model throws ObjectDisposedException");
            threw = false;
            try { g.Step(); }
            catch (ObjectDisposedException) { threw = true; }
            Check(threw, "a disposed Generator throws ObjectDisposedException");
            threw = false;
            try { new Generator(m, null, null); }
            catch (ObjectDisposedException) { threw = true; }
            Check(threw, "a disposed Model cannot make a Generator");
        }

        private static void GcDuringLongGenerate()
        {
            // Collections while native code is inside Generate and calls back into managed code:
            // from the callback itself and from another thread. The callback is a closure that is
            // referenced nowhere else.
            using (var g = new Generator(target, draft, Greedy(4, LongTokens)))
            {
                g.Append(prompt);
                var stop = 0;
                var collector = new Thread(() =>
                {
                    while (Volatile.Read(ref stop) == 0)
                    {
                        GC.Collect();
                        Thread.Sleep(1);
                    }
                });
                collector.Start();
                var seen = new List<uint>();
                int calls = 0;
                FinishReason r;
                try
                {
                    r = g.Generate(tokens =>
                    {
                        seen.AddRange(tokens);
                        var garbage = new byte[64 * 1024];
                        garbage[0] = 1;
                        if (++calls % 5 == 0)
                        {
                            GC.Collect();
                            GC.WaitForPendingFinalizers();
                        }
                        return true;
                    });
                }
                finally
                {
                    Volatile.Write(ref stop, 1);
                    collector.Join();
                }
                CheckEq(r, FinishReason.MaxTokens, "long generation finished");
                CheckTokens(seen.ToArray(), baselineLong, "callback saw every token");
                CheckTokens(Generated(g, prompt.Length), baselineLong, "long sequence equals target-only");
            }
        }

        private static void ModelSharedAcrossThreads()
        {
            var results = new uint[4][];
            var errors = new Exception[4];
            var threads = new Thread[4];
            for (int i = 0; i < threads.Length; i++)
            {
                int k = i;
                threads[i] = new Thread(() =>
                {
                    try
                    {
                        using (var g = new Generator(target, k % 2 == 0 ? draft : null, Greedy((uint)(k + 1))))
                        {
                            g.Append(prompt);
                            g.Generate();
                            results[k] = Generated(g, prompt.Length);
                        }
                    }
                    catch (Exception e)
                    {
                        errors[k] = e;
                    }
                });
                threads[i].Start();
            }
            foreach (Thread t in threads) t.Join();
            for (int i = 0; i < threads.Length; i++)
            {
                Check(errors[i] == null, "thread " + i + " failed: " + errors[i]);
                if (results[i] != null) CheckTokens(results[i], baseline, "thread " + i);
            }
        }

        private static void SamplingIsReproducible()
        {
            Func<Model, uint[]> run = d =>
            {
                var o = new GenerationOptions { Temperature = 0.9f, TopK = 50, TopP = 0.95f, Seed = 1234, MaxNewTokens = 32, EosIds = new uint[0] };
                using (var g = new Generator(target, d, o))
                {
                    g.Append(prompt);
                    g.Generate();
                    return Generated(g, prompt.Length);
                }
            };
            CheckTokens(run(null), run(null), "target-only sampling, same seed");
            CheckTokens(run(draft), run(draft), "speculative sampling, same seed");
        }


        // ---------------------------------------------------------------------------------------
        // Drafters, policies, model options

        // A CallbackDrafter proposing the target's own greedy continuation (baseline) of the prompt.
        private sealed class Oracle : CallbackDrafter
        {
            internal int Calls;

            public Oracle(bool withProbabilities = false) : base(withProbabilities) { }

            protected override int Propose(DraftRequest request)
            {
                Interlocked.Increment(ref Calls);
                return Propose(request, baseline);
            }

            internal static int Propose(DraftRequest request, uint[] reference)
            {
                uint[] tokens = request.Tokens;
                if (tokens.Length < prompt.Length || !SameTokens(Prefix(tokens, prompt.Length), prompt))
                {
                    throw new InvalidOperationException("the sequence does not start with the prompt");
                }
                int pos = tokens.Length - prompt.Length;
                int n = 0;
                for (; n < request.MaxProposals && pos + n < reference.Length; n++)
                {
                    request.Proposals[n] = reference[pos + n];
                    if (request.WithProbabilities)
                    {
                        var row = new float[request.VocabSize];
                        row[reference[pos + n]] = 1f;
                        request.SetDistribution(n, row);
                    }
                }
                return n;
            }
        }

        private static uint[] RunDrafter(Drafter d, GenerationOptions o, out Stats stats)
        {
            using (Generator g = Generator.Create(target, d, o))
            {
                g.Append(prompt);
                g.Generate();
                stats = g.Stats;
                return Generated(g, prompt.Length);
            }
        }

        private static string WriteCounts(CountsOrder order)
        {
            var sb = new StringBuilder("# counts of the reference\n");
            foreach (uint id in baseline) sb.Append(id).Append(" 1\n"); // repeated lines add up
            if (order == CountsOrder.Bigram)
            {
                for (int i = 1; i < baseline.Length; i++) sb.Append(baseline[i - 1]).Append(' ').Append(baseline[i]).Append(" 1\n");
            }
            string path = Path.Combine(Path.GetTempPath(), "specdec-cs-counts-" + (int)order + ".txt");
            File.WriteAllText(path, sb.ToString());
            return path;
        }

        private static void DraftersKeepGreedyExact()
        {
            var sources = new List<KeyValuePair<string, Func<Drafter>>>
            {
                new KeyValuePair<string, Func<Drafter>>("model", () => new ModelDrafter(draft)),
                new KeyValuePair<string, Func<Drafter>>("ngram 1-4", () => new NGramDrafter(1, 4, 8)),
                new KeyValuePair<string, Func<Drafter>>("ngram 2-2", () => new NGramDrafter(2, 2, 3)),
                new KeyValuePair<string, Func<Drafter>>("unigram learnt", () => new CountsDrafter(CountsOrder.Unigram)),
                new KeyValuePair<string, Func<Drafter>>("bigram learnt", () => new CountsDrafter(CountsOrder.Bigram, null)),
                new KeyValuePair<string, Func<Drafter>>("unigram file", () => new CountsDrafter(CountsOrder.Unigram, WriteCounts(CountsOrder.Unigram))),
                new KeyValuePair<string, Func<Drafter>>("bigram file", () => new CountsDrafter(CountsOrder.Bigram, WriteCounts(CountsOrder.Bigram))),
                new KeyValuePair<string, Func<Drafter>>("callback", () => new Oracle()),
                new KeyValuePair<string, Func<Drafter>>("callback with probabilities", () => new Oracle(true)),
                new KeyValuePair<string, Func<Drafter>>("delegate", () => new DelegateDrafter(r => Oracle.Propose(r, baseline))),
            };
            foreach (var src in sources)
            {
                using (Drafter d = src.Value())
                {
                    Stats st;
                    CheckTokens(RunDrafter(d, Greedy(4), out st), baseline, src.Key + ": equals target-only greedy");
                    CheckEq(st.NewTokens, (ulong)NewTokens, src.Key + ": new tokens");
                    Check(st.Accepted <= st.Drafted && st.Alpha >= 0 && st.Alpha <= 1, src.Key + ": stats");
                    if (src.Key == "callback" || src.Key.StartsWith("callback ") || src.Key == "delegate")
                    {
                        // The oracle proposes exactly the target's continuation: all accepted.
                        Check(st.Drafted > 0 && st.AcceptanceRate > 0.99 && st.Alpha > 0.99, src.Key + ": acceptance " + st.AcceptanceRate);
                        CheckEq(st.Rejected, 0UL, src.Key + ": rejected rounds");
                        Check(st.TokensPerTargetCall > 3, src.Key + ": tokens per target call " + st.TokensPerTargetCall);
                    }
                }
            }
            // The model drafter is new Generator(target, draft): the same tokens when sampling too.
            Func<GenerationOptions> sampled = () => new GenerationOptions { Temperature = 1f, Seed = 5, MaxNewTokens = NewTokens, EosIds = new uint[0] };
            uint[] viaModel;
            using (var g = new Generator(target, draft, sampled()))
            {
                g.Append(prompt);
                g.Generate();
                viaModel = Generated(g, prompt.Length);
            }
            using (var d = new ModelDrafter(draft))
            {
                Stats st;
                CheckTokens(RunDrafter(d, sampled(), out st), viaModel, "sampled: ModelDrafter equals the draft constructor");
            }
            // A null drafter is target-only decoding.
            Stats none;
            CheckTokens(RunDrafter(null, Greedy(4), out none), baseline, "null drafter");
            CheckEq(none.Drafted, 0UL, "null drafter drafts nothing");
        }

        private static void DrafterErrors()
        {
            CheckCode(() => new NGramDrafter(0, 2, 4), Status.InvalidArgument, "ngram 0");
            CheckCode(() => new NGramDrafter(3, 2, 4), Status.InvalidArgument, "ngram min > max");
            CheckCode(() => new NGramDrafter(1, 2, Library.MaxGamma + 1), Status.InvalidArgument, "ngram proposal 65");
            CheckCode(() => new CountsDrafter((CountsOrder)3), Status.InvalidArgument, "counts order 3");
            CheckCode(() => new CountsDrafter(CountsOrder.Unigram, "/no/such/counts.txt"), Status.Io, "counts file missing");
            CheckCode(() => new CountsDrafter(CountsOrder.Unigram, "a\0b"), Status.InvalidArgument, "NUL in the counts path");
            string bad = Path.Combine(Path.GetTempPath(), "specdec-cs-bad-counts.txt");
            File.WriteAllText(bad, "5 10\nseven 3\n");
            CheckCode(() => new CountsDrafter(CountsOrder.Unigram, bad), Status.Io, "malformed counts file");
            bool threw = false;
            try { new DelegateDrafter(null); } catch (ArgumentNullException) { threw = true; }
            Check(threw, "DelegateDrafter(null) throws ArgumentNullException");
            threw = false;
            try { new ModelDrafter(null); } catch (ArgumentNullException) { threw = true; }
            Check(threw, "ModelDrafter(null) throws ArgumentNullException");
            using (Model v600 = Model.Load(Fixture("vocab600")))
            using (var d600 = new ModelDrafter(v600))
            {
                CheckCode(() => Generator.Create(target, d600), Status.VocabMismatch, "vocab600 drafter");
            }
            var disposed = new NGramDrafter(1, 2, 4);
            disposed.Dispose();
            disposed.Dispose();
            threw = false;
            try { Generator.Create(target, disposed); } catch (ObjectDisposedException) { threw = true; }
            Check(threw, "a disposed drafter throws ObjectDisposedException");
            using (var d = new NGramDrafter(1, 2, 4))
            {
                CheckCode(() => Generator.Create(target, d, new GenerationOptions { Gamma = 0 }), Status.InvalidArgument, "gamma 0");
            }
        }

        private sealed class DraftBoom : Exception
        {
            public DraftBoom() : base("draft boom") { }
        }

        private static void CallbackDrafterFailures()
        {
            string mode = null;
            int calls = 0;
            Generator current = null;
            Status reentrant = Status.Ok;
            using (var d = new DelegateDrafter(r =>
            {
                if (++calls != 3) return Oracle.Propose(r, baseline);
                switch (mode)
                {
                    case "throw": throw new DraftBoom();
                    case "negative": return -2;
                    case "too many": return r.MaxProposals + 1;
                    case "out of range": r.Proposals[0] = 1u << 20; return 1;
                    case "reentrant":
                        SpecdecException e = Catch(() => current.Step()); // the native generator is busy
                        reentrant = e == null ? Status.Ok : e.Code;
                        current.Cancel();                                  // allowed: cancels the next iteration
                        return Oracle.Propose(r, baseline);
                }
                return 0;
            }))
            {
                foreach (var c in new[]
                {
                    new KeyValuePair<string, Status>("throw", Status.Callback),
                    new KeyValuePair<string, Status>("negative", Status.Callback),
                    new KeyValuePair<string, Status>("too many", Status.InvalidArgument),
                    new KeyValuePair<string, Status>("out of range", Status.TokenOutOfRange),
                    new KeyValuePair<string, Status>("reentrant", Status.Cancelled),
                })
                {
                    mode = c.Key;
                    calls = 0;
                    using (Generator g = Generator.Create(target, d, Greedy(3)))
                    {
                        current = g;
                        g.Append(prompt);
                        SpecdecException failure = null;
                        for (int i = 0; i < 3 && failure == null; i++) failure = Catch(() => g.Step());
                        if (mode == "reentrant")
                        {
                            CheckEq(reentrant, Status.Busy, "Step from inside the draft callback");
                            CheckCode(() => g.Step(), Status.Cancelled, "the callback's Cancel");
                        }
                        else
                        {
                            CheckEq(failure == null ? Status.Ok : failure.Code, c.Value, mode + ": third round");
                        }
                        if (mode == "throw" && failure != null)
                        {
                            Check(failure.InnerException is DraftBoom, "the callback's exception is the InnerException");
                            Check(failure.Message.Contains("draft boom"), "the message names it: " + failure.Message);
                        }
                        // The generator goes on, exactly.
                        CheckEq(g.Generate(), FinishReason.MaxTokens, mode + ": continuing");
                        CheckTokens(Generated(g, prompt.Length), baseline, mode + ": exact after the failure");
                    }
                }
                // Through Generate (one native call) with a token callback, too.
                mode = "throw";
                calls = 0;
                using (Generator g = Generator.Create(target, d, Greedy(3)))
                {
                    g.Append(prompt);
                    SpecdecException e = Catch(() => g.Generate(t => true));
                    Check(e != null && e.Code == Status.Callback && e.InnerException is DraftBoom, "Generate: Callback with the exception inside");
                    CheckEq(g.Generate(), FinishReason.MaxTokens, "Generate: continuing");
                    CheckTokens(Generated(g, prompt.Length), baseline, "Generate: exact after the failure");
                }
            }
            // Distributions that are not distributions, and misuse of the request.
            using (var bad = new DelegateDrafter(r =>
            {
                r.Proposals[0] = 1;
                r.SetDistribution(0, new float[r.VocabSize]); // all zero
                return 1;
            }, true))
            using (Generator g = Generator.Create(target, bad, Greedy()))
            {
                g.Append(prompt);
                CheckCode(() => g.Step(), Status.InvalidArgument, "zero distribution");
            }
            DraftRequest kept = null;
            using (var misuse = new DelegateDrafter(r =>
            {
                kept = r;
                r.SetDistribution(0, new float[3]); // wrong length
                return 0;
            }, true))
            using (Generator g = Generator.Create(target, misuse, Greedy()))
            {
                g.Append(prompt);
                SpecdecException e = Catch(() => g.Step());
                Check(e != null && e.Code == Status.Callback && e.InnerException is ArgumentException, "wrong distribution length");
            }
            bool threw = false;
            try { kept.SetDistribution(0, new float[kept.VocabSize]); } catch (InvalidOperationException) { threw = true; }
            Check(threw, "a DraftRequest is dead after its call");
        }

        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
        private static Generator GeneratorOfDisposedDrafter(out WeakReference weak)
        {
            var oracle = new Oracle();
            weak = new WeakReference(oracle);
            Generator g = Generator.Create(target, oracle, Greedy());
            oracle.Dispose();
            return g;
        }

        private static void CallbackDrafterLifetimeAndThreads()
        {
            // The drafter disposed (and unreferenced) before its generator: the callback still runs.
            WeakReference weak;
            Generator g = GeneratorOfDisposedDrafter(out weak);
            GC.Collect();
            GC.WaitForPendingFinalizers();
            Check(weak.IsAlive, "the generator keeps its callback drafter reachable");
            using (g)
            {
                g.Append(prompt);
                var stop = 0;
                var collector = new Thread(() =>
                {
                    while (Volatile.Read(ref stop) == 0)
                    {
                        GC.Collect();
                        Thread.Sleep(1);
                    }
                });
                collector.Start();
                try
                {
                    g.Generate();
                }
                finally
                {
                    Volatile.Write(ref stop, 1);
                    collector.Join();
                }
                CheckTokens(Generated(g, prompt.Length), baseline, "drafter disposed first");
            }
            // (Whether it is collected now is not checked: Mono scans stacks conservatively, so a
            // stale stack slot may keep any object, with or without an anchor, alive a while.)

            // Abandoned drafters and generators: their finalizers release everything.
            for (int i = 0; i < 3; i++)
            {
                var gen = Generator.Create(target, new Oracle(), Greedy());
                gen.Append(prompt);
                gen.Step();
            }
            GC.Collect();
            GC.WaitForPendingFinalizers();
            GC.Collect();

            // One callback drafter shared by generators on four threads.
            using (var shared = new Oracle())
            {
                var outs = new uint[4][];
                var errors = new Exception[4];
                var threads = new List<Thread>();
                for (int i = 0; i < 4; i++)
                {
                    int k = i;
                    var t = new Thread(() =>
                    {
                        try
                        {
                            Stats st;
                            for (int j = 0; j < 3; j++) outs[k] = RunDrafter(shared, Greedy((uint)(k + 2)), out st);
                        }
                        catch (Exception e)
                        {
                            errors[k] = e;
                        }
                    });
                    threads.Add(t);
                    t.Start();
                }
                foreach (var t in threads) t.Join();
                for (int i = 0; i < 4; i++)
                {
                    Check(errors[i] == null, "thread " + i + ": " + errors[i]);
                    if (outs[i] != null) CheckTokens(outs[i], baseline, "thread " + i);
                }
                Check(shared.Calls > 0, "the shared callback ran");
            }
        }

        private static void DraftPolicies()
        {
            using (var model = new ModelDrafter(draft))
            using (var ngram = new NGramDrafter(1, 4, 8))
            {
                foreach (DraftPolicy p in new[] { DraftPolicy.Fixed, DraftPolicy.Heuristic, DraftPolicy.Auto })
                {
                    foreach (Drafter d in new Drafter[] { model, ngram })
                    {
                        foreach (float conf in new[] { 0f, 0.3f })
                        {
                            GenerationOptions o = Greedy(3);
                            o.DraftPolicy = p;
                            o.ConfidenceStop = conf;
                            Stats st;
                            CheckTokens(RunDrafter(d, o, out st), baseline, p + ", confidence stop " + conf);
                        }
                    }
                    GenerationOptions withDraft = Greedy(3);
                    withDraft.DraftPolicy = p;
                    using (var g = new Generator(target, draft, withDraft))
                    {
                        g.Append(prompt);
                        g.Generate();
                        CheckTokens(Generated(g, prompt.Length), baseline, p + " with the draft constructor");
                    }
                }
            }
            CheckCode(() => new Generator(target, draft, new GenerationOptions { DraftPolicy = (DraftPolicy)9 }), Status.InvalidArgument, "policy 9");
            CheckCode(() => new Generator(target, draft, new GenerationOptions { ConfidenceStop = -0.1f }), Status.InvalidArgument, "confidence -0.1");
            CheckCode(() => new Generator(target, draft, new GenerationOptions { ConfidenceStop = 1.5f }), Status.InvalidArgument, "confidence 1.5");
        }

        private static void KvMemoryLimit()
        {
            GenerationOptions small = Greedy();
            small.KvMemoryLimit = 1024;
            using (var g = new Generator(target, draft, small))
            {
                CheckCode(() => g.Append(prompt), Status.MemoryBudget, "1 KiB budget");
                CheckEq(g.Tokens.Length, 0, "a refused Append changes nothing");
            }
            GenerationOptions big = Greedy();
            big.KvMemoryLimit = 1UL << 30;
            using (var g = new Generator(target, draft, big))
            {
                g.Append(prompt);
                g.Generate();
                CheckTokens(Generated(g, prompt.Length), baseline, "1 GiB budget");
            }
        }

        private static void ModelVariants()
        {
            string community = Path.Combine(Path.Combine(Path.Combine(fixtures, ".."), "community"), "llama");
            SpecdecException e = Catch(() => Model.Load(community));
            Check(e != null && e.Code == Status.InvalidArgument, "several variants and no choice: " + (e == null ? "loaded" : e.Code.ToString()));
            if (e != null) Check(e.Message.Contains("q4") && e.Message.Contains("fp16"), "the message names the variants: " + e.Message);
            CheckCode(() => Model.Load(community, new ModelOptions { Variant = "bogus" }), Status.Io, "unknown variant");
            CheckCode(() => Model.Load(community, new ModelOptions { Variant = "q\0" }), Status.InvalidArgument, "NUL in the variant");
            foreach (string v in new[] { "default", "q4", "fp16" })
            {
                using (Model m = Model.Load(community, new ModelOptions { Variant = v }))
                using (var g = new Generator(m, null, new GenerationOptions { MaxNewTokens = 12, EosIds = new uint[0] }))
                {
                    CheckEq(m.VocabSize, 512, v + ": vocabulary");
                    CheckEq(m.CudaDevice, -1, v + ": runs on the CPU");
                    g.Append(prompt);
                    CheckEq(g.Generate(), FinishReason.MaxTokens, v + ": generates");
                    CheckEq(g.Tokens.Length, prompt.Length + 12, v + ": tokens");
                }
            }
        }

        private static void ModelSessionOptions()
        {
            var variants = new[]
            {
                new ModelOptions { IoBinding = true },
                new ModelOptions { IoBinding = false, Spinning = false },
                new ModelOptions { OptimizationLevel = 0 },
                new ModelOptions { OptimizationLevel = 1, Spinning = true, IntraThreads = 1 },
                new ModelOptions { Device = "cpu", CudaFallback = false, IoBinding = true, OptimizationLevel = 3 },
            };
            foreach (ModelOptions o in variants)
            {
                using (Model m = Model.Load(Fixture("llama"), o))
                using (var g = new Generator(m, null, Greedy()))
                {
                    CheckEq(m.CudaDevice, -1, "CPU model");
                    g.Append(prompt);
                    g.Generate();
                    CheckTokens(Generated(g, prompt.Length), baseline, "session options keep greedy output");
                }
            }
            CheckCode(() => Model.Load(Fixture("llama"), new ModelOptions { OptimizationLevel = 4 }), Status.InvalidArgument, "optimization level 4");
            using (Model m = Model.Load(Fixture("draft"), (ModelOptions)null)) CheckEq(m.CudaDevice, -1, "default options");
            // CUDA fails loudly where it cannot run, unless the CPU fallback is allowed.
            SpecdecException e = Catch(() => Model.Load(Fixture("draft"), new ModelOptions { Device = "cuda:0" }).Dispose());
            if (e == null)
            {
                using (Model m = Model.Load(Fixture("draft"), new ModelOptions { Device = "cuda:0" })) CheckEq(m.CudaDevice, 0, "cuda:0");
            }
            else
            {
                CheckEq(e.Code, Status.Unavailable, "cuda:0 without the fallback");
                using (Model m = Model.Load(Fixture("draft"), new ModelOptions { Device = "cuda:0", CudaFallback = true }))
                {
                    CheckEq(m.CudaDevice, -1, "cuda:0 fell back to the CPU");
                }
            }
        }

        private static void ClearCancel()
        {
            using (var g = new Generator(target, draft, Greedy()))
            {
                g.Append(prompt);
                g.Cancel();
                g.ClearCancel(); // withdrawn before any iteration consumed it
                Check(g.Step().Length > 0, "Step after ClearCancel");
                g.Cancel();
                CheckCode(() => g.Step(), Status.Cancelled, "Step after Cancel");
                Check(g.Step().Length > 0, "Step after the consumed Cancel");
                g.Dispose();
                g.ClearCancel(); // disposed: a no-op
                g.Cancel();
            }
        }

        // ---------------------------------------------------------------------------------------

        // The binding against the native library driven without C#: the specdec CLI (built by
        // `make build`, the same engine behind the C ABI) on the fixture pair, token for token.
        private static void SameTokensAsNative()
        {
            string cli = Path.Combine(Path.Combine(Path.Combine(fixtures, ".."), ".."), "target/release/specdec");
            var ids = new List<string>();
            foreach (uint id in prompt) ids.Add(id.ToString());
            foreach (uint gamma in new uint[] { 1, 4, 8 })
            {
                var psi = new ProcessStartInfo(cli, "generate --target " + Fixture("llama") + " --draft " + Fixture("draft")
                    + " --prompt-ids " + string.Join(",", ids.ToArray()) + " --gamma " + gamma
                    + " --max-new-tokens " + NewTokens + " --eos-ids \"\" --json")
                {
                    UseShellExecute = false,
                    RedirectStandardOutput = true,
                };
                string json;
                using (Process p = Process.Start(psi))
                {
                    json = p.StandardOutput.ReadToEnd();
                    p.WaitForExit();
                    CheckEq(p.ExitCode, 0, "CLI exit code");
                }
                Match m = Regex.Match(json, "\"tokens\":\\[([0-9,]*)\\]");
                Check(m.Success, "CLI printed tokens: " + json);
                if (!m.Success) return;
                var native = new List<uint>();
                foreach (string t in m.Groups[1].Value.Split(new[] { ',' }, StringSplitOptions.RemoveEmptyEntries)) native.Add(uint.Parse(t));
                uint[] mine = RunGreedy(draft, gamma, NewTokens);
                Check(native.Count == NewTokens && SameTokens(mine, native.ToArray()), "gamma " + gamma + ": C# equals the native CLI");
            }
        }

        // GenerateAsync: the same tokens as Generate; a token cancelled before the start cancels the
        // task; re-entrant calls from the async callback answer Busy.
        private static void GenerateAsyncEqualsGenerate()
        {
            using (var g = new Generator(target, draft, Greedy()))
            {
                g.Append(prompt);
                int calls = 0;
                Task<FinishReason> t = g.GenerateAsync(tokens => { calls++; return true; });
                CheckEq(t.Result, FinishReason.MaxTokens, "GenerateAsync finish reason");
                Check(calls > 0, "GenerateAsync called onTokens");
                CheckTokens(Generated(g, prompt.Length), baseline, "GenerateAsync tokens");
            }
            using (var g = new Generator(target, null, Greedy()))
            using (var cts = new CancellationTokenSource())
            {
                g.Append(prompt);
                cts.Cancel();
                Task<FinishReason> t = g.GenerateAsync(null, cts.Token);
                try { t.Wait(); } catch (AggregateException) { }
                Check(t.IsCanceled, "GenerateAsync with a cancelled token: task cancelled (" + t.Status + ")");
                CheckEq(g.Tokens.Length, prompt.Length, "nothing generated");
                SpecdecException busy = null;
                t = g.GenerateAsync(tokens =>
                {
                    busy = Catch(() => g.Append(new uint[0]));
                    return false;
                });
                CheckEq(t.Result, FinishReason.Stopped, "stopped by onTokens");
                Check(busy != null && busy.Code == Status.Busy, "Append inside the async callback throws Busy");
            }
        }

        // GenerateStreamAsync: the same text as decoding the greedy tokens; cancelling the token
        // from the callback stops the generation within an iteration (specdec_generator_cancel)
        // and the task ends cancelled (OperationCanceledException); the generator stays usable.
        private static void GenerateStreamAsyncAndCancellation()
        {
            string want = tokenizer.Decode(baseline);
            using (var g = new Generator(target, draft, Greedy()))
            {
                g.Append(prompt);
                var sb = new StringBuilder();
                CheckEq(g.GenerateStreamAsync(tokenizer, s => sb.Append(s)).Result, FinishReason.MaxTokens, "stream finish reason");
                CheckEq(sb.ToString(), want, "GenerateStreamAsync text");
            }
            using (var g = new Generator(target, draft, Greedy(4, LongTokens)))
            using (var cts = new CancellationTokenSource())
            {
                g.Append(prompt);
                int pieces = 0;
                Task<FinishReason> t = g.GenerateStreamAsync(tokenizer, s => { if (++pieces == 2) cts.Cancel(); }, cts.Token);
                bool canceled = false;
                try { t.Wait(); }
                catch (AggregateException e) { canceled = e.InnerException is OperationCanceledException; }
                Check(canceled && t.IsCanceled, "cancelled stream: OperationCanceledException, task cancelled (" + t.Status + ")");
                int generated = g.Tokens.Length - prompt.Length;
                Check(generated > 0 && generated < 40, "cancellation was prompt: " + generated + " tokens of " + LongTokens);
                CheckEq(g.FinishReason, FinishReason.None, "not finished after the cancellation");
                // Usable afterwards: the rest of the generation, the same tokens as without it.
                CheckEq(g.GenerateAsync().Result, FinishReason.MaxTokens, "resumed");
                CheckTokens(Generated(g, prompt.Length), baselineLong, "resumed tokens");
            }
        }

        // -- the embedder API --------------------------------------------------------------------

        private static uint[] RunAll(Generator g)
        {
            g.Generate();
            return g.Tokens;
        }

        private static Generator NewGen(Model t, Model d, GenerationOptions o)
        {
            var g = new Generator(t, d, o);
            g.Append(prompt);
            return g;
        }

        private static GenerationOptions NoEos(uint maxNew)
        {
            return new GenerationOptions { MaxNewTokens = maxNew, EosIds = new uint[0] };
        }

        private static void EmbedderLogprobsMatchTargetOnly()
        {
            var withLp = NoEos(16); withLp.Gamma = 4; withLp.Logprobs = 5;
            var plainOpts = NoEos(16); plainOpts.Gamma = 4;
            using (var plain = NewGen(target, draft, plainOpts))
            using (var b = NewGen(target, null, withLp))
            using (var sp = NewGen(target, draft, withLp))
            {
                uint[] p = RunAll(plain), want = RunAll(b), got = RunAll(sp);
                Check(SameTokens(p, got) && SameTokens(want, got), "logprobs change no token");
                TokenLogprobs[] reference = b.Logprobs(), lp = sp.Logprobs();
                CheckEq(lp.Length, 16, "logprobs count");
                CheckEq(reference.Length, 16, "target-only logprobs count");
                for (int i = 0; i < Math.Min(lp.Length, reference.Length); i++)
                {
                    CheckEq(lp[i].Chosen.Token, got[got.Length - 16 + i], "chosen token " + i);
                    CheckEq(lp[i].Chosen.Token, reference[i].Chosen.Token, "target-only token " + i);
                    Check(Math.Abs(lp[i].Chosen.RawLogprob - reference[i].Chosen.RawLogprob) < 2e-3f, "raw logprob " + i);
                    CheckEq(lp[i].Top.Length, 5, "alternatives " + i);
                }
                CheckEq(sp.GetConfig().Logprobs, (uint?)5u, "GetConfig().Logprobs");
                Round[] rounds = sp.Rounds();
                Check(rounds.Length > 0 && rounds.Length == sp.RoundCount && rounds[0].Emitted > 0, "rounds");
                Check(rounds[rounds.Length - 1].EndSeconds >= rounds[0].StartSeconds, "round times");
                CheckCode(() => sp.GetRound(rounds.Length), Status.InvalidArgument, "round out of range");
                Check(sp.Stats.TimeToFirstTokenSeconds > 0, "time to first token");
            }
            var tooMany = NoEos(4); tooMany.Logprobs = Library.MaxLogprobs + 1;
            CheckCode(() => new Generator(target, null, tooMany), Status.InvalidArgument, "too many logprobs");
        }

        private static void EmbedderFinishLength()
        {
            using (var small = Model.Load(Fixture("llama"), new ModelOptions { ContextLimit = 40 }))
            {
                CheckEq(small.ContextLimit, 40, "context limit");
                CheckEq(small.ContextLimitSource, ContextLimitSource.Options, "context limit source");
                using (var g = NewGen(small, null, NoEos(100)))
                {
                    CheckEq(g.ContextRoom, 40 - prompt.Length, "room");
                    CheckCode(() => g.Generate(), Status.ContextLimit, "without FinishAtContextLimit");
                }
                var finish = NoEos(100); finish.FinishAtContextLimit = true;
                using (var g = NewGen(small, null, finish))
                {
                    CheckEq(g.Generate(), FinishReason.Length, "finish reason");
                    CheckEq(g.Tokens.Length, 40, "tokens at the limit");
                    CheckEq(g.ContextRoom, 0, "no room left");
                }
                var reserve = NoEos(100); reserve.ReserveMaxNewTokens = true;
                using (var g = new Generator(small, null, reserve))
                {
                    CheckCode(() => g.Append(prompt), Status.ContextLimit, "reserve max_new_tokens");
                }
            }
        }

        // A strong bias repeats one token under greedy decoding until the frequency penalty breaks
        // the run; speculative output equals target-only; the settings read back.
        private static void PenaltiesAndLogitBias()
        {
            Func<Model, GenerationOptions, uint[]> run = (d, o) =>
            {
                using (var g = new Generator(target, d, o))
                {
                    g.Append(prompt);
                    g.Generate();
                    return Generated(g, prompt.Length);
                }
            };
            Func<GenerationOptions> opts = () => new GenerationOptions
            {
                MaxNewTokens = 24, EosIds = new uint[0],
                LogitBias = new Dictionary<uint, float> { { 42, 30f } },
            };
            uint[] biased = run(null, opts());
            foreach (uint t in biased) { Check(t == 42, "bias +30 repeats token 42"); }
            GenerationOptions pen = opts(); pen.FrequencyPenalty = 4f; pen.PresencePenalty = 1f;
            uint[] penalised = run(null, pen);
            Check(penalised[0] == 42 && !penalised.SequenceEqual(biased), "the frequency penalty breaks the repetition");
            CheckTokens(run(draft, pen), penalised, "speculative with penalties and bias");
            CheckCode(() => new Generator(target, draft, new GenerationOptions { PresencePenalty = float.NaN }),
                Status.InvalidArgument, "presence penalty NaN");
            CheckCode(() => new Generator(target, draft, new GenerationOptions { LogitBias = new Dictionary<uint, float> { { 512, 1f } } }),
                Status.TokenOutOfRange, "bias on token 512");
            using (var g = new Generator(target, draft, pen))
            {
                GenerationOptions back = g.GetConfig();
                CheckEq(back.FrequencyPenalty, (float?)4f, "frequency penalty read back");
                CheckEq(back.PresencePenalty, (float?)1f, "presence penalty read back");
                Check(back.LogitBias.Count == 1 && back.LogitBias[42] == 30f, "logit bias read back");
            }
        }

        private static void EmbedderRewindAndSetConfig()
        {
            using (var g = NewGen(target, draft, NoEos(12)))
            {
                g.SetTokenizer(tokenizer);
                uint[] full = RunAll(g);
                g.Rewind(prompt.Length + 4);
                CheckTokens(g.Tokens, Prefix(full, prompt.Length + 4), "after rewind");
                CheckEq(g.FinishReason, FinishReason.None, "finish reason cleared");
                CheckTokens(RunAll(g), full, "continued after rewind");
                CheckCode(() => g.Rewind(full.Length + 1), Status.InvalidArgument, "rewind past the end");
                GenerationOptions c = g.GetConfig();
                CheckEq(c.MaxNewTokens, (uint?)12u, "read back max_new_tokens");
                uint gamma = c.Gamma.Value;
                c.MaxNewTokens = 3;
                c.Seed = 9;
                c.StopTokens.Add(new uint[] { 7, 8 });
                c.StopTexts.Add("zz");
                g.SetConfig(c);
                GenerationOptions back = g.GetConfig();
                CheckEq(back.MaxNewTokens, (uint?)3u, "max_new_tokens set");
                CheckEq(back.Seed, (ulong?)9ul, "seed set");
                CheckEq(back.Gamma, (uint?)gamma, "gamma kept");
                Check(back.EosIds != null && back.EosIds.Length == 0, "no EOS kept");
                Check(back.StopTokens.Count == 1 && SameTokens(back.StopTokens[0], new uint[] { 7, 8 }), "stop tokens");
                Check(back.StopTexts.Count == 1 && back.StopTexts[0] == "zz", "stop texts");
                g.Append(new uint[] { prompt[0], prompt[1] });
                CheckEq(RunAll(g).Length, full.Length + 2 + 3, "second turn");
                var bad = g.GetConfig(); bad.Gamma = 0;
                CheckCode(() => g.SetConfig(bad), Status.InvalidArgument, "bad settings");
                CheckEq(g.GetConfig().Gamma, (uint?)gamma, "a failed SetConfig changes nothing");
            }
            using (var g = new Generator(target))
            {
                Check(g.GetConfig().EosIds == null, "the model's EOS ids by default");
            }
        }

        private static void EmbedderForkAfterPrefill()
        {
            uint[] want;
            using (var fresh = NewGen(target, draft, NoEos(10))) want = RunAll(fresh);
            using (var src = NewGen(target, draft, NoEos(10)))
            {
                src.Prefill();
                using (var f = src.Fork(prompt.Length)) CheckTokens(RunAll(f), want, "fork");
                using (var f = src.Fork(prompt.Length, NoEos(3))) CheckTokens(RunAll(f), Prefix(want, prompt.Length + 3), "fork with options");
                CheckCode(() => src.Fork(prompt.Length + 1), Status.InvalidArgument, "fork past the end");
            }
        }

        private static long JsonInt(string json, string key)
        {
            Match m = Regex.Match(json, "\"" + key + "\"\\s*:\\s*(-?\\d+)");
            return m.Success ? long.Parse(m.Groups[1].Value) : -1;
        }

        private static void EmbedderModelMetadata()
        {
            string dir = Path.Combine(fixtures, "..", "demo", "target");
            string cfg = File.ReadAllText(Path.Combine(dir, "config.json"));
            using (var m = Model.Load(dir))
            {
                long layers = JsonInt(cfg, "num_hidden_layers"), kv = JsonInt(cfg, "num_key_value_heads"), head = JsonInt(cfg, "head_dim");
                Check(cfg.Contains("\"" + m.Architecture + "\""), "architecture " + m.Architecture);
                CheckEq(m.Architecture, "LlamaForCausalLM", "architecture");
                CheckEq((long)m.LayerCount, layers, "layers");
                CheckEq((long)m.KvHeadCount, kv, "kv heads");
                CheckEq((long)m.HeadSize, head, "head size");
                CheckEq((long)m.ContextLimit, JsonInt(cfg, "max_position_embeddings"), "context limit");
                CheckEq(m.ContextLimitSource, ContextLimitSource.Config, "context limit source");
                CheckEq(m.KvBytesPerToken, 2 * layers * kv * head * 4, "kv bytes per token");
                CheckEq(m.KvDtype, "float32", "kv dtype");
                CheckEq(m.Device, "cpu", "device");
                CheckEq(m.BosId, (uint?)(uint)JsonInt(cfg, "bos_token_id"), "bos id");
                Check(Array.IndexOf(m.EosIds, (uint)JsonInt(cfg, "eos_token_id")) >= 0, "eos ids");
                uint? pad = m.PadId;
                Check(pad == null || pad.Value < m.VocabSize, "pad id");
            }
        }

        private static void EmbedderLoadFromMemory()
        {
            byte[] onnx = File.ReadAllBytes(Path.Combine(Fixture("llama"), "model.onnx"));
            string cfg = File.ReadAllText(Path.Combine(Fixture("llama"), "config.json"));
            using (var m = Model.LoadFromMemory(onnx, cfg))
            {
                CheckEq(m.VocabSize, target.VocabSize, "vocab");
                CheckEq(m.ContextLimit, target.ContextLimit, "context limit");
                CheckEq(m.Architecture, target.Architecture, "architecture");
                using (var a = NewGen(m, null, NoEos(8)))
                using (var b = NewGen(target, null, NoEos(8)))
                {
                    CheckTokens(RunAll(a), RunAll(b), "same output as the folder's model");
                }
            }
            Check(Catch(() => Model.LoadFromMemory(new byte[0], cfg)) != null, "empty data");
            CheckCode(() => Model.LoadFromMemory(onnx, "{not json"), Status.Io, "bad JSON");
        }

        private static void EmbedderLogCallback()
        {
            LogLevel old = Logging.Level;
            var messages = new List<string>();
            Logging.SetCallback((level, source, message) =>
            {
                lock (messages) messages.Add(source + ": " + message);
                throw new InvalidOperationException("a throwing log handler must not crash the process");
            });
            try
            {
                Logging.Level = LogLevel.Verbose;
                CheckEq(Logging.Level, LogLevel.Verbose, "level");
                CheckCode(() => Logging.Level = (LogLevel)99, Status.InvalidArgument, "unknown level");
                using (Model.Load(Fixture("draft"))) { }
            }
            finally
            {
                Logging.Level = old;
                Logging.SetCallback(null);
            }
            lock (messages)
            {
                Check(messages.Exists(s => s.StartsWith("specdec: ", StringComparison.Ordinal)), "a specdec message among " + messages.Count);
            }
        }

        // ---------------------------------------------------------------------------------------
        // Engine

        // Step until every sequence in ids is done, polling each after every step.
        private static PollResult[] Drain(Engine engine, ulong[] ids)
        {
            var toks = new List<uint>[ids.Length];
            var last = new PollResult[ids.Length];
            for (int i = 0; i < ids.Length; i++) toks[i] = new List<uint>();
            for (int round = 0; round < 10000; round++)
            {
                int active = engine.Step();
                bool all = true;
                for (int i = 0; i < ids.Length; i++)
                {
                    if (last[i] != null && last[i].Done) continue;
                    PollResult r = engine.Poll(ids[i]);
                    toks[i].AddRange(r.Tokens);
                    last[i] = r;
                    all = all && r.Done;
                }
                if (active == 0 && all) break;
            }
            for (int i = 0; i < ids.Length; i++) last[i].Tokens = toks[i].ToArray();
            return last;
        }

        private static uint[] GenerateAll(Model draftModel, uint[] ids, GenerationOptions options)
        {
            using (var g = new Generator(target, draftModel, options))
            {
                g.Append(ids);
                g.Generate();
                return Generated(g, ids.Length);
            }
        }

        private static void EngineGreedyEqualsGenerator()
        {
            foreach (Model d in new[] { draft, null })
            {
                string what = d == null ? "target-only" : "speculative";
                var options = new GenerationOptions { Gamma = 3, MaxNewTokens = 40 };
                uint[] want = GenerateAll(d, prompt, options);
                using (var engine = new Engine(target, d, new EngineOptions { MaxBatch = 4 }))
                {
                    engine.SetTokenizer(tokenizer);
                    uint[] other = tokenizer.Encode("The cat");
                    var otherOptions = new GenerationOptions { MaxNewTokens = 20 };
                    var ids = new ulong[] { engine.Add(prompt, options), engine.Add(prompt, options), engine.Add(prompt, options), engine.Add(other, otherOptions) };
                    PollResult[] got = Drain(engine, ids);
                    for (int i = 0; i < 3; i++)
                    {
                        CheckTokens(got[i].Tokens, want, what + " sequence " + i);
                        CheckEq(got[i].State, SeqState.Finished, what + " state");
                        Check(got[i].Error == null, what + " no error");
                    }
                    CheckTokens(got[3].Tokens, GenerateAll(d, other, otherOptions), what + " other prompt");
                    CheckEq(engine.SeqStats(ids[0]).NewTokens, (ulong)want.Length, what + " seq stats");
                    EngineStats st = engine.Stats();
                    Check(st.Rounds > 0, what + " rounds");
                    Check(st.NewTokens >= (ulong)(3 * want.Length), what + " new tokens");
                    CheckEq(st.Active, 0UL, what + " active");
                    CheckEq(st.Waiting, 0UL, what + " waiting");
                    if (d != null) Check(st.Drafted > 0 && st.AcceptanceRate > 0, what + " drafted");
                    PollResult again = engine.Poll(ids[0]);
                    CheckEq(again.Tokens.Length, 0, what + " second poll");
                    foreach (ulong id in ids) engine.Remove(id);
                    Check(Catch(() => engine.Poll(ids[0])) != null, what + " poll after remove");
                }
            }
        }

        private static void EngineCancelRemoveAndThreads()
        {
            using (var engine = new Engine(target, draft, new EngineOptions { MaxBatch = 2 }))
            {
                var longOptions = new GenerationOptions { MaxNewTokens = 200, EosIds = new uint[0] };
                ulong a = engine.Add(prompt, longOptions);
                ulong b = engine.Add(prompt, longOptions);
                ulong c = engine.Add(prompt, new GenerationOptions { MaxNewTokens = 8 });
                engine.Step();
                CheckEq(engine.Poll(c).State, SeqState.Waiting, "third sequence waits");
                engine.Cancel(a);
                engine.Remove(b);
                PollResult[] got = Drain(engine, new[] { a, c });
                CheckEq(got[0].State, SeqState.Finished, "cancelled state");
                CheckEq(got[0].Reason, FinishReason.Cancelled, "cancelled reason");
                Check(got[0].Tokens.Length < 200, "cancelled early");
                CheckEq(got[1].State, SeqState.Finished, "waiting one ran");
                Check(got[1].Tokens.Length > 0, "waiting one generated");
                Check(Catch(() => engine.Cancel(987654321)) != null, "cancel of an unknown id");
                engine.Remove(a);
                engine.Remove(c);

                // One thread steps while four others add and poll their own sequences.
                var options = new GenerationOptions { MaxNewTokens = 24 };
                uint[] want = GenerateAll(draft, prompt, options);
                bool stop = false;
                var stepper = new Thread(() =>
                {
                    while (!Volatile.Read(ref stop))
                    {
                        try
                        {
                            if (engine.Step() == 0) Thread.Sleep(1);
                        }
                        catch (SpecdecException e)
                        {
                            if (e.Code != Status.Busy) throw;
                        }
                    }
                });
                stepper.Start();
                int equal = 0;
                var clients = new List<Thread>();
                for (int t = 0; t < 4; t++)
                {
                    var th = new Thread(() =>
                    {
                        ulong id = engine.Add(prompt, options);
                        var toks = new List<uint>();
                        var watch = Stopwatch.StartNew();
                        while (watch.Elapsed.TotalSeconds < 60)
                        {
                            PollResult r = engine.Poll(id);
                            toks.AddRange(r.Tokens);
                            if (r.Done) break;
                            Thread.Sleep(1);
                        }
                        if (SameTokens(toks.ToArray(), want)) Interlocked.Increment(ref equal);
                        engine.Remove(id);
                    });
                    th.Start();
                    clients.Add(th);
                }
                foreach (Thread th in clients) th.Join();
                Volatile.Write(ref stop, true);
                stepper.Join();
                CheckEq(equal, 4, "concurrent sequences equal the generator's");
            }
        }

        private static void EngineErrors()
        {
            CheckCode(() => new Engine(target, null, new EngineOptions { MaxBatch = 0 }).Dispose(), Status.InvalidArgument, "max batch 0");
            var engine = new Engine(target, null, new EngineOptions { Admission = Admission.Wait, KvMemoryLimit = 0 });
            CheckCode(() => engine.Add(new uint[] { 1u << 30 }), Status.TokenOutOfRange, "token out of range");
            Check(Catch(() => engine.Poll(424242)) != null, "poll of an unknown id");
            Check(Catch(() => engine.SeqStats(424242)) != null, "seq stats of an unknown id");
            engine.Dispose();
            engine.Dispose();
            bool disposed = false;
            try
            {
                engine.Step();
            }
            catch (ObjectDisposedException)
            {
                disposed = true;
            }
            Check(disposed, "Step after Dispose throws ObjectDisposedException");
        }

        public static int Main(string[] args)
        {
            if (args.Length > 0) fixtures = args[0];
            Console.WriteLine("specdec " + Library.Version + " (ABI " + Library.LoadedAbiVersion + "), fixtures " + fixtures);
            try
            {
                target = Model.Load(Fixture("llama"));
                draft = Model.Load(Fixture("draft"));
                tokenizer = Tokenizer.Load(Fixture("llama"));
                prompt = tokenizer.Encode("Once upon a time, there was a little");
                baseline = RunGreedy(null, 4, NewTokens);
                baselineLong = RunGreedy(null, 4, LongTokens);
            }
            catch (Exception e)
            {
                Console.Error.WriteLine("setup failed: " + e);
                Console.WriteLine("0 passed, 1 failed");
                return 1;
            }

            var tests = new List<KeyValuePair<string, Action>>
            {
                new KeyValuePair<string, Action>("version_and_abi", VersionAndAbi),
                new KeyValuePair<string, Action>("engine_greedy_equals_generator", EngineGreedyEqualsGenerator),
                new KeyValuePair<string, Action>("engine_cancel_remove_and_threads", EngineCancelRemoveAndThreads),
                new KeyValuePair<string, Action>("engine_errors", EngineErrors),
                new KeyValuePair<string, Action>("load_models", LoadModels),
                new KeyValuePair<string, Action>("greedy_exactness_gamma_1_to_8", GreedyExactnessGamma1To8),
                new KeyValuePair<string, Action>("same_tokens_as_native", SameTokensAsNative),
                new KeyValuePair<string, Action>("step_equals_generate", StepEqualsGenerate),
                new KeyValuePair<string, Action>("errors", Errors),
                new KeyValuePair<string, Action>("cancellation", CancelFromTimerMidGeneration),
                new KeyValuePair<string, Action>("callback_exception_propagates", CallbackExceptionPropagates),
                new KeyValuePair<string, Action>("tokenizer_round_trip", TokenizerRoundTrip),
                new KeyValuePair<string, Action>("chat_templates_match_transformers", ChatTemplatesMatchTransformers),
                new KeyValuePair<string, Action>("set_chat_template_overrides", SetChatTemplateOverrides),
                new KeyValuePair<string, Action>("chat_template_buffer_retry", ChatTemplateBufferRetry),
                new KeyValuePair<string, Action>("special_tokens_match_transformers", SpecialTokensMatchTransformers),
                new KeyValuePair<string, Action>("token_id_lookup_matches_transformers", TokenIdLookupMatchesTransformers),
                new KeyValuePair<string, Action>("streaming_equals_one_shot_decode", StreamingEqualsOneShotDecode),
                new KeyValuePair<string, Action>("stats_are_sane", StatsAreSane),
                new KeyValuePair<string, Action>("stop_tokens_and_eos", StopTokensAndEos),
                new KeyValuePair<string, Action>("dispose_twice_is_safe", DisposeTwiceIsSafe),
                new KeyValuePair<string, Action>("gc_during_long_generate", GcDuringLongGenerate),
                new KeyValuePair<string, Action>("model_shared_across_threads", ModelSharedAcrossThreads),
                new KeyValuePair<string, Action>("sampling_is_reproducible", SamplingIsReproducible),
                new KeyValuePair<string, Action>("drafters_keep_greedy_exact", DraftersKeepGreedyExact),
                new KeyValuePair<string, Action>("drafter_errors", DrafterErrors),
                new KeyValuePair<string, Action>("callback_drafter_failures", CallbackDrafterFailures),
                new KeyValuePair<string, Action>("callback_drafter_lifetime_and_threads", CallbackDrafterLifetimeAndThreads),
                new KeyValuePair<string, Action>("draft_policies", DraftPolicies),
                new KeyValuePair<string, Action>("kv_memory_limit", KvMemoryLimit),
                new KeyValuePair<string, Action>("model_variants", ModelVariants),
                new KeyValuePair<string, Action>("model_session_options", ModelSessionOptions),
                new KeyValuePair<string, Action>("clear_cancel", ClearCancel),
                new KeyValuePair<string, Action>("generate_async", GenerateAsyncEqualsGenerate),
                new KeyValuePair<string, Action>("generate_stream_async_and_cancellation", GenerateStreamAsyncAndCancellation),
                new KeyValuePair<string, Action>("embedder_logprobs_match_target_only", EmbedderLogprobsMatchTargetOnly),
                new KeyValuePair<string, Action>("embedder_finish_length", EmbedderFinishLength),
                new KeyValuePair<string, Action>("embedder_rewind_and_set_config", EmbedderRewindAndSetConfig),
                new KeyValuePair<string, Action>("penalties_and_logit_bias", PenaltiesAndLogitBias),
                new KeyValuePair<string, Action>("embedder_fork_after_prefill", EmbedderForkAfterPrefill),
                new KeyValuePair<string, Action>("embedder_model_metadata", EmbedderModelMetadata),
                new KeyValuePair<string, Action>("embedder_load_from_memory", EmbedderLoadFromMemory),
                new KeyValuePair<string, Action>("embedder_log_callback", EmbedderLogCallback),
            };

            int passed = 0, failed = 0;
            foreach (var test in tests)
            {
                checkFailures = 0;
                var sw = Stopwatch.StartNew();
                try
                {
                    test.Value();
                }
                catch (Exception e)
                {
                    Console.Error.WriteLine("    unexpected exception: " + e);
                    checkFailures++;
                }
                bool ok = checkFailures == 0;
                Console.WriteLine((ok ? "PASS " : "FAIL ") + test.Key + " (" + sw.ElapsedMilliseconds + " ms)");
                if (ok) passed++; else failed++;
            }

            tokenizer.Dispose();
            draft.Dispose();
            target.Dispose();
            Console.WriteLine(passed + " passed, " + failed + " failed");
            return failed == 0 ? 0 : 1;
        }
    }
}
