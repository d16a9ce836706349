//! Generator handles: step-wise and one-call generation, stats, cancellation, log-probabilities,
//! round timings, rewinding, new settings between turns, and forks that reuse a prefix's KV.

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use super::*;
use crate::{FinishReason, GenerationConfig, Generator, Stats, TokenLogprob};

/// One sequence being generated. Not thread-safe, except specdec_generator_cancel and
/// specdec_generator_clear_cancel, which any thread may call at any time. A call made while
/// another call holds the generator (another thread, or the generator's own callback) fails
/// with SPECDEC_STATUS_BUSY instead of blocking.
pub struct specdec_generator {
    cancel: Arc<AtomicBool>,
    inner: Mutex<Generator>,
}

impl specdec_generator {
    pub(crate) fn wrap(gen: Generator) -> Self {
        specdec_generator { cancel: gen.cancel_flag(), inner: Mutex::new(gen) }
    }

    /// Never waits: a generator held by another call (its own callback included, which would
    /// deadlock) is reported as busy.
    fn lock(&self) -> FfiResult<MutexGuard<'_, Generator>> {
        match self.inner.try_lock() {
            Ok(g) => Ok(g),
            Err(TryLockError::Poisoned(e)) => Ok(e.into_inner()),
            Err(TryLockError::WouldBlock) => Err(FfiError {
                code: specdec_status::Busy,
                message:
                    "the generator is in use by another call (only specdec_generator_cancel may be called from its callback)"
                        .into(),
            }),
        }
    }
}

/// Why generation ended.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum specdec_finish_reason {
    /// Not finished yet.
    None = 0,
    /// An end-of-sequence token was generated (it is part of the tokens).
    Eos = 1,
    /// max_new_tokens were generated.
    MaxTokens = 2,
    /// A stop sequence was generated (it is part of the tokens).
    StopSequence = 3,
    /// The callback asked to stop.
    Stopped = 4,
    /// (Since 0.3) The sequence fills the context; only with
    /// specdec_gen_config_set_finish_at_context_limit (otherwise the next iteration fails with
    /// SPECDEC_STATUS_CONTEXT_LIMIT).
    Length = 5,
    /// (Since 0.3) The sequence was cancelled with specdec_engine_cancel (batch engine only).
    Cancelled = 6,
}

pub(crate) fn reason(r: Option<FinishReason>) -> specdec_finish_reason {
    match r {
        None => specdec_finish_reason::None,
        Some(FinishReason::Eos) => specdec_finish_reason::Eos,
        Some(FinishReason::MaxTokens) => specdec_finish_reason::MaxTokens,
        Some(FinishReason::StopSequence) => specdec_finish_reason::StopSequence,
        Some(FinishReason::Stopped) => specdec_finish_reason::Stopped,
        Some(FinishReason::Length) => specdec_finish_reason::Length,
        Some(FinishReason::Cancelled) => specdec_finish_reason::Cancelled,
    }
}

/// Counters and timings of a generator, cumulative over its prompts. ABI-stable: set
/// `struct_size` to sizeof(specdec_stats) before calling specdec_generator_stats; fields a
/// newer library adds are appended, and only the first `struct_size` bytes are written.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct specdec_stats {
    pub struct_size: usize,
    /// ONNX Runtime calls of the target / of the draft.
    pub target_calls: u64,
    pub draft_calls: u64,
    /// Iterations (one verification each).
    pub rounds: u64,
    /// Tokens proposed by the draft, and how many of them the target accepted.
    pub drafted: u64,
    pub accepted: u64,
    /// Tokens generated.
    pub new_tokens: u64,
    /// accepted / drafted (0 when nothing was drafted).
    pub acceptance_rate: f64,
    /// new_tokens / rounds.
    pub tokens_per_target_call: f64,
    /// Wall time in the drafter (for a draft model: its ONNX Runtime calls), in the target's
    /// ONNX Runtime calls, everything else, and in all.
    pub draft_seconds: f64,
    pub target_seconds: f64,
    pub other_seconds: f64,
    pub total_seconds: f64,
    /// (Since 0.2) Rounds that ended in a rejection; the others accepted every proposal.
    pub rejected: u64,
    /// (Since 0.2) The paper's acceptance rate per verified position: accepted / (accepted +
    /// rejected); proposals after a rejection are never judged and do not count.
    pub alpha: f64,
    /// (Since 0.3) Time to first token of the latest generation: from the start of its first
    /// iteration (prefill of what the caches lacked included) to the end of the iteration that
    /// produced its first token; 0 until then. Per-round times: specdec_generator_round.
    pub time_to_first_token_seconds: f64,
}

