//! Batch engine handles: continuous batching of many sequences over one model pair, driven by
//! specdec_engine_step, fed by specdec_engine_add and read by specdec_engine_poll.

use super::*;
use crate::engine::{Admission, Engine, EngineOptions, SeqState};

/// Settings of an engine (specdec_engine_new copies them). Not thread-safe.
pub struct specdec_engine_options {
    inner: EngineOptions,
}

/// Continuous batching of speculative decoding over one target (and draft) model. Every function
/// on it is thread-safe: specdec_engine_add, specdec_engine_cancel, specdec_engine_poll,
/// specdec_engine_remove, specdec_engine_set_tokenizer and the stats calls may be called from any
/// thread while another is inside specdec_engine_step, and never wait for the round to finish
/// (they take a small lock the round holds only between its phases). One thread at a time runs
/// rounds: a concurrent specdec_engine_step returns SPECDEC_STATUS_BUSY. Free it only when no
/// other call on it is running.
pub struct specdec_engine {
    inner: Engine,
}

/// What specdec_engine_add does with a sequence the KV memory budget has no room for now.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum specdec_admission {
    /// Queue it: it is admitted, first in first out, once finished sequences free enough room.
    Wait = 0,
    /// Refuse it with SPECDEC_STATUS_MEMORY_BUDGET.
    Refuse = 1,
}

/// Where a sequence of an engine is.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum specdec_seq_state {
    /// Added, not yet admitted (the batch is full or the memory budget has no room yet).
    Waiting = 0,
    /// Admitted: each specdec_engine_step runs a round for it.
    Running = 1,
    /// Ended; its finish reason says why (SPECDEC_FINISH_REASON_CANCELLED after a cancel).
    Finished = 2,
    /// A model call failed for it; specdec_engine_poll reports the error once its tokens are taken.
    Failed = 3,
}

impl From<SeqState> for specdec_seq_state {
    fn from(s: SeqState) -> Self {
        match s {
            SeqState::Waiting => specdec_seq_state::Waiting,
            SeqState::Running => specdec_seq_state::Running,
            SeqState::Finished => specdec_seq_state::Finished,
            SeqState::Failed => specdec_seq_state::Failed,
        }
    }
}

/// Counters of an engine over its life, filled by specdec_engine_get_stats (a C function cannot
/// share the type's name). ABI-stable: set `struct_size` to sizeof(specdec_engine_stats) first;
/// fields a newer library adds are appended, and only the first `struct_size` bytes are written.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct specdec_engine_stats {
    pub struct_size: usize,
    /// Rounds run (each: batched draft steps and one batched verification).
    pub rounds: u64,
    /// Sequences running now, waiting for admission, and finished (or failed) and not removed.
    pub active: u64,
    pub waiting: u64,
    pub finished: u64,
    /// Tokens generated, drafted and accepted, over all sequences.
    pub new_tokens: u64,
    pub drafted: u64,
    pub accepted: u64,
    /// KV bytes the running sequences' caches hold now; the limit set with
    /// specdec_engine_options_set_kv_memory_limit (0: none).
    pub kv_bytes_used: u64,
    pub kv_bytes_limit: u64,
    /// Wall time in the target's and the draft's calls, and in specdec_engine_step in all.
    pub target_seconds: f64,
    pub draft_seconds: f64,
    pub total_seconds: f64,
}

/// Size of the first version of specdec_engine_stats; struct_size may not be smaller.
pub const SPECDEC_ENGINE_STATS_V1_SIZE: usize = 104;
const _: () = assert!(std::mem::size_of::<specdec_engine_stats>() == SPECDEC_ENGINE_STATS_V1_SIZE);

/// New engine options with the defaults: 16 rows per round, no KV memory limit, admission
/// SPECDEC_ADMISSION_WAIT. Free with specdec_engine_options_free.
#[no_mangle]
pub extern "C" fn specdec_engine_options_new() -> *mut specdec_engine_options {
    guard_value(std::ptr::null_mut(), || Box::into_raw(Box::new(specdec_engine_options { inner: EngineOptions::default() })))
}

