//! Generation settings as an opaque object: one setter per option, each validated at once.
//! Defaults: gamma 4, temperature 0 (greedy), top_k 0 (off), top_p 1 (off), min_p 0 (off),
//! repetition_penalty 1 (off), seed 0, max_new_tokens 128, EOS ids from the target's
//! generation_config.json, no stop sequences, log-probabilities off, room for one token checked,
//! the context limit an error. Every setting has a getter (`specdec_gen_config_get_*`).

use std::ffi::{c_char, CString};

use super::*;
use crate::GenerationConfig;

/// Settings for a generator. Copied into the generator at creation, so it may be changed or
/// freed afterwards. Not thread-safe while being modified.
pub struct specdec_gen_config {
    pub(crate) inner: GenerationConfig,
    /// The stop texts NUL-terminated, for specdec_gen_config_get_stop_text.
    texts: Vec<CString>,
}

impl specdec_gen_config {
    pub(crate) fn from_config(inner: GenerationConfig) -> Self {
        let texts = inner.stop_texts.iter().map(|t| CString::new(t.replace('\0', " ")).unwrap_or_default()).collect();
        specdec_gen_config { inner, texts }
    }
}

/// New settings with the defaults. Free with specdec_gen_config_free.
#[no_mangle]
pub extern "C" fn specdec_gen_config_new() -> *mut specdec_gen_config {
    guard_value(std::ptr::null_mut(), || Box::into_raw(Box::new(specdec_gen_config::from_config(GenerationConfig::default()))))
}

/// Free settings. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_free(config: *mut specdec_gen_config) {
    free_boxed(config);
}

/// Apply `f` to the settings, keeping the old value if the result does not validate.
unsafe fn set(
    config: *mut specdec_gen_config,
    err: *mut *mut specdec_error,
    f: impl FnOnce(&mut GenerationConfig),
) -> specdec_status {
    guard(err, || {
        let c = handle_mut(config, "config")?;
        let mut next = c.inner.clone();
        f(&mut next);
        next.validate()?;
        c.inner = next;
        Ok(())
    })
}

/// Draft tokens per iteration, 1..=SPECDEC_MAX_GAMMA (default 4). Ignored without a draft.
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_set_gamma(
    config: *mut specdec_gen_config,
    gamma: u32,
    err: *mut *mut specdec_error,
) -> specdec_status {
    set(config, err, |c| c.gamma = gamma as usize)
}

/// Temperature, finite and >= 0; 0 means greedy (default 0).
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_INVALID_ARGUMENT (negative, NaN, infinite).
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_set_temperature(
    config: *mut specdec_gen_config,
    temperature: f32,
    err: *mut *mut specdec_error,
) -> specdec_status {
    set(config, err, |c| c.sampling.temperature = temperature)
}

/// Keep only the k most likely tokens; 0 turns it off (default 0).
/// Errors: SPECDEC_STATUS_NULL_PARAMETER.
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_set_top_k(
    config: *mut specdec_gen_config,
    top_k: u32,
    err: *mut *mut specdec_error,
) -> specdec_status {
    set(config, err, |c| c.sampling.top_k = top_k as usize)
}

/// Nucleus sampling threshold in (0, 1]; 1 turns it off (default 1).
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_set_top_p(
    config: *mut specdec_gen_config,
    top_p: f32,
    err: *mut *mut specdec_error,
) -> specdec_status {
    set(config, err, |c| c.sampling.top_p = top_p)
}

/// Drop tokens below min_p × the top probability, min_p in [0, 1]; 0 turns it off (default 0).
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_set_min_p(
    config: *mut specdec_gen_config,
    min_p: f32,
    err: *mut *mut specdec_error,
) -> specdec_status {
    set(config, err, |c| c.sampling.min_p = min_p)
}

/// CTRL repetition penalty, finite and > 0; 1 turns it off (default 1).
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_set_repetition_penalty(
    config: *mut specdec_gen_config,
    penalty: f32,
    err: *mut *mut specdec_error,
) -> specdec_status {
    set(config, err, |c| c.sampling.repetition_penalty = penalty)
}

/// OpenAI-style presence penalty, finite (default 0: off): subtracted once from the logit of every
/// token the current generation has produced (prompt tokens do not count). Applied identically to
/// the target's and the draft's distributions, so speculative output still follows the target's.
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_set_presence_penalty(
    config: *mut specdec_gen_config,
    penalty: f32,
    err: *mut *mut specdec_error,
) -> specdec_status {
    set(config, err, |c| c.sampling.presence_penalty = penalty)
}

