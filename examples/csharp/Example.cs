// Example.cs: stream text generated speculatively with the C# binding, then print the draft's
// acceptance rate.
//
//   mono Example.exe [TARGET_DIR] [DRAFT_DIR] [PROMPT] [MAX_NEW_TOKENS]
//   dotnet run --project examples/csharp/Example.csproj -- [TARGET_DIR] [DRAFT_DIR] [PROMPT] [MAX_NEW_TOKENS]
//
// Defaults: models/demo/target, models/demo/draft, "Once upon a time", 64. The tokenizer is the
// target folder's tokenizer.json. Ctrl+C cancels the generation cleanly.

using System;
using System.Threading;
using Specdec;

namespace Specdec.Examples
{
    public static class ExampleProgram
    {
        public static int Main(string[] args)
        {
            string targetPath = args.Length > 0 ? args[0] : "models/demo/target";
            string draftPath = args.Length > 1 ? args[1] : "models/demo/draft";
            string prompt = args.Length > 2 ? args[2] : "Once upon a time";
            uint maxNewTokens = args.Length > 3 ? uint.Parse(args[3]) : 64;

            using (var cts = new CancellationTokenSource())
            {
                Console.CancelKeyPress += (sender, e) =>
                {
                    e.Cancel = true; // let the generation stop at its next iteration
                    cts.Cancel();
                };
                try
                {
                    using (Model target = Model.Load(targetPath))
                    using (Model draft = Model.Load(draftPath))
                    using (Tokenizer tokenizer = Tokenizer.Load(targetPath))
                    using (var generator = new Generator(target, draft,
                               new GenerationOptions { Gamma = 4, MaxNewTokens = maxNewTokens }))
                    {
                        generator.Append(tokenizer.Encode(prompt));
                        Console.Write(prompt);
                        foreach (string piece in generator.GenerateText(tokenizer, cts.Token))
                        {
                            Console.Write(piece);
                        }
                        Console.WriteLine();

                        Stats s = generator.Stats;
                        Console.WriteLine("finish reason: {0}", generator.FinishReason);
                        Console.WriteLine("{0} tokens in {1} rounds ({2:F2} tokens per target call), {3:F3} s",
                            s.NewTokens, s.Rounds, s.TokensPerTargetCall, s.TotalSeconds);
                        Console.WriteLine("acceptance rate: {0:P1} ({1} of {2} drafted tokens accepted)",
                            s.AcceptanceRate, s.Accepted, s.Drafted);
                    }
                    return 0;
                }
                catch (OperationCanceledException)
                {
                    Console.WriteLine();
                    Console.Error.WriteLine("cancelled");
                    return 130;
                }
                catch (SpecdecException e)
                {
                    Console.Error.WriteLine("error: {0}: {1}", e.CodeName, e.Message);
                    return 1;
                }
            }
        }
    }
}