/// Free engine options. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn specdec_engine_options_free(options: *mut specdec_engine_options) {
    free_boxed(options);
}

/// Most sequences in one round (rows of the batched calls), default 16; more wait their turn.
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_INVALID_ARGUMENT (0).
#[no_mangle]
pub unsafe extern "C" fn specdec_engine_options_set_max_batch(
    options: *mut specdec_engine_options,
    max_rows: u32,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        let o = handle_mut(options, "options")?;
        if max_rows == 0 {
            return Err(FfiError::invalid("max_rows must be at least 1"));
        }
        o.inner.max_batch = max_rows as usize;
        Ok(())
    })
}

/// Most bytes the KV caches (target and draft) of all admitted sequences may come to, each
/// counted at the most it can grow to (prompt, max_new_tokens and one round's proposals, within
/// the context); 0 (the default): unlimited. Each sequence's own limit is its config's
/// specdec_gen_config_set_kv_memory_limit.
/// Errors: SPECDEC_STATUS_NULL_PARAMETER.
#[no_mangle]
pub unsafe extern "C" fn specdec_engine_options_set_kv_memory_limit(
    options: *mut specdec_engine_options,
    total_bytes: u64,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        let o = handle_mut(options, "options")?;
        o.inner.kv_memory_limit = (total_bytes > 0).then(|| usize::try_from(total_bytes).unwrap_or(usize::MAX));
        Ok(())
    })
}

/// What specdec_engine_add does when the KV memory limit has no room for a sequence now:
/// SPECDEC_ADMISSION_WAIT (the default) queues it, SPECDEC_ADMISSION_REFUSE refuses it with
/// SPECDEC_STATUS_MEMORY_BUDGET. A full batch (max_batch rows) always queues.
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_INVALID_ARGUMENT (not a
/// specdec_admission value).
#[no_mangle]
pub unsafe extern "C" fn specdec_engine_options_set_admission(
    options: *mut specdec_engine_options,
    mode: specdec_admission,
    err: *mut *mut specdec_error,
) -> specdec_status {
    // Read as the integer C passed: a value outside the enum must not be matched as one.
    let raw: u32 = std::mem::transmute_copy(&mode);
    guard(err, || {
        let o = handle_mut(options, "options")?;
        o.inner.admission = match raw {
            0 => Admission::Wait,
            1 => Admission::Refuse,
            other => return Err(FfiError::invalid(format!("unknown admission mode {other}"))),
        };
        Ok(())
    })
}

/// Create an engine over `target`, speculating with `draft` (NULL: target-only decoding), with
/// `options` (NULL: defaults; copied). The engine keeps both models alive.
///
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_VOCAB_MISMATCH, SPECDEC_STATUS_INFERENCE.
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn specdec_engine_new(
    target: *const specdec_model,
    draft: *const specdec_model,
    options: *const specdec_engine_options,
    out: *mut *mut specdec_engine,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        new_handle(out, || {
            let target = handle(target, "target")?.inner.clone();
            let draft = draft.as_ref().map(|d| d.inner.clone());
            let opts = options.as_ref().map_or_else(EngineOptions::default, |o| o.inner.clone());
            Ok(specdec_engine { inner: Engine::new(target, draft, opts)? })
        })
    })
}

/// Free an engine and every sequence in it. NULL is a no-op. No other call on it may be running.
#[no_mangle]
pub unsafe extern "C" fn specdec_engine_free(engine: *mut specdec_engine) {
    free_boxed(engine);
}

