//! The speculative decoding loop. Without a draft (or with γ = 0) the same code runs plain
//! target-only decoding, which is the baseline every speed-up is measured against.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::acceptance;
use crate::drafter::{DraftContext, DraftSource, Drafter, Guess, ModelDrafter};
use crate::error::{Error, Result};
use crate::kv_cache::KvCache;
use crate::model::{CallCost, Model};
use crate::policy::{AfterGuess, DraftPolicy, LengthController, AUTO_MAX_GAMMA};
use crate::sampling::{self, Dist, History, SamplingConfig};
use crate::tokenizer::Tokenizer;

/// Largest draft length accepted; beyond it verification cost dwarfs any gain.
pub const MAX_GAMMA: usize = 64;

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
        self.sampling.validate()
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Eos,
    MaxTokens,
    /// A stop sequence (tokens or text) was generated.
    StopSequence,
    /// The caller's callback asked to stop.
    Stopped,
}

/// Counters and timings of a generator (cumulative over its prompts).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    pub target_calls: u64,
    pub draft_calls: u64,
    /// Iterations of the loop: one target verification each.
    pub rounds: u64,
    pub drafted: u64,
    pub accepted: u64,
    /// Rounds that ended in a rejection (the others accepted every proposal).
    pub rejected: u64,
    pub new_tokens: u64,
    pub draft_time: Duration,
    pub target_time: Duration,
    pub total_time: Duration,
}

impl std::ops::AddAssign<&Stats> for Stats {
    /// Accumulate another generator's counters and timings (e.g. over prompts).
    fn add_assign(&mut self, b: &Stats) {
        self.target_calls += b.target_calls;
        self.draft_calls += b.draft_calls;
        self.rounds += b.rounds;
        self.drafted += b.drafted;
        self.accepted += b.accepted;
        self.rejected += b.rejected;
        self.new_tokens += b.new_tokens;
        self.draft_time += b.draft_time;
        self.target_time += b.target_time;
        self.total_time += b.total_time;
    }
}

impl Stats {
    /// Share of drafted tokens the target accepted (0 when nothing was drafted).
    pub fn acceptance_rate(&self) -> f64 {
        if self.drafted == 0 {
            0.0
        } else {
            self.accepted as f64 / self.drafted as f64
        }
    }

    /// The paper's α estimated per verified position: proposals after a rejection are never
    /// judged, so they do not count (0 when nothing was verified).
    pub fn alpha(&self) -> f64 {
        let verified = self.accepted + self.rejected;
        if verified == 0 {
            0.0
        } else {
            self.accepted as f64 / verified as f64
        }
    }

    /// Generated tokens per verification round.
    pub fn tokens_per_target_call(&self) -> f64 {
        if self.rounds == 0 {
            0.0
        } else {
            self.new_tokens as f64 / self.rounds as f64
        }
    }

    /// Wall time outside ONNX Runtime calls: sampling, acceptance, cache bookkeeping.
    pub fn other_time(&self) -> Duration {
        self.total_time.saturating_sub(self.draft_time + self.target_time)
    }

    pub fn tokens_per_second(&self) -> f64 {
        let s = self.total_time.as_secs_f64();
        if s > 0.0 {
            self.new_tokens as f64 / s
        } else {
            0.0
        }
    }
}

/// A sequence being generated, owning its KV caches. Models are shared (`Arc`).
pub struct Generator {
    target: Arc<Model>,
    drafter: Option<Box<dyn Drafter>>,
    target_cache: KvCache,
    cfg: GenerationConfig,
    lengths: LengthController,
    /// Where `Auto`'s record is kept in the target between sequences (None: not kept).
    memory_key: Option<String>,
    /// KV bytes per sequence token, target and draft together.
    kv_bytes_per_token: usize,
    eos: Vec<u32>,
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
    cancel: Arc<AtomicBool>,
    tokenizer: Option<Arc<Tokenizer>>,
    /// Test-only sabotage: accept every proposal (to show the statistical tests can fail).
    always_accept: bool,
    // Reused buffers, so an iteration allocates nothing once warm.
    logits: Vec<f32>,
    q: Vec<Vec<f32>>,
    q_point: Vec<Option<u32>>,
    p: Vec<f32>,
    scratch: Vec<f32>,
    drafts: Vec<u32>,
    feed: Vec<u32>,
    emitted: Vec<u32>,
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

