//! Draft sources as handles: a recipe that every generator created from it instantiates afresh,
//! so one drafter handle serves many generators (and threads) at once.

use std::ffi::{c_char, c_void};
use std::sync::Arc;

use super::*;
use crate::drafter::{CountTable, DraftCallback, DraftSource, NGramConfig};
use crate::Error;

/// A draft source: an ONNX draft model, n-gram prompt lookup, unigram/bigram counts, or a host
/// callback. Immutable once made; safe to share between threads and generators.
pub struct specdec_drafter {
    pub(crate) inner: DraftSource,
}

/// Host drafter: propose up to `max_proposals` tokens continuing `tokens[0..n_tokens]`, writing
/// them to `proposals` and returning how many were written (0 proposes nothing this round). If the
/// drafter was made with `with_probs`, `probs` holds `max_proposals * vocab_size` floats: fill
/// row i with the distribution proposal i was sampled from (it must give that proposal a positive
/// probability and sum to 1); otherwise `probs` is NULL and proposals are verified as fixed
/// tokens, which keeps the output exact whatever they are. Return a negative value to fail the
/// step with SPECDEC_STATUS_CALLBACK. Called on the thread running the generator, possibly by
/// several generators at once; it must not call back into the same generator.
pub type specdec_draft_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        tokens: *const u32,
        n_tokens: usize,
        max_proposals: usize,
        vocab_size: usize,
        proposals: *mut u32,
        probs: *mut f32,
    ) -> i32,
>;

struct HostCallback {
    f: unsafe extern "C" fn(*mut c_void, *const u32, usize, usize, usize, *mut u32, *mut f32) -> i32,
    user_data: *mut c_void,
    with_probs: bool,
}

// SAFETY: the header documents that the callback may run on any thread, several at once; making
// that safe for `user_data` is the host's side of the contract.
unsafe impl Send for HostCallback {}
unsafe impl Sync for HostCallback {}

impl DraftCallback for HostCallback {
    fn propose(
        &self,
        tokens: &[u32],
        max: usize,
        vocab: usize,
        proposals: &mut Vec<u32>,
        probs: &mut Vec<f32>,
    ) -> crate::Result<()> {
        proposals.resize(max, 0);
        let probs_ptr = if self.with_probs {
            probs.resize(max * vocab, 0.0);
            probs.as_mut_ptr()
        } else {
            std::ptr::null_mut()
        };
        // SAFETY: the buffers hold `max` proposals and `max * vocab` probabilities, as documented.
        let n = unsafe { (self.f)(self.user_data, tokens.as_ptr(), tokens.len(), max, vocab, proposals.as_mut_ptr(), probs_ptr) };
        if n < 0 {
            proposals.clear();
            probs.clear();
            return Err(Error::Callback(format!("the draft callback returned {n}")));
        }
        let n = n as usize;
        if n > max {
            return Err(Error::invalid(format!("the draft callback returned {n}, more than max_proposals ({max})")));
        }
        proposals.truncate(n);
        if self.with_probs {
            probs.truncate(n * vocab);
        }
        Ok(())
    }
}

fn new_drafter(out: *mut *mut specdec_drafter, make: impl FnOnce() -> FfiResult<DraftSource>) -> FfiResult<()> {
    unsafe { new_handle(out, || Ok(specdec_drafter { inner: make()? })) }
}

/// A drafter running the ONNX model `draft` (kept alive by the drafter), which must share the
/// target's vocabulary (checked when a generator is created).
/// Errors: SPECDEC_STATUS_NULL_PARAMETER.
#[no_mangle]
pub unsafe extern "C" fn specdec_drafter_new_model(
    draft: *const specdec_model,
    out: *mut *mut specdec_drafter,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || new_drafter(out, || Ok(DraftSource::Model(handle(draft, "draft")?.inner.clone()))))
}

/// An n-gram prompt-lookup drafter: it matches the last n tokens (longest n first, n_max down to
/// n_min) against the sequence so far and proposes up to `max_proposal` tokens that followed the
/// latest match. No model, microseconds per round; where nothing matches it proposes nothing, so
/// the round is a plain target step.
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_INVALID_ARGUMENT (1 <= n_min <= n_max
/// <= 64 and 1 <= max_proposal <= SPECDEC_MAX_GAMMA required).
#[no_mangle]
pub unsafe extern "C" fn specdec_drafter_new_ngram(
    n_min: u32,
    n_max: u32,
    max_proposal: u32,
    out: *mut *mut specdec_drafter,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        new_drafter(out, || {
            let cfg = NGramConfig { n_min: n_min as usize, n_max: n_max as usize, max_proposal: max_proposal as usize };
            cfg.validate()?;
            Ok(DraftSource::NGram(cfg))
        })
    })
}

/// A unigram (`order` 1) or bigram (`order` 2) drafter. `counts_path` names a count file (one
/// entry per line: `<id> <count>` or `<prev> <id> <count>`, `#` comments); NULL learns the counts
/// from the sequence itself (prompt and output so far).
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_INVALID_ARGUMENT (order),
/// SPECDEC_STATUS_IO (unreadable or malformed file), SPECDEC_STATUS_INVALID_UTF8.
#[no_mangle]
pub unsafe extern "C" fn specdec_drafter_new_counts(
    order: u32,
    counts_path: *const c_char,
    out: *mut *mut specdec_drafter,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        new_drafter(out, || {
            if !(1..=2).contains(&order) {
                return Err(FfiError::invalid(format!("order must be 1 (unigram) or 2 (bigram), got {order}")));
            }
            let table = opt_path(counts_path, "counts_path")?.map(CountTable::load).transpose()?.map(Arc::new);
            Ok(DraftSource::Counts { order: order as usize, table })
        })
    })
}

/// A drafter that asks the host: see specdec_draft_fn. `user_data` is passed back untouched and
/// must stay valid while any generator made from this drafter exists.
/// Errors: SPECDEC_STATUS_NULL_PARAMETER (callback or out).
#[no_mangle]
pub unsafe extern "C" fn specdec_drafter_new_callback(
    callback: specdec_draft_fn,
    user_data: *mut c_void,
    with_probs: bool,
    out: *mut *mut specdec_drafter,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        new_drafter(out, || {
            let f = callback.ok_or_else(|| FfiError::null("callback"))?;
            Ok(DraftSource::Callback(Arc::new(HostCallback { f, user_data, with_probs })))
        })
    })
}

/// Free a drafter. NULL is a no-op. Generators made from it keep what they need.
#[no_mangle]
pub unsafe extern "C" fn specdec_drafter_free(drafter: *mut specdec_drafter) {
    free_boxed(drafter);
}

/// A generator over `target` drafting with `drafter` (NULL: target-only); `config` may be NULL
/// for the defaults. Each generator gets its own drafter state (KV cache, index).
/// Errors: as specdec_generator_new.
#[no_mangle]
pub unsafe extern "C" fn specdec_generator_new_with_drafter(
    target: *const specdec_model,
    drafter: *const specdec_drafter,
    config: *const specdec_gen_config,
    out: *mut *mut specdec_generator,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || new_generator(target, drafter.as_ref().map(|d| &d.inner), config, out))
}
