package specdec

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// greedyRef is the target-only greedy continuation of the shared prompt: n tokens, no EOS.
func greedyRef(t *testing.T, n int) []uint32 {
	t.Helper()
	target, _, _, ids := setup(t)
	ref, reason := generate(t, target, nil, ids, WithMaxNewTokens(n), WithNoEOS())
	if len(ref) != n || reason != FinishMaxTokens {
		t.Fatalf("target-only reference: %d tokens, %v", len(ref), reason)
	}
	return ref
}

// generateWith runs one generation from the prompt with a drafter and returns the generated tokens
// and the stats.
func generateWith(t *testing.T, d *Drafter, ids []uint32, opts ...GenerateOption) ([]uint32, Stats) {
	t.Helper()
	target, _, _, _ := setup(t)
	g, err := NewGeneratorWithDrafter(target, d, opts...)
	if err != nil {
		t.Fatalf("NewGeneratorWithDrafter: %v", err)
	}
	defer g.Close()
	if err := g.Append(ids); err != nil {
		t.Fatalf("Append: %v", err)
	}
	if _, err := g.Generate(context.Background(), nil); err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return g.Tokens()[len(ids):], g.Stats()
}

// oracle is a DraftCallback proposing the target's own greedy continuation (ref) of prompt.
func oracle(prompt, ref []uint32) DraftFunc {
	return func(req *DraftRequest) (int, error) {
		if len(req.Tokens) < len(prompt) || !slices.Equal(req.Tokens[:len(prompt)], prompt) {
			return 0, fmt.Errorf("the sequence %v does not start with the prompt", req.Tokens)
		}
		pos := len(req.Tokens) - len(prompt)
		if pos > len(ref) {
			return 0, nil
		}
		n := copy(req.Proposals, ref[pos:])
		for i := 0; i < n && req.Probs != nil; i++ {
			row := req.ProbRow(i)
			clear(row)
			row[req.Proposals[i]] = 1
		}
		return n, nil
	}
}

