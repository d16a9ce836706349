package specdec

/*
#include "specdec.h"
*/
import "C"

import (
	"context"
	"errors"
	"iter"
	"path/filepath"
	"strings"
)

// WithDraftModel speculates with a draft model in the one-shot Generate (NewGenerator takes the
// draft as an argument instead and refuses this option).
func WithDraftModel(draft *Model) GenerateOption {
	return func(c *genConfig) { c.draft = draft }
}

// WithDrafter drafts with d (n-gram, counts, callback, model) in the one-shot Generate
// (NewGeneratorWithDrafter takes it as an argument instead and refuses this option).
func WithDrafter(d *Drafter) GenerateOption {
	return func(c *genConfig) { c.drafter = d }
}

func allowSource() GenerateOption { return func(c *genConfig) { c.sourceOK = true } }

// Generate is the one-shot form: it encodes prompt, generates with model (and a draft given by
// WithDraftModel or WithDrafter; target-only decoding without one) under opts, and returns the
// generated text. The tokenizer is WithTokenizer's, else the one in the model's folder (the folder
// of an .onnx file). Stop texts (WithStopTexts) work either way. ctx cancels as in
// Generator.Generate: the error then matches ErrCancelled and ctx.Err(), and the text generated so
// far is returned with it.
func Generate(ctx context.Context, model *Model, prompt string, opts ...GenerateOption) (string, error) {
	var b strings.Builder
	_, err := GenerateStream(ctx, model, prompt, func(s string) bool { b.WriteString(s); return true }, opts...)
	return b.String(), err
}

// GenerateStream is Generate with the text streamed to onText (which may return false to stop:
// FinishStopped); it returns why the generation ended.
func GenerateStream(ctx context.Context, model *Model, prompt string, onText func(string) bool, opts ...GenerateOption) (FinishReason, error) {
	if model == nil {
		return FinishNone, &Error{Code: StatusNullParameter, Message: "model is nil"}
	}
	if ctx == nil {
		ctx = context.Background()
	}
	// The options' draft source and tokenizer, read on a scratch config.
	probe := genConfig{ptr: C.specdec_gen_config_new()}
	for _, opt := range opts {
		if opt != nil {
			opt(&probe)
		}
	}
	C.specdec_gen_config_free(probe.ptr)
	if probe.err != nil {
		return FinishNone, probe.err
	}
	if probe.draft != nil && probe.drafter != nil {
		return FinishNone, &Error{Code: StatusInvalidArgument, Message: "give WithDraftModel or WithDrafter, not both"}
	}
	tok := probe.tokenizer
	if tok == nil {
		dir := model.path
		if strings.HasSuffix(strings.ToLower(dir), ".onnx") {
			dir = filepath.Dir(dir)
		}
		if dir == "" {
			return FinishNone, &Error{Code: StatusInvalidArgument, Message: "the model has no folder to load a tokenizer from: pass WithTokenizer"}
		}
		var err error
		if tok, err = LoadTokenizer(dir); err != nil {
			return FinishNone, err
		}
		defer tok.Close()
	}
	ids, err := tok.Encode(prompt)
	if err != nil {
		return FinishNone, err
	}
	all := append(append([]GenerateOption{}, opts...), allowSource())
	var g *Generator
	if probe.drafter != nil {
		g, err = NewGeneratorWithDrafter(model, probe.drafter, all...)
	} else {
		g, err = NewGenerator(model, probe.draft, all...)
	}
	if err != nil {
		return FinishNone, err
	}
	defer g.Close()
	if err := g.Append(ids); err != nil {
		return FinishNone, err
	}
	return g.GenerateText(ctx, tok, onText)
}

// errNotRun is TextStream's result before its sequence has been ranged over.
var errNotRun = errors.New("specdec: the text stream has not been ranged over")

// TextStream returns the generated text as a range-over-func sequence (Go 1.23) and a function
// giving the outcome once the loop has ended:
//
//	texts, result := gen.TextStream(ctx, tok)
//	for s := range texts { fmt.Print(s) }   // break stops the generation (FinishStopped)
//	reason, err := result()
//
// It is GenerateText (tok becomes the generator's tokenizer, for stop texts); range over it once.
// Before the loop, result returns FinishNone and an error.
func (g *Generator) TextStream(ctx context.Context, tok *Tokenizer) (iter.Seq[string], func() (FinishReason, error)) {
	reason, err := FinishNone, errNotRun
	seq := func(yield func(string) bool) {
		open := true
		reason, err = g.GenerateText(ctx, tok, func(s string) bool {
			// GenerateText flushes held-back text after a stop; the loop must not see it then.
			if open {
				open = yield(s)
			}
			return open
		})
	}
	return seq, func() (FinishReason, error) { return reason, err }
}
