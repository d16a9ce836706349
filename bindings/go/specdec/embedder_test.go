package specdec

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

func run(t *testing.T, g *Generator) []uint32 {
	t.Helper()
	if _, err := g.GenerateAll(context.Background(), nil); err != nil {
		t.Fatalf("GenerateAll: %v", err)
	}
	return g.Tokens()
}

func newGen(t *testing.T, target, draft *Model, prompt []uint32, opts ...GenerateOption) *Generator {
	t.Helper()
	g, err := NewGenerator(target, draft, opts...)
	if err != nil {
		t.Fatalf("NewGenerator: %v", err)
	}
	t.Cleanup(func() { g.Close() })
	if err := g.Append(prompt); err != nil {
		t.Fatalf("Append: %v", err)
	}
	return g
}

func TestLogprobsMatchTargetOnly(t *testing.T) {
	target, draft, _, prompt := setup(t)
	opts := []GenerateOption{WithMaxNewTokens(16), WithGamma(4), WithNoEOS()}
	plain := run(t, newGen(t, target, draft, prompt, opts...))
	base := newGen(t, target, nil, prompt, append(opts, WithLogprobs(5))...)
	spec := newGen(t, target, draft, prompt, append(opts, WithLogprobs(5))...)
	want, got := run(t, base), run(t, spec)
	if !slices.Equal(plain, got) || !slices.Equal(want, got) {
		t.Fatalf("tokens changed: %v / %v / %v", plain, want, got)
	}
	ref, err := base.Logprobs()
	if err != nil {
		t.Fatal(err)
	}
	lp, err := spec.Logprobs()
	if err != nil {
		t.Fatal(err)
	}
	if len(lp) != 16 || len(ref) != 16 {
		t.Fatalf("%d / %d logprobs, want 16", len(ref), len(lp))
	}
	for i := range lp {
		if lp[i].Chosen.Token != got[len(got)-16+i] || lp[i].Chosen.Token != ref[i].Chosen.Token ||
			math.Abs(float64(lp[i].Chosen.RawLogprob-ref[i].Chosen.RawLogprob)) > 2e-3 || len(lp[i].Top) != 5 {
			t.Fatalf("token %d: %+v vs target-only %+v", i, lp[i], ref[i])
		}
	}
	if c, _ := spec.Config(); c.Logprobs != 5 {
		t.Fatalf("Config().Logprobs = %d", c.Logprobs)
	}
	if rounds := spec.Rounds(); len(rounds) == 0 || rounds[0].Emitted == 0 || rounds[len(rounds)-1].End < rounds[0].Start {
		t.Fatalf("rounds: %+v", rounds)
	}
	if st := spec.Stats(); st.TimeToFirstToken <= 0 {
		t.Fatalf("TimeToFirstToken = %v", st.TimeToFirstToken)
	}
	if _, err := NewGenerator(target, nil, WithLogprobs(MaxLogprobs+1)); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("too many logprobs: %v", err)
	}
}

func TestFinishLength(t *testing.T) {
	target, err := LoadModel(fixture("llama"), WithContextLimit(40))
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if target.ContextLimit() != 40 || target.ContextLimitSource() != ContextLimitFromOptions {
		t.Fatalf("limit %d from %v", target.ContextLimit(), target.ContextLimitSource())
	}
	_, _, _, prompt := setup(t)
	opts := []GenerateOption{WithMaxNewTokens(100), WithNoEOS()}
	g := newGen(t, target, nil, prompt, opts...)
	if room := g.ContextRoom(); room != 40-len(prompt) {
		t.Fatalf("room %d", room)
	}
	if _, err := g.GenerateAll(context.Background(), nil); !errors.Is(err, ErrContextLimit) {
		t.Fatalf("without finish-at-limit: %v", err)
	}
	g = newGen(t, target, nil, prompt, append(opts, WithFinishAtContextLimit(true))...)
	r, err := g.GenerateAll(context.Background(), nil)
	if err != nil || r != FinishLength || r.String() != "length" || len(g.Tokens()) != 40 || g.ContextRoom() != 0 {
		t.Fatalf("%v %v %d tokens", r, err, len(g.Tokens()))
	}
	g2, _ := NewGenerator(target, nil, append(opts, WithReserveMaxNewTokens(true))...)
	defer g2.Close()
	if err := g2.Append(prompt); !errors.Is(err, ErrContextLimit) {
		t.Fatalf("reserve: %v", err)
	}
}

func TestRewindAndSetConfig(t *testing.T) {
	target, draft, tok, prompt := setup(t)
	g := newGen(t, target, draft, prompt, WithMaxNewTokens(12), WithNoEOS())
	full := run(t, g)
	if err := g.Rewind(len(prompt) + 4); err != nil {
		t.Fatal(err)
	}
	if got := g.Tokens(); !slices.Equal(got, full[:len(prompt)+4]) || g.FinishReason() != FinishNone {
		t.Fatalf("after rewind: %v", got)
	}
	if again := run(t, g); !slices.Equal(again, full) {
		t.Fatalf("continued after rewind: %v, want %v", again, full)
	}
	if err := g.Rewind(len(full) + 1); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("rewind past the end: %v", err)
	}
	// A second turn with other settings.
	if err := g.SetConfig(WithMaxNewTokens(3), WithStopTokens(7, 8), WithStopTexts("zz"), WithSeed(9), WithTokenizer(tok)); err != nil {
		t.Fatal(err)
	}
	c, err := g.Config()
	if err != nil || c.MaxNewTokens != 3 || c.Seed != 9 || c.Gamma == 0 || c.EOSFromModel ||
		len(c.StopTokens) != 1 || !slices.Equal(c.StopTokens[0], []uint32{7, 8}) || !slices.Equal(c.StopTexts, []string{"zz"}) {
		t.Fatalf("Config: %+v %v", c, err)
	}
	if err := g.Append(prompt[:2]); err != nil {
		t.Fatal(err)
	}
	if n := len(run(t, g)); n != len(full)+2+3 {
		t.Fatalf("second turn: %d tokens", n)
	}
	if err := g.SetConfig(WithGamma(0)); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("bad SetConfig: %v", err)
	}
	if c2, _ := g.Config(); c2.Gamma != c.Gamma {
		t.Fatal("a failed SetConfig changed the settings")
	}
}

