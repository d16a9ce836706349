//! The batch engine: many sequences over one model pair, added and removed between rounds
//! (continuous batching). Each round drafts for every running sequence in batched draft calls and
//! verifies all of them in one batched target call (see [`crate::model::BatchRow`] for how rows
//! of different lengths share a call and which graphs fall back to a call per row); each
//! sequence then accepts, emits and rolls back on its own, through the same code as a
//! [`Generator`] (a sequence *is* a generator, driven a phase at a time by `round`).
//!
//! Threading: a round runs under the `core` lock, which [`Engine::step`] only tries (a second
//! concurrent step gets [`Error::Busy`]); adds, cancels, polls, removals and stats go through the
//! small `shared` lock, which a round takes only between its phases, so they never wait for a
//! round to finish.

mod round;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::generator::{FinishReason, GenerationConfig, Generator, Stats};
use crate::model::Model;
use crate::tokenizer::Tokenizer;

/// What happens to a sequence the memory budget has no room for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Admission {
    /// It waits (first in, first out) until finished sequences free enough.
    #[default]
    Wait,
    /// [`Engine::add`] refuses it with [`Error::MemoryBudget`].
    Refuse,
}

/// Settings of an engine.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineOptions {
    /// Most sequences in one round (rows of the batched calls); more wait their turn. Default 16.
    pub max_batch: usize,
    /// Most bytes all running sequences' KV caches (target and draft) may come to, each counted
    /// at the most it can grow to (prompt, `max_new_tokens` and a round's proposals, within the
    /// context). `None` (the default): no limit. Each sequence's own budget is its config's
    /// [`GenerationConfig::kv_memory_limit`].
    pub kv_memory_limit: Option<usize>,
    pub admission: Admission,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { max_batch: 16, kv_memory_limit: None, admission: Admission::Wait }
    }
}

/// Where a sequence is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqState {
    /// Added, not admitted yet (the batch is full or the memory budget has no room).
    Waiting,
    Running,
    /// Ended: see its [`FinishReason`] (cancelled ones too).
    Finished,
    /// A call failed; [`Engine::poll`] reports the error once the tokens are drained.
    Failed,
}

/// What [`Engine::poll`] tells about a sequence.
#[derive(Debug, Clone)]
pub struct Poll {
    pub state: SeqState,
    /// Set once finished.
    pub reason: Option<FinishReason>,
    /// Tokens produced since the last poll and not taken yet.
    pub pending: usize,
    /// A failed sequence's error, once all its tokens have been taken.
    pub error: Option<Error>,
}

/// Counters of an engine, over its life.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EngineStats {
    pub rounds: u64,
    /// Sequences running, waiting, and finished (or failed) and not removed.
    pub active: u64,
    pub waiting: u64,
    pub finished: u64,
    pub new_tokens: u64,
    pub drafted: u64,
    pub accepted: u64,
    /// KV bytes the running sequences' caches hold now, and the engine's limit (0: none).
    pub kv_bytes_used: u64,
    pub kv_bytes_limit: u64,
    /// Time in the target's and the draft's calls, and in rounds (admission and prefill included).
    /// Prefill calls count in `prefill_time` only.
    pub target_time: Duration,
    pub draft_time: Duration,
    pub total_time: Duration,
    /// Time feeding admitted sequences' prompts to both models.
    pub prefill_time: Duration,
}

/// One sequence's record on the shared side: what polls read and what the caller asked for.
struct Record {
    state: SeqState,
    reason: Option<FinishReason>,
    out: VecDeque<u32>,
    error: Option<Error>,
    stats: Stats,
    cancel: bool,
    /// Bytes of the total budget reserved for it (0 when not reserved).
    reserved: usize,
}

#[derive(Default)]
struct Shared {
    next_id: u64,
    records: HashMap<u64, Record>,
    /// Added since the last round, in order.
    incoming: VecDeque<(u64, Generator)>,
    tokenizer: Option<Arc<Tokenizer>>,
    /// Reserved bytes of the total budget.
    reserved: usize,
    stats: EngineStats,
}

/// A sequence on the round side.
struct Seq {
    id: u64,
    gen: Generator,
    /// Tokens of its sequence already handed to its record.
    published: usize,
}

