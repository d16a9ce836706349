package specdec

/*
#include <stdlib.h>
#include "specdec.h"
*/
import "C"

import (
	"fmt"
	"math"
	"sort"
	"unsafe"
)

// GenerateOption configures a Generator (NewGenerator). Options are applied in order, each with the
// C library's own validation; the first invalid one makes NewGenerator fail with its error (for
// example WithGamma(0) gives ErrInvalidArgument). A []GenerateOption may be kept and reused.
type GenerateOption func(*genConfig)

// genConfig is the native specdec_gen_config being built, and the first error met.
type genConfig struct {
	ptr       *C.specdec_gen_config
	err       error
	tokenizer *Tokenizer
	// Draft sources of the one-shot Generate (WithDraftModel, WithDrafter); generator
	// constructors refuse them unless sourceOK (set by Generate itself).
	draft    *Model
	drafter  *Drafter
	sourceOK bool
}

// apply runs one setter unless an earlier one failed.
func (c *genConfig) apply(set func(**C.specdec_error) C.specdec_status) {
	if c.err != nil {
		return
	}
	var cerr *C.specdec_error
	c.err = takeError(set(&cerr), cerr)
}

func (c *genConfig) fail(err error) {
	if c.err == nil {
		c.err = err
	}
}

func toU32(v int, what string) (C.uint32_t, error) {
	if v < 0 || uint64(v) > math.MaxUint32 {
		return 0, invalidArg("%s %d out of range", what, v)
	}
	return C.uint32_t(v), nil
}

// WithGamma sets the draft tokens per iteration, 1..MaxGamma (default 4). Ignored without a draft.
func WithGamma(gamma int) GenerateOption {
	return func(c *genConfig) {
		v, err := toU32(gamma, "gamma")
		if err != nil {
			c.fail(err)
			return
		}
		c.apply(func(e **C.specdec_error) C.specdec_status { return C.specdec_gen_config_set_gamma(c.ptr, v, e) })
	}
}

// WithTemperature sets the sampling temperature, finite and >= 0; 0 (default) means greedy.
func WithTemperature(t float32) GenerateOption {
	return func(c *genConfig) {
		c.apply(func(e **C.specdec_error) C.specdec_status {
			return C.specdec_gen_config_set_temperature(c.ptr, C.float(t), e)
		})
	}
}

// WithTopK keeps only the k most likely tokens; 0 (default) turns it off.
func WithTopK(k int) GenerateOption {
	return func(c *genConfig) {
		v, err := toU32(k, "top_k")
		if err != nil {
			c.fail(err)
			return
		}
		c.apply(func(e **C.specdec_error) C.specdec_status { return C.specdec_gen_config_set_top_k(c.ptr, v, e) })
	}
}

// WithTopP sets the nucleus sampling threshold in (0, 1]; 1 (default) turns it off.
func WithTopP(p float32) GenerateOption {
	return func(c *genConfig) {
		c.apply(func(e **C.specdec_error) C.specdec_status {
			return C.specdec_gen_config_set_top_p(c.ptr, C.float(p), e)
		})
	}
}

// WithMinP drops tokens below minP × the top probability, minP in [0, 1]; 0 (default) turns it off.
func WithMinP(minP float32) GenerateOption {
	return func(c *genConfig) {
		c.apply(func(e **C.specdec_error) C.specdec_status {
			return C.specdec_gen_config_set_min_p(c.ptr, C.float(minP), e)
		})
	}
}

// WithRepetitionPenalty sets the CTRL repetition penalty, finite and > 0; 1 (default) turns it off.
func WithRepetitionPenalty(penalty float32) GenerateOption {
	return func(c *genConfig) {
		c.apply(func(e **C.specdec_error) C.specdec_status {
			return C.specdec_gen_config_set_repetition_penalty(c.ptr, C.float(penalty), e)
		})
	}
}