/// Size of the first version of specdec_stats; struct_size may not be smaller.
pub const SPECDEC_STATS_V1_SIZE: usize = 104;
/// Size of specdec_stats in 0.2 (up to `alpha`).
pub const SPECDEC_STATS_V2_SIZE: usize = 120;
const _: () = assert!(std::mem::size_of::<specdec_stats>() >= SPECDEC_STATS_V1_SIZE);
const _: () = assert!(std::mem::offset_of!(specdec_stats, time_to_first_token_seconds) == SPECDEC_STATS_V2_SIZE);

/// Callback of specdec_generator_generate: receives the tokens each iteration produced
/// (`tokens` valid only during the call). Return 0 to continue, non-zero to stop. It runs on the
/// calling thread and must not unwind (no C++ exceptions, no longjmp) through specdec.
pub type specdec_token_callback =
    Option<unsafe extern "C" fn(user_data: *mut c_void, tokens: *const u32, n_tokens: usize) -> i32>;

/// Create a generator over `target`, speculating with `draft` (NULL: target-only decoding), with
/// `config` (NULL: defaults; it is copied). The generator keeps both models alive.
///
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_VOCAB_MISMATCH (draft and target
/// vocabularies differ), SPECDEC_STATUS_TOKEN_OUT_OF_RANGE (an EOS or stop-sequence id outside
/// the vocabulary),
/// SPECDEC_STATUS_INVALID_ARGUMENT, SPECDEC_STATUS_INFERENCE. Thread-safe (models are shared read-only).
#[no_mangle]
pub unsafe extern "C" fn specdec_generator_new(
    target: *const specdec_model,
    draft: *const specdec_model,
    config: *const specdec_gen_config,
    out: *mut *mut specdec_generator,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        let source = draft.as_ref().map(|d| crate::drafter::DraftSource::Model(d.inner.clone()));
        new_generator(target, source.as_ref(), config, out)
    })
}

/// The constructors' shared body: a generator over `target` drafting from `source`.
pub(crate) unsafe fn new_generator(
    target: *const specdec_model,
    source: Option<&crate::drafter::DraftSource>,
    config: *const specdec_gen_config,
    out: *mut *mut specdec_generator,
) -> FfiResult<()> {
    new_handle(out, || {
        let target = handle(target, "target")?.inner.clone();
        let cfg = config.as_ref().map_or_else(GenerationConfig::default, |c| c.inner.clone());
        Ok(specdec_generator::wrap(Generator::from_source(target, source, cfg)?))
    })
}

/// Free a generator. NULL is a no-op. Must not race with other calls on it (cancel included).
#[no_mangle]
pub unsafe extern "C" fn specdec_generator_free(generator: *mut specdec_generator) {
    free_boxed(generator);
}

/// Use `tokenizer` to match text stop sequences (kept alive by the generator).
/// Errors: SPECDEC_STATUS_NULL_PARAMETER.
#[no_mangle]
pub unsafe extern "C" fn specdec_generator_set_tokenizer(
    generator: *mut specdec_generator,
    tokenizer: *const specdec_tokenizer,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        let g = handle(generator, "generator")?;
        let tok = handle(tokenizer, "tokenizer")?.inner.clone();
        g.lock()?.set_tokenizer(tok);
        Ok(())
    })
}