/// OpenAI-style frequency penalty, finite (default 0: off): subtracted from a token's logit once
/// per time the current generation has produced it.
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_set_frequency_penalty(
    config: *mut specdec_gen_config,
    penalty: f32,
    err: *mut *mut specdec_error,
) -> specdec_status {
    set(config, err, |c| c.sampling.frequency_penalty = penalty)
}

/// Logit bias, replacing any set before: `biases[i]` (finite) is added to the logit of token
/// `ids[i]` after the penalties, greedy decoding included (-100 in practice bans a token).
/// `n` 0 clears it (the arrays may then be NULL). Ids are checked against the vocabulary when a
/// generator or sequence is created (SPECDEC_STATUS_TOKEN_OUT_OF_RANGE).
/// Errors: SPECDEC_STATUS_NULL_PARAMETER (config, or an array NULL with n > 0),
/// SPECDEC_STATUS_INVALID_ARGUMENT (a bias not finite, an id listed twice).
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_set_logit_bias(
    config: *mut specdec_gen_config,
    ids: *const u32,
    biases: *const f32,
    n: usize,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        let ids = slice_arg(ids, n, "ids")?;
        let biases = slice_arg(biases, n, "biases")?;
        let bias: Vec<(u32, f32)> = ids.iter().copied().zip(biases.iter().copied()).collect();
        let c = handle_mut(config, "config")?;
        let mut next = c.inner.clone();
        next.sampling.logit_bias = bias;
        next.validate()?;
        c.inner = next;
        Ok(())
    })
}

/// Seed of the generator's random stream (default 0). The same seed, settings and models give
/// the same output.
/// Errors: SPECDEC_STATUS_NULL_PARAMETER.
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_set_seed(
    config: *mut specdec_gen_config,
    seed: u64,
    err: *mut *mut specdec_error,
) -> specdec_status {
    set(config, err, |c| c.seed = seed)
}

/// Most tokens generated per prompt (default 128). 0 generates nothing.
/// Errors: SPECDEC_STATUS_NULL_PARAMETER.
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_set_max_new_tokens(
    config: *mut specdec_gen_config,
    max_new_tokens: u32,
    err: *mut *mut specdec_error,
) -> specdec_status {
    set(config, err, |c| c.max_new_tokens = max_new_tokens as usize)
}

/// End-of-sequence ids, replacing the default. `n_ids` 0 means no EOS at all (then `ids` may be
/// NULL). Ids are checked against the vocabulary when the generator is created.
/// Errors: SPECDEC_STATUS_NULL_PARAMETER (config, or ids NULL with n_ids > 0).
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_set_eos_ids(
    config: *mut specdec_gen_config,
    ids: *const u32,
    n_ids: usize,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        let ids = slice_arg(ids, n_ids, "ids")?.to_vec();
        handle_mut(config, "config")?.inner.eos_ids = Some(ids);
        Ok(())
    })
}

/// Go back to the default EOS ids: those of the target's generation_config.json.
/// Errors: SPECDEC_STATUS_NULL_PARAMETER.
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_use_model_eos_ids(
    config: *mut specdec_gen_config,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        handle_mut(config, "config")?.inner.eos_ids = None;
        Ok(())
    })
}

/// Add a stop sequence of tokens: generation ends once the generated tokens end with it.
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_INVALID_ARGUMENT (empty).
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_add_stop_tokens(
    config: *mut specdec_gen_config,
    ids: *const u32,
    n_ids: usize,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        let seq = slice_arg(ids, n_ids, "ids")?.to_vec();
        let c = handle_mut(config, "config")?;
        if seq.is_empty() {
            return Err(FfiError::invalid("a stop sequence must not be empty"));
        }
        c.inner.stop_sequences.push(seq);
        Ok(())
    })
}

/// Add a stop text (NUL-terminated UTF-8): generation ends once the generated text contains it.
/// Needs a tokenizer on the generator (specdec_generator_set_tokenizer).
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_INVALID_UTF8, SPECDEC_STATUS_INVALID_ARGUMENT (empty).
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_add_stop_text(
    config: *mut specdec_gen_config,
    text: *const c_char,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        let text = str_arg(text, "text")?;
        let c = handle_mut(config, "config")?;
        if text.is_empty() {
            return Err(FfiError::invalid("a stop text must not be empty"));
        }
        c.inner.stop_texts.push(text.to_string());
        c.texts.push(CString::new(text).unwrap_or_default());
        Ok(())
    })
}