// WithPresencePenalty sets the OpenAI-style presence penalty (finite; 0, the default, turns it off):
// subtracted once from the logit of every token the current generation has produced.
func WithPresencePenalty(penalty float32) GenerateOption {
	return func(c *genConfig) {
		c.apply(func(e **C.specdec_error) C.specdec_status {
			return C.specdec_gen_config_set_presence_penalty(c.ptr, C.float(penalty), e)
		})
	}
}

// WithFrequencyPenalty sets the OpenAI-style frequency penalty (finite; 0, the default, turns it
// off): subtracted from a token's logit once per time the current generation has produced it.
func WithFrequencyPenalty(penalty float32) GenerateOption {
	return func(c *genConfig) {
		c.apply(func(e **C.specdec_error) C.specdec_status {
			return C.specdec_gen_config_set_frequency_penalty(c.ptr, C.float(penalty), e)
		})
	}
}

// WithLogitBias adds bias[id] to the logit of each listed token after the penalties (greedy
// decoding included; -100 bans a token in practice), replacing any bias set before; an empty map
// clears it. Biases must be finite; ids are checked against the vocabulary by NewGenerator
// (ErrTokenOutOfRange).
func WithLogitBias(bias map[uint32]float32) GenerateOption {
	return func(c *genConfig) {
		ids := make([]uint32, 0, len(bias))
		for id := range bias {
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		values := make([]C.float, len(ids))
		for i, id := range ids {
			values[i] = C.float(bias[id])
		}
		var vp *C.float
		if len(values) > 0 {
			vp = &values[0]
		}
		c.apply(func(e **C.specdec_error) C.specdec_status {
			return C.specdec_gen_config_set_logit_bias(c.ptr, idsPtr(ids), vp, C.size_t(len(ids)), e)
		})
	}
}

// WithSeed seeds the generator's random stream (default 0). The same seed, settings, models and
// prompt give the same output.
func WithSeed(seed uint64) GenerateOption {
	return func(c *genConfig) {
		c.apply(func(e **C.specdec_error) C.specdec_status {
			return C.specdec_gen_config_set_seed(c.ptr, C.uint64_t(seed), e)
		})
	}
}

// WithMaxNewTokens sets the most tokens generated per prompt (default 128); 0 generates nothing.
func WithMaxNewTokens(n int) GenerateOption {
	return func(c *genConfig) {
		v, err := toU32(n, "max_new_tokens")
		if err != nil {
			c.fail(err)
			return
		}
		c.apply(func(e **C.specdec_error) C.specdec_status {
			return C.specdec_gen_config_set_max_new_tokens(c.ptr, v, e)
		})
	}
}

// WithEOSIDs sets the end-of-sequence ids. A nil slice means the default: the ids of the target's
// generation_config.json. An empty non-nil slice ([]uint32{}) means no EOS at all. Ids are checked
// against the vocabulary by NewGenerator (ErrTokenOutOfRange).
func WithEOSIDs(ids []uint32) GenerateOption {
	return func(c *genConfig) {
		if ids == nil {
			c.apply(func(e **C.specdec_error) C.specdec_status { return C.specdec_gen_config_use_model_eos_ids(c.ptr, e) })
			return
		}
		c.apply(func(e **C.specdec_error) C.specdec_status {
			st := C.specdec_gen_config_set_eos_ids(c.ptr, idsPtr(ids), C.size_t(len(ids)), e)
			return st
		})
	}
}

// WithNoEOS disables end-of-sequence ids: generation runs to max_new_tokens or a stop sequence.
// It is WithEOSIDs([]uint32{}).
func WithNoEOS() GenerateOption { return WithEOSIDs([]uint32{}) }

// WithStopTokens adds a stop sequence of token ids: generation ends once the generated tokens end
// with it (the sequence is part of the output). May be given several times.
func WithStopTokens(ids ...uint32) GenerateOption {
	return func(c *genConfig) {
		c.apply(func(e **C.specdec_error) C.specdec_status {
			return C.specdec_gen_config_add_stop_tokens(c.ptr, idsPtr(ids), C.size_t(len(ids)), e)
		})
	}
}

// WithStopTexts adds stop texts: generation ends once the generated text contains one of them. They
// need a tokenizer on the generator: pass WithTokenizer too (or call Generator.SetTokenizer).
func WithStopTexts(texts ...string) GenerateOption {
	return func(c *genConfig) {
		for _, t := range texts {
			ct, err := cString(t, "stop text")
			if err != nil {
				c.fail(err)
				return
			}
			c.apply(func(e **C.specdec_error) C.specdec_status { return C.specdec_gen_config_add_stop_text(c.ptr, ct, e) })
			C.free(unsafe.Pointer(ct))
		}
	}
}

// WithClearStops removes the stop sequences (tokens and texts) added by earlier options.
func WithClearStops() GenerateOption {
	return func(c *genConfig) {
		c.apply(func(e **C.specdec_error) C.specdec_status { return C.specdec_gen_config_clear_stops(c.ptr, e) })
	}
}

// WithTokenizer gives the generator a tokenizer to match stop texts with
// (specdec_generator_set_tokenizer).
func WithTokenizer(tok *Tokenizer) GenerateOption {
	return func(c *genConfig) { c.tokenizer = tok }
}

// DraftPolicy chooses the draft length of each round (specdec_draft_policy).
type DraftPolicy uint32

const (
	// DraftPolicyFixed: gamma proposals every round (fewer only when the drafter runs out or near
	// the end). The default.
	DraftPolicyFixed DraftPolicy = C.SPECDEC_DRAFT_POLICY_FIXED
	// DraftPolicyHeuristic: start at gamma; +2 after a round whose proposals were all accepted, -1
	// otherwise.
	DraftPolicyHeuristic DraftPolicy = C.SPECDEC_DRAFT_POLICY_HEURISTIC
	// DraftPolicyAuto: choose gamma in 0..16 every round from the measured acceptance rate and
	// costs, stop drafting within a round after an unsure guess, and carry what was learnt to the
	// next generation on the same models. Sampled output with a fixed seed is then reproducible
	// only in distribution; greedy output is the target's own whatever the policy.
	DraftPolicyAuto DraftPolicy = C.SPECDEC_DRAFT_POLICY_AUTO
)

func (p DraftPolicy) String() string {
	switch p {
	case DraftPolicyFixed:
		return "fixed"
	case DraftPolicyHeuristic:
		return "heuristic"
	case DraftPolicyAuto:
		return "auto"
	}
	return fmt.Sprintf("DraftPolicy(%d)", uint32(p))
}

// WithDraftPolicy sets how the draft length is chosen (default DraftPolicyFixed). An unknown value
// gives ErrInvalidArgument.
func WithDraftPolicy(p DraftPolicy) GenerateOption {
	return func(c *genConfig) {
		c.apply(func(e **C.specdec_error) C.specdec_status {
			return C.specdec_gen_config_set_draft_policy(c.ptr, C.uint32_t(p), e)
		})
	}
}

// WithConfidenceStop stops a round's drafting once the draft's most likely token has probability
// below pMin, in [0, 1]; 0 (default) turns it off. It applies to score-based drafters (a draft
// model, counts) and combines with any policy.
func WithConfidenceStop(pMin float32) GenerateOption {
	return func(c *genConfig) {
		c.apply(func(e **C.specdec_error) C.specdec_status {
			return C.specdec_gen_config_set_confidence_stop(c.ptr, C.float(pMin), e)
		})
	}
}

// WithKVMemoryLimit caps the bytes the KV caches of one generator (target and draft together) may
// use; 0 (default) means no limit. Append fails with ErrMemoryBudget, changing nothing, when a
// request (prompt + max_new_tokens + a round's proposals) could outgrow it.
func WithKVMemoryLimit(bytes uint64) GenerateOption {
	return func(c *genConfig) {
		c.apply(func(e **C.specdec_error) C.specdec_status {
			return C.specdec_gen_config_set_kv_memory_limit(c.ptr, C.uint64_t(bytes), e)
		})
	}
}