/// Append prompt tokens (a first prompt or a follow-up turn); starts a new generation of up to
/// max_new_tokens. Appending zero tokens continues the sequence as it is with a fresh
/// max_new_tokens allowance (also after EOS or a stop). All or nothing: on error no token is
/// appended and the generator is unchanged.
///
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_TOKEN_OUT_OF_RANGE,
/// SPECDEC_STATUS_CONTEXT_LIMIT (no room left for the prompt plus one generated token; or, with
/// specdec_gen_config_set_reserve_max_new_tokens, for the prompt plus max_new_tokens: the message
/// then says how many new tokens fit; specdec_generator_context_room tells the room left),
/// SPECDEC_STATUS_MEMORY_BUDGET.
#[no_mangle]
pub unsafe extern "C" fn specdec_generator_append_tokens(
    generator: *mut specdec_generator,
    ids: *const u32,
    n_ids: usize,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        let g = handle(generator, "generator")?;
        let ids = slice_arg(ids, n_ids, "ids")?;
        let mut st = g.lock()?;
        st.append_tokens(ids)?;
        Ok(())
    })
}

/// Run one iteration (draft γ tokens, verify them in one target call, accept or resample, roll
/// back). `*tokens`/`*n_tokens` receive the tokens it added (none once finished); the array is
/// owned by the generator and valid until its next non-const call.
///
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_INVALID_ARGUMENT (no prompt yet),
/// SPECDEC_STATUS_CANCELLED (specdec_generator_cancel was called; the generator stays usable),
/// SPECDEC_STATUS_CONTEXT_LIMIT (the sequence fills the context; with
/// specdec_gen_config_set_finish_at_context_limit the generation ends with
/// SPECDEC_FINISH_REASON_LENGTH instead), SPECDEC_STATUS_INFERENCE.
#[no_mangle]
pub unsafe extern "C" fn specdec_generator_step(
    generator: *mut specdec_generator,
    tokens: *mut *const u32,
    n_tokens: *mut usize,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        // The outputs are cleared before anything can fail, the generator's NULL check included.
        let (tokens, n_tokens) = (out_arg(tokens, "tokens")?, out_arg(n_tokens, "n_tokens")?);
        *tokens = std::ptr::null();
        *n_tokens = 0;
        let g = handle(generator, "generator")?;
        let mut st = g.lock()?;
        let before = st.tokens().len();
        st.step()?;
        let all = st.tokens();
        *tokens = all[before..].as_ptr();
        *n_tokens = all.len() - before;
        Ok(())
    })
}

/// Generate until EOS, a stop sequence, max_new_tokens, or `callback` returning non-zero;
/// `callback` (may be NULL) receives each iteration's tokens. `*reason_out` (may be NULL)
/// receives why it ended. On error the tokens produced so far stay in the generator.
///
/// From inside `callback`, only specdec_generator_cancel may be called on this generator;
/// other calls on it return SPECDEC_STATUS_BUSY.
///
/// Errors: as specdec_generator_step, and SPECDEC_STATUS_BUSY.
#[no_mangle]
pub unsafe extern "C" fn specdec_generator_generate(
    generator: *mut specdec_generator,
    callback: specdec_token_callback,
    user_data: *mut c_void,
    reason_out: *mut specdec_finish_reason,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        let g = handle(generator, "generator")?;
        let mut st = g.lock()?;
        let r = st.generate(|new| match callback {
            // SAFETY: the host's function pointer with its own user_data, as documented.
            Some(cb) => unsafe { cb(user_data, new.as_ptr(), new.len()) == 0 },
            None => true,
        })?;
        if let Some(out) = reason_out.as_mut() {
            *out = reason(Some(r));
        }
        Ok(())
    })
}