/// Remove all stop sequences (tokens and texts).
/// Errors: SPECDEC_STATUS_NULL_PARAMETER.
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_clear_stops(
    config: *mut specdec_gen_config,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        let c = handle_mut(config, "config")?;
        c.inner.stop_sequences.clear();
        c.inner.stop_texts.clear();
        c.texts.clear();
        Ok(())
    })
}

/// Draft-length policies for specdec_gen_config_set_draft_policy.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum specdec_draft_policy {
    /// Always gamma proposals (fewer only when the drafter runs out or near the end). The default.
    Fixed = 0,
    /// Start at gamma; +2 after a round whose proposals were all accepted, -1 otherwise.
    Heuristic = 1,
    /// Choose gamma in 0..=16 every round from the measured acceptance rate, draft cost and
    /// verification cost (paper section 3.5); 0 (target only) when speculation would be slower.
    /// Within a round, drafting stops early after a guess the draft is unsure of and runs on
    /// while it is sure (per confidence level, from the acceptance measured there), and a new
    /// generation starts from what earlier ones on the same target, draft and sampling settings
    /// learnt. The choice depends on measured timings and earlier generations, so a sampled
    /// generation with a fixed seed is reproducible only in distribution; use FIXED or HEURISTIC
    /// for the same tokens per seed. Greedy output is the target's own whatever the policy.
    Auto = 2,
}

/// How the draft length is chosen: a specdec_draft_policy value (default
/// SPECDEC_DRAFT_POLICY_FIXED).
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_INVALID_ARGUMENT (unknown value).
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_set_draft_policy(
    config: *mut specdec_gen_config,
    policy: u32,
    err: *mut *mut specdec_error,
) -> specdec_status {
    use crate::DraftPolicy as P;
    guard(err, || {
        let p = match policy {
            x if x == specdec_draft_policy::Fixed as u32 => P::Fixed,
            x if x == specdec_draft_policy::Heuristic as u32 => P::Heuristic,
            x if x == specdec_draft_policy::Auto as u32 => P::Auto,
            other => return Err(FfiError::invalid(format!("unknown draft policy {other}"))),
        };
        handle_mut(config, "config")?.inner.draft_policy = p;
        Ok(())
    })
}

/// Stop drafting a round once the draft's most likely token has probability below `p_min`, in
/// [0, 1]; 0 turns it off (default 0). Applies to score-based drafts (a draft model, counts).
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_set_confidence_stop(
    config: *mut specdec_gen_config,
    p_min: f32,
    err: *mut *mut specdec_error,
) -> specdec_status {
    set(config, err, |c| c.confidence_stop = p_min)
}

/// Most bytes the KV caches of one generator (target and draft together) may use; 0 means no
/// limit (the default). Appending a prompt whose request (prompt + max_new_tokens + a round's
/// proposals) could outgrow it fails with SPECDEC_STATUS_MEMORY_BUDGET and changes nothing.
/// Errors: SPECDEC_STATUS_NULL_PARAMETER.
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_set_kv_memory_limit(
    config: *mut specdec_gen_config,
    bytes: u64,
    err: *mut *mut specdec_error,
) -> specdec_status {
    set(config, err, |c| c.kv_memory_limit = (bytes > 0).then_some(bytes.min(usize::MAX as u64) as usize))
}