    /// A generator speculating with any [`Drafter`], or target-only without one.
    pub fn with_drafter(target: Arc<Model>, drafter: Option<Box<dyn Drafter>>, cfg: GenerationConfig) -> Result<Generator> {
        cfg.validate()?;
        let vocab = target.info().vocab_size;
        let mut context_limit = target.info().context_limit;
        let mut kv_bytes_per_token = target.kv_bytes_per_token();
        if let Some(d) = &drafter {
            d.check_target(&target)?;
            context_limit = context_limit.min(d.context_limit().unwrap_or(usize::MAX));
            kv_bytes_per_token += d.kv_bytes_per_token();
        }
        let eos = cfg.eos_ids.clone().unwrap_or_else(|| target.info().eos_ids.clone());
        // An id outside the vocabulary could never match: refuse it rather than never stopping.
        if let Some(&bad) = eos.iter().chain(cfg.stop_sequences.iter().flatten()).find(|&&e| e as usize >= vocab) {
            return Err(Error::TokenOutOfRange { id: bad as i64, vocab_size: vocab });
        }
        let mut lengths = LengthController::new(cfg.draft_policy, cfg.gamma);
        let memory_key = match (&drafter, cfg.draft_policy) {
            (Some(d), DraftPolicy::Auto) => d.memory_key().map(|k| format!("{k} sampling {:?}", cfg.sampling)),
            _ => None,
        };
        if let Some(s) = memory_key.as_deref().and_then(|k| target.policy_memory().get(k)) {
            lengths.restore(s);
        }
        let mut target_cache = target.new_cache()?;
        if let Some(limit) = cfg.kv_memory_limit {
            target_cache.slot_limit = limit / kv_bytes_per_token.max(1);
        }
        Ok(Generator {
            target_cache,
            target,
            drafter,
            lengths,
            memory_key,
            kv_bytes_per_token,
            rng: StdRng::seed_from_u64(cfg.seed),
            cfg,
            eos,
            context_limit,
            tokens: Vec::new(),
            history: History::new(vocab),
            generated: 0,
            draft_level: false,
            finished: None,
            stats: Stats::default(),
            cancel: Arc::new(AtomicBool::new(false)),
            always_accept: false,
            tokenizer: None,
            logits: Vec::new(),
            q: Vec::new(),
            q_point: Vec::new(),
            p: Vec::new(),
            scratch: Vec::new(),
            drafts: Vec::new(),
            feed: Vec::new(),
            emitted: Vec::new(),
        })
    }