/// Ask a running or future generation to stop: the next iteration (at most one iteration away)
/// returns SPECDEC_STATUS_CANCELLED, and the request is then consumed. Appending tokens clears a
/// request that no iteration has consumed yet. Safe to call from any
/// thread at any time while the generator exists; NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn specdec_generator_cancel(generator: *const specdec_generator) {
    if let Some(g) = generator.as_ref() {
        g.cancel.store(true, Ordering::SeqCst);
    }
}

/// Withdraw a cancellation request that no iteration has consumed yet (for example one that
/// arrived just after the last iteration of a generation had begun), so that it cannot cancel a
/// later call. Safe from any thread; NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn specdec_generator_clear_cancel(generator: *const specdec_generator) {
    if let Some(g) = generator.as_ref() {
        g.cancel.store(false, Ordering::SeqCst);
    }
}

/// The whole sequence (prompts and generated tokens); owned by the generator, valid until its
/// next non-const call.
/// Errors: SPECDEC_STATUS_NULL_PARAMETER.
#[no_mangle]
pub unsafe extern "C" fn specdec_generator_tokens(
    generator: *const specdec_generator,
    tokens: *mut *const u32,
    n_tokens: *mut usize,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        let g = handle(generator, "generator")?;
        let (tokens, n_tokens) = (out_arg(tokens, "tokens")?, out_arg(n_tokens, "n_tokens")?);
        let st = g.lock()?;
        *tokens = st.tokens().as_ptr();
        *n_tokens = st.tokens().len();
        Ok(())
    })
}

/// Why the current generation ended, or SPECDEC_FINISH_REASON_NONE if it has not (or for NULL,
/// or while another call holds the generator).
#[no_mangle]
pub unsafe extern "C" fn specdec_generator_finish_reason(generator: *const specdec_generator) -> specdec_finish_reason {
    guard_value(specdec_finish_reason::None, || {
        generator.as_ref().and_then(|g| g.lock().ok()).map_or(specdec_finish_reason::None, |st| reason(st.finish_reason()))
    })
}

/// Fill `*stats`. Set `stats->struct_size` first (to sizeof(specdec_stats)); at most that many
/// bytes are written, so a caller built against this header keeps working when later versions
/// append fields, and `struct_size` is set to the number of bytes written.
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_INVALID_ARGUMENT (struct_size smaller
/// than the first version of the struct, SPECDEC_STATS_V1_SIZE bytes).
#[no_mangle]
pub unsafe extern "C" fn specdec_generator_stats(
    generator: *const specdec_generator,
    stats: *mut specdec_stats,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        let g = handle(generator, "generator")?;
        let out = out_arg(stats, "stats")?;
        let size = out.struct_size;
        if size < SPECDEC_STATS_V1_SIZE {
            return Err(FfiError::invalid(format!("stats->struct_size is {size}, at least {SPECDEC_STATS_V1_SIZE} needed")));
        }
        let s: Stats = *g.lock()?.stats();
        write_stats(&s, out)
    })
}

/// Fill the first `out.struct_size` bytes of `*out` (at least SPECDEC_STATS_V1_SIZE, checked
/// by the caller) from `s`, and set `struct_size` to the bytes written.
pub(crate) unsafe fn write_stats(s: &Stats, out: &mut specdec_stats) -> FfiResult<()> {
    let size = out.struct_size;
    let full = std::mem::size_of::<specdec_stats>();
    let filled = specdec_stats {
        // Tells a caller built against a newer header how much of its struct was written.
        struct_size: full.min(size),
        target_calls: s.target_calls,
        draft_calls: s.draft_calls,
        rounds: s.rounds,
        drafted: s.drafted,
        accepted: s.accepted,
        new_tokens: s.new_tokens,
        acceptance_rate: s.acceptance_rate(),
        tokens_per_target_call: s.tokens_per_target_call(),
        draft_seconds: s.draft_time.as_secs_f64(),
        target_seconds: s.target_time.as_secs_f64(),
        other_seconds: s.other_time().as_secs_f64(),
        total_seconds: s.total_time.as_secs_f64(),
        rejected: s.rejected,
        alpha: s.alpha(),
        time_to_first_token_seconds: s.time_to_first_token.as_secs_f64(),
    };
    // An older caller's smaller struct gets its prefix; a newer caller's extra fields stay untouched.
    std::ptr::copy_nonoverlapping(
        &filled as *const specdec_stats as *const u8,
        out as *mut specdec_stats as *mut u8,
        full.min(size),
    );
    Ok(())
}