/// Log-probabilities of each generated token (specdec_generator_logprobs), from the target's
/// distribution at its position, with the `top_n` most likely alternatives each (at most
/// SPECDEC_MAX_LOGPROBS; more than the vocabulary lists all of it). 0 turns them off (the
/// default): then nothing is computed for them. Turning them on changes no generated token.
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_INVALID_ARGUMENT (above
/// SPECDEC_MAX_LOGPROBS).
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_set_logprobs(
    config: *mut specdec_gen_config,
    top_n: u32,
    err: *mut *mut specdec_error,
) -> specdec_status {
    set(config, err, |c| c.logprobs = top_n as usize)
}

/// Whether appending a prompt after which fewer than max_new_tokens tokens fit in the context
/// fails (SPECDEC_STATUS_CONTEXT_LIMIT, the message saying how many fit). Default false: a
/// prompt needs room for one generated token only.
/// Errors: SPECDEC_STATUS_NULL_PARAMETER.
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_set_reserve_max_new_tokens(
    config: *mut specdec_gen_config,
    reserve: bool,
    err: *mut *mut specdec_error,
) -> specdec_status {
    set(config, err, |c| c.reserve_max_new_tokens = reserve)
}

/// Whether a generation that fills the context ends cleanly with SPECDEC_FINISH_REASON_LENGTH
/// (true) or its next iteration fails with SPECDEC_STATUS_CONTEXT_LIMIT (false, the default and
/// the behaviour of earlier versions).
/// Errors: SPECDEC_STATUS_NULL_PARAMETER.
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_set_finish_at_context_limit(
    config: *mut specdec_gen_config,
    finish: bool,
    err: *mut *mut specdec_error,
) -> specdec_status {
    set(config, err, |c| c.finish_at_context_limit = finish)
}

/// Read a setting of `config` (`fallback` for NULL).
unsafe fn get<T: Copy>(config: *const specdec_gen_config, fallback: T, f: impl FnOnce(&GenerationConfig) -> T) -> T {
    guard_value(fallback, || match config.as_ref() {
        Some(c) => f(&c.inner),
        None => fallback,
    })
}

/// The draft length (specdec_gen_config_set_gamma); 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_get_gamma(config: *const specdec_gen_config) -> u32 {
    get(config, 0, |c| c.gamma as u32)
}

/// The temperature; 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_get_temperature(config: *const specdec_gen_config) -> f32 {
    get(config, 0.0, |c| c.sampling.temperature)
}

/// top_k (0: off); 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_get_top_k(config: *const specdec_gen_config) -> u32 {
    get(config, 0, |c| c.sampling.top_k.min(u32::MAX as usize) as u32)
}

/// top_p (1: off); 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_get_top_p(config: *const specdec_gen_config) -> f32 {
    get(config, 0.0, |c| c.sampling.top_p)
}

/// min_p (0: off); 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_get_min_p(config: *const specdec_gen_config) -> f32 {
    get(config, 0.0, |c| c.sampling.min_p)
}

/// The repetition penalty (1: off); 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_get_repetition_penalty(config: *const specdec_gen_config) -> f32 {
    get(config, 0.0, |c| c.sampling.repetition_penalty)
}

/// The presence penalty (0: off); 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_get_presence_penalty(config: *const specdec_gen_config) -> f32 {
    get(config, 0.0, |c| c.sampling.presence_penalty)
}

/// The frequency penalty (0: off); 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_get_frequency_penalty(config: *const specdec_gen_config) -> f32 {
    get(config, 0.0, |c| c.sampling.frequency_penalty)
}

/// The logit bias: copies up to `capacity` entries, in the order set, into `ids` and `biases`
/// (both may be NULL when `capacity` is 0) and writes the number of entries to `*n_total`.
/// Errors: SPECDEC_STATUS_NULL_PARAMETER (config, n_total, or an array NULL with capacity > 0).
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_get_logit_bias(
    config: *const specdec_gen_config,
    ids: *mut u32,
    biases: *mut f32,
    capacity: usize,
    n_total: *mut usize,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        let n_total = out_arg(n_total, "n_total")?;
        let bias = &handle(config, "config")?.inner.sampling.logit_bias;
        if capacity > 0 {
            let ids = slice_out(ids, capacity, "ids")?;
            let biases = slice_out(biases, capacity, "biases")?;
            for (i, &(t, b)) in bias.iter().take(capacity).enumerate() {
                ids[i] = t;
                biases[i] = b;
            }
        }
        *n_total = bias.len();
        Ok(())
    })
}

/// The seed; 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_get_seed(config: *const specdec_gen_config) -> u64 {
    get(config, 0, |c| c.seed)
}

/// max_new_tokens; 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_get_max_new_tokens(config: *const specdec_gen_config) -> u32 {
    get(config, 0, |c| c.max_new_tokens.min(u32::MAX as usize) as u32)
}

