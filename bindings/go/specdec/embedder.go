package specdec

// The embedder API: model metadata, loading from memory, log-probabilities, per-round timings,
// rewinding, settings between turns, prefill and fork.

/*
#include <stdlib.h>
#include "specdec.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"time"
	"unsafe"
)

// MaxLogprobs is the most alternatives WithLogprobs accepts per token.
const MaxLogprobs = C.SPECDEC_MAX_LOGPROBS

// ContextLimitSource tells where a model's context limit comes from (Model.ContextLimitSource).
type ContextLimitSource uint32

const (
	// ContextLimitFromConfig: config.json (max_position_embeddings, n_positions, n_ctx, ...).
	ContextLimitFromConfig ContextLimitSource = C.SPECDEC_CONTEXT_LIMIT_SOURCE_CONFIG
	// ContextLimitFromGraph: the rows of a learned position table in the graph.
	ContextLimitFromGraph ContextLimitSource = C.SPECDEC_CONTEXT_LIMIT_SOURCE_GRAPH
	// ContextLimitFromOptions: WithContextLimit.
	ContextLimitFromOptions ContextLimitSource = C.SPECDEC_CONTEXT_LIMIT_SOURCE_OPTIONS
	// ContextLimitDefault: nothing stated it; 2048 is assumed (and a warning logged).
	ContextLimitDefault ContextLimitSource = C.SPECDEC_CONTEXT_LIMIT_SOURCE_DEFAULT
)

func (s ContextLimitSource) String() string {
	switch s {
	case ContextLimitFromConfig:
		return "config"
	case ContextLimitFromGraph:
		return "graph"
	case ContextLimitFromOptions:
		return "options"
	case ContextLimitDefault:
		return "default"
	}
	return fmt.Sprintf("ContextLimitSource(%d)", uint32(s))
}

// WithContextLimit uses n tokens as the model's context limit whatever config.json and the graph
// say; 0 (the default) takes config.json's, else the graph's position table, else 2048.
func WithContextLimit(n int) ModelOption {
	return func(o *modelOptions) { o.contextLimit = &n }
}

// LoadModelFromMemory loads a single-file ONNX model (no external data) from data, with the texts
// of its config.json and generation_config.json ("" when there is none). data may be reused once
// it returns. The model has no tokenizer fingerprint, and no path: the one-shot Generate cannot
// load a tokenizer for it. Errors: as LoadModel, ErrNullParameter for empty data, ErrIO for
// invalid JSON.
func LoadModelFromMemory(data []byte, configJSON, generationConfigJSON string, opts ...ModelOption) (*Model, error) {
	if len(data) == 0 {
		return nil, &Error{Code: StatusNullParameter, Message: "model data is empty"}
	}
	var o modelOptions
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	optional := func(s, what string) (*C.char, error) {
		if s == "" {
			return nil, nil
		}
		return cString(s, what)
	}
	ccfg, err := optional(configJSON, "config.json text")
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(ccfg))
	cgen, err := optional(generationConfigJSON, "generation_config.json text")
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(cgen))
	copts, err := o.native()
	if err != nil {
		return nil, err
	}
	if copts != nil {
		defer C.specdec_model_options_free(copts)
	}
	// The bytes are read during the call only; C memory keeps cgo's pointer rules simple.
	cdata := C.CBytes(data)
	defer C.free(cdata)
	var out *C.specdec_model
	var cerr *C.specdec_error
	st := C.specdec_model_load_from_memory(cdata, C.size_t(len(data)), ccfg, cgen, copts, &out, &cerr)
	if err := takeError(st, cerr); err != nil {
		return nil, err
	}
	m := &Model{ptr: out}
	runtime.SetFinalizer(m, (*Model).finalize)
	return m, nil
}

// read runs f on the model's handle under the read lock (nil after Close: the C getters answer
// their NULL defaults).
func modelRead[T any](m *Model, f func(*C.specdec_model) T) T {
	if m == nil {
		return f(nil)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	return f(m.ptr)
}

// EOSIDs returns the model's end-of-sequence ids (generation_config.json, else config.json); empty
// when none is stated or after Close.
func (m *Model) EOSIDs() []uint32 {
	return modelRead(m, func(p *C.specdec_model) []uint32 {
		if p == nil {
			return []uint32{}
		}
		var ids *C.uint32_t
		var n C.size_t
		var cerr *C.specdec_error
		if takeError(C.specdec_model_eos_ids(p, &ids, &n, &cerr), cerr) != nil {
			return []uint32{}
		}
		return copyIDs(ids, n)
	})
}

// BOSID returns the beginning-of-sequence id, or -1 when none is stated (or after Close).
func (m *Model) BOSID() int64 {
	return modelRead(m, func(p *C.specdec_model) int64 { return int64(C.specdec_model_bos_id(p)) })
}

// PadID returns the padding id, or -1 when none is stated (or after Close).
func (m *Model) PadID() int64 {
	return modelRead(m, func(p *C.specdec_model) int64 { return int64(C.specdec_model_pad_id(p)) })
}

// Architecture returns config.json's architectures[0] (e.g. "LlamaForCausalLM"), else its
// model_type; "" when unknown or after Close.
func (m *Model) Architecture() string {
	return modelRead(m, func(p *C.specdec_model) string { return C.GoString(C.specdec_model_architecture(p)) })
}

// LayerCount returns the number of decoder layers (0 after Close).
func (m *Model) LayerCount() int {
	return modelRead(m, func(p *C.specdec_model) int { return int(C.specdec_model_layer_count(p)) })
}

// KVHeadCount returns the key/value heads per layer (0 after Close).
func (m *Model) KVHeadCount() int {
	return modelRead(m, func(p *C.specdec_model) int { return int(C.specdec_model_kv_head_count(p)) })
}

// HeadSize returns the size of one attention head (0 after Close).
func (m *Model) HeadSize() int {
	return modelRead(m, func(p *C.specdec_model) int { return int(C.specdec_model_head_size(p)) })
}

// KVBytesPerToken returns the bytes of KV cache one token takes, all layers' keys and values (0
// after Close).
func (m *Model) KVBytesPerToken() int {
	return modelRead(m, func(p *C.specdec_model) int { return int(C.specdec_model_kv_bytes_per_token(p)) })
}

// KVDType returns the KV cache's element type: "float32", "float16" or "bfloat16" ("" after
// Close).
func (m *Model) KVDType() string {
	return modelRead(m, func(p *C.specdec_model) string { return C.GoString(C.specdec_model_kv_dtype(p)) })
}

// Device returns where the model runs: "cpu" or "cuda:N" ("" after Close).
func (m *Model) Device() string {
	return modelRead(m, func(p *C.specdec_model) string { return C.GoString(C.specdec_model_device(p)) })
}

// ContextLimitSource tells where ContextLimit comes from (ContextLimitDefault after Close).
func (m *Model) ContextLimitSource() ContextLimitSource {
	return modelRead(m, func(p *C.specdec_model) ContextLimitSource {
		return ContextLimitSource(C.specdec_model_context_limit_source(p))
	})
}

// WithLogprobs records the log-probabilities of each generated token (Generator.Logprobs), with
// the topN most likely alternatives each (at most MaxLogprobs); 0 turns them off (the default).
// Turning them on changes no generated token.
func WithLogprobs(topN int) GenerateOption {
	return func(c *genConfig) {
		n, err := toU32(topN, "logprobs")
		if err != nil {
			c.fail(err)
			return
		}
		c.apply(func(e **C.specdec_error) C.specdec_status { return C.specdec_gen_config_set_logprobs(c.ptr, n, e) })
	}
}

// WithReserveMaxNewTokens makes Append fail (ErrContextLimit, saying how many tokens fit) when
// fewer than max_new_tokens tokens fit after the prompt. Default false: room for one token is
// enough.
func WithReserveMaxNewTokens(reserve bool) GenerateOption {
	return func(c *genConfig) {
		c.apply(func(e **C.specdec_error) C.specdec_status {
			return C.specdec_gen_config_set_reserve_max_new_tokens(c.ptr, C.bool(reserve), e)
		})
	}
}

// WithFinishAtContextLimit makes a generation that fills the context end with FinishLength
// (true) instead of failing its next iteration with ErrContextLimit (false, the default).
func WithFinishAtContextLimit(finish bool) GenerateOption {
	return func(c *genConfig) {
		c.apply(func(e **C.specdec_error) C.specdec_status {
			return C.specdec_gen_config_set_finish_at_context_limit(c.ptr, C.bool(finish), e)
		})
	}
}

// GenerationConfig is a snapshot of a generator's settings (Generator.Config).
type GenerationConfig struct {
	Gamma             int
	Temperature       float32
	TopK              int
	TopP              float32
	MinP              float32
	RepetitionPenalty float32
	PresencePenalty   float32
	FrequencyPenalty  float32
	// LogitBias is the bias set with WithLogitBias (nil when none).
	LogitBias            map[uint32]float32
	Seed                 uint64
	MaxNewTokens         int
	DraftPolicy          DraftPolicy
	ConfidenceStop       float32
	KVMemoryLimit        uint64
	Logprobs             int
	ReserveMaxNewTokens  bool
	FinishAtContextLimit bool
	// EOSIDs are the ids set with WithEOSIDs; EOSFromModel is true when none were set and the
	// target's own (Model.EOSIDs) apply.
	EOSIDs       []uint32
	EOSFromModel bool
	StopTokens   [][]uint32
	StopTexts    []string
}

func readConfig(p *C.specdec_gen_config) (GenerationConfig, error) {
	c := GenerationConfig{
		Gamma:                int(C.specdec_gen_config_get_gamma(p)),
		Temperature:          float32(C.specdec_gen_config_get_temperature(p)),
		TopK:                 int(C.specdec_gen_config_get_top_k(p)),
		TopP:                 float32(C.specdec_gen_config_get_top_p(p)),
		MinP:                 float32(C.specdec_gen_config_get_min_p(p)),
		RepetitionPenalty:    float32(C.specdec_gen_config_get_repetition_penalty(p)),
		PresencePenalty:      float32(C.specdec_gen_config_get_presence_penalty(p)),
		FrequencyPenalty:     float32(C.specdec_gen_config_get_frequency_penalty(p)),
		Seed:                 uint64(C.specdec_gen_config_get_seed(p)),
		MaxNewTokens:         int(C.specdec_gen_config_get_max_new_tokens(p)),
		DraftPolicy:          DraftPolicy(C.specdec_gen_config_get_draft_policy(p)),
		ConfidenceStop:       float32(C.specdec_gen_config_get_confidence_stop(p)),
		KVMemoryLimit:        uint64(C.specdec_gen_config_get_kv_memory_limit(p)),
		Logprobs:             int(C.specdec_gen_config_get_logprobs(p)),
		ReserveMaxNewTokens:  bool(C.specdec_gen_config_get_reserve_max_new_tokens(p)),
		FinishAtContextLimit: bool(C.specdec_gen_config_get_finish_at_context_limit(p)),
	}
	var ids *C.uint32_t
	var n C.size_t
	var fromModel C.bool
	var cerr *C.specdec_error
	if err := takeError(C.specdec_gen_config_get_eos_ids(p, &ids, &n, &fromModel, &cerr), cerr); err != nil {
		return GenerationConfig{}, err
	}
	c.EOSIDs, c.EOSFromModel = copyIDs(ids, n), bool(fromModel)
	var nBias C.size_t
	if err := takeError(C.specdec_gen_config_get_logit_bias(p, nil, nil, 0, &nBias, &cerr), cerr); err != nil {
		return GenerationConfig{}, err
	}
	if nBias > 0 {
		biasIDs := make([]C.uint32_t, nBias)
		biases := make([]C.float, nBias)
		if err := takeError(C.specdec_gen_config_get_logit_bias(p, &biasIDs[0], &biases[0], nBias, &nBias, &cerr), cerr); err != nil {
			return GenerationConfig{}, err
		}
		c.LogitBias = make(map[uint32]float32, len(biasIDs))
		for i := range biasIDs {
			c.LogitBias[uint32(biasIDs[i])] = float32(biases[i])
		}
	}
	nStop := int(C.specdec_gen_config_get_stop_token_count(p))
	c.StopTokens = make([][]uint32, 0, nStop)
	for i := 0; i < nStop; i++ {
		if err := takeError(C.specdec_gen_config_get_stop_tokens(p, C.size_t(i), &ids, &n, &cerr), cerr); err != nil {
			return GenerationConfig{}, err
		}
		c.StopTokens = append(c.StopTokens, copyIDs(ids, n))
	}
	nText := int(C.specdec_gen_config_get_stop_text_count(p))
	c.StopTexts = make([]string, 0, nText)
	for i := 0; i < nText; i++ {
		c.StopTexts = append(c.StopTexts, C.GoString(C.specdec_gen_config_get_stop_text(p, C.size_t(i))))
	}
	return c, nil
}

// Config returns a snapshot of the generator's current settings.
func (g *Generator) Config() (GenerationConfig, error) {
	if err := g.lock(); err != nil {
		return GenerationConfig{}, err
	}
	defer g.mu.Unlock()
	p, err := g.nativeConfig()
	if err != nil {
		return GenerationConfig{}, err
	}
	defer C.specdec_gen_config_free(p)
	return readConfig(p)
}

// nativeConfig copies the generator's settings (the caller holds g.mu and frees the result).
func (g *Generator) nativeConfig() (*C.specdec_gen_config, error) {
	var p *C.specdec_gen_config
	var cerr *C.specdec_error
	if err := takeError(C.specdec_generator_get_config(g.ptr, &p, &cerr), cerr); err != nil {
		return nil, err
	}
	return p, nil
}

// configWith applies opts to a copy of the generator's settings (the caller holds g.mu and frees
// cfg.ptr).
func (g *Generator) configWith(opts []GenerateOption) (genConfig, error) {
	p, err := g.nativeConfig()
	if err != nil {
		return genConfig{}, err
	}
	cfg := genConfig{ptr: p}
	for _, opt := range opts {
		if opt != nil {
			opt(&cfg)
		}
	}
	if cfg.err == nil && (cfg.draft != nil || cfg.drafter != nil) {
		cfg.err = invalidArg("a generator's draft source cannot be changed")
	}
	if cfg.err != nil {
		C.specdec_gen_config_free(p)
		return genConfig{}, cfg.err
	}
	return cfg, nil
}

// SetConfig changes the generator's settings, between turns or between iterations: opts apply on
// top of its current settings (Config). Sampling, seed (the random stream restarts from it),
// draft length and policy, EOS ids and stops, max_new_tokens (counted from the current
// generation's start), log-probabilities (a changed setting drops the records so far), memory
// budget. All or nothing: on error the generator keeps its settings. Errors: ErrInvalidArgument,
// ErrTokenOutOfRange, ErrBusy.
func (g *Generator) SetConfig(opts ...GenerateOption) error {
	if err := g.lock(); err != nil {
		return err
	}
	defer g.mu.Unlock()
	cfg, err := g.configWith(opts)
	if err != nil {
		return err
	}
	defer C.specdec_gen_config_free(cfg.ptr)
	var cerr *C.specdec_error
	if err := takeError(C.specdec_generator_set_config(g.ptr, cfg.ptr, &cerr), cerr); err != nil {
		return err
	}
	if cfg.tokenizer != nil {
		tptr, err := cfg.tokenizer.acquire()
		if err != nil {
			return err
		}
		defer cfg.tokenizer.mu.RUnlock()
		return takeError(C.specdec_generator_set_tokenizer(g.ptr, tptr, &cerr), cerr)
	}
	return nil
}

// Logprob is the log-probability of one token at one position, from the target's distribution
// there (what target-only decoding samples from).
type Logprob struct {
	Token uint32
	// Logprob is ln p(Token) in the distribution sampled from (after the repetition penalty,
	// temperature, top-k, top-p and min-p); -Inf for a token they cut. Greedy: 0 for the token it
	// picks, -Inf for every other.
	Logprob float32
	// RawLogprob is the log_softmax of the target's raw logits.
	RawLogprob float32
}

// TokenLogprobs are one generated token's log-probabilities and its most likely alternatives
// (most likely first; WithLogprobs says how many).
type TokenLogprobs struct {
	Chosen Logprob
	Top    []Logprob
}

// Logprobs returns the log-probabilities of the current generation's last generated tokens (all
// of them unless SetConfig turned them on during it): entry i belongs to token
// len(Tokens())-len(result)+i. Empty with log-probabilities off (WithLogprobs).
func (g *Generator) Logprobs() ([]TokenLogprobs, error) {
	if err := g.lock(); err != nil {
		return nil, err
	}
	defer g.mu.Unlock()
	var chosen, top *C.specdec_logprob
	var n, topN C.size_t
	var cerr *C.specdec_error
	if err := takeError(C.specdec_generator_logprobs(g.ptr, &chosen, &n, &top, &topN, &cerr), cerr); err != nil {
		return nil, err
	}
	out := make([]TokenLogprobs, int(n))
	if n == 0 {
		return out, nil
	}
	conv := func(l C.specdec_logprob) Logprob {
		return Logprob{Token: uint32(l.token), Logprob: float32(l.logprob), RawLogprob: float32(l.raw_logprob)}
	}
	cs := unsafe.Slice(chosen, int(n))
	var ts []C.specdec_logprob
	if top != nil && topN > 0 {
		ts = unsafe.Slice(top, int(n)*int(topN))
	}
	for i := range out {
		out[i].Chosen = conv(cs[i])
		if ts != nil {
			out[i].Top = make([]Logprob, int(topN))
			for j := range out[i].Top {
				out[i].Top[j] = conv(ts[i*int(topN)+j])
			}
		}
	}
	return out, nil
}

// Round is one iteration of the current generation, timed from the generation's start (its
// first iteration after Append, Rewind or Fork).
type Round struct {
	Start, End time.Duration // since the generation's start
	DraftTime  time.Duration // in the drafter
	TargetTime time.Duration // in the target's ONNX Runtime calls
	Proposed   uint64        // proposals verified
	Accepted   uint64        // proposals accepted
	Emitted    uint64        // tokens the round added to the sequence
}

// Rounds returns the rounds of the current generation so far (nil after Close).
func (g *Generator) Rounds() []Round {
	if g.lock() != nil {
		return nil
	}
	defer g.mu.Unlock()
	n := int(C.specdec_generator_round_count(g.ptr))
	out := make([]Round, 0, n)
	secs := func(v C.double) time.Duration { return time.Duration(float64(v) * float64(time.Second)) }
	for i := 0; i < n; i++ {
		var r C.specdec_round
		r.struct_size = C.sizeof_specdec_round
		var cerr *C.specdec_error
		if takeError(C.specdec_generator_round(g.ptr, C.size_t(i), &r, &cerr), cerr) != nil {
			break
		}
		out = append(out, Round{
			Start: secs(r.start_seconds), End: secs(r.end_seconds),
			DraftTime: secs(r.draft_seconds), TargetTime: secs(r.target_seconds),
			Proposed: uint64(r.proposed), Accepted: uint64(r.accepted), Emitted: uint64(r.emitted),
		})
	}
	return out
}

// ContextRoom returns how many tokens still fit in the context (the smaller of the target's and
// the draft's limits) after the sequence (0 after Close).
func (g *Generator) ContextRoom() int {
	if g.lock() != nil {
		return 0
	}
	defer g.mu.Unlock()
	return int(C.specdec_generator_context_room(g.ptr))
}

// Rewind keeps the first n tokens of the sequence and forgets the rest, in both models' caches
// too. Inside the current generation it continues from there with what is left of max_new_tokens;
// inside the prompt the next generation starts after it with a fresh allowance. The finish reason
// is cleared. Errors: ErrInvalidArgument (n beyond the sequence; nothing changes), ErrBusy,
// ErrInference.
func (g *Generator) Rewind(n int) error {
	if n < 0 {
		return invalidArg("cannot rewind to %d tokens", n)
	}
	if err := g.lock(); err != nil {
		return err
	}
	defer g.mu.Unlock()
	var cerr *C.specdec_error
	if err := takeError(C.specdec_generator_rewind(g.ptr, C.size_t(n), &cerr), cerr); err != nil {
		return err
	}
	g.stopped = false
	return nil
}

// Prefill feeds the sequence to both models now without generating, so that the next iteration,
// or a Fork, only computes what follows (prefill a shared prefix once, fork per request).
func (g *Generator) Prefill() error {
	if err := g.lock(); err != nil {
		return err
	}
	defer g.mu.Unlock()
	var cerr *C.specdec_error
	return takeError(C.specdec_generator_prefill(g.ptr, &cerr), cerr)
}

// Fork returns a new generator holding the first n tokens of this one, with the KV both models
// computed for them copied rather than recomputed, and starting a generation after them as if
// they had been appended as a prompt. It has this generator's settings with opts applied on top,
// its drafter kind and tokenizer, and zero stats; this generator is not changed. Errors:
// ErrInvalidArgument (n beyond the sequence), ErrContextLimit, ErrMemoryBudget, ErrUnavailable (a
// drafter that cannot be forked, e.g. a callback), ErrBusy, ErrInference.
func (g *Generator) Fork(n int, opts ...GenerateOption) (*Generator, error) {
	if n < 0 {
		return nil, invalidArg("cannot fork at %d tokens", n)
	}
	if err := g.lock(); err != nil {
		return nil, err
	}
	defer g.mu.Unlock()
	if g.cb != nil {
		return nil, &Error{Code: StatusUnavailable, Message: "a callback drafter cannot be forked"}
	}
	var cfgPtr *C.specdec_gen_config
	var tok *Tokenizer
	if len(opts) > 0 {
		cfg, err := g.configWith(opts)
		if err != nil {
			return nil, err
		}
		defer C.specdec_gen_config_free(cfg.ptr)
		cfgPtr, tok = cfg.ptr, cfg.tokenizer
	}
	var out *C.specdec_generator
	var cerr *C.specdec_error
	if err := takeError(C.specdec_generator_fork(g.ptr, C.size_t(n), cfgPtr, &out, &cerr), cerr); err != nil {
		return nil, err
	}
	f := &Generator{ptr: out, flags: &genFlags{}}
	runtime.SetFinalizer(f, (*Generator).finalize)
	if tok != nil {
		if err := f.SetTokenizer(tok); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}