#[derive(Default)]
struct Core {
    waiting: VecDeque<Seq>,
    running: Vec<Seq>,
    tokenizer: Option<Arc<Tokenizer>>,
}

/// Continuous batching of speculative decoding over one target (and optional draft model). All
/// methods take `&self` and may be called from any thread; see the module notes.
pub struct Engine {
    target: Arc<Model>,
    draft: Option<Arc<Model>>,
    opts: EngineOptions,
    shared: Mutex<Shared>,
    core: Mutex<Core>,
}

impl Engine {
    /// An engine over `target`, speculating with `draft` (None: target-only decoding). Refuses a
    /// draft whose vocabulary differs from the target's.
    pub fn new(target: Arc<Model>, draft: Option<Arc<Model>>, opts: EngineOptions) -> Result<Engine> {
        if opts.max_batch == 0 {
            return Err(Error::invalid("max_batch must be at least 1"));
        }
        // A throwaway generator checks the pair as a sequence would.
        Generator::new(target.clone(), draft.clone(), GenerationConfig::default())?;
        Ok(Engine { target, draft, opts, shared: Mutex::default(), core: Mutex::default() })
    }

    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Match text stop sequences of the sequences added from now on (and of those waiting or
    /// running, from the next round) with `tokenizer`.
    pub fn set_tokenizer(&self, tokenizer: Arc<Tokenizer>) {
        self.shared().tokenizer = Some(tokenizer);
    }

    /// Queue a sequence generating after `prompt` with `cfg`; returns its id. Errors:
    /// [`Error::InvalidArgument`] (empty prompt, a bad config, text stop sequences without a
    /// tokenizer), [`Error::TokenOutOfRange`], [`Error::ContextLimit`] (the prompt does not fit),
    /// [`Error::MemoryBudget`] (more than its own or the engine's budget could ever hold, or, in
    /// [`Admission::Refuse`] mode, more than the engine's budget has room for now).
    pub fn add(&self, prompt: &[u32], cfg: GenerationConfig) -> Result<u64> {
        if prompt.is_empty() {
            return Err(Error::invalid("empty prompt: a sequence needs at least one token"));
        }
        let tokenizer = self.shared().tokenizer.clone();
        if !cfg.stop_texts.is_empty() && tokenizer.is_none() {
            return Err(Error::invalid("text stop sequences need a tokenizer (set the engine's tokenizer first)"));
        }
        let mut gen = Generator::new(self.target.clone(), self.draft.clone(), cfg)?;
        if let Some(t) = tokenizer {
            gen.set_tokenizer(t);
        }
        gen.append_tokens(prompt)?;
        let need = gen.kv_reservation();
        let mut shared = self.shared();
        let mut reserved = 0;
        if let Some(limit) = self.opts.kv_memory_limit {
            if need > limit {
                return Err(Error::MemoryBudget { needed: need, limit });
            }
            if self.opts.admission == Admission::Refuse {
                if shared.reserved + need > limit {
                    return Err(Error::MemoryBudget { needed: shared.reserved + need, limit });
                }
                shared.reserved += need;
                reserved = need;
            }
        }
        shared.next_id += 1;
        let id = shared.next_id;
        let record = Record {
            state: SeqState::Waiting,
            reason: None,
            out: VecDeque::new(),
            error: None,
            stats: Stats::default(),
            cancel: false,
            reserved,
        };
        shared.records.insert(id, record);
        shared.incoming.push_back((id, gen));
        shared.stats.waiting += 1;
        Ok(id)
    }

    /// Ask sequence `id` to stop before the next round: it finishes with
    /// [`FinishReason::Cancelled`] and its KV caches are freed. A finished sequence is left as it
    /// is. Unknown id: [`Error::InvalidArgument`].
    pub fn cancel(&self, id: u64) -> Result<()> {
        let mut shared = self.shared();
        let r = shared.records.get_mut(&id).ok_or_else(|| unknown(id))?;
        if matches!(r.state, SeqState::Waiting | SeqState::Running) {
            r.cancel = true;
        }
        Ok(())
    }

    /// Move up to `max` of sequence `id`'s tokens produced since the last poll into `out`
    /// (appended), and say where it is; a failed sequence's error comes with the poll that
    /// leaves no tokens behind (and every later one). Unknown id: [`Error::InvalidArgument`].
    pub fn poll(&self, id: u64, out: &mut Vec<u32>, max: usize) -> Result<Poll> {
        let mut shared = self.shared();
        let r = shared.records.get_mut(&id).ok_or_else(|| unknown(id))?;
        let n = max.min(r.out.len());
        out.extend(r.out.drain(..n));
        let error = r.error.clone().filter(|_| r.out.is_empty());
        Ok(Poll { state: r.state, reason: r.reason, pending: r.out.len(), error })
    }

    /// Forget sequence `id` (cancelling it first if it still runs or waits). Unknown id:
    /// [`Error::InvalidArgument`].
    pub fn remove(&self, id: u64) -> Result<()> {
        let mut shared = self.shared();
        let r = shared.records.remove(&id).ok_or_else(|| unknown(id))?;
        // A running or waiting sequence's slot is freed by the next round, which finds no record.
        match r.state {
            SeqState::Waiting => shared.stats.waiting -= 1,
            SeqState::Running => shared.stats.active -= 1,
            SeqState::Finished | SeqState::Failed => shared.stats.finished -= 1,
        }
        shared.reserved -= r.reserved;
        Ok(())
    }

    /// Sequence `id`'s generator stats (as of the last round).
    pub fn seq_stats(&self, id: u64) -> Result<Stats> {
        Ok(self.shared().records.get(&id).ok_or_else(|| unknown(id))?.stats)
    }

    pub fn stats(&self) -> EngineStats {
        let mut s = self.shared().stats;
        s.kv_bytes_limit = self.opts.kv_memory_limit.unwrap_or(0) as u64;
        s
    }

    /// Run one round for every running sequence, admitting waiting ones first; returns how many
    /// sequences are still running or waiting. A concurrent call gets [`Error::Busy`]. A
    /// sequence's own failure fails only that sequence (see [`Engine::poll`]).
    pub fn step(&self) -> Result<usize> {
        let mut core = match self.core.try_lock() {
            Ok(c) => c,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return Err(Error::Busy("another thread is running a round of this engine".into())),
        };
        let started = Instant::now();
        self.intake(&mut core);
        let admitting = Instant::now();
        self.admit(&mut core);
        self.shared().stats.prefill_time += admitting.elapsed();
        let timing = if core.running.is_empty() {
            round::RoundTimes::default()
        } else {
            round::run(&self.target, self.draft.as_deref(), &mut core.running)
        };
        Ok(self.publish(&mut core, timing, started.elapsed()))
    }

    /// Take in what callers asked for since the last round: new sequences, cancellations and
    /// removals, a tokenizer.
    fn intake(&self, core: &mut Core) {
        let mut shared = self.shared();
        let incoming: Vec<_> = shared.incoming.drain(..).collect();
        core.waiting.extend(incoming.into_iter().map(|(id, gen)| Seq { published: gen.tokens().len(), id, gen }));
        if let Some(t) = shared.tokenizer.clone().filter(|t| core.tokenizer.as_ref().is_none_or(|c| !Arc::ptr_eq(c, t))) {
            core.waiting.iter_mut().chain(core.running.iter_mut()).for_each(|s| s.gen.set_tokenizer(t.clone()));
            core.tokenizer = Some(t);
        }
        let gone = |shared: &mut Shared, s: &Seq| match shared.records.get_mut(&s.id) {
            None => true,
            Some(r) if r.cancel => {
                let was_running = r.state == SeqState::Running;
                (r.state, r.reason, r.cancel) = (SeqState::Finished, Some(FinishReason::Cancelled), false);
                let freed = std::mem::take(&mut r.reserved);
                shared.reserved -= freed;
                if was_running {
                    shared.stats.active -= 1;
                } else {
                    shared.stats.waiting -= 1;
                }
                shared.stats.finished += 1;
                true
            }
            Some(_) => false,
        };
        core.waiting.retain(|s| !gone(&mut shared, s));
        core.running.retain(|s| !gone(&mut shared, s));
    }

    /// Admit waiting sequences, first come first served, while the batch and the budget have
    /// room, and feed their prompts to both models (one batched call each; a sequence whose
    /// prompt fails fails alone).
    fn admit(&self, core: &mut Core) {
        let mut admitted = Vec::new();
        {
            let mut shared = self.shared();
            while core.running.len() + admitted.len() < self.opts.max_batch {
                let Some(seq) = core.waiting.front() else { break };
                let Some(r) = shared.records.get(&seq.id) else {
                    // Removed since the intake: nothing to admit, nothing to count.
                    core.waiting.pop_front();
                    continue;
                };
                if r.reserved == 0 {
                    let need = seq.gen.kv_reservation();
                    if self.opts.kv_memory_limit.is_some_and(|limit| shared.reserved + need > limit) {
                        break;
                    }
                    shared.reserved += need;
                    if let Some(r) = shared.records.get_mut(&seq.id) {
                        r.reserved = need;
                    }
                }
                admitted.extend(core.waiting.pop_front());
            }
        }
        if admitted.is_empty() {
            return;
        }
        let results = round::prefill(&self.target, self.draft.as_deref(), &mut admitted);
        let mut shared = self.shared();
        for (seq, result) in admitted.into_iter().zip(results) {
            // A sequence removed meanwhile was uncounted by the removal.
            if !shared.records.contains_key(&seq.id) {
                continue;
            }
            shared.stats.waiting -= 1;
            let Some(r) = shared.records.get_mut(&seq.id) else { continue };
            match result {
                Ok(()) => {
                    r.state = SeqState::Running;
                    shared.stats.active += 1;
                    core.running.push(seq);
                }
                Err(e) => {
                    (r.state, r.error) = (SeqState::Failed, Some(e));
                    let freed = std::mem::take(&mut r.reserved);
                    shared.reserved -= freed;
                    shared.stats.finished += 1;
                }
            }
        }
    }

    /// Hand each sequence's new tokens, state and stats to its record; drop the sequences that
    /// ended (freeing their caches). Returns the sequences still running or waiting.
    fn publish(&self, core: &mut Core, t: round::RoundTimes, elapsed: Duration) -> usize {
        let mut shared = self.shared();
        let s = &mut shared.stats;
        s.rounds += u64::from(t.ran);
        s.target_time += t.target;
        s.draft_time += t.draft;
        s.total_time += elapsed;
        let mut kv = 0;
        let mut ended = Vec::new();
        for (i, seq) in core.running.iter_mut().enumerate() {
            let Some(r) = shared.records.get_mut(&seq.id) else {
                ended.push(i);
                continue;
            };
            let tokens = seq.gen.tokens();
            let new = &tokens[seq.published..];
            r.out.extend(new.iter().copied());
            seq.published = tokens.len();
            let before = r.stats;
            r.stats = *seq.gen.stats();
            let failed = t.failed.iter().find(|(id, _)| *id == seq.id).map(|(_, e)| e.clone());
            let done = failed.is_some() || seq.gen.is_finished();
            if let Some(e) = failed {
                (r.state, r.error) = (SeqState::Failed, Some(e));
            } else if let Some(reason) = seq.gen.finish_reason() {
                (r.state, r.reason) = (SeqState::Finished, Some(reason));
            }
            let freed = if done { std::mem::take(&mut r.reserved) } else { 0 };
            let (after, new_tokens) = (r.stats, new.len() as u64);
            shared.reserved -= freed;
            let s = &mut shared.stats;
            s.new_tokens += new_tokens;
            s.drafted += after.drafted - before.drafted;
            s.accepted += after.accepted - before.accepted;
            if done {
                s.active -= 1;
                s.finished += 1;
                ended.push(i);
            } else {
                kv += seq.gen.kv_bytes_held();
            }
        }
        for i in ended.into_iter().rev() {
            core.running.swap_remove(i);
        }
        shared.stats.kv_bytes_used = kv as u64;
        core.running.len() + core.waiting.len() + shared.incoming.len()
    }
}

fn unknown(id: u64) -> Error {
    Error::invalid(format!("no sequence {id} in this engine"))
}
