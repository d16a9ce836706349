//! A sequence being generated: the public API over the speculative decoding loop. Without a draft
//! (or with γ = 0) the same code runs plain target-only decoding, which is the baseline every
//! speed-up is measured against. `round` holds the loop's phases, `stop` when a generation ends,
//! `stats` what it counts and times, `logprobs` the log-probabilities of the emitted tokens.

mod logprobs;
mod round;
mod stats;
mod stop;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::decoder::DecoderState;
use crate::drafter::{DraftSource, Drafter, ModelDrafter};
use crate::error::{Error, Result};
use crate::model::Model;
use crate::policy::{new_policy, DraftPolicy, LengthPolicy, PolicyMemory, MAX_GAMMA};
use crate::sampling::{History, SamplingConfig};
use crate::tokenizer::Tokenizer;

pub use logprobs::{Logprobs, TokenLogprob, MAX_LOGPROBS};
pub use stats::{RoundTiming, Stats};

use logprobs::LogprobRecords;

use round::RoundScratch;
use stop::StopRule;

/// Settings of one generation.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationConfig {
    /// Draft tokens proposed per iteration (1..=64); ignored without a draft. Default 4. The
    /// starting length for the heuristic policy and the auto policy's first guess.
    pub gamma: usize,
    /// How the draft length is chosen each round. Default fixed.
    pub draft_policy: DraftPolicy,
    /// Stop drafting once the draft's most likely token has a probability below this (0 = off,
    /// the default). For score-based drafts only; at temperature 0 the scores' softmax is used.
    pub confidence_stop: f32,
    /// Most bytes the KV caches of a generator (target and draft) may take; a request that could
    /// outgrow it is refused with [`Error::MemoryBudget`]. `None` (the default): no limit.
    pub kv_memory_limit: Option<usize>,
    pub sampling: SamplingConfig,
    /// Seed of the generator's random stream. Default 0.
    pub seed: u64,
    /// Tokens to generate after each prompt at most. Default 128.
    pub max_new_tokens: usize,
    /// End-of-sequence ids; `None` takes them from the target's generation_config.json.
    pub eos_ids: Option<Vec<u32>>,
    /// Generation stops once the generated tokens end with one of these sequences.
    pub stop_sequences: Vec<Vec<u32>>,
    /// Generation stops once the generated text contains one of these (needs a tokenizer:
    /// [`Generator::set_tokenizer`]).
    pub stop_texts: Vec<String>,
    /// Log-probabilities of each generated token ([`Generator::logprobs`]), from the target's
    /// distribution at its position, with this many most likely alternatives (at most
    /// [`MAX_LOGPROBS`]; more than the vocabulary lists it all). 0 (the default): off, and nothing
    /// is computed for them.
    pub logprobs: usize,
    /// Refuse, with [`Error::ContextRoom`], a prompt after which fewer than `max_new_tokens`
    /// tokens fit in the context. Default false: a prompt needs room for one generated token.
    pub reserve_max_new_tokens: bool,
    /// End a generation that fills the context with [`FinishReason::Length`] instead of failing
    /// the next step with [`Error::ContextLimit`]. Default false (the behaviour of ABI 1).
    pub finish_at_context_limit: bool,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        GenerationConfig {
            gamma: 4,
            draft_policy: DraftPolicy::Fixed,
            confidence_stop: 0.0,
            kv_memory_limit: None,
            sampling: SamplingConfig::default(),
            seed: 0,
            max_new_tokens: 128,
            eos_ids: None,
            stop_sequences: Vec::new(),
            stop_texts: Vec::new(),
            logprobs: 0,
            reserve_max_new_tokens: false,
            finish_at_context_limit: false,
        }
    }
}