/// The log-probabilities of one token at one position, from the target's distribution there
/// (what target-only decoding samples from). Layout fixed: a new field would come in a new struct.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct specdec_logprob {
    pub token: u32,
    /// ln p(token) in the distribution sampled from, after the repetition penalty, temperature,
    /// top-k, top-p and min-p; -INFINITY for a token they cut. Greedy samples from a point mass:
    /// 0 for the token it picks, -INFINITY for every other.
    pub logprob: f32,
    /// log_softmax of the target's raw logits (no transform).
    pub raw_logprob: f32,
}

// The engine's records are handed out as they are: the two layouts must agree.
const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(size_of::<specdec_logprob>() == size_of::<TokenLogprob>());
    assert!(align_of::<specdec_logprob>() == align_of::<TokenLogprob>());
    assert!(offset_of!(specdec_logprob, token) == offset_of!(TokenLogprob, token));
    assert!(offset_of!(specdec_logprob, logprob) == offset_of!(TokenLogprob, logprob));
    assert!(offset_of!(specdec_logprob, raw_logprob) == offset_of!(TokenLogprob, raw_logprob));
};

fn as_c(records: &[TokenLogprob]) -> *const specdec_logprob {
    records.as_ptr() as *const specdec_logprob
}

/// The log-probabilities of the current generation's tokens (turn them on with
/// specdec_gen_config_set_logprobs). `*chosen` receives one entry per token for the last
/// `*n_tokens` generated tokens (all tokens of the generation, unless specdec_generator_set_config
/// turned log-probabilities on during it): entry i belongs to token
/// `tokens[n_total - *n_tokens + i]` of specdec_generator_tokens. When `top` is not NULL,
/// `*top` receives `*n_tokens * *top_n` entries: token i's `*top_n` most likely alternatives at
/// entries `[i * *top_n, (i + 1) * *top_n)`, most likely first (by logprob, then raw_logprob).
/// `top_n` may be NULL when `top` is. The arrays are owned by the generator and valid until its
/// next non-const call; with log-probabilities off, `*n_tokens` is 0.
///
/// Errors: SPECDEC_STATUS_NULL_PARAMETER (generator, chosen, n_tokens, or top_n when top is
/// not NULL), SPECDEC_STATUS_BUSY.
#[no_mangle]
pub unsafe extern "C" fn specdec_generator_logprobs(
    generator: *const specdec_generator,
    chosen: *mut *const specdec_logprob,
    n_tokens: *mut usize,
    top: *mut *const specdec_logprob,
    top_n: *mut usize,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        let (chosen, n_tokens) = (out_arg(chosen, "chosen")?, out_arg(n_tokens, "n_tokens")?);
        *chosen = std::ptr::null();
        *n_tokens = 0;
        let top = top.as_mut();
        let top_n = match top {
            Some(_) => Some(out_arg(top_n, "top_n")?),
            None => top_n.as_mut(),
        };
        let g = handle(generator, "generator")?;
        let st = g.lock()?;
        let lp = st.logprobs();
        *chosen = as_c(lp.chosen());
        *n_tokens = lp.len();
        if let Some(top) = top {
            *top = as_c(lp.top_all());
        }
        if let Some(top_n) = top_n {
            *top_n = lp.top_n();
        }
        Ok(())
    })
}