// writeCounts writes a count file of ref, as `specdec counts` does: unigram lines, and for a bigram
// drafter the bigram lines too (a bigram drafter backs off to the unigram counts).
func writeCounts(t *testing.T, ref []uint32, order CountsOrder) string {
	t.Helper()
	var sb strings.Builder
	sb.WriteString("# counts of the reference continuation\n")
	unigrams := map[uint32]int{}
	for _, id := range ref {
		unigrams[id]++
	}
	for id, c := range unigrams {
		fmt.Fprintf(&sb, "%d %d\n", id, c)
	}
	if order == Bigram {
		bigrams := map[[2]uint32]int{}
		for i := 1; i < len(ref); i++ {
			bigrams[[2]uint32{ref[i-1], ref[i]}]++
		}
		for k, c := range bigrams {
			fmt.Fprintf(&sb, "%d %d %d\n", k[0], k[1], c)
		}
	}
	path := filepath.Join(t.TempDir(), fmt.Sprintf("counts%d.txt", order))
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// Every draft source keeps greedy output equal to target-only greedy output.
func TestDrafters(t *testing.T) {
	_, draft, _, ids := setup(t)
	const n = 48
	ref := greedyRef(t, n)
	opts := []GenerateOption{WithMaxNewTokens(n), WithNoEOS(), WithGamma(4)}

	type source struct {
		name string
		make func() (*Drafter, error)
	}
	sources := []source{
		{"model", func() (*Drafter, error) { return NewModelDrafter(draft) }},
		{"ngram 1-4", func() (*Drafter, error) { return NewNGramDrafter(1, 4, 8) }},
		{"ngram 2-2", func() (*Drafter, error) { return NewNGramDrafter(2, 2, 3) }},
		{"unigram learnt", func() (*Drafter, error) { return NewCountsDrafter(Unigram, "") }},
		{"bigram learnt", func() (*Drafter, error) { return NewCountsDrafter(Bigram, "") }},
		{"unigram file", func() (*Drafter, error) { return NewCountsDrafter(Unigram, writeCounts(t, ref, Unigram)) }},
		{"bigram file", func() (*Drafter, error) { return NewCountsDrafter(Bigram, writeCounts(t, ref, Bigram)) }},
		{"callback", func() (*Drafter, error) { return NewCallbackDrafter(oracle(ids, ref), false) }},
		{"callback with probabilities", func() (*Drafter, error) { return NewCallbackDrafter(oracle(ids, ref), true) }},
	}
	for _, src := range sources {
		t.Run(src.name, func(t *testing.T) {
			d, err := src.make()
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			got, s := generateWith(t, d, ids, opts...)
			if !slices.Equal(got, ref) {
				t.Fatalf("output differs from target-only greedy\n got %v\nwant %v", got, ref)
			}
			if s.NewTokens != n || s.Accepted > s.Drafted || s.Alpha < 0 || s.Alpha > 1 {
				t.Fatalf("implausible stats %+v", s)
			}
			if s.Drafted == 0 && src.name != "unigram learnt" {
				t.Fatalf("%s: nothing drafted: %+v", src.name, s)
			}
			if strings.HasPrefix(src.name, "callback") {
				// The oracle proposes exactly the target's continuation.
				if s.AcceptanceRate < 0.99 || s.Rejected != 0 || s.Alpha < 0.99 || s.TokensPerTargetCall < 3 {
					t.Fatalf("the oracle's proposals were not all accepted: %+v", s)
				}
			}
		})
	}

	// The same model drafter as NewGenerator(target, draft).
	md, err := NewModelDrafter(draft)
	if err != nil {
		t.Fatal(err)
	}
	target, _, _, _ := setup(t)
	want, _ := generate(t, target, draft, ids, WithMaxNewTokens(n), WithNoEOS(), WithTemperature(1), WithSeed(5))
	got, _ := generateWith(t, md, ids, WithMaxNewTokens(n), WithNoEOS(), WithTemperature(1), WithSeed(5))
	if !slices.Equal(got, want) {
		t.Fatalf("sampled: model drafter %v, NewGenerator %v", got, want)
	}
	// A generator keeps working after its drafter is closed, and a closed drafter is refused.
	g, err := NewGeneratorWithDrafter(target, md, WithMaxNewTokens(8))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	md.Close()
	md.Close()
	if _, err := NewGeneratorWithDrafter(target, md); !errors.Is(err, ErrNullParameter) {
		t.Fatalf("closed drafter: %v", err)
	}
	g.Append(ids)
	if _, err := g.Generate(context.Background(), nil); err != nil {
		t.Fatalf("generating after the drafter's Close: %v", err)
	}
	// A nil drafter is target-only decoding.
	if got, _ := generateWith(t, nil, ids, opts...); !slices.Equal(got, ref) {
		t.Fatalf("nil drafter: %v", got)
	}
}

func TestDrafterErrors(t *testing.T) {
	target, _, _, _ := setup(t)
	cases := []struct {
		name string
		make func() (*Drafter, error)
		want error
	}{
		{"model nil", func() (*Drafter, error) { return NewModelDrafter(nil) }, ErrNullParameter},
		{"ngram 0", func() (*Drafter, error) { return NewNGramDrafter(0, 2, 4) }, ErrInvalidArgument},
		{"ngram min > max", func() (*Drafter, error) { return NewNGramDrafter(3, 2, 4) }, ErrInvalidArgument},
		{"ngram proposal 65", func() (*Drafter, error) { return NewNGramDrafter(1, 2, MaxGamma+1) }, ErrInvalidArgument},
		{"ngram negative", func() (*Drafter, error) { return NewNGramDrafter(-1, 2, 4) }, ErrInvalidArgument},
		{"counts order 3", func() (*Drafter, error) { return NewCountsDrafter(3, "") }, ErrInvalidArgument},
		{"counts file missing", func() (*Drafter, error) { return NewCountsDrafter(Unigram, "/no/such/counts.txt") }, ErrIO},
		{"counts path NUL", func() (*Drafter, error) { return NewCountsDrafter(Unigram, "a\x00b") }, ErrInvalidArgument},
		{"callback nil", func() (*Drafter, error) { return NewCallbackDrafter(nil, false) }, ErrNullParameter},
	}
	for _, c := range cases {
		d, err := c.make()
		if d != nil || !errors.Is(err, c.want) {
			t.Errorf("%s: %v, %v; want %v", c.name, d, err, c.want)
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.txt")
	os.WriteFile(bad, []byte("5 10\nseven 3\n"), 0o644)
	if _, err := NewCountsDrafter(Unigram, bad); !errors.Is(err, ErrIO) || !strings.Contains(err.Error(), "bad.txt") {
		t.Errorf("malformed counts file: %v", err)
	}
	// A draft model with another vocabulary is refused when the generator is made.
	other, err := LoadModel(fixture("vocab600"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	d, err := NewModelDrafter(other)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := NewGeneratorWithDrafter(target, d); !errors.Is(err, ErrVocabMismatch) {
		t.Errorf("vocab600 drafter: %v", err)
	}
	// Generator options are checked as for NewGenerator.
	if _, err := NewGeneratorWithDrafter(target, d, WithGamma(0)); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("gamma 0: %v", err)
	}
}

var errFlaky = errors.New("flaky drafter")

// A failing callback fails its round with ErrCallback (wrapping its own error); the generator
// stays usable and exact.
func TestCallbackDrafterFailures(t *testing.T) {
	target, _, _, ids := setup(t)
	const n = 40
	ref := greedyRef(t, n)
	good := oracle(ids, ref)

	var calls int
	var g *Generator
	var mode string
	cb := DraftFunc(func(req *DraftRequest) (int, error) {
		calls++
		if calls != 3 {
			return good(req)
		}
		switch mode {
		case "error":
			return 0, errFlaky
		case "negative":
			return -5, nil
		case "too many":
			return len(req.Proposals) + 1, nil
		case "out of range":
			req.Proposals[0] = 1 << 20
			return 1, nil
		case "panic":
			panic(errFlaky)
		case "reentrant":
			// The generator is held by the native call that runs this callback.
			if _, err := g.Step(); !errors.Is(err, ErrBusy) {
				t.Errorf("Step from the draft callback = %v, want ErrBusy", err)
			}
			if err := g.Close(); !errors.Is(err, ErrBusy) {
				t.Errorf("Close from the draft callback = %v, want ErrBusy", err)
			}
			if err := g.Append(nil); !errors.Is(err, ErrBusy) {
				t.Errorf("Append from the draft callback = %v, want ErrBusy", err)
			}
			g.Cancel() // allowed: the next iteration is cancelled
			return good(req)
		}
		return good(req)
	})
	d, err := NewCallbackDrafter(cb, false)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()

	for _, m := range []struct {
		mode string
		want error
	}{
		{"error", ErrCallback},
		{"negative", ErrCallback},
		{"too many", ErrInvalidArgument},
		{"out of range", ErrTokenOutOfRange},
		{"panic", nil},
		{"reentrant", ErrCancelled},
	} {
		t.Run(m.mode, func(t *testing.T) {
			mode, calls = m.mode, 0
			g, err = NewGeneratorWithDrafter(target, d, WithMaxNewTokens(n), WithNoEOS(), WithGamma(3))
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			if err := g.Append(ids); err != nil {
				t.Fatal(err)
			}
			var failure error
			var panicked any
			func() {
				defer func() { panicked = recover() }()
				for i := 0; i < 3 && failure == nil; i++ {
					_, failure = g.Step()
				}
			}()
			switch {
			case m.mode == "panic":
				if panicked != errFlaky {
					t.Fatalf("the callback's panic was not re-raised: %v (error %v)", panicked, failure)
				}
			case m.mode == "reentrant":
				// The callback's Cancel lands on the next iteration.
				if _, err := g.Step(); !errors.Is(err, m.want) {
					t.Fatalf("Step after the callback's Cancel = %v", err)
				}
			default:
				if panicked != nil || !errors.Is(failure, m.want) {
					t.Fatalf("third round: %v (panic %v), want %v", failure, panicked, m.want)
				}
				var e *Error
				if !errors.As(failure, &e) || e.Code != Status(m.want.(*Error).Code) {
					t.Fatalf("errors.As(*Error) on %v", failure)
				}
				if m.mode == "error" && !errors.Is(failure, errFlaky) {
					t.Fatalf("the callback's own error is not wrapped: %v", failure)
				}
			}
			// The generator goes on, exactly.
			if _, err := g.Generate(context.Background(), nil); err != nil {
				t.Fatalf("continuing after the failure: %v", err)
			}
			if got := g.Tokens()[len(ids):]; !slices.Equal(got, ref) {
				t.Fatalf("after the failure\n got %v\nwant %v", got, ref)
			}
		})
	}

	// Probabilities that are not a distribution are refused, and the generator goes on.
	bad, err := NewCallbackDrafter(DraftFunc(func(req *DraftRequest) (int, error) {
		req.Proposals[0] = 1
		clear(req.ProbRow(0)) // all zero
		return 1, nil
	}), true)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	g2, err := NewGeneratorWithDrafter(target, bad, WithMaxNewTokens(4))
	if err != nil {
		t.Fatal(err)
	}
	defer g2.Close()
	g2.Append(ids)
	if _, err := g2.Step(); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("zero probabilities: %v", err)
	}
}

// One callback drafter shared by generators on several goroutines (its callback is called
// concurrently, each generator's errors stay its own).
func TestCallbackDrafterConcurrent(t *testing.T) {
	target, _, _, ids := setup(t)
	const n = 24
	ref := greedyRef(t, n)
	good := oracle(ids, ref)
	marker := []uint32{7, 7, 7}
	if slices.Equal(ref[:3], marker) {
		t.Fatal("the reference starts with the marker")
	}
	d, err := NewCallbackDrafter(DraftFunc(func(req *DraftRequest) (int, error) {
		// Every third worker fails its first round (its prompt ends with a marker).
		if slices.Equal(req.Tokens[len(ids):], marker) {
			return 0, errFlaky
		}
		return good(req)
	}), false)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for j := 0; j < 4; j++ {
				g, err := NewGeneratorWithDrafter(target, d, WithMaxNewTokens(n), WithNoEOS())
				if err != nil {
					errs <- err
					return
				}
				if w%3 == 0 {
					g.Append(append(slices.Clone(ids), marker...))
					if _, err := g.Step(); !errors.Is(err, errFlaky) {
						errs <- fmt.Errorf("worker %d: %v, want the callback's error", w, err)
					}
				} else {
					g.Append(ids)
					if _, err := g.Generate(context.Background(), nil); err != nil {
						errs <- err
					} else if got := g.Tokens()[len(ids):]; !slices.Equal(got, ref) {
						errs <- fmt.Errorf("worker %d: %v", w, got)
					}
				}
				g.Close()
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Generators never closed: their finalizers free them and delete their callback handles.
	for i := 0; i < 3; i++ {
		g, err := NewGeneratorWithDrafter(target, d, WithMaxNewTokens(8))
		if err != nil {
			t.Fatal(err)
		}
		g.Append(ids)
		g.Step()
	}
	runtime.GC()
	runtime.GC()
}

// Every draft-length policy, and the confidence stop, keeps greedy output exact.
func TestDraftPolicies(t *testing.T) {
	_, draft, _, ids := setup(t)
	const n = 48
	ref := greedyRef(t, n)
	md, err := NewModelDrafter(draft)
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	ng, err := NewNGramDrafter(1, 4, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer ng.Close()
	for _, p := range []DraftPolicy{DraftPolicyFixed, DraftPolicyHeuristic, DraftPolicyAuto} {
		for _, d := range []*Drafter{md, ng} {
			for _, conf := range []float32{0, 0.3} {
				got, s := generateWith(t, d, ids, WithMaxNewTokens(n), WithNoEOS(), WithGamma(3), WithDraftPolicy(p), WithConfidenceStop(conf))
				if !slices.Equal(got, ref) || s.NewTokens != n {
					t.Errorf("policy %v, confidence stop %v: %v", p, conf, got)
				}
			}
		}
	}
	if DraftPolicyAuto.String() != "auto" || DraftPolicyHeuristic.String() != "heuristic" || DraftPolicy(9).String() != "DraftPolicy(9)" {
		t.Error("DraftPolicy.String")
	}
	target, _, _, _ := setup(t)
	for name, opt := range map[string]GenerateOption{
		"policy 9":             WithDraftPolicy(9),
		"confidence stop -0.1": WithConfidenceStop(-0.1),
		"confidence stop 1.5":  WithConfidenceStop(1.5),
	} {
		if _, err := NewGenerator(target, draft, opt); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
}

func TestKVMemoryLimit(t *testing.T) {
	target, draft, _, ids := setup(t)
	g, err := NewGenerator(target, draft, WithKVMemoryLimit(1024), WithMaxNewTokens(64))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.Append(ids); !errors.Is(err, ErrMemoryBudget) {
		t.Fatalf("Append under a 1 KiB budget = %v, want ErrMemoryBudget", err)
	}
	if len(g.Tokens()) != 0 {
		t.Fatal("a refused Append changed the generator")
	}
	ref := greedyRef(t, 16)
	got, _ := generate(t, target, draft, ids, WithKVMemoryLimit(1<<30), WithMaxNewTokens(16), WithNoEOS())
	if !slices.Equal(got, ref) {
		t.Fatalf("with a large budget: %v", got)
	}
}

// Model options: variants, IoBinding on the CPU, spinning, optimization levels, CUDA fallback.
func TestModelOptions(t *testing.T) {
	_, _, tok, ids := setup(t)
	community := filepath.Join(fixtures, "..", "community", "llama")
	// Without a variant a folder with several is refused, naming them.
	_, err := LoadModel(community)
	if !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("loading a folder with several variants and no choice = %v, want ErrInvalidArgument", err)
	}
	for _, v := range []string{"q4", "fp16"} {
		if !strings.Contains(err.Error(), v) {
			t.Errorf("the error %q does not name the variant %s", err, v)
		}
	}
	if _, err := LoadModel(community, WithVariant("bogus")); !errors.Is(err, ErrIO) || !strings.Contains(err.Error(), "q4") {
		t.Errorf("unknown variant: %v", err)
	}
	if _, err := LoadModel(community, WithVariant("a\x00b")); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("variant with a NUL: %v", err)
	}
	var outs [][]uint32
	for _, v := range []string{"default", "q4", "fp16"} {
		m, err := LoadModel(community, WithVariant(v))
		if err != nil {
			t.Fatalf("variant %s: %v", v, err)
		}
		if m.VocabSize() != 512 || m.CUDADevice() != -1 {
			t.Errorf("variant %s: vocab %d, CUDA device %d", v, m.VocabSize(), m.CUDADevice())
		}
		got, reason := generate(t, m, nil, ids, WithMaxNewTokens(12), WithNoEOS())
		if len(got) != 12 || reason != FinishMaxTokens {
			t.Errorf("variant %s: %v (%v)", v, got, reason)
		}
		if text, err := tok.Decode(got); err != nil || text == "" {
			t.Errorf("variant %s decodes to %q, %v", v, text, err)
		}
		outs = append(outs, got)
		m.Close()
	}
	if !slices.Equal(outs[0], outs[2]) {
		t.Logf("fp16 greedy output differs from fp32: %v vs %v", outs[2], outs[0])
	}

	// IoBinding on the CPU, spinning off, every optimization level: the same greedy output.
	ref := greedyRef(t, 32)
	for _, opts := range [][]ModelOption{
		{WithIOBinding(true)},
		{WithIOBinding(false), WithSpinning(false)},
		{WithOptimizationLevel(0)},
		{WithOptimizationLevel(1), WithSpinning(true), WithIntraThreads(1)},
		{WithOptimizationLevel(3), WithIOBinding(true), WithDevice("cpu"), WithCUDAFallback(false)},
		{WithDeviceReductions(true)},
		{WithDeviceReductions(false), WithIOBinding(true)},
	} {
		m, err := LoadModel(fixture("llama"), opts...)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := generate(t, m, nil, ids, WithMaxNewTokens(32), WithNoEOS())
		if !slices.Equal(got, ref) {
			t.Errorf("%d options: %v, want %v", len(opts), got, ref)
		}
		if m.CUDADevice() != -1 {
			t.Errorf("a CPU model reports CUDA device %d", m.CUDADevice())
		}
		m.Close()
	}
	for name, opt := range map[string]ModelOption{
		"optimization level 4":  WithOptimizationLevel(4),
		"optimization level -1": WithOptimizationLevel(-1),
	} {
		if _, err := LoadModel(fixture("llama"), opt); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: %v", name, err)
		}
	}

	// CUDA: fails loudly where it cannot run, unless the CPU fallback is allowed.
	m, err := LoadModel(fixture("draft"), WithDevice("cuda:0"))
	if err == nil {
		if m.CUDADevice() != 0 {
			t.Errorf("loaded on cuda:0 but CUDADevice() = %d", m.CUDADevice())
		}
		m.Close()
	} else if !errors.Is(err, ErrUnavailable) {
		t.Errorf("cuda:0 = %v, want ErrUnavailable", err)
	} else {
		fb, err := LoadModel(fixture("draft"), WithDevice("cuda:0"), WithCUDAFallback(true))
		if err != nil {
			t.Fatalf("cuda:0 with the CPU fallback: %v", err)
		}
		if fb.CUDADevice() != -1 {
			t.Errorf("after the fallback CUDADevice() = %d, want -1", fb.CUDADevice())
		}
		fb.Close()
	}
	var closed *Model
	if closed.CUDADevice() != -1 {
		t.Error("CUDADevice of a nil model")
	}
}

// GenerateAll (one native call) gives Generate's tokens, stops, cancels and refuses re-entry.
func TestGenerateAll(t *testing.T) {
	target, draft, _, ids := setup(t)
	ref, _ := generate(t, target, draft, ids, WithMaxNewTokens(40), WithNoEOS())
	newGen := func(opts ...GenerateOption) *Generator {
		t.Helper()
		g, err := NewGenerator(target, draft, append([]GenerateOption{WithMaxNewTokens(40), WithNoEOS()}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		if err := g.Append(ids); err != nil {
			t.Fatal(err)
		}
		return g
	}

	g := newGen()
	defer g.Close()
	var streamed []uint32
	reason, err := g.GenerateAll(context.Background(), func(toks []uint32) bool {
		streamed = append(streamed, toks...)
		return true
	})
	if err != nil || reason != FinishMaxTokens || !slices.Equal(streamed, ref) || !slices.Equal(g.Tokens()[len(ids):], ref) {
		t.Fatalf("GenerateAll = %v, %v; streamed %v, want %v", reason, err, streamed, ref)
	}
	if s := g.Stats(); s.NewTokens != 40 || s.Alpha <= 0 {
		t.Fatalf("stats %+v", s)
	}

	// Without a callback, and with a callback drafter.
	g2 := newGen()
	defer g2.Close()
	if reason, err := g2.GenerateAll(nil, nil); err != nil || reason != FinishMaxTokens || !slices.Equal(g2.Tokens()[len(ids):], ref) {
		t.Fatalf("GenerateAll(nil, nil) = %v, %v", reason, err)
	}
	tref := greedyRef(t, 40)
	cd, err := NewCallbackDrafter(oracle(ids, tref), false)
	if err != nil {
		t.Fatal(err)
	}
	defer cd.Close()
	g3, err := NewGeneratorWithDrafter(target, cd, WithMaxNewTokens(40), WithNoEOS())
	if err != nil {
		t.Fatal(err)
	}
	defer g3.Close()
	g3.Append(ids)
	if reason, err := g3.GenerateAll(context.Background(), nil); err != nil || reason != FinishMaxTokens ||
		!slices.Equal(g3.Tokens()[len(ids):], tref) || g3.Stats().AcceptanceRate < 0.99 {
		t.Fatalf("GenerateAll with the oracle drafter = %v, %v, %+v", reason, err, g3.Stats())
	}

	// onTokens returning false stops; inside it only Cancel may touch the generator.
	g4 := newGen()
	defer g4.Close()
	reason, err = g4.GenerateAll(context.Background(), func([]uint32) bool {
		if _, err := g4.Step(); !errors.Is(err, ErrBusy) {
			t.Errorf("Step inside onTokens = %v, want ErrBusy", err)
		}
		if err := g4.Close(); !errors.Is(err, ErrBusy) {
			t.Errorf("Close inside onTokens = %v, want ErrBusy", err)
		}
		if g4.Tokens() != nil {
			t.Error("Tokens inside onTokens")
		}
		return false
	})
	if err != nil || reason != FinishStopped || g4.FinishReason() != FinishStopped {
		t.Fatalf("stopped: %v, %v, %v", reason, err, g4.FinishReason())
	}
	n := len(g4.Tokens())
	if reason, err := g4.GenerateAll(context.Background(), nil); err != nil || reason != FinishStopped || len(g4.Tokens()) != n {
		t.Fatalf("GenerateAll after a stop = %v, %v", reason, err)
	}
	g4.Append(nil)
	if reason, err := g4.GenerateAll(context.Background(), nil); err != nil || reason != FinishMaxTokens {
		t.Fatalf("GenerateAll after Append(nil) = %v, %v", reason, err)
	}

	// A context cancelled from the callback ends the call with ErrCancelled and ctx's error; the
	// generator goes on afterwards.
	g5 := newGen(WithMaxNewTokens(400))
	defer g5.Close()
	ctx, cancel := context.WithCancel(context.Background())
	produced := 0
	_, err = g5.GenerateAll(ctx, func(toks []uint32) bool {
		if produced == 0 {
			cancel()
			time.Sleep(20 * time.Millisecond) // the context watcher cancels the native call meanwhile
		}
		produced += len(toks)
		return true
	})
	checkCancelled(t, err, context.Canceled)
	if produced == 0 || produced >= 400 || len(g5.Tokens()) != len(ids)+produced {
		t.Fatalf("%d tokens produced, %d in the generator", produced, len(g5.Tokens()))
	}
	if reason, err := g5.GenerateAll(context.Background(), nil); err != nil || reason != FinishMaxTokens || len(g5.Tokens()) != len(ids)+400 {
		t.Fatalf("continuing after the cancellation: %v, %v, %d", reason, err, len(g5.Tokens()))
	}
	// An already-done context runs nothing.
	done, cancelDone := context.WithCancel(context.Background())
	cancelDone()
	if _, err := g5.GenerateAll(done, nil); !errors.Is(err, ErrCancelled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("GenerateAll(done ctx) = %v", err)
	}

	// A panic in onTokens is re-raised after the native call, which the generator survives.
	g6 := newGen()
	defer g6.Close()
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v, want boom", r)
			}
		}()
		g6.GenerateAll(context.Background(), func([]uint32) bool { panic("boom") })
	}()
	if len(g6.Tokens()) <= len(ids) {
		t.Fatal("no tokens before the panic")
	}

	// Closed generator.
	g6.Close()
	if _, err := g6.GenerateAll(context.Background(), nil); !errors.Is(err, ErrNullParameter) {
		t.Fatalf("GenerateAll after Close = %v", err)
	}
}