impl GenerationConfig {
    pub fn validate(&self) -> Result<()> {
        if self.gamma == 0 || self.gamma > MAX_GAMMA {
            return Err(Error::invalid(format!("gamma must be in 1..={MAX_GAMMA}, got {}", self.gamma)));
        }
        if !(0.0..=1.0).contains(&self.confidence_stop) {
            return Err(Error::invalid(format!("confidence_stop must be in [0, 1], got {}", self.confidence_stop)));
        }
        if self.stop_sequences.iter().any(Vec::is_empty) || self.stop_texts.iter().any(String::is_empty) {
            return Err(Error::invalid("stop sequences must not be empty"));
        }
        if self.logprobs > MAX_LOGPROBS {
            return Err(Error::invalid(format!("logprobs must be in 0..={MAX_LOGPROBS}, got {}", self.logprobs)));
        }
        self.sampling.validate()
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FinishReason {
    Eos,
    MaxTokens,
    /// A stop sequence (tokens or text) was generated.
    StopSequence,
    /// The caller's callback asked to stop.
    Stopped,
    /// The sequence fills the context (with [`GenerationConfig::finish_at_context_limit`]).
    Length,
    /// The batch engine's caller cancelled the sequence ([`crate::Engine::cancel`]).
    Cancelled,
}

impl FinishReason {
    /// A short name for reports ("eos", "max_new_tokens", "stop_sequence", "stopped", "length",
    /// "cancelled").
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Eos => "eos",
            FinishReason::MaxTokens => "max_new_tokens",
            FinishReason::StopSequence => "stop_sequence",
            FinishReason::Stopped => "stopped",
            FinishReason::Length => "length",
            FinishReason::Cancelled => "cancelled",
        }
    }
}

/// A sequence being generated, owning its decoder states. Models are shared (`Arc`).
pub struct Generator {
    target: DecoderState,
    drafter: Option<Box<dyn Drafter>>,
    cfg: GenerationConfig,
    policy: Box<dyn LengthPolicy>,
    /// Where the policy's record is kept between sequences, and under which key (None: not kept).
    memory: Arc<PolicyMemory>,
    memory_key: Option<String>,
    /// KV bytes per sequence token, target and draft together.
    kv_bytes_per_token: usize,
    stop_rule: StopRule,
    context_limit: usize,
    rng: StdRng,
    tokens: Vec<u32>,
    history: History,
    /// Tokens generated since the last prompt was appended.
    generated: usize,
    /// Whether the drafter's cache is level with the sequence but for the last round's tokens:
    /// false after a prompt or a round without drafting, when its first step also catches up.
    draft_level: bool,
    finished: Option<FinishReason>,
    stats: Stats,
    /// Log-probabilities of the last tokens of the current generation (when on).
    logprobs: LogprobRecords,
    /// When the current generation's first step started, and its rounds.
    started: Option<Instant>,
    rounds: Vec<RoundTiming>,
    cancel: Arc<AtomicBool>,
    tokenizer: Option<Arc<Tokenizer>>,
    /// Test-only sabotage: accept every proposal (to show the statistical tests can fail).
    always_accept: bool,
    round: RoundScratch,
}

impl Generator {
    /// A generator over `target`, speculating with the ONNX `draft` model when given. Refuses a
    /// draft whose vocabulary differs from the target's.
    pub fn new(target: Arc<Model>, draft: Option<Arc<Model>>, cfg: GenerationConfig) -> Result<Generator> {
        let drafter = match draft {
            Some(d) => Some(Box::new(ModelDrafter::new(d)?) as Box<dyn Drafter>),
            None => None,
        };
        Generator::with_drafter(target, drafter, cfg)
    }

    /// A generator drafting from `source` (a fresh drafter for this sequence), or target-only.
    pub fn from_source(target: Arc<Model>, source: Option<&DraftSource>, cfg: GenerationConfig) -> Result<Generator> {
        let drafter = source.map(|s| s.instantiate(target.info().vocab_size)).transpose()?;
        Generator::with_drafter(target, drafter, cfg)
    }

