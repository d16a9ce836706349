// Command example streams speculative generation with the specdec Go binding.
//
//	go run . -target ../../models/demo/target -draft ../../models/demo/draft -prompt "def main():" -max 64
//	go run . -drafter ngram -policy auto        (n-gram prompt lookup, the auto draft-length policy)
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
	drafter := flag.String("drafter", "model", "draft source: model (the -draft model), ngram, unigram or bigram (counts learnt from the sequence)")
	policy := flag.String("policy", "fixed", "draft-length policy: fixed, heuristic or auto")
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
	settings := []specdec.GenerateOption{specdec.WithGamma(*gamma), specdec.WithMaxNewTokens(*maxNew),
		specdec.WithTemperature(float32(*temperature)), specdec.WithSeed(*seed)}
	switch *policy {
	case "fixed":
		settings = append(settings, specdec.WithDraftPolicy(specdec.DraftPolicyFixed))
	case "heuristic":
		settings = append(settings, specdec.WithDraftPolicy(specdec.DraftPolicyHeuristic))
	case "auto":
		settings = append(settings, specdec.WithDraftPolicy(specdec.DraftPolicyAuto))
	default:
		fmt.Fprintf(os.Stderr, "example: unknown -policy %q\n", *policy)
		os.Exit(2)
	}
	if err := run(*target, *draft, *drafter, *prompt, settings); err != nil {
		fmt.Fprintln(os.Stderr, "example:", err)
		if errors.Is(err, specdec.ErrCancelled) {
			os.Exit(130)
		}
		os.Exit(1)
	}
}

// newDrafter makes the draft source named by -drafter (nil: target-only decoding).
func newDrafter(kind, draftPath string) (*specdec.Drafter, error) {
	switch kind {
	case "model":
		if draftPath == "none" {
			return nil, nil
		}
		draft, err := specdec.LoadModel(draftPath)
		if err != nil {
			return nil, fmt.Errorf("loading the draft: %w", err)
		}
		defer draft.Close() // the drafter keeps the model alive
		return specdec.NewModelDrafter(draft)
	case "ngram":
		return specdec.NewNGramDrafter(2, 4, 8)
	case "unigram":
		return specdec.NewCountsDrafter(specdec.Unigram, "")
	case "bigram":
		return specdec.NewCountsDrafter(specdec.Bigram, "")
	}
	return nil, fmt.Errorf("unknown -drafter %q", kind)
}

func run(targetPath, draftPath, drafterKind, prompt string, settings []specdec.GenerateOption) error {
	target, err := specdec.LoadModel(targetPath)
	if err != nil {
		return fmt.Errorf("loading the target: %w", err)
	}
	defer target.Close()
	drafter, err := newDrafter(drafterKind, draftPath)
	if err != nil {
		return err
	}
	defer drafter.Close()
	tok, err := specdec.LoadTokenizer(targetPath)
	if err != nil {
		return fmt.Errorf("loading the tokenizer: %w", err)
	}
	defer tok.Close()

	ids, err := tok.Encode(prompt)
	if err != nil {
		return err
	}
	gen, err := specdec.NewGeneratorWithDrafter(target, drafter, settings...)
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
	fmt.Fprintf(os.Stderr, "acceptance rate %.1f%% (%d of %d drafted; %.1f%% per verified position), %.1f tokens/s, %v\n",
		100*s.AcceptanceRate, s.Accepted, s.Drafted, 100*s.Alpha, float64(s.NewTokens)/s.TotalTime.Seconds(), s.TotalTime)
	return err
}
