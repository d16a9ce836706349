package specdec

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The fixtures of the repository: tiny decoders with a 512-token vocabulary and context.
var fixtures = filepath.Join("..", "..", "..", "models", "fixtures")

const prompt = "def __init__(self, name):"

func fixture(name string) string { return filepath.Join(fixtures, name) }

// shared holds the models most tests use, loaded once (loading is the slow part).
var shared struct {
	once          sync.Once
	err           error
	target, draft *Model
	tok           *Tokenizer
	prompt        []uint32
}

func setup(t testing.TB) (target, draft *Model, tok *Tokenizer, ids []uint32) {
	t.Helper()
	shared.once.Do(func() {
		if shared.target, shared.err = LoadModel(fixture("llama")); shared.err != nil {
			return
		}
		if shared.draft, shared.err = LoadModel(fixture("draft")); shared.err != nil {
			return
		}
		if shared.tok, shared.err = LoadTokenizer(fixture("llama")); shared.err != nil {
			return
		}
		shared.prompt, shared.err = shared.tok.Encode(prompt)
	})
	if shared.err != nil {
		t.Fatalf("loading the fixtures: %v", shared.err)
	}
	return shared.target, shared.draft, shared.tok, shared.prompt
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.target != nil {
		shared.target.Close()
		shared.draft.Close()
		shared.tok.Close()
	}
	os.Exit(code)
}

// generate runs one generation from the prompt and returns the generated tokens.
func generate(t testing.TB, target, draft *Model, ids []uint32, opts ...GenerateOption) ([]uint32, FinishReason) {
	t.Helper()
	g, err := NewGenerator(target, draft, opts...)
	if err != nil {
		t.Fatalf("NewGenerator: %v", err)
	}
	defer g.Close()
	if err := g.Append(ids); err != nil {
		t.Fatalf("Append: %v", err)
	}
	var got []uint32
	reason, err := g.Generate(context.Background(), func(toks []uint32) bool {
		got = append(got, toks...)
		return true
	})
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	all := g.Tokens()
	if !slices.Equal(all[len(ids):], got) {
		t.Fatalf("Tokens() %v does not end with the streamed tokens %v", all, got)
	}
	return got, reason
}

func TestVersion(t *testing.T) {
	want := fmt.Sprintf("%d.%d.%d", VersionMajor, VersionMinor, VersionPatch)
	if v := Version(); v != want {
		t.Errorf("Version() = %q, header says %q", v, want)
	}
	if ABIVersion() != HeaderABIVersion {
		t.Errorf("ABIVersion() = %d, header says %d", ABIVersion(), HeaderABIVersion)
	}
	if s := StatusVocabMismatch.String(); s != "SPECDEC_STATUS_VOCAB_MISMATCH" {
		t.Errorf("StatusVocabMismatch.String() = %q", s)
	}
	for st, want := range map[Status]string{
		StatusBusy:         "SPECDEC_STATUS_BUSY",
		StatusMemoryBudget: "SPECDEC_STATUS_MEMORY_BUDGET",
		StatusCallback:     "SPECDEC_STATUS_CALLBACK",
		StatusPanic:        "SPECDEC_STATUS_PANIC",
		Status(7017):       "SPECDEC_STATUS_UNKNOWN",
	} {
		if s := st.String(); s != want {
			t.Errorf("Status(%d).String() = %q, want %q", uint32(st), s, want)
		}
	}
}

func TestRuntimeInit(t *testing.T) {
	setup(t) // the runtime is loaded by now
	if err := RuntimeInit(""); err != nil {
		t.Fatalf("RuntimeInit(\"\") after loading: %v", err)
	}
	err := RuntimeInit("/nonexistent/libonnxruntime.so")
	if !errors.Is(err, ErrRuntimeLoad) {
		t.Fatalf("RuntimeInit(missing) = %v, want ErrRuntimeLoad", err)
	}
	if err := RuntimeInit("a\x00b"); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("RuntimeInit with a NUL = %v, want ErrInvalidArgument", err)
	}
}