    /// A generator speculating with any [`Drafter`], or target-only without one. What the `Auto`
    /// policy learns is kept in the process-wide [`PolicyMemory::shared`].
    pub fn with_drafter(target: Arc<Model>, drafter: Option<Box<dyn Drafter>>, cfg: GenerationConfig) -> Result<Generator> {
        Generator::with_policy_memory(target, drafter, cfg, PolicyMemory::shared())
    }

    /// [`Generator::with_drafter`], keeping what the draft-length policy learns in `memory`.
    pub fn with_policy_memory(
        target: Arc<Model>,
        mut drafter: Option<Box<dyn Drafter>>,
        cfg: GenerationConfig,
        memory: Arc<PolicyMemory>,
    ) -> Result<Generator> {
        cfg.validate()?;
        let vocab = target.info().vocab_size;
        let mut context_limit = target.info().context_limit;
        let mut kv_bytes_per_token = target.kv_bytes_per_token();
        if let Some(d) = &drafter {
            d.check_target(&target)?;
            context_limit = context_limit.min(d.context_limit().unwrap_or(usize::MAX));
            kv_bytes_per_token += d.kv_bytes_per_token();
        }
        let stop_rule = stop_rule_for(&target, &cfg)?;
        let (policy, memory_key) = policy_for(&target, drafter.as_deref(), &cfg, &memory);
        let mut target = DecoderState::new(target)?;
        if let Some(limit) = cfg.kv_memory_limit {
            // The budget covers both caches; each may hold as many slots as the budget allows
            // for the sequence as a whole.
            let slots = limit / kv_bytes_per_token.max(1);
            target.set_slot_limit(slots);
            if let Some(d) = drafter.as_mut() {
                d.set_slot_limit(slots);
            }
        }
        let mut logprobs = LogprobRecords::default();
        logprobs.reset(cfg.logprobs.min(vocab));
        Ok(Generator {
            target,
            drafter,
            policy,
            memory,
            memory_key,
            kv_bytes_per_token,
            stop_rule,
            rng: StdRng::seed_from_u64(cfg.seed),
            cfg,
            context_limit,
            tokens: Vec::new(),
            history: History::new(vocab),
            generated: 0,
            draft_level: false,
            finished: None,
            stats: Stats::default(),
            logprobs,
            started: None,
            rounds: Vec::new(),
            cancel: Arc::new(AtomicBool::new(false)),
            always_accept: false,
            tokenizer: None,
            round: RoundScratch::default(),
        })
    }