/// One round (one iteration) of the current generation, timed from the generation's start: the
/// start of its first iteration after the prompt was appended, or the generator was rewound or
/// forked. ABI-stable like specdec_stats: set `struct_size` to sizeof(specdec_round) first.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct specdec_round {
    pub struct_size: usize,
    /// When the round started and ended, in seconds since the generation's start.
    pub start_seconds: f64,
    pub end_seconds: f64,
    /// Time in the drafter and in the target's ONNX Runtime calls during the round.
    pub draft_seconds: f64,
    pub target_seconds: f64,
    /// Proposals verified, proposals accepted, tokens the round added to the sequence.
    pub proposed: u64,
    pub accepted: u64,
    pub emitted: u64,
}

/// Size of the first version of specdec_round; struct_size may not be smaller.
pub const SPECDEC_ROUND_V1_SIZE: usize = 64;
const _: () = assert!(std::mem::size_of::<specdec_round>() == SPECDEC_ROUND_V1_SIZE);

/// Rounds of the current generation so far (0 for NULL, or while another call holds the
/// generator).
#[no_mangle]
pub unsafe extern "C" fn specdec_generator_round_count(generator: *const specdec_generator) -> usize {
    guard_value(0, || generator.as_ref().and_then(|g| g.lock().ok()).map_or(0, |st| st.rounds().len()))
}

/// Fill `*round` with round `index` (0-based, below specdec_generator_round_count) of the current
/// generation. Set `round->struct_size` first; at most that many bytes are written and
/// `struct_size` is set to the number written.
///
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_INVALID_ARGUMENT (index out of range,
/// struct_size below SPECDEC_ROUND_V1_SIZE), SPECDEC_STATUS_BUSY.
#[no_mangle]
pub unsafe extern "C" fn specdec_generator_round(
    generator: *const specdec_generator,
    index: usize,
    round: *mut specdec_round,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        let g = handle(generator, "generator")?;
        let out = out_arg(round, "round")?;
        let size = out.struct_size;
        if size < SPECDEC_ROUND_V1_SIZE {
            return Err(FfiError::invalid(format!("round->struct_size is {size}, at least {SPECDEC_ROUND_V1_SIZE} needed")));
        }
        let st = g.lock()?;
        let rounds = st.rounds();
        let r = rounds.get(index).ok_or_else(|| {
            FfiError::invalid(format!("round {index} does not exist: the generation has {} rounds", rounds.len()))
        })?;
        let full = std::mem::size_of::<specdec_round>();
        let filled = specdec_round {
            struct_size: full.min(size),
            start_seconds: r.start.as_secs_f64(),
            end_seconds: r.end.as_secs_f64(),
            draft_seconds: r.draft_time.as_secs_f64(),
            target_seconds: r.target_time.as_secs_f64(),
            proposed: r.proposed as u64,
            accepted: r.accepted as u64,
            emitted: r.emitted as u64,
        };
        std::ptr::copy_nonoverlapping(&filled as *const specdec_round as *const u8, round as *mut u8, full.min(size));
        Ok(())
    })
}

/// Tokens that still fit in the generator's context (the smaller of the target's and the draft's
/// limits) after the sequence it holds; 0 for NULL or while another call holds the generator.
#[no_mangle]
pub unsafe extern "C" fn specdec_generator_context_room(generator: *const specdec_generator) -> usize {
    guard_value(0, || generator.as_ref().and_then(|g| g.lock().ok()).map_or(0, |st| st.context_room()))
}

/// Keep the first `n_tokens` tokens of the sequence and forget the rest, in both models' caches
/// too (an edit, a retry). When `n_tokens` is inside the current generation, it continues from
/// there with what is left of max_new_tokens; when it is inside the prompt, the next
/// generation starts after it with a fresh allowance. The finish reason is cleared; the random
/// stream goes on (specdec_generator_set_config restarts it from the seed).
///
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_INVALID_ARGUMENT (more tokens than the
/// sequence holds; nothing changes), SPECDEC_STATUS_BUSY, SPECDEC_STATUS_INFERENCE.
#[no_mangle]
pub unsafe extern "C" fn specdec_generator_rewind(
    generator: *mut specdec_generator,
    n_tokens: usize,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        handle(generator, "generator")?.lock()?.rewind(n_tokens)?;
        Ok(())
    })
}