func TestModelInfo(t *testing.T) {
	target, draft, tok, _ := setup(t)
	for _, m := range []*Model{target, draft} {
		if m.VocabSize() != 512 || m.ContextLimit() != 512 {
			t.Errorf("vocab %d, context %d; want 512, 512", m.VocabSize(), m.ContextLimit())
		}
	}
	if tok.VocabSize() < 512 {
		t.Errorf("tokenizer vocab %d", tok.VocabSize())
	}
	m, err := LoadModel(fixture("qwen2"), WithDevice("cpu"), WithIntraThreads(1))
	if err != nil {
		t.Fatalf("LoadModel with options: %v", err)
	}
	if m.VocabSize() != 512 {
		t.Errorf("qwen2 vocab %d", m.VocabSize())
	}
	m.Close()
	if _, err := LoadModel(fixture("qwen2"), WithDevice("tpu")); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("WithDevice(tpu) = %v, want ErrInvalidArgument", err)
	}
	if _, err := LoadModel(fixture("qwen2"), WithIntraThreads(-1)); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("WithIntraThreads(-1) = %v, want ErrInvalidArgument", err)
	}
}

func TestTokenizer(t *testing.T) {
	_, _, tok, ids := setup(t)
	if len(ids) == 0 {
		t.Fatal("empty encoding of the prompt")
	}
	text, err := tok.Decode(ids)
	if err != nil || text != prompt {
		t.Fatalf("Decode(Encode(prompt)) = %q, %v", text, err)
	}
	if ids, err := tok.Encode(""); err != nil || len(ids) != 0 {
		t.Errorf("Encode(\"\") = %v, %v", ids, err)
	}
	if text, err := tok.Decode(nil); err != nil || text != "" {
		t.Errorf("Decode(nil) = %q, %v", text, err)
	}
	long := strings.Repeat("héllo wörld ✓ ", 200)
	lids, err := tok.Encode(long)
	if err != nil {
		t.Fatal(err)
	}
	if back, err := tok.Decode(lids); err != nil || back != long {
		t.Errorf("long round trip failed: %v", err)
	}
	if _, err := tok.Decode([]uint32{1, 1 << 30}); !errors.Is(err, ErrTokenOutOfRange) {
		t.Errorf("Decode(huge id) = %v, want ErrTokenOutOfRange", err)
	}
	if _, err := LoadTokenizer(fixture("nope")); !errors.Is(err, ErrIO) {
		t.Errorf("LoadTokenizer(missing) = %v, want ErrIO", err)
	}
	if _, err := LoadTokenizer(fixture("llama/config.json")); !errors.Is(err, ErrTokenizer) {
		t.Errorf("LoadTokenizer(config.json) = %v, want ErrTokenizer", err)
	}
}

// Speculative greedy decoding must reproduce target-only greedy decoding token for token, for
// every gamma and every target architecture of the fixtures.
func TestGreedyExactness(t *testing.T) {
	target, draft, _, ids := setup(t)
	opts := []GenerateOption{WithMaxNewTokens(64), WithNoEOS()}
	for _, arch := range []string{"llama", "qwen2", "gpt2"} {
		tm := target
		if arch != "llama" {
			var err error
			if tm, err = LoadModel(fixture(arch)); err != nil {
				t.Fatal(err)
			}
			defer tm.Close()
		}
		want, reason := generate(t, tm, nil, ids, opts...)
		if len(want) != 64 || reason != FinishMaxTokens {
			t.Fatalf("%s target-only: %d tokens, reason %v", arch, len(want), reason)
		}
		for gamma := 1; gamma <= 8; gamma++ {
			got, reason := generate(t, tm, draft, ids, append(slices.Clone(opts), WithGamma(gamma))...)
			if !slices.Equal(got, want) || reason != FinishMaxTokens {
				t.Errorf("%s, gamma %d: speculative output differs from target-only\n got %v\nwant %v", arch, gamma, got, want)
			}
		}
		// With the model's EOS ids (nil = default) the output is a prefix ending at the first EOS.
		withEOS, reason := generate(t, tm, draft, ids, WithMaxNewTokens(64), WithEOSIDs(nil))
		if !slices.Equal(withEOS, want[:len(withEOS)]) {
			t.Errorf("%s, default EOS: output %v is not a prefix of %v", arch, withEOS, want)
		}
		if reason == FinishEOS && withEOS[len(withEOS)-1] != 0 {
			t.Errorf("%s: finished by EOS but the last token is %d", arch, withEOS[len(withEOS)-1])
		}
	}
}