/// Match text stop sequences (specdec_gen_config_add_stop_text) with `tokenizer` (kept alive by
/// the engine): for sequences added from now on, and for waiting and running ones from the next
/// round. Errors: SPECDEC_STATUS_NULL_PARAMETER.
#[no_mangle]
pub unsafe extern "C" fn specdec_engine_set_tokenizer(
    engine: *mut specdec_engine,
    tokenizer: *const specdec_tokenizer,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        let e = handle(engine, "engine")?;
        e.inner.set_tokenizer(handle(tokenizer, "tokenizer")?.inner.clone());
        Ok(())
    })
}

/// Queue a sequence generating after `prompt` with `config` (NULL: defaults; copied: its sampling
/// settings, seed, draft length and policy, stop conditions, max_new_tokens, per-sequence KV
/// limit); `*out_id` receives its id (ids are never reused). It is admitted by a later
/// specdec_engine_step.
///
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_INVALID_ARGUMENT (empty prompt; text
/// stop sequences without specdec_engine_set_tokenizer), SPECDEC_STATUS_TOKEN_OUT_OF_RANGE,
/// SPECDEC_STATUS_CONTEXT_LIMIT (the prompt does not fit), SPECDEC_STATUS_MEMORY_BUDGET (more than
/// its own or the engine's limit could ever hold; with SPECDEC_ADMISSION_REFUSE, more than the
/// engine's limit has room for now).
#[no_mangle]
pub unsafe extern "C" fn specdec_engine_add(
    engine: *mut specdec_engine,
    prompt: *const u32,
    n_prompt: usize,
    config: *const specdec_gen_config,
    out_id: *mut u64,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        let out_id = out_arg(out_id, "out_id")?;
        *out_id = 0;
        let e = handle(engine, "engine")?;
        let prompt = slice_arg(prompt, n_prompt, "prompt")?;
        let cfg = config.as_ref().map_or_else(crate::GenerationConfig::default, |c| c.inner.clone());
        *out_id = e.inner.add(prompt, cfg)?;
        Ok(())
    })
}

/// Ask sequence `id` to stop: before the next round it finishes with
/// SPECDEC_FINISH_REASON_CANCELLED and its KV caches are freed (tokens produced before stay
/// pollable). A sequence that has already ended is left as it is.
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_INVALID_ARGUMENT (unknown id).
#[no_mangle]
pub unsafe extern "C" fn specdec_engine_cancel(
    engine: *mut specdec_engine,
    id: u64,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        handle(engine, "engine")?.inner.cancel(id)?;
        Ok(())
    })
}

/// Run one round for every running sequence, admitting waiting ones first (each admitted one's
/// prompt is fed to both models then). `*n_active` (may be NULL) receives how many sequences are
/// still running or waiting afterwards: 0 when there is nothing left to do. A failure of one
/// sequence fails only that sequence (see specdec_engine_poll); this call still succeeds.
///
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_BUSY (another thread is inside
/// specdec_engine_step on this engine).
#[no_mangle]
pub unsafe extern "C" fn specdec_engine_step(
    engine: *mut specdec_engine,
    n_active: *mut usize,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        if let Some(n) = n_active.as_mut() {
            *n = 0;
        }
        let left = handle(engine, "engine")?.inner.step()?;
        if let Some(n) = n_active.as_mut() {
            *n = left;
        }
        Ok(())
    })
}