func TestForkAfterPrefill(t *testing.T) {
	target, draft, _, prompt := setup(t)
	opts := []GenerateOption{WithMaxNewTokens(10), WithNoEOS()}
	want := run(t, newGen(t, target, draft, prompt, opts...))
	src := newGen(t, target, draft, prompt, opts...)
	if err := src.Prefill(); err != nil {
		t.Fatal(err)
	}
	f, err := src.Fork(len(prompt))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := run(t, f); !slices.Equal(got, want) {
		t.Fatalf("fork: %v, want %v", got, want)
	}
	f2, err := src.Fork(len(prompt), WithMaxNewTokens(3))
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	if got := run(t, f2); !slices.Equal(got, want[:len(prompt)+3]) {
		t.Fatalf("fork with options: %v", got)
	}
	if _, err := src.Fork(len(prompt) + 1); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("fork past the end: %v", err)
	}
}

func TestModelMetadata(t *testing.T) {
	dir := filepath.Join(fixtures, "..", "demo", "target")
	m, err := LoadModel(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Architectures []string `json:"architectures"`
		Layers        int      `json:"num_hidden_layers"`
		KVHeads       int      `json:"num_key_value_heads"`
		HeadDim       int      `json:"head_dim"`
		MaxPos        int      `json:"max_position_embeddings"`
		BOS           int64    `json:"bos_token_id"`
		EOS           uint32   `json:"eos_token_id"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	if m.Architecture() != cfg.Architectures[0] || m.LayerCount() != cfg.Layers || m.KVHeadCount() != cfg.KVHeads ||
		m.HeadSize() != cfg.HeadDim || m.ContextLimit() != cfg.MaxPos || m.ContextLimitSource() != ContextLimitFromConfig ||
		m.BOSID() != cfg.BOS || !slices.Contains(m.EOSIDs(), cfg.EOS) || m.KVDType() != "float32" || m.Device() != "cpu" ||
		m.KVBytesPerToken() != 2*cfg.Layers*cfg.KVHeads*cfg.HeadDim*4 {
		t.Fatalf("metadata: %s %d %d %d %d %v bos %d pad %d eos %v %s %s %d", m.Architecture(), m.LayerCount(), m.KVHeadCount(),
			m.HeadSize(), m.ContextLimit(), m.ContextLimitSource(), m.BOSID(), m.PadID(), m.EOSIDs(), m.KVDType(), m.Device(), m.KVBytesPerToken())
	}
	_ = m.PadID()
	m.Close()
	if m.Architecture() != "" || m.LayerCount() != 0 || m.BOSID() != -1 || len(m.EOSIDs()) != 0 {
		t.Fatal("metadata after Close")
	}
}

func TestLoadFromMemory(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(fixture("llama"), "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(filepath.Join(fixture("llama"), "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := LoadModelFromMemory(data, string(cfg), "")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	target, _, _, prompt := setup(t)
	if m.VocabSize() != target.VocabSize() || m.ContextLimit() != target.ContextLimit() || m.Architecture() != target.Architecture() {
		t.Fatalf("from memory: %d %d %s", m.VocabSize(), m.ContextLimit(), m.Architecture())
	}
	opts := []GenerateOption{WithMaxNewTokens(8), WithNoEOS()}
	if a, b := run(t, newGen(t, m, nil, prompt, opts...)), run(t, newGen(t, target, nil, prompt, opts...)); !slices.Equal(a, b) {
		t.Fatalf("%v vs %v", a, b)
	}
	if _, err := LoadModelFromMemory(nil, "", ""); !errors.Is(err, ErrNullParameter) {
		t.Fatalf("empty data: %v", err)
	}
	if _, err := LoadModelFromMemory(data, "{not json", ""); !errors.Is(err, ErrIO) {
		t.Fatalf("bad JSON: %v", err)
	}
}

func TestLogFunc(t *testing.T) {
	old := GetLogLevel()
	defer SetLogLevel(old)
	var mu sync.Mutex
	var msgs []string
	if err := SetLogFunc(func(level LogLevel, source, message string) {
		mu.Lock()
		msgs = append(msgs, source+": "+message)
		mu.Unlock()
		panic("a panicking log function must not crash the process")
	}); err != nil {
		t.Fatal(err)
	}
	defer SetLogFunc(nil)
	if err := SetLogLevel(LogVerbose); err != nil {
		t.Fatal(err)
	}
	if GetLogLevel() != LogVerbose {
		t.Fatalf("level %v", GetLogLevel())
	}
	if err := SetLogLevel(LogLevel(99)); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("bad level: %v", err)
	}
	m, err := LoadModel(fixture("draft"))
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if err := SetLogLevel(LogWarning); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	found := false
	for _, s := range msgs {
		found = found || strings.HasPrefix(s, "specdec: ")
	}
	if !found {
		t.Fatalf("no specdec message among %d", len(msgs))
	}
}