    /// Name of the draft source ("model", "ngram", ...), if any.
    pub fn drafter_name(&self) -> Option<&'static str> {
        self.drafter.as_ref().map(|d| d.name())
    }

    /// The running acceptance estimate of the auto policy (its prior, 0.5, under other policies).
    pub fn alpha_estimate(&self) -> f64 {
        self.policy.alpha()
    }

    /// Append prompt tokens (a first prompt, or a follow-up turn). Starts a new generation of up
    /// to `max_new_tokens`.
    pub fn append_tokens(&mut self, tokens: &[u32]) -> Result<()> {
        let vocab = self.target.model().info().vocab_size;
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::TokenOutOfRange { id: bad as i64, vocab_size: vocab });
        }
        self.check_request(self.tokens.len(), tokens.len())?;
        for &t in tokens {
            self.history.push(t);
        }
        self.tokens.extend_from_slice(tokens);
        // A cancellation aimed at the previous generation must not kill the next one.
        self.cancel.store(false, Ordering::SeqCst);
        self.start_generation(0);
        Ok(())
    }

    /// Whether a prompt of `prompt` tokens after `len` tokens may start a generation: room in the
    /// context for at least one generated token (or `max_new_tokens` of them, when reserved) and
    /// within the KV memory budget.
    fn check_request(&self, len: usize, prompt: usize) -> Result<()> {
        // Room for the prompt and at least one generated token.
        let needed = len + prompt + 1;
        if needed > self.context_limit {
            return Err(Error::ContextLimit { needed, limit: self.context_limit });
        }
        let fits = self.context_limit - len - prompt;
        if self.cfg.reserve_max_new_tokens && fits < self.cfg.max_new_tokens {
            return Err(Error::ContextRoom { prompt, fits, max_new_tokens: self.cfg.max_new_tokens, limit: self.context_limit });
        }
        if let Some(limit) = self.cfg.kv_memory_limit {
            // The longest the caches can get for this request: the whole sequence plus a round's
            // proposals, within the context.
            let gamma = if self.drafter.is_some() { self.policy.max_gamma() } else { 0 };
            let tokens = (len + prompt + self.cfg.max_new_tokens + gamma).min(self.context_limit);
            let needed = tokens * self.kv_bytes_per_token;
            if needed > limit {
                return Err(Error::MemoryBudget { needed, limit });
            }
        }
        Ok(())
    }

    /// The most KV bytes (target and draft) the current generation can come to hold: the whole
    /// sequence after `max_new_tokens` more plus a round's proposals, within the context.
    pub(crate) fn kv_reservation(&self) -> usize {
        let gamma = if self.drafter.is_some() { self.policy.max_gamma() } else { 0 };
        let left = self.cfg.max_new_tokens.saturating_sub(self.generated);
        (self.tokens.len() + left + gamma).min(self.context_limit) * self.kv_bytes_per_token
    }

    /// KV bytes (target and draft) the caches hold now.
    pub(crate) fn kv_bytes_held(&self) -> usize {
        let draft = self.drafter.as_ref().map_or(0, |d| d.kv_bytes_per_token() * self.target.len());
        self.target.cache().physical_len() * self.target.model().kv_bytes_per_token() + draft
    }

    /// A generation starts (a prompt appended, the generator rewound or forked) with `generated`
    /// of its tokens already in the sequence.
    fn start_generation(&mut self, generated: usize) {
        self.generated = generated;
        self.draft_level = false;
        self.finished = None;
        self.logprobs.truncate(self.logprobs.len().min(generated));
        self.started = None;
        self.rounds.clear();
    }

    /// Tokens that still fit in the context (the smaller of the target's and the draft's).
    pub fn context_room(&self) -> usize {
        self.context_limit - self.tokens.len()
    }

    /// The context limit this generator works in: the smaller of the target's and the draft's.
    pub fn context_limit(&self) -> usize {
        self.context_limit
    }

    /// Log-probabilities of the last [`Logprobs::len`] tokens of the current generation: all of
    /// them when [`GenerationConfig::logprobs`] was on from its start, the ones since it was turned
    /// on by [`Generator::set_config`] otherwise; empty when it is off.
    pub fn logprobs(&self) -> Logprobs<'_> {
        self.logprobs.view()
    }

    /// The rounds of the current generation, timed from its first step.
    pub fn rounds(&self) -> &[RoundTiming] {
        &self.rounds
    }

    /// Keep the first `n` tokens of the sequence and forget the rest (an edit, a retry), in both
    /// models' caches too. When `n` is inside the current generation it continues from there
    /// (with what is left of its `max_new_tokens`); when `n` is inside the prompt, the next
    /// generation starts after token `n` with a fresh allowance. Clears the finish reason; the
    /// random stream goes on (set the config again to restart it from the seed).
    pub fn rewind(&mut self, n: usize) -> Result<()> {
        let len = self.tokens.len();
        if n > len {
            return Err(Error::invalid(format!("cannot rewind to {n} tokens: the sequence holds {len}")));
        }
        let start = len - self.generated;
        self.logprobs.truncate(self.logprobs.len().saturating_sub(len - n));
        self.tokens.truncate(n);
        // The caches never hold the last token: the next round feeds it.
        self.rewind_states(n.saturating_sub(1))?;
        self.history = History::new(self.target.model().info().vocab_size);
        for &t in &self.tokens {
            self.history.push(t);
        }
        let generated = n.saturating_sub(start);
        self.start_generation(generated);
        Ok(())
    }

    /// Replace the settings (between turns, or between steps): sampling, seed (the random stream
    /// restarts from it), draft length and policy, EOS ids and stop sequences, `max_new_tokens`
    /// (counted from the current generation's start), log-probabilities (a changed setting
    /// drops the records so far), memory budget. All or nothing: on error nothing changes.
    pub fn set_config(&mut self, cfg: GenerationConfig) -> Result<()> {
        cfg.validate()?;
        let model = self.target.model().clone();
        let stop_rule = stop_rule_for(&model, &cfg)?;
        if let (Some(key), Some(snapshot)) = (self.memory_key.take(), self.policy.snapshot()) {
            self.memory.put(key, snapshot);
        }
        (self.policy, self.memory_key) = policy_for(&model, self.drafter.as_deref(), &cfg, &self.memory);
        let slots = cfg.kv_memory_limit.map_or(usize::MAX, |limit| limit / self.kv_bytes_per_token.max(1));
        self.target.set_slot_limit(slots);
        if let Some(d) = self.drafter.as_mut() {
            d.set_slot_limit(slots);
        }
        if cfg.logprobs != self.cfg.logprobs {
            self.logprobs.reset(cfg.logprobs.min(model.info().vocab_size));
        }
        self.stop_rule = stop_rule;
        self.rng = StdRng::seed_from_u64(cfg.seed);
        self.cfg = cfg;
        Ok(())
    }

    /// Feed the sequence to both models now, without generating, so that the next step (or a
    /// fork of this generator) only computes what follows. The first step does the same when
    /// this was not called. Timed into the stats.
    pub fn prefill(&mut self) -> Result<()> {
        // The caches never hold the last token: the next round feeds it with the proposals.
        let Some(keep) = self.tokens.len().checked_sub(1).filter(|&k| k > 0) else { return Ok(()) };
        let started = Instant::now();
        let result = self.prefill_states(keep);
        self.stats.total_time += started.elapsed();
        if result.is_err() {
            self.rewind_states(self.target.len().min(keep))?;
        }
        result
    }

    fn prefill_states(&mut self, keep: usize) -> Result<()> {
        if self.target.len() < keep {
            let cost = self.target.sync(&self.tokens[..keep], &[], 1, &mut self.round.logits)?;
            self.stats.target_calls += cost.calls;
            self.stats.target_time += cost.time;
        }
        if let Some(d) = self.drafter.as_mut() {
            let started = Instant::now();
            let calls = d.prefill(&self.tokens[..keep])?;
            self.stats.draft_calls += calls;
            self.stats.draft_time += started.elapsed();
        }
        Ok(())
    }

    /// A new generator holding this one's first `n` tokens, with the KV both models computed for
    /// them copied rather than recomputed (a shared system prompt: prefill it once, then fork a
    /// generator per request). It has the same settings, drafter kind and tokenizer; its stats
    /// start at zero and its next step starts a generation after token `n`, as if those tokens
    /// had been appended as a prompt (the same checks apply). This generator is not changed.
    pub fn fork(&self, n: usize) -> Result<Generator> {
        self.fork_with_config(n, self.cfg.clone())
    }

    /// [`Generator::fork`] with other settings.
    pub fn fork_with_config(&self, n: usize, cfg: GenerationConfig) -> Result<Generator> {
        let len = self.tokens.len();
        if n > len {
            return Err(Error::invalid(format!("cannot fork the first {n} tokens: the sequence holds {len}")));
        }
        let prefix = &self.tokens[..n];
        // The caches never hold the last token: the fork's first round feeds it.
        let keep = n.saturating_sub(1);
        let drafter = self.drafter.as_ref().map(|d| d.fork(prefix, keep)).transpose()?;
        let mut g = Generator::with_policy_memory(self.target.model().clone(), drafter, cfg, self.memory.clone())?;
        g.check_request(0, n)?;
        g.target = self.target.fork(keep)?;
        if let Some(limit) = g.cfg.kv_memory_limit {
            g.target.set_slot_limit(limit / g.kv_bytes_per_token.max(1));
        }
        g.tokens = prefix.to_vec();
        for &t in prefix {
            g.history.push(t);
        }
        g.tokenizer = self.tokenizer.clone();
        Ok(g)
    }

    /// The whole sequence: prompts and generated tokens.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finished
    }

    pub fn is_finished(&self) -> bool {
        self.finished.is_some()
    }

    pub fn config(&self) -> &GenerationConfig {
        &self.cfg
    }

    /// A flag that, once set from any thread, makes the next iteration return
    /// [`Error::Cancelled`] (the flag is then cleared and the generator stays usable).
    /// Appending tokens clears a pending request.
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// Withdraw a cancellation request that no iteration has consumed yet.
    pub fn clear_cancel(&self) {
        self.cancel.store(false, Ordering::SeqCst);
    }

    /// Replace the acceptance rule by "always accept", which is wrong: the statistical tests use
    /// it as a control that they must reject. Never use it for generation.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn debug_always_accept(&mut self) {
        self.always_accept = true;
    }

    /// Make `Auto` take a draft step to cost `draft` × a one-token target call, and each verified
    /// token `per_token` × that call more, instead of timing them, so tests can put its decisions
    /// where they want them. Never use it for generation.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn debug_pin_costs(&mut self, draft: f64, per_token: f64) {
        self.policy.pin_costs(draft, per_token);
    }

    /// The tokenizer that text stop sequences are matched with.
    pub fn set_tokenizer(&mut self, tokenizer: Arc<Tokenizer>) {
        self.tokenizer = Some(tokenizer);
    }

    /// Mark the current generation as stopped by the caller.
    pub fn stop(&mut self) {
        self.finished.get_or_insert(FinishReason::Stopped);
    }

    /// Run one iteration: draft, verify in one target call, accept or resample, roll back.
    /// Returns the tokens it added (empty once finished).
    pub fn step(&mut self) -> Result<&[u32]> {
        let Some(remaining) = self.step_ready()? else { return Ok(&[]) };
        let start = self.step_start();
        let result = self.iterate(remaining);
        let before = start.before;
        self.step_end(start, result)?;
        Ok(&self.tokens[before..])
    }

    /// Whether a step may run, and how many tokens it may still generate (`None`: the generation
    /// is over, now perhaps).
    pub(crate) fn step_ready(&mut self) -> Result<Option<usize>> {
        if self.finished.is_some() {
            return Ok(None);
        }
        if self.cancel.swap(false, Ordering::SeqCst) {
            return Err(Error::Cancelled);
        }
        if self.tokens.is_empty() {
            return Err(Error::invalid("empty prompt: append at least one token before generating"));
        }
        if self.stop_rule.needs_tokenizer() && self.tokenizer.is_none() {
            return Err(Error::invalid("text stop sequences need a tokenizer (set_tokenizer)"));
        }
        // set_config may have lowered max_new_tokens below what was generated.
        let remaining = self.cfg.max_new_tokens.saturating_sub(self.generated);
        if remaining == 0 {
            self.finished = Some(FinishReason::MaxTokens);
            return Ok(None);
        }
        if self.tokens.len() >= self.context_limit {
            if self.cfg.finish_at_context_limit {
                self.finished = Some(FinishReason::Length);
                return Ok(None);
            }
            return Err(Error::ContextLimit { needed: self.tokens.len() + 1, limit: self.context_limit });
        }
        Ok(Some(remaining))
    }

    /// What the end of a step compares with.
    pub(crate) fn step_start(&mut self) -> StepStart {
        let started = Instant::now();
        let generation_start = *self.started.get_or_insert(started);
        StepStart { started, generation_start, before: self.tokens.len(), stats_before: self.stats }
    }

    /// Time and record a step that ran its round to `result`; a failed round is cut back to the
    /// committed sequence.
    pub(crate) fn step_end(&mut self, start: StepStart, result: Result<()>) -> Result<()> {
        let StepStart { started, generation_start, before, stats_before } = start;
        let ended = Instant::now();
        self.stats.total_time += ended - started;
        if let Err(e) = result {
            // A failed call may leave a cache holding proposals that were never committed; cut
            // both back to the committed sequence so the generator stays usable.
            self.rewind_states(self.tokens.len() - 1)?;
            return Err(e);
        }
        let emitted = self.tokens.len() - before;
        if emitted > 0 && emitted == self.generated {
            self.stats.time_to_first_token = ended - generation_start;
        }
        self.rounds.push(RoundTiming {
            start: started - generation_start,
            end: ended - generation_start,
            draft_time: self.stats.draft_time - stats_before.draft_time,
            target_time: self.stats.target_time - stats_before.target_time,
            proposed: self.round.proposed(),
            accepted: self.round.accepted(),
            emitted,
        });
        Ok(())
    }

    /// Generate until EOS, `max_new_tokens` or `on_tokens` returning false.
    pub fn generate(&mut self, mut on_tokens: impl FnMut(&[u32]) -> bool) -> Result<FinishReason> {
        loop {
            let new = self.step()?;
            if !new.is_empty() && !on_tokens(new) {
                self.stop();
            }
            if let Some(reason) = self.finished {
                return Ok(reason);
            }
        }
    }
}

