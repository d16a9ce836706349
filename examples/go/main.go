// Command example streams speculative generation with the specdec Go binding.
//
//	go run . -target ../../models/demo/target -draft ../../models/demo/draft -prompt "def main():" -max 64
//
// The continuation is printed to stdout as it is generated (whole UTF-8 characters, through the
// library's stream decoder); statistics go to stderr. Ctrl-C cancels the generation cleanly.
// Without -target/-draft it uses models/demo/{target,draft} below the working directory, or the
// test fixtures models/fixtures/{llama,draft} when the demo models are not there.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"

	"github.com/specdec/specdec/bindings/go/specdec"
)

func isDir(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}

func main() {
	target := flag.String("target", "", "target model folder (default models/demo/target)")
	draft := flag.String("draft", "", "draft model folder (default models/demo/draft); \"none\" for target-only decoding")
	prompt := flag.String("prompt", "import os\nimport sys\n\n\ndef main(argv=None):\n", "prompt text")
	maxNew := flag.Int("max", 64, "most new tokens")
	gamma := flag.Int("gamma", 4, "draft tokens per iteration")
	temperature := flag.Float64("temperature", 0, "sampling temperature (0: greedy)")
	seed := flag.Uint64("seed", 0, "sampling seed")
	flag.Parse()

	if *target == "" && *draft == "" && !isDir(filepath.Join("models", "demo", "target")) {
		fmt.Fprintln(os.Stderr, "example: models/demo/target not found, using the test fixtures")
		*target, *draft = filepath.Join("models", "fixtures", "llama"), filepath.Join("models", "fixtures", "draft")
	}
	if *target == "" {
		*target = filepath.Join("models", "demo", "target")
	}
	if *draft == "" {
		*draft = filepath.Join("models", "demo", "draft")
	}
	if err := run(*target, *draft, *prompt, *maxNew, *gamma, float32(*temperature), *seed); err != nil {
		fmt.Fprintln(os.Stderr, "example:", err)
		if errors.Is(err, specdec.ErrCancelled) {
			os.Exit(130)
		}
		os.Exit(1)
	}
}

func run(targetPath, draftPath, prompt string, maxNew, gamma int, temperature float32, seed uint64) error {
	target, err := specdec.LoadModel(targetPath)
	if err != nil {
		return fmt.Errorf("loading the target: %w", err)
	}
	defer target.Close()
	var draft *specdec.Model
	if draftPath != "none" {
		if draft, err = specdec.LoadModel(draftPath); err != nil {
			return fmt.Errorf("loading the draft: %w", err)
		}
		defer draft.Close()
	}
	tok, err := specdec.LoadTokenizer(targetPath)
	if err != nil {
		return fmt.Errorf("loading the tokenizer: %w", err)
	}
	defer tok.Close()

	ids, err := tok.Encode(prompt)
	if err != nil {
		return err
	}
	gen, err := specdec.NewGenerator(target, draft,
		specdec.WithGamma(gamma), specdec.WithMaxNewTokens(maxNew),
		specdec.WithTemperature(temperature), specdec.WithSeed(seed))
	if err != nil {
		return err
	}
	defer gen.Close()
	if err := gen.Append(ids); err != nil {
		return err
	}

	// Ctrl-C cancels the context, which interrupts the generation within one iteration.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	fmt.Print(prompt)
	reason, err := gen.GenerateText(ctx, tok, func(text string) bool {
		fmt.Print(text)
		return true
	})
	fmt.Println()
	s := gen.Stats()
	fmt.Fprintf(os.Stderr, "\n%d new tokens in %d rounds (%.2f tokens per target call), finished: %v\n",
		s.NewTokens, s.Rounds, s.TokensPerTargetCall, reason)
	fmt.Fprintf(os.Stderr, "acceptance rate %.1f%% (%d of %d drafted), %.1f tokens/s, %v\n",
		100*s.AcceptanceRate, s.Accepted, s.Drafted, float64(s.NewTokens)/s.TotalTime.Seconds(), s.TotalTime)
	return err
}