// Penalties and bias reach the engine: a strong bias makes greedy decoding repeat one token until
// the frequency penalty pushes it under the next best; speculative output still equals target-only.
func TestPenaltiesAndLogitBias(t *testing.T) {
	target, draft, _, ids := setup(t)
	opts := []GenerateOption{WithMaxNewTokens(24), WithNoEOS(), WithLogitBias(map[uint32]float32{42: 30})}
	biased, _ := generate(t, target, nil, ids, opts...)
	for _, tok := range biased {
		if tok != 42 {
			t.Fatalf("bias +30 on token 42: got %v", biased)
		}
	}
	penalised, _ := generate(t, target, nil, ids, append(slices.Clone(opts), WithFrequencyPenalty(4), WithPresencePenalty(1))...)
	if penalised[0] != 42 || slices.Equal(penalised, biased) {
		t.Fatalf("frequency penalty 4 did not break the repetition: %v", penalised)
	}
	spec, _ := generate(t, target, draft, ids, append(slices.Clone(opts), WithFrequencyPenalty(4), WithPresencePenalty(1))...)
	if !slices.Equal(spec, penalised) {
		t.Fatalf("speculative %v != target-only %v", spec, penalised)
	}
	g, err := NewGenerator(target, draft, WithPresencePenalty(0.5), WithFrequencyPenalty(0.25), WithLogitBias(map[uint32]float32{7: -100, 3: 2}))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	c, err := g.Config()
	if err != nil {
		t.Fatal(err)
	}
	if c.PresencePenalty != 0.5 || c.FrequencyPenalty != 0.25 || len(c.LogitBias) != 2 || c.LogitBias[7] != -100 || c.LogitBias[3] != 2 {
		t.Fatalf("config round trip: %+v", c)
	}
}

// Step by step gives the same tokens as Generate, then nothing once finished; Stats adds up.
func TestStepAndStats(t *testing.T) {
	target, draft, _, ids := setup(t)
	want, _ := generate(t, target, draft, ids, WithMaxNewTokens(20), WithNoEOS())
	g, err := NewGenerator(target, draft, WithMaxNewTokens(20), WithNoEOS())
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, err := g.Step(); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Step without a prompt = %v, want ErrInvalidArgument", err)
	}
	if err := g.Append(ids); err != nil {
		t.Fatal(err)
	}
	var got []uint32
	for g.FinishReason() == FinishNone {
		toks, err := g.Step()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, toks...)
	}
	if !slices.Equal(got, want) || g.FinishReason() != FinishMaxTokens {
		t.Fatalf("Step loop %v (%v), Generate %v", got, g.FinishReason(), want)
	}
	if toks, err := g.Step(); err != nil || len(toks) != 0 {
		t.Fatalf("Step after the end = %v, %v", toks, err)
	}
	s := g.Stats()
	if s.NewTokens != 20 || s.Rounds == 0 || s.TargetCalls == 0 || s.DraftCalls == 0 || s.Accepted > s.Drafted ||
		s.AcceptanceRate < 0 || s.AcceptanceRate > 1 || s.TotalTime <= 0 {
		t.Fatalf("implausible stats %+v", s)
	}
	// A follow-up turn: append zero tokens for a fresh allowance.
	if err := g.Append(nil); err != nil {
		t.Fatal(err)
	}
	if toks, err := g.Step(); err != nil || len(toks) == 0 {
		t.Fatalf("Step after Append(nil) = %v, %v", toks, err)
	}
}