/// Replace the generator's settings with a copy of `config`, between turns or between
/// iterations: sampling, seed (the random stream restarts from it), draft length and policy,
/// EOS ids and stop sequences, max_new_tokens (counted from the current generation's start),
/// log-probabilities (a changed setting drops the records so far), memory budget. All or
/// nothing: on error the generator keeps its settings.
///
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_TOKEN_OUT_OF_RANGE (an EOS or stop id
/// outside the vocabulary), SPECDEC_STATUS_BUSY.
#[no_mangle]
pub unsafe extern "C" fn specdec_generator_set_config(
    generator: *mut specdec_generator,
    config: *const specdec_gen_config,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        let g = handle(generator, "generator")?;
        let cfg = handle(config, "config")?.inner.clone();
        g.lock()?.set_config(cfg)?;
        Ok(())
    })
}

/// A copy of the generator's current settings in `*out` (a new handle to free with
/// specdec_gen_config_free; NULL on failure): read them with the specdec_gen_config_get_*
/// functions, change some and pass them to specdec_generator_set_config.
///
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_BUSY.
#[no_mangle]
pub unsafe extern "C" fn specdec_generator_get_config(
    generator: *const specdec_generator,
    out: *mut *mut specdec_gen_config,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        new_handle(out, || Ok(specdec_gen_config::from_config(handle(generator, "generator")?.lock()?.config().clone())))
    })
}

/// Feed the sequence to both models now without generating, so that the next iteration, or a
/// fork of this generator, only computes what follows (a shared prefix: prefill it once, fork a
/// generator per request). The first iteration does the same when this was not called.
///
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_BUSY, SPECDEC_STATUS_INFERENCE.
#[no_mangle]
pub unsafe extern "C" fn specdec_generator_prefill(
    generator: *mut specdec_generator,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        handle(generator, "generator")?.lock()?.prefill()?;
        Ok(())
    })
}

/// A new generator in `*out` (free it with specdec_generator_free; NULL on failure) holding the
/// first `n_tokens` tokens of `source`, with the KV both models computed for them copied rather
/// than recomputed (on the device for a device-resident cache). It has `config` (NULL: a copy of
/// the source's settings), the source's drafter kind and tokenizer, zero stats, and starts a
/// generation after token `n_tokens` as if those tokens had been appended as a prompt (the same
/// checks apply). Any state of the source works, a finished generation included; the source is
/// not changed. Tokens the source never fed to its models (call specdec_generator_prefill first)
/// are computed by the fork's first iteration.
///
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_INVALID_ARGUMENT (n_tokens larger than
/// the source's sequence), SPECDEC_STATUS_CONTEXT_LIMIT (no room to generate after n_tokens),
/// SPECDEC_STATUS_MEMORY_BUDGET, SPECDEC_STATUS_UNAVAILABLE (a drafter that cannot be forked),
/// SPECDEC_STATUS_BUSY (the source is in use, e.g. from inside its own callback),
/// SPECDEC_STATUS_INFERENCE. Thread-safe with respect to the source (it is only read).
#[no_mangle]
pub unsafe extern "C" fn specdec_generator_fork(
    source: *const specdec_generator,
    n_tokens: usize,
    config: *const specdec_gen_config,
    out: *mut *mut specdec_generator,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        new_handle(out, || {
            let src = handle(source, "source")?;
            let st = src.lock()?;
            let forked = match config.as_ref() {
                Some(c) => st.fork_with_config(n_tokens, c.inner.clone())?,
                None => st.fork(n_tokens)?,
            };
            Ok(specdec_generator::wrap(forked))
        })
    })
}
