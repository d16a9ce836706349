package specdec

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// greedyText generates n tokens target-only with a Generator and decodes them.
func greedyText(t *testing.T, n int) string {
	t.Helper()
	target, _, tok, ids := setup(t)
	g, err := NewGenerator(target, nil, WithMaxNewTokens(n), WithNoEOS())
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.Append(ids); err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	if _, err := g.GenerateText(context.Background(), tok, func(s string) bool { sb.WriteString(s); return true }); err != nil {
		t.Fatal(err)
	}
	return sb.String()
}

func TestGenerateOneShot(t *testing.T) {
	target, draft, tok, _ := setup(t)
	want := greedyText(t, 24)
	ctx := context.Background()
	got, err := Generate(ctx, target, prompt, WithMaxNewTokens(24), WithNoEOS())
	if err != nil || got != want {
		t.Fatalf("Generate = %q, %v; want %q", got, err, want)
	}
	// With a draft model, a drafter and an explicit tokenizer: the same greedy text (exactness).
	got, err = Generate(ctx, target, prompt, WithMaxNewTokens(24), WithNoEOS(), WithDraftModel(draft), WithTokenizer(tok))
	if err != nil || got != want {
		t.Fatalf("Generate with WithDraftModel = %q, %v; want %q", got, err, want)
	}
	d, err := NewNGramDrafter(2, 4, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	got, err = Generate(ctx, target, prompt, WithMaxNewTokens(24), WithNoEOS(), WithDrafter(d))
	if err != nil || got != want {
		t.Fatalf("Generate with WithDrafter = %q, %v; want %q", got, err, want)
	}
	// The generator constructors refuse the one-shot draft options.
	if _, err := NewGenerator(target, nil, WithDrafter(d)); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("NewGenerator(WithDrafter) = %v, want ErrInvalidArgument", err)
	}
	if _, err := Generate(ctx, target, prompt, WithDrafter(d), WithDraftModel(draft)); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Generate with both draft options = %v, want ErrInvalidArgument", err)
	}
	// A cancelled context.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Generate(cctx, target, prompt); !errors.Is(err, ErrCancelled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Generate on a cancelled context = %v", err)
	}
}

// GenerateText hands its tokenizer to the generator, so stop texts work without WithTokenizer.
func TestGenerateTextStopText(t *testing.T) {
	target, _, tok, ids := setup(t)
	full := greedyText(t, 32)
	stop := strings.TrimSpace(full[len(full)/2:])
	if len(stop) > 3 {
		stop = stop[:3]
	}
	if stop == "" {
		t.Skip("no text to stop at")
	}
	g, err := NewGenerator(target, nil, WithMaxNewTokens(32), WithNoEOS(), WithStopTexts(stop))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.Append(ids); err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	reason, err := g.GenerateText(context.Background(), tok, func(s string) bool { sb.WriteString(s); return true })
	if err != nil || reason != FinishStopSequence || !strings.Contains(sb.String(), stop) || len(sb.String()) >= len(full) {
		t.Fatalf("GenerateText with stop text %q = %q (%v, %v); full text %q", stop, sb.String(), reason, err, full)
	}
	// The one-shot form too.
	got, err := Generate(context.Background(), target, prompt, WithMaxNewTokens(32), WithNoEOS(), WithStopTexts(stop))
	if err != nil || got != sb.String() {
		t.Fatalf("Generate with stop text = %q, %v; want %q", got, err, sb.String())
	}
}

func TestTextStream(t *testing.T) {
	target, _, tok, ids := setup(t)
	want := greedyText(t, 24)
	newGen := func() *Generator {
		g, err := NewGenerator(target, nil, WithMaxNewTokens(24), WithNoEOS())
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
	texts, result := g.TextStream(context.Background(), tok)
	if _, err := result(); err == nil {
		t.Fatal("result before the loop: no error")
	}
	var sb strings.Builder
	for s := range texts {
		sb.WriteString(s)
	}
	if reason, err := result(); err != nil || reason != FinishMaxTokens || sb.String() != want {
		t.Fatalf("TextStream = %q (%v, %v), want %q", sb.String(), reason, err, want)
	}
	// break stops the generation, and nothing is yielded after it.
	g2 := newGen()
	defer g2.Close()
	texts, result = g2.TextStream(context.Background(), tok)
	n := 0
	for range texts {
		n++
		break
	}
	if reason, err := result(); n != 1 || err != nil || reason != FinishStopped {
		t.Fatalf("TextStream with break: %d texts, %v, %v", n, reason, err)
	}
}