/// When a step started, and the sequence and stats it started from.
#[derive(Clone, Copy)]
pub(crate) struct StepStart {
    started: Instant,
    generation_start: Instant,
    before: usize,
    stats_before: Stats,
}

/// The stop rule of `cfg` over `target`: EOS ids (the model's unless given) and stop sequences,
/// refusing ids outside the vocabulary, which could never match.
fn stop_rule_for(target: &Model, cfg: &GenerationConfig) -> Result<StopRule> {
    let vocab = target.info().vocab_size;
    let eos = cfg.eos_ids.clone().unwrap_or_else(|| target.info().eos_ids.clone());
    if let Some(&bad) = eos.iter().chain(cfg.stop_sequences.iter().flatten()).find(|&&e| e as usize >= vocab) {
        return Err(Error::TokenOutOfRange { id: bad as i64, vocab_size: vocab });
    }
    Ok(StopRule::new(eos, cfg.stop_sequences.clone(), cfg.stop_texts.clone(), cfg.max_new_tokens))
}

/// The draft-length policy of `cfg`, starting from what `memory` kept for this target, drafter
/// and sampling settings (and the key it is kept under, when it learns).
fn policy_for(
    target: &Model,
    drafter: Option<&dyn Drafter>,
    cfg: &GenerationConfig,
    memory: &PolicyMemory,
) -> (Box<dyn LengthPolicy>, Option<String>) {
    let mut policy = new_policy(cfg.draft_policy, cfg.gamma);
    let memory_key = match drafter {
        Some(d) if policy.remembers() => d.memory_key().map(|k| {
            format!("target {} at #{}; {k}; sampling {:?}", target.path().display(), target.instance_id(), cfg.sampling)
        }),
        _ => None,
    };
    if let Some(s) = memory_key.as_deref().and_then(|k| memory.get(k)) {
        policy.restore(s);
    }
    (policy, memory_key)
}

impl Drop for Generator {
    fn drop(&mut self) {
        if let (Some(key), Some(snapshot)) = (self.memory_key.take(), self.policy.snapshot()) {
            self.memory.put(key, snapshot);
        }
    }
}