/// Move up to `capacity` of sequence `id`'s tokens produced since the last poll into `tokens`
/// (`tokens` may be NULL when `capacity` is 0, to query only); `*n_tokens` receives how many were
/// copied. `*state` and `*reason` (each may be NULL) receive the sequence's state and, once it
/// has finished, its finish reason (SPECDEC_FINISH_REASON_NONE before). The sequence is done when
/// the state is FINISHED or FAILED and a poll copied fewer tokens than its capacity.
///
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_INVALID_ARGUMENT (unknown id); for a
/// FAILED sequence, once its tokens are all taken, the error that failed it (with the outputs
/// filled as for a success).
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn specdec_engine_poll(
    engine: *mut specdec_engine,
    id: u64,
    tokens: *mut u32,
    capacity: usize,
    n_tokens: *mut usize,
    state: *mut specdec_seq_state,
    reason: *mut specdec_finish_reason,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        let n_out = out_arg(n_tokens, "n_tokens")?;
        *n_out = 0;
        let e = handle(engine, "engine")?;
        let out = slice_out(tokens, capacity, "tokens")?;
        let mut got = Vec::new();
        let poll = e.inner.poll(id, &mut got, capacity)?;
        out[..got.len()].copy_from_slice(&got);
        *n_out = got.len();
        if let Some(s) = state.as_mut() {
            *s = poll.state.into();
        }
        if let Some(r) = reason.as_mut() {
            *r = super::generator::reason(poll.reason);
        }
        match poll.error {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    })
}

/// Forget sequence `id` and free its record (a running or waiting one is cancelled first; its
/// caches are freed by the next round). Its id is unknown afterwards.
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_INVALID_ARGUMENT (unknown id).
#[no_mangle]
pub unsafe extern "C" fn specdec_engine_remove(
    engine: *mut specdec_engine,
    id: u64,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        handle(engine, "engine")?.inner.remove(id)?;
        Ok(())
    })
}

/// Fill `*stats` with sequence `id`'s counters and timings (as of the last round; model time of
/// a batched call is shared evenly among its rows). Set `stats->struct_size` first, as for
/// specdec_generator_stats.
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_INVALID_ARGUMENT (unknown id, or
/// struct_size smaller than SPECDEC_STATS_V1_SIZE).
#[no_mangle]
pub unsafe extern "C" fn specdec_engine_seq_stats(
    engine: *const specdec_engine,
    id: u64,
    stats: *mut specdec_stats,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        let e = handle(engine, "engine")?;
        let out = out_arg(stats, "stats")?;
        let size = out.struct_size;
        if size < SPECDEC_STATS_V1_SIZE {
            return Err(FfiError::invalid(format!("stats->struct_size is {size}, at least {SPECDEC_STATS_V1_SIZE} needed")));
        }
        let s = e.inner.seq_stats(id)?;
        super::generator::write_stats(&s, out)
    })
}

/// Fill `*stats` with the engine's counters. Set `stats->struct_size` first (to
/// sizeof(specdec_engine_stats)); at most that many bytes are written, and `struct_size` is set
/// to the number written.
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_INVALID_ARGUMENT (struct_size smaller
/// than SPECDEC_ENGINE_STATS_V1_SIZE).
#[no_mangle]
pub unsafe extern "C" fn specdec_engine_get_stats(
    engine: *const specdec_engine,
    stats: *mut specdec_engine_stats,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        let e = handle(engine, "engine")?;
        let out = out_arg(stats, "stats")?;
        let size = out.struct_size;
        if size < SPECDEC_ENGINE_STATS_V1_SIZE {
            return Err(FfiError::invalid(format!(
                "stats->struct_size is {size}, at least {SPECDEC_ENGINE_STATS_V1_SIZE} needed"
            )));
        }
        let s = e.inner.stats();
        let full = std::mem::size_of::<specdec_engine_stats>();
        let filled = specdec_engine_stats {
            struct_size: full.min(size),
            rounds: s.rounds,
            active: s.active,
            waiting: s.waiting,
            finished: s.finished,
            new_tokens: s.new_tokens,
            drafted: s.drafted,
            accepted: s.accepted,
            kv_bytes_used: s.kv_bytes_used,
            kv_bytes_limit: s.kv_bytes_limit,
            target_seconds: s.target_time.as_secs_f64(),
            draft_seconds: s.draft_time.as_secs_f64(),
            total_seconds: s.total_time.as_secs_f64(),
        };
        std::ptr::copy_nonoverlapping(
            &filled as *const specdec_engine_stats as *const u8,
            out as *mut _ as *mut u8,
            full.min(size),
        );
        Ok(())
    })
}