/// The draft-length policy, a specdec_draft_policy value; SPECDEC_DRAFT_POLICY_FIXED for NULL.
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_get_draft_policy(config: *const specdec_gen_config) -> u32 {
    use crate::DraftPolicy as P;
    get(config, specdec_draft_policy::Fixed as u32, |c| match c.draft_policy {
        P::Fixed => specdec_draft_policy::Fixed as u32,
        P::Heuristic => specdec_draft_policy::Heuristic as u32,
        P::Auto => specdec_draft_policy::Auto as u32,
    })
}

/// The confidence stop (0: off); 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_get_confidence_stop(config: *const specdec_gen_config) -> f32 {
    get(config, 0.0, |c| c.confidence_stop)
}

/// The KV memory budget in bytes (0: no limit); 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_get_kv_memory_limit(config: *const specdec_gen_config) -> u64 {
    get(config, 0, |c| c.kv_memory_limit.map_or(0, |b| b as u64))
}

/// The alternatives listed per token with log-probabilities on (0: off); 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_get_logprobs(config: *const specdec_gen_config) -> u32 {
    get(config, 0, |c| c.logprobs as u32)
}

/// Whether appending checks room for max_new_tokens; false for NULL.
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_get_reserve_max_new_tokens(config: *const specdec_gen_config) -> bool {
    get(config, false, |c| c.reserve_max_new_tokens)
}

/// Whether a generation filling the context ends with SPECDEC_FINISH_REASON_LENGTH; false for NULL.
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_get_finish_at_context_limit(config: *const specdec_gen_config) -> bool {
    get(config, false, |c| c.finish_at_context_limit)
}

/// The EOS ids set with specdec_gen_config_set_eos_ids: `*ids`/`*n_ids` receive them (owned by
/// `config`, valid until it is changed or freed; `*ids` may be NULL when `*n_ids` is 0), and
/// `*from_model` (may be NULL) true when none were set and the target's own EOS ids apply
/// (specdec_model_eos_ids; `*n_ids` is then 0).
/// Errors: SPECDEC_STATUS_NULL_PARAMETER.
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_get_eos_ids(
    config: *const specdec_gen_config,
    ids: *mut *const u32,
    n_ids: *mut usize,
    from_model: *mut bool,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        let (ids, n_ids) = (out_arg(ids, "ids")?, out_arg(n_ids, "n_ids")?);
        let c = handle(config, "config")?;
        let set = c.inner.eos_ids.as_deref();
        *ids = set.map_or(std::ptr::null(), <[u32]>::as_ptr);
        *n_ids = set.map_or(0, <[u32]>::len);
        if let Some(f) = from_model.as_mut() {
            *f = set.is_none();
        }
        Ok(())
    })
}

/// Stop sequences of tokens added with specdec_gen_config_add_stop_tokens; 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_get_stop_token_count(config: *const specdec_gen_config) -> usize {
    get(config, 0, |c| c.stop_sequences.len())
}

/// Stop sequence `index` of tokens: `*ids`/`*n_ids` receive it (owned by `config`, valid until it
/// is changed or freed).
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_INVALID_ARGUMENT (index out of range).
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_get_stop_tokens(
    config: *const specdec_gen_config,
    index: usize,
    ids: *mut *const u32,
    n_ids: *mut usize,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        let (ids, n_ids) = (out_arg(ids, "ids")?, out_arg(n_ids, "n_ids")?);
        let c = handle(config, "config")?;
        let n = c.inner.stop_sequences.len();
        let seq = c
            .inner
            .stop_sequences
            .get(index)
            .ok_or_else(|| FfiError::invalid(format!("stop sequence {index} does not exist: {n} are set")))?;
        *ids = seq.as_ptr();
        *n_ids = seq.len();
        Ok(())
    })
}

/// Stop texts added with specdec_gen_config_add_stop_text; 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_get_stop_text_count(config: *const specdec_gen_config) -> usize {
    guard_value(0, || config.as_ref().map_or(0, |c| c.texts.len()))
}

/// Stop text `index`, NUL-terminated UTF-8 owned by `config` (valid until it is changed or
/// freed); NULL for a NULL config or an index out of range.
#[no_mangle]
pub unsafe extern "C" fn specdec_gen_config_get_stop_text(config: *const specdec_gen_config, index: usize) -> *const c_char {
    guard_value(std::ptr::null(), || config.as_ref().and_then(|c| c.texts.get(index)).map_or(std::ptr::null(), |t| t.as_ptr()))
}