func TestStopSequences(t *testing.T) {
	target, draft, tok, ids := setup(t)
	ref, _ := generate(t, target, nil, ids, WithMaxNewTokens(40), WithNoEOS())
	stop := ref[10:12]
	got, reason := generate(t, target, draft, ids, WithMaxNewTokens(40), WithNoEOS(), WithStopTokens(stop...))
	if reason != FinishStopSequence || !slices.Equal(got, ref[:len(got)]) || !slices.Equal(got[len(got)-2:], stop) {
		t.Fatalf("stop tokens %v: got %v (%v), reference %v", stop, got, reason, ref)
	}
	// A stop text: the decoded text of the reference contains it.
	text, err := tok.Decode(ref)
	if err != nil {
		t.Fatal(err)
	}
	stopText := strings.TrimSpace(text[len(text)/2:])
	if len(stopText) > 3 {
		stopText = stopText[:3]
	}
	got, reason = generate(t, target, draft, ids, WithMaxNewTokens(40), WithNoEOS(), WithStopTexts(stopText), WithTokenizer(tok))
	gotText, _ := tok.Decode(got)
	if reason != FinishStopSequence || !strings.Contains(gotText, stopText) || !slices.Equal(got, ref[:len(got)]) {
		t.Fatalf("stop text %q: got %q (%v)", stopText, gotText, reason)
	}
	// Without a tokenizer a stop text cannot be matched.
	g, err := NewGenerator(target, draft, WithStopTexts("x"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	g.Append(ids)
	if _, err := g.Step(); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("stop text without tokenizer: %v", err)
	}
	// Clearing stops.
	got, reason = generate(t, target, draft, ids, WithMaxNewTokens(40), WithNoEOS(), WithStopTokens(stop...), WithClearStops())
	if reason != FinishMaxTokens || !slices.Equal(got, ref) {
		t.Fatalf("cleared stops: %v (%v)", got, reason)
	}
}

// The callback returning false stops the generation (FinishStopped); Append resumes it.
func TestCallbackStop(t *testing.T) {
	target, draft, _, ids := setup(t)
	ref, _ := generate(t, target, draft, ids, WithMaxNewTokens(30), WithNoEOS())
	g, err := NewGenerator(target, draft, WithMaxNewTokens(30), WithNoEOS())
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	g.Append(ids)
	reason, err := g.Generate(context.Background(), func([]uint32) bool { return false })
	if err != nil || reason != FinishStopped || g.FinishReason() != FinishStopped {
		t.Fatalf("Generate = %v, %v; FinishReason %v", reason, err, g.FinishReason())
	}
	n := len(g.Tokens())
	if toks, err := g.Step(); err != nil || len(toks) != 0 {
		t.Fatalf("Step after stop = %v, %v", toks, err)
	}
	if reason, err := g.Generate(context.Background(), nil); err != nil || reason != FinishStopped {
		t.Fatalf("Generate after stop = %v, %v", reason, err)
	}
	if err := g.Append(nil); err != nil {
		t.Fatal(err)
	}
	if reason, err := g.Generate(context.Background(), nil); err != nil || reason != FinishMaxTokens {
		t.Fatalf("Generate after Append(nil) = %v, %v", reason, err)
	}
	all := g.Tokens()
	if len(all) != n+30 || !slices.Equal(all[len(ids):n], ref[:n-len(ids)]) {
		t.Fatalf("resumed sequence %v", all)
	}
}

func checkCancelled(t *testing.T, err error, ctxErr error) {
	t.Helper()
	if !errors.Is(err, ErrCancelled) || !errors.Is(err, ctxErr) {
		t.Fatalf("got %v, want an error matching ErrCancelled and %v", err, ctxErr)
	}
	var e *Error
	if !errors.As(err, &e) || e.Code != StatusCancelled {
		t.Fatalf("errors.As(*Error) on %v", err)
	}
}

// Cancelling the context mid-generation returns promptly; the models and the generator stay usable.
// "watcher first" waits after cancelling so that the binding's context watcher has certainly asked
// the library to cancel before the next iteration (the request must then not leak into later calls).
func TestCancelMidGeneration(t *testing.T) {
	target, draft, _, ids := setup(t)
	for _, pause := range []time.Duration{0, 20 * time.Millisecond} {
		name := "immediate"
		if pause > 0 {
			name = "watcher first"
		}
		t.Run(name, func(t *testing.T) {
			g, err := NewGenerator(target, draft, WithMaxNewTokens(400), WithNoEOS())
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			if err := g.Append(ids); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var cancelledAt time.Time
			produced := 0
			stale := staleCancels.Load()
			reason, err := g.Generate(ctx, func(toks []uint32) bool {
				produced += len(toks)
				if cancelledAt.IsZero() {
					cancelledAt = time.Now()
					cancel()
					time.Sleep(pause)
				}
				return true
			})
			elapsed := time.Since(cancelledAt)
			checkCancelled(t, err, context.Canceled)
			if reason != FinishNone || produced == 0 || produced >= 400 {
				t.Fatalf("reason %v after %d tokens", reason, produced)
			}
			if elapsed > 2*time.Second+pause {
				t.Fatalf("Generate returned %v after the cancellation", elapsed)
			}
			if pause > 0 && staleCancels.Load() == stale {
				t.Errorf("the watcher's cancellation request was not consumed")
			}
			n := len(g.Tokens())
			if n != len(ids)+produced {
				t.Fatalf("%d tokens in the generator, %d produced", n, len(ids)+produced)
			}
			// The same generator continues (no stale cancellation), up to the 400 tokens.
			reason, err = g.Generate(context.Background(), nil)
			if err != nil || reason != FinishMaxTokens || len(g.Tokens()) != len(ids)+400 {
				t.Fatalf("continuing: %v, %v, %d tokens", reason, err, len(g.Tokens()))
			}
			// And the shared models are fine for new generators.
			if got, _ := generate(t, target, draft, ids, WithMaxNewTokens(8)); len(got) == 0 {
				t.Fatal("no tokens after the cancellation")
			}
		})
	}
}

// A deadline that expires mid-generation.
func TestDeadline(t *testing.T) {
	target, draft, _, ids := setup(t)
	g, err := NewGenerator(target, draft, WithMaxNewTokens(400), WithNoEOS())
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	g.Append(ids)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	first := true
	_, err = g.Generate(ctx, func([]uint32) bool {
		if first { // make sure the deadline falls after the first tokens
			first = false
			<-ctx.Done()
		}
		return true
	})
	expired := time.Now()
	checkCancelled(t, err, context.DeadlineExceeded)
	if d, _ := ctx.Deadline(); expired.Sub(d) > 2*time.Second {
		t.Fatalf("returned %v after the deadline", expired.Sub(d))
	}
	if n := len(g.Tokens()) - len(ids); n == 0 || n >= 400 {
		t.Fatalf("%d tokens generated", n)
	}
	if got, _ := generate(t, target, draft, ids, WithMaxNewTokens(8)); len(got) == 0 {
		t.Fatal("no tokens after the deadline")
	}
}

// A context that is already done leaves no cancellation behind for later calls.
func TestCancelledBeforeStart(t *testing.T) {
	target, draft, _, ids := setup(t)
	want, _ := generate(t, target, draft, ids, WithMaxNewTokens(16), WithNoEOS())
	g, err := NewGenerator(target, draft, WithMaxNewTokens(16), WithNoEOS())
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	g.Append(ids)
	for i := 0; i < 20; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := g.Generate(ctx, nil)
		checkCancelled(t, err, context.Canceled)
	}
	toks, err := g.Step()
	if err != nil || len(toks) == 0 {
		t.Fatalf("Step after cancelled Generates = %v, %v", toks, err)
	}
	if _, err := g.Generate(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if got := g.Tokens()[len(ids):]; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	// Cancel itself: the next iteration reports it, then the generator goes on.
	g.Append(nil)
	g.Cancel()
	if _, err := g.Step(); !errors.Is(err, ErrCancelled) || errors.Is(err, context.Canceled) {
		t.Fatalf("Step after Cancel = %v", err)
	}
	if toks, err := g.Step(); err != nil || len(toks) == 0 {
		t.Fatalf("Step after a consumed Cancel = %v, %v", toks, err)
	}
}

func TestStreamAndText(t *testing.T) {
	target, draft, tok, ids := setup(t)
	want, _ := generate(t, target, draft, ids, WithMaxNewTokens(32), WithNoEOS())
	wantText, err := tok.Decode(want)
	if err != nil {
		t.Fatal(err)
	}

	g, err := NewGenerator(target, draft, WithMaxNewTokens(32), WithNoEOS())
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	g.Append(ids)
	toks, errc := g.Stream(context.Background())
	var got []uint32
	for chunk := range toks {
		got = append(got, chunk...)
	}
	if err := <-errc; err != nil || !slices.Equal(got, want) {
		t.Fatalf("Stream: %v, %v; want %v", got, err, want)
	}

	g2, err := NewGenerator(target, draft, WithMaxNewTokens(32), WithNoEOS())
	if err != nil {
		t.Fatal(err)
	}
	defer g2.Close()
	g2.Append(ids)
	var sb strings.Builder
	reason, err := g2.GenerateText(context.Background(), tok, func(s string) bool { sb.WriteString(s); return true })
	if err != nil || reason != FinishMaxTokens || sb.String() != wantText {
		t.Fatalf("GenerateText = %q (%v, %v), want %q", sb.String(), reason, err, wantText)
	}

	// Abandoning a stream by cancelling its context.
	g3, err := NewGenerator(target, draft, WithMaxNewTokens(400), WithNoEOS())
	if err != nil {
		t.Fatal(err)
	}
	defer g3.Close()
	g3.Append(ids)
	ctx, cancel := context.WithCancel(context.Background())
	toks, errc = g3.Stream(ctx)
	<-toks
	cancel()
	for range toks {
	}
	checkCancelled(t, <-errc, context.Canceled)

	d, err := NewStreamDecoder(tok)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Push([]uint32{1 << 20}); !errors.Is(err, ErrTokenOutOfRange) {
		t.Errorf("Push(huge id) = %v", err)
	}
	d.Close()
	d.Close()
	if _, err := d.Push(want); !errors.Is(err, ErrNullParameter) {
		t.Errorf("Push after Close = %v", err)
	}
}

func TestBadPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no-such-model")
	m, err := LoadModel(path)
	if m != nil || !errors.Is(err, ErrIO) {
		t.Fatalf("LoadModel(%q) = %v, %v; want ErrIO", path, m, err)
	}
	var e *Error
	if !errors.As(err, &e) || !strings.Contains(e.Message, "no-such-model") || !strings.Contains(err.Error(), e.Message) {
		t.Fatalf("the message should name the path: %v", err)
	}
	if errors.Is(err, ErrInvalidModel) {
		t.Fatal("ErrIO matches ErrInvalidModel")
	}
	// Not an ONNX file.
	bad := filepath.Join(t.TempDir(), "model.onnx")
	os.WriteFile(bad, []byte("not onnx"), 0o644)
	if _, err := LoadModel(bad); !errors.Is(err, ErrInvalidModel) {
		t.Fatalf("LoadModel(garbage) = %v, want ErrInvalidModel", err)
	}
	if _, err := LoadModel("a\x00b"); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("LoadModel with a NUL = %v", err)
	}
}