    /// Name of the draft source ("model", "ngram", ...), if any.
    pub fn drafter_name(&self) -> Option<&'static str> {
        self.drafter.as_ref().map(|d| d.name())
    }

    /// The running acceptance estimate of the auto policy (its prior, 0.5, under other policies).
    pub fn alpha_estimate(&self) -> f64 {
        self.lengths.alpha()
    }

    /// Append prompt tokens (a first prompt, or a follow-up turn). Starts a new generation of up
    /// to `max_new_tokens`.
    pub fn append_tokens(&mut self, tokens: &[u32]) -> Result<()> {
        let vocab = self.target.info().vocab_size;
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::TokenOutOfRange { id: bad as i64, vocab_size: vocab });
        }
        // Room for the prompt and at least one generated token.
        let needed = self.tokens.len() + tokens.len() + 1;
        if needed > self.context_limit {
            return Err(Error::ContextLimit { needed, limit: self.context_limit });
        }
        if let Some(limit) = self.cfg.kv_memory_limit {
            // The longest the caches can get for this request: the whole sequence plus a round's
            // proposals, within the context.
            let gamma = match (self.drafter.is_some(), self.cfg.draft_policy) {
                (false, _) => 0,
                (true, DraftPolicy::Fixed) => self.cfg.gamma,
                (true, DraftPolicy::Heuristic) => MAX_GAMMA,
                (true, DraftPolicy::Auto) => AUTO_MAX_GAMMA,
            };
            let tokens = (self.tokens.len() + tokens.len() + self.cfg.max_new_tokens + gamma).min(self.context_limit);
            let needed = tokens * self.kv_bytes_per_token;
            if needed > limit {
                return Err(Error::MemoryBudget { needed, limit });
            }
        }
        for &t in tokens {
            self.history.push(t);
        }
        self.tokens.extend_from_slice(tokens);
        // A cancellation aimed at the previous generation must not kill the next one.
        self.cancel.store(false, Ordering::SeqCst);
        self.generated = 0;
        self.draft_level = false;
        self.finished = None;
        Ok(())
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
    #[doc(hidden)]
    pub fn debug_always_accept(&mut self) {
        self.always_accept = true;
    }

    /// Make `Auto` take a draft step to cost `draft` × a one-token target call, and each verified
    /// token `per_token` × that call more, instead of timing them, so tests can put its decisions
    /// where they want them. Never use it for generation.
    #[doc(hidden)]
    pub fn debug_pin_costs(&mut self, draft: f64, per_token: f64) {
        self.lengths.pin_costs(draft, per_token);
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
        if self.finished.is_some() {
            return Ok(&[]);
        }
        if self.cancel.swap(false, Ordering::SeqCst) {
            return Err(Error::Cancelled);
        }
        if self.tokens.is_empty() {
            return Err(Error::invalid("empty prompt: append at least one token before generating"));
        }
        if !self.cfg.stop_texts.is_empty() && self.tokenizer.is_none() {
            return Err(Error::invalid("text stop sequences need a tokenizer (set_tokenizer)"));
        }
        let remaining = self.cfg.max_new_tokens - self.generated;
        if remaining == 0 {
            self.finished = Some(FinishReason::MaxTokens);
            return Ok(&[]);
        }
        if self.tokens.len() >= self.context_limit {
            return Err(Error::ContextLimit { needed: self.tokens.len() + 1, limit: self.context_limit });
        }
        let started = Instant::now();
        let before = self.tokens.len();
        let result = self.iterate(remaining);
        self.stats.total_time += started.elapsed();
        if let Err(e) = result {
            // A failed call may leave a cache holding proposals that were never committed; cut
            // both back to the committed sequence so the generator stays usable.
            let n = self.tokens.len();
            self.target_cache.truncate(n)?;
            if let Some(d) = self.drafter.as_mut() {
                d.rollback(&self.tokens, n)?;
            }
            return Err(e);
        }
        Ok(&self.tokens[before..])
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

    fn iterate(&mut self, remaining: usize) -> Result<()> {
        let n = self.tokens.len();
        let room = self.context_limit - n;
        let gamma = match &self.drafter {
            Some(_) => self.lengths.next(self.target.cost_curve()).min(remaining - 1).min(room - 1),
            None => 0,
        };
        let vocab = self.target.info().vocab_size;
        let sampling = self.cfg.sampling.clone();
        // Draft phase: one guess at a time, each turned into a proposal and its q.
        self.drafts.clear();
        if gamma > 0 {
            let drafter = self.drafter.as_mut().expect("gamma > 0 only with a drafter");
            if self.q.len() < gamma {
                self.q.resize_with(gamma, Vec::new);
                self.q_point.resize(gamma, None);
            }
            let auto = self.cfg.draft_policy == DraftPolicy::Auto;
            let (mut guesses, mut time, mut first) = (0u64, Duration::ZERO, Duration::ZERO);
            for i in 0..gamma {
                let started = Instant::now();
                let guess = drafter.guess(&DraftContext { tokens: &self.tokens, drafts: &self.drafts, left: gamma - i });
                let took = started.elapsed();
                if i == 0 {
                    first = took;
                }
                time += took;
                guesses += 1;
                let mut conf = None;
                let (x, point) = match guess? {
                    Guess::Stop => break,
                    Guess::Token(t) => (t, Some(t)),
                    Guess::Logits(row) => {
                        if row.len() != vocab {
                            return Err(Error::invalid(format!("drafter gave {} scores for a vocabulary of {vocab}", row.len())));
                        }
                        let q = sampling::distribution(row, &self.history, &self.drafts, &sampling, &mut self.q[i]);
                        conf = (self.cfg.confidence_stop > 0.0 || auto).then(|| q.confidence(row));
                        if conf.is_some_and(|c| c < self.cfg.confidence_stop) {
                            break;
                        }
                        let x = q.sample(&mut self.rng);
                        (x, if let Dist::Point(t) = q { Some(t) } else { None })
                    }
                    Guess::Sampled { token, probs } => {
                        self.q[i].clear();
                        self.q[i].extend_from_slice(probs);
                        conf = Some(Dist::Probs(probs).confidence(probs));
                        (token, None)
                    }
                };
                if x as usize >= vocab {
                    return Err(Error::TokenOutOfRange { id: x as i64, vocab_size: vocab });
                }
                let then = if auto { self.lengths.after_guess(i + 1, conf) } else { AfterGuess::Continue };
                if then == AfterGuess::Drop {
                    break;
                }
                self.q_point[i] = point;
                self.drafts.push(x);
                if then == AfterGuess::Stop {
                    break;
                }
            }
            self.stats.draft_calls += guesses;
            self.stats.draft_time += time;
            self.stats.drafted += self.drafts.len() as u64;
            // A first step that also catches up on a prompt or on undrafted rounds is no step cost.
            if self.draft_level {
                self.lengths.record_draft_cost(first, time - first, guesses - 1);
            }
        }
        let proposed = self.drafts.len();

        // Verification: one target call scores every proposal and yields the bonus row.
        let mut cost = CallCost::default();
        fill_feed(&mut self.feed, &self.tokens, &self.drafts, self.target_cache.len());
        self.target.forward_timed(&mut self.target_cache, &self.feed, proposed + 1, &mut self.logits, &mut cost)?;
        self.stats.target_calls += cost.calls;
        self.stats.target_time += cost.time;
        self.stats.rounds += 1;
        self.draft_level = gamma > 0;

        self.emitted.clear();
        let mut accepted = 0;
        for i in 0..=proposed {
            let row = &self.logits[i * vocab..(i + 1) * vocab];
            let p = sampling::distribution(row, &self.history, &self.drafts[..i], &sampling, &mut self.p);
            if i == proposed {
                self.emitted.push(p.sample(&mut self.rng));
                break;
            }
            let q = match self.q_point[i] {
                Some(t) => Dist::Point(t),
                None => Dist::Probs(&self.q[i]),
            };
            if self.cfg.draft_policy == DraftPolicy::Auto {
                self.lengths.record_position(i, acceptance::overlap(p, q));
            }
            let verdict = if self.always_accept {
                None
            } else {
                acceptance::verify(p, q, self.drafts[i], &mut self.rng, &mut self.scratch)
            };
            match verdict {
                None => {
                    accepted += 1;
                    self.emitted.push(self.drafts[i]);
                }
                Some(t) => {
                    self.emitted.push(t);
                    break;
                }
            }
        }
        self.stats.accepted += accepted as u64;
        self.stats.rejected += (accepted < proposed) as u64;
        if proposed > 0 {
            self.lengths.record_round(proposed, accepted);
        }

        // Commit, stopping at EOS or the token budget.
        for k in 0..self.emitted.len() {
            let t = self.emitted[k];
            self.tokens.push(t);
            self.history.push(t);
            self.generated += 1;
            self.stats.new_tokens += 1;
            if self.eos.contains(&t) {
                self.finished = Some(FinishReason::Eos);
                break;
            }
            if self.hit_stop_sequence()? {
                self.finished = Some(FinishReason::StopSequence);
                break;
            }
            if self.generated == self.cfg.max_new_tokens {
                self.finished = Some(FinishReason::MaxTokens);
                break;
            }
        }

        // Roll both caches back to what the sequence really holds: both saw the accepted
        // proposals, neither saw the emitted correction or bonus token.
        let keep = self.tokens.len().min(n + accepted);
        self.target_cache.truncate(keep)?;
        if let Some(d) = self.drafter.as_mut() {
            d.rollback(&self.tokens, keep)?;
        }
        Ok(())
    }

    /// Whether the newest token completes a stop sequence inside the generated part.
    fn hit_stop_sequence(&self) -> Result<bool> {
        let generated = &self.tokens[self.tokens.len() - self.generated..];
        if self.cfg.stop_sequences.iter().any(|s| generated.ends_with(s)) {
            return Ok(true);
        }
        if let (Some(tok), false) = (&self.tokenizer, self.cfg.stop_texts.is_empty()) {
            // Every non-special token decodes to at least one byte, so this window holds any
            // match that involves the newest token; older matches would have stopped earlier.
            let longest = self.cfg.stop_texts.iter().map(String::len).max().unwrap_or(0);
            let window = &generated[generated.len().saturating_sub(longest + 4)..];
            let text = tok.decode(window)?;
            return Ok(self.cfg.stop_texts.iter().any(|s| text.contains(s.as_str())));
        }
        Ok(false)
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        if let (Some(key), Some(snapshot)) = (self.memory_key.take(), self.lengths.snapshot()) {
            self.target.policy_memory().put(key, snapshot);
        }
    }
}

/// The tokens a cache of `cached` entries lacks: the tail of `tokens`, then the proposals.
pub(crate) fn fill_feed(feed: &mut Vec<u32>, tokens: &[u32], drafts: &[u32], cached: usize) {
    feed.clear();
    if cached <= tokens.len() {
        feed.extend_from_slice(&tokens[cached..]);
        feed.extend_from_slice(drafts);
    } else {
        feed.extend_from_slice(&drafts[cached - tokens.len()..]);
    }
}