func TestVocabMismatch(t *testing.T) {
	target, _, _, _ := setup(t)
	other, err := LoadModel(fixture("vocab600"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	g, err := NewGenerator(target, other)
	if g != nil || !errors.Is(err, ErrVocabMismatch) {
		t.Fatalf("NewGenerator(llama, vocab600) = %v, %v; want ErrVocabMismatch", g, err)
	}
}

func TestInvalidArguments(t *testing.T) {
	target, draft, _, ids := setup(t)
	cases := []struct {
		name string
		opts []GenerateOption
		want error
	}{
		{"gamma 0", []GenerateOption{WithGamma(0)}, ErrInvalidArgument},
		{"gamma 65", []GenerateOption{WithGamma(MaxGamma + 1)}, ErrInvalidArgument},
		{"temperature -1", []GenerateOption{WithTemperature(-1)}, ErrInvalidArgument},
		{"top_p 0", []GenerateOption{WithTopP(0)}, ErrInvalidArgument},
		{"min_p 2", []GenerateOption{WithMinP(2)}, ErrInvalidArgument},
		{"penalty 0", []GenerateOption{WithRepetitionPenalty(0)}, ErrInvalidArgument},
		{"max -1", []GenerateOption{WithMaxNewTokens(-1)}, ErrInvalidArgument},
		{"empty stop", []GenerateOption{WithStopTokens()}, ErrInvalidArgument},
		{"empty stop text", []GenerateOption{WithStopTexts("")}, ErrInvalidArgument},
		{"EOS 512", []GenerateOption{WithEOSIDs([]uint32{3, 512})}, ErrTokenOutOfRange},
		{"presence NaN", []GenerateOption{WithPresencePenalty(float32(math.NaN()))}, ErrInvalidArgument},
		{"frequency Inf", []GenerateOption{WithFrequencyPenalty(float32(math.Inf(1)))}, ErrInvalidArgument},
		{"bias NaN", []GenerateOption{WithLogitBias(map[uint32]float32{5: float32(math.NaN())})}, ErrInvalidArgument},
		{"bias id 512", []GenerateOption{WithLogitBias(map[uint32]float32{512: 1})}, ErrTokenOutOfRange},
	}
	for _, c := range cases {
		g, err := NewGenerator(target, draft, c.opts...)
		if g != nil || !errors.Is(err, c.want) {
			t.Errorf("%s: NewGenerator = %v, %v; want %v", c.name, g, err, c.want)
		}
	}
	if _, err := NewGenerator(nil, draft); !errors.Is(err, ErrNullParameter) {
		t.Errorf("nil target: %v", err)
	}
	// Every valid setter together.
	g, err := NewGenerator(target, draft, WithGamma(MaxGamma), WithTemperature(0.8), WithTopK(40), WithTopP(0.9),
		WithMinP(0.05), WithRepetitionPenalty(1.1), WithSeed(42), WithMaxNewTokens(8), WithEOSIDs([]uint32{0, 1}))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.Append([]uint32{1, 2, 512}); !errors.Is(err, ErrTokenOutOfRange) {
		t.Fatalf("Append(512) = %v, want ErrTokenOutOfRange", err)
	}
	if len(g.Tokens()) != 0 {
		t.Fatal("a failed Append changed the generator")
	}
	long := make([]uint32, target.ContextLimit())
	if err := g.Append(long); !errors.Is(err, ErrContextLimit) {
		t.Fatalf("Append(context-limit tokens) = %v, want ErrContextLimit", err)
	}
	if err := g.Append(ids); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Generate(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
}

func TestCloseIsSafe(t *testing.T) {
	m, err := LoadModel(fixture("draft"))
	if err != nil {
		t.Fatal(err)
	}
	g, err := NewGenerator(m, m, WithMaxNewTokens(4))
	if err != nil {
		t.Fatal(err)
	}
	// The generator keeps the model alive after the model's Close.
	m.Close()
	m.Close()
	if m.VocabSize() != 0 {
		t.Error("VocabSize after Close")
	}
	if _, err := NewGenerator(m, nil); !errors.Is(err, ErrNullParameter) {
		t.Errorf("NewGenerator(closed) = %v", err)
	}
	g.Append([]uint32{1, 2, 3})
	if _, err := g.Generate(context.Background(), nil); err != nil {
		t.Fatalf("generating after the model's Close: %v", err)
	}
	g.Close()
	g.Close()
	g.Cancel()
	if _, err := g.Step(); !errors.Is(err, ErrNullParameter) {
		t.Errorf("Step after Close = %v", err)
	}
	if err := g.Append([]uint32{1}); !errors.Is(err, ErrNullParameter) {
		t.Errorf("Append after Close = %v", err)
	}
	if _, err := g.Generate(context.Background(), nil); !errors.Is(err, ErrNullParameter) {
		t.Errorf("Generate after Close = %v", err)
	}
	if g.Tokens() != nil || g.FinishReason() != FinishNone || g.Stats() != (Stats{}) {
		t.Error("accessors after Close")
	}
	var nilModel *Model
	nilModel.Close()
	// A zero Generator (not made by a constructor) behaves as a closed one.
	var zero Generator
	if _, err := zero.Step(); !errors.Is(err, ErrNullParameter) {
		t.Errorf("Step on a zero Generator = %v", err)
	}
	if _, err := zero.GenerateAll(context.Background(), nil); !errors.Is(err, ErrNullParameter) {
		t.Errorf("GenerateAll on a zero Generator = %v", err)
	}
	zero.Cancel()
	zero.Close()
	// Forgotten objects are freed by their finalizers.
	for i := 0; i < 3; i++ {
		m, _ := LoadModel(fixture("draft"))
		tok, _ := LoadTokenizer(fixture("draft"))
		NewGenerator(m, nil)
		NewStreamDecoder(tok)
	}
	runtime.GC()
	runtime.GC()
}

// Many goroutines share one pair of models; each output equals the single-threaded reference.
func TestConcurrentSharedModels(t *testing.T) {
	target, draft, _, ids := setup(t)
	type config struct {
		draft *Model
		opts  []GenerateOption
	}
	configs := []config{
		{draft, []GenerateOption{WithGamma(4)}},
		{nil, nil},
		{draft, []GenerateOption{WithTemperature(1), WithSeed(7), WithGamma(3)}},
		{draft, []GenerateOption{WithTemperature(1), WithSeed(11), WithTopK(50)}},
		{nil, []GenerateOption{WithTemperature(1), WithSeed(7)}},
		{draft, []GenerateOption{WithTemperature(1), WithSeed(99), WithGamma(6), WithTopP(0.95)}},
	}
	common := []GenerateOption{WithMaxNewTokens(32), WithNoEOS()}
	refs := make([][]uint32, len(configs))
	for i, c := range configs {
		refs[i], _ = generate(t, target, c.draft, ids, append(slices.Clone(common), c.opts...)...)
	}
	if slices.Equal(refs[2], refs[3]) {
		t.Error("different seeds gave the same sample")
	}

	const workers, perWorker = 8, 20
	var wg sync.WaitGroup
	errs := make(chan error, workers*perWorker)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for j := 0; j < perWorker; j++ {
				k := (w + j) % len(configs)
				c := configs[k]
				g, err := NewGenerator(target, c.draft, append(slices.Clone(common), c.opts...)...)
				if err != nil {
					errs <- err
					return
				}
				if err := g.Append(ids); err != nil {
					errs <- err
				} else if _, err := g.Generate(context.Background(), nil); err != nil {
					errs <- err
				} else if got := g.Tokens()[len(ids):]; !slices.Equal(got, refs[k]) {
					errs <- fmt.Errorf("worker %d, generation %d, config %d: %v, want %v", w, j, k, got, refs[k])
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
}

// A Generator misused from several goroutines at once must not crash (calls are serialised).
func TestGeneratorMisuseIsMemorySafe(t *testing.T) {
	target, draft, _, ids := setup(t)
	g, err := NewGenerator(target, draft, WithMaxNewTokens(16))
	if err != nil {
		t.Fatal(err)
	}
	g.Append(ids)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 5; j++ {
				switch (i + j) % 4 {
				case 0:
					g.Step()
				case 1:
					g.Tokens()
					g.Stats()
				case 2:
					g.Cancel()
				case 3:
					g.Append(nil)
				}
			}
		}(i)
	}
	wg.Add(1)
	go func() { defer wg.Done(); time.Sleep(time.Millisecond); g.Close() }()
	wg.Wait()
}
