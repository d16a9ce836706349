//! Sampling transforms. They define the distributions the algorithm compares: the same transform,
//! with the same token history, is applied to the target's p and the draft's q at every position.
//!
//! The transforms, in order: the repetition penalty on the logits, temperature, then top-k, top-p
//! and min-p on the normalised probabilities (ties broken by the lower id), and renormalisation of
//! what is left. [`distribution`] computes exactly that without touching most of a large
//! vocabulary's row:
//!
//! - Greedy is an argmax (a vectorised max, then the first index holding it); with a repetition
//!   penalty, the argmax of the unpenalised tokens (blocks under the best so far are skipped) beside
//!   the penalised ones, the row never copied.
//! - The penalty is a short list (token, penalised logit) read beside the row: nothing is copied.
//! - Top-k selects the k best logits in one pass that skips every 64-entry block under the current
//!   k-th best (a buffer of candidates, `select_nth_unstable` when it fills); exps only for them.
//! - Top-p without top-k needs the normaliser: one vectorised exp pass writes the row's exps and
//!   sums them; up to three vectorised passes, four thresholds each, bracket the exp at which the
//!   top tokens reach top-p of the mass; only the tokens over the bracket's floor are gathered, and
//!   the order is settled (selection on masses, not a sort) only among those inside it.
//! - Min-p is a threshold on the logit (p ≥ min_p·p_max ⇔ l ≥ l_max + T·ln min_p): only tokens over
//!   it are gathered.
//! - Rows are scanned in 64-entry blocks: a block with nothing over the current threshold costs
//!   one vectorised comparison, and only its entries over it are visited.
//! - What truncation keeps is a [`Dist::Sparse`]: ids in increasing order and probabilities, in a
//!   [`DistBuf`] reused from position to position. Without truncation (or when it keeps more than
//!   an eighth of the vocabulary) the distribution is a dense row, [`Dist::Scaled`]: the row's exps
//!   with the floor truncation set and the scale that normalises them, multiplied out only where
//!   they are read (no pass over the row writes probabilities).
//!
//! Floating point, against the straightforward implementation (a dense row, `f32::exp`, a full
//! sort; kept in `sampling/reference.rs` as the tests' oracle): the exponential is a polynomial
//! within ~1.5 ulp instead of libm's, the final probabilities are each kept one divided by their
//! sum in f64 (one rounding instead of two normalisations), and top-k/top-p rank tokens by logit
//! rather than by rounded probability (two distinct logits whose exps round to the same float
//! used to tie and be ordered by id). Probabilities agree within 1e-6 relative and kept sets are
//! identical except where a decision sits within rounding of its threshold; draws walk the same
//! order (increasing id) but step over blocks by their sums, so a seed's tokens can differ where
//! the uniform falls within rounding of a boundary. The distributions are the same.

use rand::Rng;

use crate::error::{Error, Result};
use nucleus::{first_thresholds, nucleus_bracket, CutHint};

pub use history::History;
pub use kernels::Weights;

mod history;
pub(crate) mod kernels;
mod nucleus;
#[cfg(test)]
mod reference;
pub mod split;

/// Sampling settings. Temperature 0 means greedy; the other transforms are then irrelevant except
/// the repetition penalty, which can change the argmax.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingConfig {
    /// 0 = greedy; otherwise logits are divided by it. Default 0.
    pub temperature: f32,
    /// Keep the k most likely tokens; 0 = off. Default 0.
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches p; 1 = off. Default 1.
    pub top_p: f32,
    /// Drop tokens below min_p × the top probability; 0 = off. Default 0.
    pub min_p: f32,
    /// CTRL-style penalty on every token already in the sequence; 1 = off. Default 1.
    pub repetition_penalty: f32,
    /// OpenAI-style: subtracted once from the logit of every token the current generation has
    /// produced (prompt tokens do not count); 0 = off. Default 0.
    pub presence_penalty: f32,
    /// OpenAI-style: subtracted from a token's logit once per time the current generation has
    /// produced it; 0 = off. Default 0.
    pub frequency_penalty: f32,
    /// Added to the logits of the listed tokens (after the penalties); each id at most once.
    /// Default empty.
    pub logit_bias: Vec<(u32, f32)>,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: Vec::new(),
        }
    }
}

impl SamplingConfig {
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(Error::invalid(format!("temperature must be finite and >= 0, got {}", self.temperature)));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::invalid(format!("top_p must be in (0, 1], got {}", self.top_p)));
        }
        if !(self.min_p >= 0.0 && self.min_p <= 1.0) {
            return Err(Error::invalid(format!("min_p must be in [0, 1], got {}", self.min_p)));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return Err(Error::invalid(format!("repetition_penalty must be finite and > 0, got {}", self.repetition_penalty)));
        }
        for (name, v) in [("presence_penalty", self.presence_penalty), ("frequency_penalty", self.frequency_penalty)] {
            if !v.is_finite() {
                return Err(Error::invalid(format!("{name} must be finite, got {v}")));
            }
        }
        for (i, &(t, b)) in self.logit_bias.iter().enumerate() {
            if !b.is_finite() {
                return Err(Error::invalid(format!("logit bias for token {t} must be finite, got {b}")));
            }
            if self.logit_bias[..i].iter().any(|&(u, _)| u == t) {
                return Err(Error::invalid(format!("token {t} appears twice in the logit bias")));
            }
        }
        Ok(())
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// Whether any transform changes individual logits (the penalties or a bias).
    pub(crate) fn adjusts_logits(&self) -> bool {
        self.repetition_penalty != 1.0
            || self.presence_penalty != 0.0
            || self.frequency_penalty != 0.0
            || !self.logit_bias.is_empty()
    }

    /// The first logit-bias id outside a vocabulary of `vocab` tokens.
    pub fn bias_out_of_range(&self, vocab: usize) -> Option<u32> {
        self.logit_bias.iter().map(|&(t, _)| t).find(|&t| t as usize >= vocab)
    }
}

/// A next-token distribution: a point mass (greedy, or a deterministic proposal), probabilities
/// over the whole vocabulary, or the tokens truncation kept with their probabilities.
#[derive(Debug, Clone, Copy)]
pub enum Dist<'a> {
    Point(u32),
    /// A probability for every token id.
    Probs(&'a [f32]),
    /// A probability for every token id: `exps[t] · scale` where `exps[t] >= floor`, else 0 (the
    /// products, in single precision, are the probabilities; see [`Weights`]).
    Scaled {
        exps: &'a [f32],
        floor: f32,
        scale: f32,
    },
    /// Token ids in increasing order and their probabilities (all positive); every other token has
    /// probability 0.
    Sparse {
        ids: &'a [u32],
        probs: &'a [f32],
    },
}

impl Dist<'_> {
    /// The top probability: of the distribution itself, or for a greedy point mass, of the
    /// softmax of the `scores` it was taken from (how sure a draft was of its guess).
    pub fn confidence(&self, scores: &[f32]) -> f32 {
        match *self {
            Dist::Probs(p) | Dist::Sparse { probs: p, .. } => kernels::max(p).max(0.0),
            // The largest stored value has the largest weight unless the floor drops it.
            Dist::Scaled { exps, .. } => self.weights().map_or(0.0, |w| w.of(kernels::max(exps))).max(0.0),
            Dist::Point(_) => {
                let max = kernels::max(scores);
                (1.0 / kernels::exp_sum(scores, max, 1.0)) as f32
            }
        }
    }

    pub fn prob(&self, x: u32) -> f32 {
        match *self {
            Dist::Point(t) => (t == x) as u32 as f32,
            Dist::Probs(_) | Dist::Scaled { .. } => self.weights().map_or(0.0, |w| w.get(x as usize)),
            Dist::Sparse { ids, probs } => ids.binary_search(&x).map_or(0.0, |j| probs[j]),
        }
    }

    /// A dense distribution's row as [`Weights`] reads it.
    pub fn weights(&self) -> Option<Weights<'_>> {
        match *self {
            Dist::Probs(p) => Some(Weights::plain(p)),
            Dist::Scaled { exps, floor, scale } => Some(Weights { w: exps, floor, scale }),
            Dist::Point(_) | Dist::Sparse { .. } => None,
        }
    }

    pub fn sample(&self, rng: &mut impl Rng) -> u32 {
        match *self {
            Dist::Point(t) => t,
            Dist::Probs(_) | Dist::Scaled { .. } => self.weights().map_or(0, |w| draw(w, rng)),
            Dist::Sparse { ids, probs } => ids.get(sample_index(probs, rng) as usize).copied().unwrap_or(0),
        }
    }

    /// Every token with positive probability, in increasing id order.
    pub fn for_each(&self, mut f: impl FnMut(u32, f32)) {
        match *self {
            Dist::Point(t) => f(t, 1.0),
            Dist::Probs(_) | Dist::Scaled { .. } => {
                if let Some(w) = self.weights() {
                    w.positive().for_each(|(t, x)| f(t as u32, x));
                }
            }
            Dist::Sparse { ids, probs } => ids.iter().zip(probs).for_each(|(&t, &x)| f(t, x)),
        }
    }

    /// The probabilities as a dense row of `vocab` entries.
    pub fn to_dense(&self, vocab: usize) -> Vec<f32> {
        let mut out = vec![0.0; vocab];
        self.for_each(|t, x| {
            if let Some(o) = out.get_mut(t as usize) {
                *o = x;
            }
        });
        out
    }
}

/// Where [`distribution`] writes a distribution, and its working space; reused from position to
/// position so that a warm position allocates nothing.
#[derive(Debug, Default, Clone)]
pub struct DistBuf {
    held: Held,
    ids: Vec<u32>,
    probs: Vec<f32>,
    cand: Vec<Cand>,
    work: Vec<Cand>,
    dense: Vec<f32>,
    pen: Vec<(u32, f32)>,
    /// For each token, its index in `pen` (`NOT_ADJUSTED` when its logit is its value); reset
    /// through `pen` so that a position costs nothing per vocabulary entry.
    slot: Vec<u32>,
    /// Where the last top-p cut fell and how far it moves from row to row: the next row of a
    /// sequence is much like the last, so its first thresholds go around it.
    last_cut: CutHint,
    /// A dense distribution's largest probability, where computing it told: the best token's exp
    /// is exactly 1 (exp(0)), so its probability is the scale every exp was multiplied by, and no
    /// pass over the row is needed to find it.
    top: Option<f32>,
    /// Ids gathered per chunk of a split pass ([`split::gather_within`]).
    parts: Vec<Vec<u32>>,
}

const NOT_ADJUSTED: u32 = u32::MAX;

/// Per vocabulary entry, the least exp for which sums of up to a vocabulary of exps in [that, 1]
/// are exact in double precision: an f32 ≥ 2^e is a multiple of 2^(e − 23), and a sum of up to
/// `vocab` entries ≤ 1 is at most 2^53 such steps when 2^e ≥ vocab · 2^(23 − 53), which an exp at
/// least vocab · 2⁻²⁹ has (its e is at least log₂ vocab − 30).
const EXACT_SUM_FLOOR: f32 = 1.0 / (1u64 << 29) as f32;
/// Vocabularies from which min-p alone may take the dense path (under it, gathering candidates
/// is cheap whatever it keeps).
const DENSE_MIN_VOCAB: usize = 4096;

/// Which distribution a [`DistBuf`] holds.
#[derive(Debug, Default, Clone, Copy)]
enum Held {
    #[default]
    Empty,
    Point(u32),
    /// `probs` as they are (a host drafter's).
    Dense,
    /// `probs` are exps, read as [`Dist::Scaled`].
    Scaled {
        floor: f32,
        scale: f32,
    },
    Sparse,
}

impl DistBuf {
    pub fn new() -> Self {
        Self::default()
    }

    /// The distribution last written here (no mass at all before the first).
    pub fn dist(&self) -> Dist<'_> {
        match self.held {
            Held::Empty => Dist::Probs(&[]),
            Held::Point(t) => Dist::Point(t),
            Held::Dense => Dist::Probs(&self.probs),
            Held::Scaled { floor, scale } => Dist::Scaled { exps: &self.probs, floor, scale },
            Held::Sparse => Dist::Sparse { ids: &self.ids, probs: &self.probs },
        }
    }

    /// Hold `probs`, a dense row (a host drafter's distribution).
    pub fn set_probs(&mut self, probs: &[f32]) {
        self.probs.clear();
        self.probs.extend_from_slice(probs);
        self.held = Held::Dense;
        self.top = None;
    }

    /// [`Dist::confidence`] of the distribution held, without a pass over a dense row when its
    /// top probability is known.
    pub fn confidence(&self, scores: &[f32]) -> f32 {
        match (self.held, self.top) {
            (Held::Scaled { .. }, Some(top)) => top,
            _ => self.dist().confidence(scores),
        }
    }
}

/// A candidate token: its (penalised) logit, its exp relative to the max, and a key whose
/// ascending order is the transforms' order (logit descending, then id ascending).
#[derive(Debug, Clone, Copy)]
struct Cand {
    key: u64,
    v: f32,
    e: f32,
}

impl Cand {
    fn new(v: f32, id: u32) -> Self {
        // +0.0 makes -0.0 and 0.0 one value, as they are to exp.
        let b = (v + 0.0).to_bits();
        let ascending = if b >> 31 == 1 { !b } else { b | 0x8000_0000 };
        Cand { key: ((!ascending as u64) << 32) | id as u64, v, e: 0.0 }
    }

    fn id(&self) -> u32 {
        self.key as u32
    }
}

/// Turn one logits row into the distribution to sample from, written into `buf` (left alone for a
/// point mass); the result borrows it.
pub fn distribution<'b>(
    logits: &[f32],
    history: &History,
    extra: &[u32],
    cfg: &SamplingConfig,
    buf: &'b mut DistBuf,
) -> Dist<'b> {
    buf.held = buf.compute(logits, history, extra, cfg);
    buf.dist()
}

impl DistBuf {
    fn compute(&mut self, logits: &[f32], history: &History, extra: &[u32], cfg: &SamplingConfig) -> Held {
        let DistBuf { ids, probs, cand, work, dense, pen, slot, last_cut, top, parts, .. } = self;
        ids.clear();
        *top = None;
        for &(t, _) in pen.iter() {
            slot[t as usize] = NOT_ADJUSTED;
        }
        pen.clear();
        if cfg.adjusts_logits() {
            adjust(logits, history, extra, cfg, pen, slot);
        }
        let row = Row { logits, pen, slot };
        if cfg.is_greedy() {
            return Held::Point(if pen.is_empty() { argmax(logits) } else { row.best().map_or(0, |b| b.1) });
        }
        let m = if pen.is_empty() { split::max(logits) } else { row.best().map_or(f32::NEG_INFINITY, |b| b.0) };
        let (t, inv_t) = (cfg.temperature, 1.0 / cfg.temperature);
        let vocab = logits.len();
        let k_on = cfg.top_k > 0 && cfg.top_k < vocab;
        let p_on = cfg.top_p < 1.0;
        if !k_on && !p_on && cfg.min_p <= 0.0 {
            let z = row.exps(m, inv_t, probs);
            let s = (1.0 / z) as f32;
            *top = Some(s);
            return Held::Scaled { floor: f32::NEG_INFINITY, scale: s };
        }
        // The logit under which no token passes min-p (p ≥ min_p·p_max ⇔ l ≥ l_max + T·ln min_p),
        // loosened well past rounding: exact tests on the exps come later.
        let min_p_floor = if cfg.min_p > 0.0 {
            let d = t * cfg.min_p.ln();
            m + d - 1e-4 * (1.0 + m.abs() + d.abs())
        } else {
            f32::NEG_INFINITY
        };
        let exps = |cand: &mut Vec<Cand>| cand_exps(cand, m, inv_t);
        let target = |mass: f64| cfg.top_p as f64 * mass;
        // Gathered in increasing id order (else sorted at the end).
        let in_order;
        if k_on {
            row.top_k(cfg.top_k, if p_on { f32::NEG_INFINITY } else { min_p_floor }, cand);
            // In the transforms' order, as the device's top-k hands them over
            // ([`distribution_top`]): the same sums in the same order, so the same probabilities.
            cand.sort_unstable_by_key(|c| c.key);
            let mass = exps(cand);
            if p_on {
                let n = prefix_reaching(cand, target(mass), 0.0);
                cand.truncate(n);
            }
            in_order = false;
        } else if p_on {
            // The whole row's exps (top-p is relative to their sum), then thresholds on them; the
            // first thresholds' masses summed in the same pass where no penalty changes exps after it.
            let (z, mut first) = row.exps_mass(m, inv_t, dense, first_thresholds(last_cut));
            let target = target(z);
            let mass = |work: &[Cand]| work.iter().map(|c| c.e as f64).sum::<f64>();
            // The candidates in [floor, hi), and the exact mass (and number) of the entries at or
            // over hi.
            let mut gather = |floor: f32, hi: f32, work: &mut Vec<Cand>, ids: &mut Vec<u32>| -> (f64, usize) {
                let above = split::gather_within(dense, floor, hi, ids, parts);
                work.clear();
                work.extend(ids.iter().map(|&i| Cand { e: dense[i as usize], ..Cand::new(row.value(i), i) }));
                above
            };
            // Tokens at or over `hi` are all kept; the order matters only under it, down to `lo`.
            // The bracket was chosen on single-precision sums (or guessed from them); exact ones
            // decide, a guess that missed is bracketed again without guessing, and where rounding
            // misplaced a bound it moves out to the end of the row. Min-p drops what is under it
            // whatever top-p keeps; zeros are never kept.
            let mut guess = true;
            let (lo, mut hi, mut floor, mut above) = loop {
                let (lo, hi, guessed) = nucleus_bracket(dense, target, z, last_cut, guess, first.take());
                let floor = lo.max(cfg.min_p).max(f32::from_bits(1));
                if cfg.min_p >= hi {
                    work.clear();
                    break (lo, hi, floor, split::sum_at_least(dense, hi));
                }
                let above = gather(floor, hi, work, ids);
                if guessed && (above.0 >= target || above.0 + mass(work) < target) {
                    guess = false;
                    continue;
                }
                break (lo, hi, floor, above);
            };
            if above.0 >= target {
                (hi, above) = (f32::INFINITY, (0.0, 0));
                if cfg.min_p < hi {
                    gather(floor, hi, work, ids);
                }
            }
            if cfg.min_p >= hi {
                // Top-p keeps everything min-p does.
                above = split::sum_at_least(dense, cfg.min_p);
                work.clear();
            } else if above.0 + mass(work) < target && cfg.min_p < lo {
                floor = cfg.min_p.max(f32::from_bits(1));
                gather(floor, hi, work, ids);
            }
            ids.clear();
            let n = prefix_reaching(work, target, above.0);
            // Out of the kept set: what the order cut off between the bounds.
            for c in &work[n..] {
                dense[c.id() as usize] = 0.0;
            }
            // The normaliser must depend on the kept set only, not on where the bounds fell (a
            // hint from earlier rows moves them), so that the same row gives the same floats
            // whatever came before. Where every kept exp is at least `EXACT_SUM_FLOOR` per entry,
            // double-precision sums of them are exact in any order, so the parts already summed
            // add up to it; else one pass over what is kept, in the row's order.
            let (mass, kept) = if floor >= vocab as f32 * EXACT_SUM_FLOOR {
                (above.0 + mass(&work[..n]), above.1 + n)
            } else {
                split::sum_at_least(dense, floor)
            };
            let inv = 1.0 / mass;
            if kept > vocab / 8 {
                std::mem::swap(probs, dense);
                *top = Some(inv as f32);
                return Held::Scaled { floor, scale: inv as f32 };
            }
            probs.clear();
            kernels::scan_above(dense, just_under(floor), |i, e, t| {
                ids.push(i);
                probs.push((e as f64 * inv) as f32);
                t
            });
            return Held::Sparse;
        } else if cfg.min_p > 0.0 && vocab >= DENSE_MIN_VOCAB && kernels::count_above(logits, min_p_floor) > vocab / 8 {
            // Min-p keeping much of the row (a flat distribution): thresholds on the exps of the
            // whole row rather than a candidate per kept token.
            row.exps(m, inv_t, dense);
            let (mass, _) = split::sum_at_least(dense, cfg.min_p);
            let s = (1.0 / mass) as f32;
            std::mem::swap(probs, dense);
            *top = Some(s);
            return Held::Scaled { floor: cfg.min_p, scale: s };
        } else {
            row.gather(min_p_floor, cand);
            exps(cand);
            in_order = pen.is_empty();
        }
        finish(cand, in_order, cfg.min_p, vocab, ids, probs)
    }

    /// [`DistBuf::compute`] from the `k` best logits of a row (value descending, lower id first
    /// among equals: what a device's TopK hands back) instead of the row, for the transforms that
    /// need no more: greedy, and top-k (then top-p, min-p) sampling, without penalties or bias.
    fn compute_top(&mut self, ids_in: &[u32], values: &[f32], vocab: usize, cfg: &SamplingConfig) -> Held {
        let DistBuf { ids, probs, cand, .. } = self;
        ids.clear();
        if cfg.is_greedy() {
            return Held::Point(ids_in.first().copied().unwrap_or(0));
        }
        let m = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let (t, inv_t) = (cfg.temperature, 1.0 / cfg.temperature);
        let p_on = cfg.top_p < 1.0;
        // As in compute: min-p's floor on the logits (only without top-p), strictly above it.
        let floor = if cfg.min_p > 0.0 && !p_on {
            let d = t * cfg.min_p.ln();
            m + d - 1e-4 * (1.0 + m.abs() + d.abs())
        } else {
            f32::NEG_INFINITY
        };
        cand.clear();
        cand.extend(ids_in.iter().zip(values).filter(|&(_, &v)| v > floor).map(|(&i, &v)| Cand::new(v, i)));
        cand.sort_unstable_by_key(|c| c.key);
        // Given more than top-k's k (allowed: "at least"), keep its k.
        if cfg.top_k > 0 {
            cand.truncate(cfg.top_k);
        }
        let mass = cand_exps(cand, m, inv_t);
        if p_on {
            let n = prefix_reaching(cand, cfg.top_p as f64 * mass, 0.0);
            cand.truncate(n);
        }
        finish(cand, false, cfg.min_p, vocab, ids, probs)
    }
}

/// The distribution over the candidates truncation kept (min-p's exact test still to apply):
/// dense when they are more than an eighth of the vocabulary, else sparse in increasing id order.
fn finish(cand: &mut Vec<Cand>, in_order: bool, min_p: f32, vocab: usize, ids: &mut Vec<u32>, probs: &mut Vec<f32>) -> Held {
    cand.retain(|c| c.e > 0.0 && c.e >= min_p);
    let inv = 1.0 / cand.iter().map(|c| c.e as f64).sum::<f64>();
    if cand.len() > vocab / 8 {
        probs.clear();
        probs.resize(vocab, 0.0);
        cand.iter().for_each(|c| probs[c.id() as usize] = (c.e as f64 * inv) as f32);
        return Held::Dense;
    }
    if !in_order {
        cand.sort_unstable_by_key(|c| c.id());
    }
    ids.clear();
    probs.clear();
    ids.extend(cand.iter().map(|c| c.id()));
    probs.extend(cand.iter().map(|c| (c.e as f64 * inv) as f32));
    Held::Sparse
}

/// How many of a row's best logits [`distribution_top`] needs under `cfg`, when that is all it
/// needs: 1 for greedy, top-k's k for top-k sampling (top-p and min-p then act within those k);
/// `None` when the transforms read the whole row (penalties and bias change which logits are
/// best; top-p or min-p alone need the row's normaliser or every token over a floor).
pub(crate) fn best_needed(cfg: &SamplingConfig, vocab: usize) -> Option<usize> {
    if cfg.adjusts_logits() {
        None
    } else if cfg.is_greedy() {
        Some(1)
    } else if cfg.top_k > 0 && cfg.top_k < vocab {
        Some(cfg.top_k)
    } else {
        None
    }
}

/// [`distribution`] of a row of `vocab` logits given only its best: `ids` and `values`, at least
/// [`best_needed`] of them, in the transforms' order (value descending, lower id first among
/// equals). The same distribution as from the whole row, float for float, when `cfg` needs no
/// more than those (`best_needed` is `Some`).
pub fn distribution_top<'b>(ids: &[u32], values: &[f32], vocab: usize, cfg: &SamplingConfig, buf: &'b mut DistBuf) -> Dist<'b> {
    buf.held = buf.compute_top(ids, values, vocab, cfg);
    buf.dist()
}

/// The logits the penalties and the bias change, in `pen` (token, value) with `slot` indexing it:
/// the repetition penalty first, then the presence and frequency penalties subtracted, then the
/// bias added.
fn adjust(
    logits: &[f32],
    history: &History,
    extra: &[u32],
    cfg: &SamplingConfig,
    pen: &mut Vec<(u32, f32)>,
    slot: &mut Vec<u32>,
) {
    if slot.len() != logits.len() {
        slot.clear();
        slot.resize(logits.len(), NOT_ADJUSTED);
    }
    // The token's current value, to be changed in place (None outside the vocabulary).
    fn value<'p>(logits: &[f32], pen: &'p mut Vec<(u32, f32)>, slot: &mut [u32], t: u32) -> Option<&'p mut f32> {
        let l = *logits.get(t as usize)?;
        let s = &mut slot[t as usize];
        if *s == NOT_ADJUSTED {
            *s = pen.len() as u32;
            pen.push((t, l));
        }
        Some(&mut pen[*s as usize].1)
    }
    if cfg.repetition_penalty != 1.0 {
        let r = cfg.repetition_penalty;
        history.for_each_unique(extra, |t| {
            if let Some(l) = value(logits, pen, slot, t) {
                *l = if *l > 0.0 { *l / r } else { *l * r };
            }
        });
    }
    if cfg.presence_penalty != 0.0 || cfg.frequency_penalty != 0.0 {
        history.for_each_produced(extra, |t, c| {
            if let Some(l) = value(logits, pen, slot, t) {
                *l -= cfg.presence_penalty + cfg.frequency_penalty * c as f32;
            }
        });
    }
    for &(t, b) in &cfg.logit_bias {
        if let Some(l) = value(logits, pen, slot, t) {
            *l += b;
        }
    }
}

/// A logits row with the penalties and the bias read beside it: `pen` holds each adjusted token's
/// value, `slot` its index there (its entry in `logits` is then not its value).
struct Row<'a> {
    logits: &'a [f32],
    pen: &'a [(u32, f32)],
    slot: &'a [u32],
}

impl Row<'_> {
    fn penalised(&self, i: u32) -> bool {
        !self.pen.is_empty() && self.slot[i as usize] != NOT_ADJUSTED
    }

    /// The largest value and the first token holding it; `None` when every value is -inf (or NaN).
    fn best(&self) -> Option<(f32, u32)> {
        let mut best = None;
        kernels::scan_above(self.logits, f32::NEG_INFINITY, |i, v, t| {
            if self.penalised(i) {
                t
            } else {
                best = Some((v, i));
                v
            }
        });
        for &(i, v) in self.pen {
            if best.map_or(v > f32::NEG_INFINITY, |(bv, bi)| v > bv || (v == bv && i < bi)) {
                best = Some((v, i));
            }
        }
        best
    }

    /// Every token whose value is above `floor`.
    fn gather(&self, floor: f32, out: &mut Vec<Cand>) {
        out.clear();
        kernels::scan_above(self.logits, floor, |i, v, t| {
            if !self.penalised(i) {
                out.push(Cand::new(v, i));
            }
            t
        });
        out.extend(self.pen.iter().filter(|&&(_, v)| v > floor).map(|&(i, v)| Cand::new(v, i)));
    }

    /// `out` = every token's exp((value − m)·inv_t), penalised values included; returns their sum.
    fn exps(&self, m: f32, inv_t: f32, out: &mut Vec<f32>) -> f64 {
        out.resize(self.logits.len(), 0.0);
        let z = split::exp_store(self.logits, m, inv_t, out);
        if self.pen.is_empty() {
            return z;
        }
        pen_exps(self.pen, m, inv_t, out);
        // Summed again rather than corrected: a penalised token's raw logit may lie far over m,
        // and its exp would have swamped the single-precision lane sums.
        split::sum(out)
    }

    /// [`Row::exps`], and the masses of the exps at or over the thresholds `t`
    /// ([`kernels::mass_at_least`]) summed in the same pass where no penalty changes exps after it.
    fn exps_mass(&self, m: f32, inv_t: f32, out: &mut Vec<f32>, t: [f32; 4]) -> (f64, Option<[f64; 4]>) {
        if !self.pen.is_empty() {
            return (self.exps(m, inv_t, out), None);
        }
        out.resize(self.logits.len(), 0.0);
        let (z, mass) = split::exp_store_mass(self.logits, m, inv_t, out, t);
        (z, Some(mass))
    }

    /// A token's value: its logit, penalised if it is among the penalised.
    fn value(&self, i: u32) -> f32 {
        if self.penalised(i) {
            return self.pen[self.slot[i as usize] as usize].1;
        }
        self.logits[i as usize]
    }

    /// The `k` first tokens in the transforms' order among those above `floor`: one pass keeping a
    /// buffer of candidates, cut back to the best k (whose last then sets the bar) when it fills.
    fn top_k(&self, k: usize, floor: f32, out: &mut Vec<Cand>) {
        out.clear();
        let cap = 2 * k + 256;
        let cut = |out: &mut Vec<Cand>| {
            out.select_nth_unstable_by_key(k - 1, |c| c.key);
            out.truncate(k);
        };
        let bar = kernels::scan_above(self.logits, floor, |i, v, t| {
            if self.penalised(i) {
                return t;
            }
            out.push(Cand::new(v, i));
            if out.len() < cap {
                return t;
            }
            cut(out);
            // Later tokens have higher ids: one equal to the k-th ranks after it.
            out[k - 1].v
        });
        // Penalised tokens come out of order: one equal to the bar may have a lower id.
        out.extend(self.pen.iter().filter(|&&(_, v)| v >= bar).map(|&(i, v)| Cand::new(v, i)));
        if out.len() > k {
            cut(out);
        }
    }
}

kernels::dispatch! {
/// Each candidate's exp((v − m)·inv_t), in place; returns their sum in candidate order.
fn cand_exps(cand: &mut [Cand], m: f32, inv_t: f32) -> f64 {
    let mut sum = 0.0f64;
    for c in cand.iter_mut() {
        c.e = kernels::exp((c.v - m) * inv_t);
        sum += c.e as f64;
    }
    sum
}
}

kernels::dispatch! {
/// `out[i] = exp((v − m)·inv_t)` for each penalised token (i, v).
fn pen_exps(pen: &[(u32, f32)], m: f32, inv_t: f32, out: &mut [f32]) {
    for &(i, v) in pen {
        out[i as usize] = kernels::exp((v - m) * inv_t);
    }
}
}

/// Reorder `cand` so that its first n entries are the n first in the transforms' order, for the
/// smallest n whose exps, added to `start`, reach `target`; returns n (all of them if they never do). A
/// selection on masses: each step partitions around a median and keeps the half holding the
/// boundary, so the cost is linear instead of a sort's.
fn prefix_reaching(cand: &mut [Cand], target: f64, start: f64) -> usize {
    let (mut lo, mut hi, mut above) = (0, cand.len(), start);
    while hi - lo > 32 {
        let mid = lo + (hi - lo) / 2;
        cand[lo..hi].select_nth_unstable_by_key(mid - lo, |c| c.key);
        let left: f64 = cand[lo..=mid].iter().map(|c| c.e as f64).sum();
        if above + left >= target {
            hi = mid + 1;
        } else {
            above += left;
            lo = mid + 1;
        }
    }
    cand[lo..hi].sort_unstable_by_key(|c| c.key);
    for (n, c) in cand[lo..hi].iter().enumerate() {
        above += c.e as f64;
        if above >= target {
            return lo + n + 1;
        }
    }
    hi
}

/// The largest float under `x` for a positive `x` (so `e > just_under(x)` is `e >= x`), else 0.
fn just_under(x: f32) -> f32 {
    if x > 0.0 {
        f32::from_bits(x.to_bits() - 1)
    } else {
        0.0
    }
}

/// First index of the largest value (matches torch.argmax on ties; NaN is ignored).
pub fn argmax(x: &[f32]) -> u32 {
    kernels::position(x, split::max(x)).unwrap_or(0) as u32
}

/// Draw an index with probability proportional to `w` (which need not sum to exactly 1).
pub fn sample_index(w: &[f32], rng: &mut impl Rng) -> u32 {
    draw(Weights::plain(w), rng)
}

/// [`sample_index`] over weights as [`Weights`] reads them.
pub fn draw(w: Weights<'_>, rng: &mut impl Rng) -> u32 {
    split::draw(w, rng.random::<f64>()) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probs(logits: &[f32], cfg: &SamplingConfig) -> Vec<f32> {
        let mut buf = DistBuf::new();
        distribution(logits, &History::new(logits.len()), &[], cfg, &mut buf).to_dense(logits.len())
    }

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6)
    }

    #[test]
    fn truncations_keep_the_right_tokens() {
        let logits = [(0.1f32).ln(), (0.2f32).ln(), (0.3f32).ln(), (0.4f32).ln()];
        let base = SamplingConfig { temperature: 1.0, ..Default::default() };
        assert!(close(&probs(&logits, &base), &[0.1, 0.2, 0.3, 0.4]));
        assert!(close(&probs(&logits, &SamplingConfig { top_k: 2, ..base.clone() }), &[0.0, 0.0, 3.0 / 7.0, 4.0 / 7.0]));
        // top-p 0.65: 0.4 + 0.3 reaches it, 0.2 is dropped.
        assert!(close(&probs(&logits, &SamplingConfig { top_p: 0.65, ..base.clone() }), &[0.0, 0.0, 3.0 / 7.0, 4.0 / 7.0]));
        assert!(close(&probs(&logits, &SamplingConfig { top_p: 0.3, ..base.clone() }), &[0.0, 0.0, 0.0, 1.0]));
        // min-p 0.45: tokens under 0.18 go.
        assert!(close(&probs(&logits, &SamplingConfig { min_p: 0.45, ..base.clone() }), &[0.0, 2.0 / 9.0, 3.0 / 9.0, 4.0 / 9.0]));
        let hot = probs(&logits, &SamplingConfig { temperature: 2.0, ..base.clone() });
        let expect: Vec<f32> = [0.1f32, 0.2, 0.3, 0.4].iter().map(|p| p.sqrt()).collect();
        let s: f32 = expect.iter().sum();
        assert!(close(&hot, &expect.iter().map(|x| x / s).collect::<Vec<_>>()));
    }

    #[test]
    fn repetition_penalty_applies_once_per_token_and_to_draft_history() {
        let cfg = SamplingConfig { repetition_penalty: 2.0, ..Default::default() };
        let mut h = History::new(3);
        h.push(2);
        h.push(2);
        let mut buf = DistBuf::new();
        // Penalised once, token 2 (2.2 -> 1.1) still wins; twice (0.55) it would lose to token 0,
        // also when the draft window repeats it.
        assert!(matches!(distribution(&[1.0, 0.5, 2.2], &h, &[], &cfg, &mut buf), Dist::Point(2)));
        assert!(matches!(distribution(&[1.0, 0.5, 2.2], &h, &[2, 2], &cfg, &mut buf), Dist::Point(2)));
        // Draft tokens earlier in the window count as history: token 1 (1.5 -> 0.75) loses to 0.
        assert!(matches!(distribution(&[1.0, 1.5, 0.2], &h, &[], &cfg, &mut buf), Dist::Point(1)));
        assert!(matches!(distribution(&[1.0, 1.5, 0.2], &h, &[1], &cfg, &mut buf), Dist::Point(0)));
        assert!(matches!(distribution(&[1.0, 1.5, 0.2], &h, &[1, 1], &cfg, &mut buf), Dist::Point(0)));
        // Negative logits are multiplied: token 2 (-0.6 -> -1.2) loses to token 0 (-1.0).
        assert!(matches!(distribution(&[-1.0, -1.5, -0.6], &h, &[], &cfg, &mut buf), Dist::Point(0)));
    }

    #[test]
    fn produced_counts_cover_the_generation_and_the_draft_window() {
        let mut h = History::new(16);
        [2, 5, 2].iter().for_each(|&t| h.push(t));
        [5, 5, 7].iter().for_each(|&t| h.push_generated(t));
        let mut got = Vec::new();
        h.for_each_produced(&[7, 9, 5, 9], |t, c| got.push((t, c)));
        got.sort();
        // Prompt tokens never count; drafted tokens count as produced ones.
        assert_eq!(got, [(5, 3), (7, 2), (9, 2)]);
        h.new_generation();
        got.clear();
        h.for_each_produced(&[2], |t, c| got.push((t, c)));
        assert_eq!(got, [(2, 1)]);
        let cfg =
            SamplingConfig { frequency_penalty: 1.0, presence_penalty: 0.5, logit_bias: vec![(1, 2.5)], ..Default::default() };
        let logits = [0.0, 1.0, 3.2, 3.0];
        let mut buf = DistBuf::new();
        // Greedy: 2 loses 1.5 (produced once), 1 gains 2.5 and passes 3.
        assert!(matches!(distribution(&logits, &h, &[2], &cfg, &mut buf), Dist::Point(1)));
        assert!(matches!(distribution(&logits, &h, &[], &SamplingConfig::default(), &mut buf), Dist::Point(2)));
    }

    #[test]
    fn validation_rejects_out_of_range_values() {
        for bad in [
            SamplingConfig { temperature: -1.0, ..Default::default() },
            SamplingConfig { temperature: f32::NAN, ..Default::default() },
            SamplingConfig { top_p: 0.0, ..Default::default() },
            SamplingConfig { top_p: 1.5, ..Default::default() },
            SamplingConfig { min_p: -0.1, ..Default::default() },
            SamplingConfig { repetition_penalty: 0.0, ..Default::default() },
            SamplingConfig { presence_penalty: f32::NAN, ..Default::default() },
            SamplingConfig { frequency_penalty: f32::INFINITY, ..Default::default() },
            SamplingConfig { logit_bias: vec![(1, f32::NEG_INFINITY)], ..Default::default() },
            SamplingConfig { logit_bias: vec![(1, 1.0), (1, 2.0)], ..Default::default() },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        assert!(SamplingConfig::default().validate().is_ok());
    }

    #[test]
    fn argmax_takes_the_first_maximum() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
    }

    use rand::rngs::StdRng;
    use rand::SeedableRng;

    /// A logits row like a language model's: a normal background, a few peaked tokens, some ties
    /// and some -inf entries (masked tokens).
    fn row(vocab: usize, sigma: f32, peaks: usize, rng: &mut StdRng) -> Vec<f32> {
        let mut normal = || {
            let (u, v): (f32, f32) = (rng.random::<f32>().max(1e-12), rng.random());
            (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
        };
        let mut x: Vec<f32> = (0..vocab).map(|_| sigma * normal()).collect();
        let mut rng2 = StdRng::seed_from_u64(x.len() as u64 ^ sigma.to_bits() as u64 ^ peaks as u64);
        for _ in 0..peaks {
            let i = rng2.random_range(0..vocab);
            x[i] += rng2.random_range(3.0..4.0 * sigma + 8.0);
        }
        // Ties: a token copying another's logit, and a run of equal logits.
        for _ in 0..vocab / 64 {
            let (a, b) = (rng2.random_range(0..vocab), rng2.random_range(0..vocab));
            x[a] = x[b];
        }
        for i in 0..vocab / 256 {
            x[i * 7 % vocab] = f32::NEG_INFINITY;
        }
        x
    }

    /// What the fast path must equal: the reference's distribution for the same penalised tokens.
    fn reference_dense(logits: &[f32], history: &History, extra: &[u32], cfg: &SamplingConfig) -> Result<Vec<f32>, u32> {
        let (mut penalised, mut produced) = (Vec::new(), Vec::new());
        history.for_each_unique(extra, |t| penalised.push(t));
        history.for_each_produced(extra, |t, c| produced.push((t, c)));
        let mut buf = Vec::new();
        match reference::distribution(logits, &penalised, &produced, cfg, &mut buf) {
            reference::Dist::Point(t) => Err(t),
            reference::Dist::Probs(p) => Ok(p.to_vec()),
        }
    }

    /// Identical kept sets and probabilities within 1e-6 relative; the number of kept tokens.
    fn assert_same(got: Dist<'_>, want: &Result<Vec<f32>, u32>, vocab: usize, what: &str) -> usize {
        match (got, want) {
            (Dist::Point(a), Err(b)) => {
                assert_eq!(a, *b, "{what}: argmax");
                1
            }
            (Dist::Point(_), Ok(_)) | (_, Err(_)) => panic!("{what}: {got:?} against {want:?}"),
            (got, Ok(want)) => {
                let got = got.to_dense(vocab);
                let mut kept = 0;
                for (t, (&a, &b)) in got.iter().zip(want).enumerate() {
                    assert_eq!(a > 0.0, b > 0.0, "{what}: token {t} kept differently ({a} against {b})");
                    assert!((a - b).abs() <= 1e-6 * a.max(b), "{what}: token {t}: {a} against {b}");
                    kept += (a > 0.0) as usize;
                }
                kept
            }
        }
    }

    fn configs() -> Vec<SamplingConfig> {
        let mut out = Vec::new();
        for temperature in [0.0, 0.5, 1.0, 1.7] {
            for top_k in [0, 1, 7, 40, 1000] {
                for top_p in [1.0, 0.3, 0.9, 0.99] {
                    for min_p in [0.0, 0.01, 0.1] {
                        // (repetition, presence, frequency, bias): the bias lifts one token over the
                        // rest, bans one, and nudges one; its ids fit the smallest vocabulary.
                        let bias = vec![(3, 25.0), (77, -100.0), (300, 0.7)];
                        for (repetition_penalty, presence_penalty, frequency_penalty, logit_bias) in [
                            (1.0, 0.0, 0.0, vec![]),
                            (1.1, 0.0, 0.0, vec![]),
                            (0.8, 0.0, 0.0, vec![]),
                            (1.0, 0.6, 0.4, vec![]),
                            (1.2, -0.3, 1.5, bias.clone()),
                            (1.0, 0.0, 0.0, bias[1..].to_vec()),
                        ] {
                            out.push(SamplingConfig {
                                temperature,
                                top_k,
                                top_p,
                                min_p,
                                repetition_penalty,
                                presence_penalty,
                                frequency_penalty,
                                logit_bias,
                            });
                        }
                    }
                }
            }
        }
        out
    }

    /// The history of a row: `n` tokens (repeats included) and a draft window partly repeating it.
    fn history(vocab: usize, n: usize, rng: &mut StdRng) -> (History, Vec<u32>) {
        let mut h = History::new(vocab);
        let mut tokens: Vec<u32> = (0..n).map(|_| rng.random_range(0..vocab as u32)).collect();
        // The second half is the generation; it repeats some tokens, so counts exceed one.
        for i in n / 2..n {
            if i % 3 == 0 {
                tokens[i] = tokens[i - 1 - i % 5];
            }
        }
        for (i, &t) in tokens.iter().enumerate() {
            if i < n / 2 {
                h.push(t)
            } else {
                h.push_generated(t)
            }
        }
        let extra = vec![tokens[0], rng.random_range(0..vocab as u32), tokens[n / 2], rng.random_range(0..vocab as u32)];
        (h, extra)
    }

    fn compare_on(vocab: usize, rows: usize, every: usize, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut buf = DistBuf::new();
        let (mut sparse, mut checked) = (0, 0);
        for r in 0..rows {
            let sigma = [1.0, 2.5, 4.0, 0.3, 0.45][r % 5];
            let logits = row(vocab, sigma, 1 + r % 5, &mut rng);
            let (h, extra) = history(vocab, if vocab > 1000 { 500 } else { 40 }, &mut rng);
            // The penalised maximum itself, so that the penalty moves the argmax.
            let mut logits = logits;
            if r % 4 == 3 {
                // Coarse logits: many exact ties, also at the top-k and top-p boundaries.
                logits.iter_mut().for_each(|l| *l = (*l * 2.0).round() / 2.0);
            }
            let top = argmax(&logits) as usize;
            logits.swap(top, h.list[3] as usize);
            for (c, cfg) in configs().iter().enumerate().filter(|(c, _)| (c + r) % every == 0) {
                let extra = &extra[..c % 5];
                let want = reference_dense(&logits, &h, extra, cfg);
                let got = distribution(&logits, &h, extra, cfg, &mut buf);
                sparse += matches!(got, Dist::Sparse { .. }) as usize;
                assert_same(got, &want, vocab, &format!("vocab {vocab} row {r} {cfg:?} extra {extra:?}"));
                // The top probability the computation kept is the one a pass over the row finds.
                assert_eq!(buf.confidence(&logits).to_bits(), buf.dist().confidence(&logits).to_bits(), "row {r} {cfg:?}");
                checked += 1;
            }
        }
        println!("vocab {vocab}: {checked} rows × configs checked, {sparse} sparse");
        assert!(sparse > checked / 4);
    }

    /// A row's k best as ONNX's TopK hands them back: value descending, lower id first.
    fn onnx_top_k(logits: &[f32], k: usize) -> (Vec<u32>, Vec<f32>) {
        let mut order: Vec<u32> = (0..logits.len() as u32).collect();
        order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]).then(a.cmp(&b)));
        order.truncate(k);
        let values = order.iter().map(|&i| logits[i as usize]).collect();
        (order, values)
    }

    /// From only a row's best (what device reductions hand over), every config that needs no more
    /// gives the whole row's distribution float for float, and the same draws for the same seed.
    #[test]
    fn the_best_of_a_row_gives_the_rows_distribution_exactly() {
        let mut rng = StdRng::seed_from_u64(19);
        let (mut full, mut top) = (DistBuf::new(), DistBuf::new());
        let mut checked = 0;
        for (vocab, rows) in [(512, 12), (151_936, 3)] {
            for r in 0..rows {
                let mut logits = row(vocab, [1.0, 2.5, 4.0][r % 3], 1 + r % 5, &mut rng);
                if r % 4 == 3 {
                    logits.iter_mut().for_each(|l| *l = (*l * 2.0).round() / 2.0);
                }
                let h = History::new(vocab);
                for cfg in configs() {
                    let Some(k) = best_needed(&cfg, vocab) else { continue };
                    // Exactly k, or more than k (which the k best must not be confused by).
                    let (ids, values) = onnx_top_k(&logits, if r % 2 == 0 { k } else { (k + 17).min(vocab) });
                    let want = distribution(&logits, &h, &[], &cfg, &mut full);
                    let got = distribution_top(&ids, &values, vocab, &cfg, &mut top);
                    let what = format!("vocab {vocab} row {r} {cfg:?}");
                    match (want, got) {
                        (Dist::Point(a), Dist::Point(b)) => assert_eq!(a, b, "{what}"),
                        (Dist::Sparse { ids: a, probs: p }, Dist::Sparse { ids: b, probs: q }) => {
                            assert_eq!((a, p), (b, q), "{what}")
                        }
                        (Dist::Probs(p), Dist::Probs(q)) => assert_eq!(p, q, "{what}"),
                        (a, b) => panic!("{what}: {a:?} against {b:?}"),
                    }
                    for seed in 0..3 {
                        let (mut r1, mut r2) = (StdRng::seed_from_u64(seed), StdRng::seed_from_u64(seed));
                        assert_eq!(want.sample(&mut r1), got.sample(&mut r2), "{what}: seed {seed}");
                    }
                    checked += 1;
                }
            }
        }
        println!("{checked} rows × configs: the best of the row gave the row's distribution");
        assert!(checked > 1000);
    }

    #[test]
    fn best_needed_asks_for_whole_rows_where_the_transforms_read_them() {
        let v = 1000;
        let greedy = SamplingConfig::default();
        assert_eq!(best_needed(&greedy, v), Some(1));
        assert_eq!(
            best_needed(&SamplingConfig { temperature: 1.0, top_k: 40, top_p: 0.9, min_p: 0.1, ..greedy.clone() }, v),
            Some(40)
        );
        for cfg in [
            SamplingConfig { temperature: 1.0, ..greedy.clone() },
            SamplingConfig { temperature: 1.0, top_p: 0.9, ..greedy.clone() },
            SamplingConfig { temperature: 1.0, top_k: v, ..greedy.clone() },
            SamplingConfig { repetition_penalty: 1.2, ..greedy.clone() },
            SamplingConfig { temperature: 1.0, top_k: 40, presence_penalty: 0.5, ..greedy.clone() },
            SamplingConfig { logit_bias: vec![(1, 1.0)], ..greedy.clone() },
        ] {
            assert_eq!(best_needed(&cfg, v), None, "{cfg:?}");
        }
    }

    #[test]
    fn fast_path_equals_the_reference_at_512() {
        compare_on(512, 12, 1, 1);
    }

    #[test]
    fn fast_path_equals_the_reference_at_151936() {
        compare_on(151_936, 6, 9, 2);
    }

    /// Rows split between the caller and the sampling helper give the distribution the caller
    /// alone gives, bit for bit, under every truncation (split::tests checks the passes one by one).
    #[test]
    fn the_sampling_helper_changes_no_float() {
        let vocab = 151_936;
        let mut rng = StdRng::seed_from_u64(77);
        let rows = [row(vocab, 0.5, 0, &mut rng), row(vocab, 3.0, 40, &mut rng)];
        let (hist, extra) = history(vocab, 30, &mut rng);
        split::set_helper(true);
        for cfg in configs().into_iter().filter(|c| c.temperature > 0.0 && c.top_k != 1).step_by(7) {
            for x in &rows {
                let (mut a, mut b) = (DistBuf::new(), DistBuf::new());
                split::alone(|| distribution(x, &hist, &extra, &cfg, &mut a));
                distribution(x, &hist, &extra, &cfg, &mut b);
                let dense = |d: &DistBuf| d.dist().to_dense(vocab).iter().map(|p| p.to_bits()).collect::<Vec<_>>();
                assert!(dense(&a) == dense(&b), "{cfg:?}: the helper changed the distribution");
            }
        }
    }

    /// Top-p's bounds depend on the rows before (its hint, and whether a guess from it missed),
    /// its distribution must not: a warm buffer gives the floats a fresh one does, on rows whose
    /// cut moves little (the guess holds, and the normaliser comes from the parts summed), jumps
    /// (the guess misses) or sits low in a long tail (the normaliser takes its own pass).
    #[test]
    fn top_p_gives_the_same_floats_whatever_came_before() {
        let vocab = 151_936;
        let mut rng = StdRng::seed_from_u64(11);
        let mut warm = DistBuf::new();
        let mut flat = 0;
        for r in 0..24 {
            let sigma = [0.45, 0.46, 0.44, 0.3, 0.45, 2.5][r % 6];
            let logits = row(vocab, sigma, r % 3, &mut rng);
            for top_p in [0.9f32, 0.999] {
                let cfg = SamplingConfig { temperature: 1.0, top_p, ..Default::default() };
                let h = History::new(vocab);
                let want = distribution(&logits, &h, &[], &cfg, &mut DistBuf::new()).to_dense(vocab);
                let got = distribution(&logits, &h, &[], &cfg, &mut warm);
                flat += matches!(got, Dist::Scaled { .. }) as usize;
                let got = got.to_dense(vocab);
                let same = got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "row {r} sigma {sigma} top-p {top_p}");
            }
        }
        assert!(flat >= 16, "{flat} dense rows");
    }

    #[test]
    fn representations_follow_the_truncation() {
        let mut rng = StdRng::seed_from_u64(5);
        let logits = row(151_936, 2.0, 3, &mut rng);
        let h = History::new(logits.len());
        let mut buf = DistBuf::new();
        let cfg = |top_k, top_p| SamplingConfig { temperature: 1.0, top_k, top_p, ..Default::default() };
        assert!(
            matches!(distribution(&logits, &h, &[], &cfg(0, 1.0), &mut buf), Dist::Scaled { exps, .. } if exps.len() == logits.len())
        );
        distribution(&logits, &h, &[], &cfg(40, 1.0), &mut buf);
        let d = buf.dist();
        let Dist::Sparse { ids, probs } = d else { panic!("top-k 40") };
        assert_eq!(ids.len(), 40);
        assert!(ids.windows(2).all(|w| w[0] < w[1]) && probs.iter().all(|&p| p > 0.0));
        assert!((probs.iter().map(|&p| p as f64).sum::<f64>() - 1.0).abs() < 1e-6);
        assert_eq!(d.prob(ids[7]), probs[7]);
        assert_eq!(d.prob(ids[7] + 1) > 0.0, ids[8] == ids[7] + 1);
        assert!(matches!(distribution(&logits, &h, &[], &SamplingConfig::default(), &mut buf), Dist::Point(_)));
        assert!(matches!(buf.dist(), Dist::Point(_)));
    }

    #[test]
    fn draws_and_verdicts_equal_the_reference() {
        // Same seeds, same uniforms: the fast draw walks the same tokens in the same order, so it
        // lands on the same one unless a uniform falls within rounding of a boundary.
        let vocab = 151_936;
        let mut rng = StdRng::seed_from_u64(11);
        let (lp, lq) = (row(vocab, 2.0, 3, &mut rng), row(vocab, 2.0, 3, &mut rng));
        let mut lq = lq;
        // A draft that mostly agrees: q's logits are p's plus noise.
        lq.iter_mut().zip(&lp).for_each(|(q, &p)| *q = 0.7 * p + 0.3 * *q);
        let h = History::new(vocab);
        let (mut bp, mut bq, mut rp, mut rq) = (DistBuf::new(), DistBuf::new(), Vec::new(), Vec::new());
        let (mut scratch, mut ref_scratch) = (Vec::new(), Vec::new());
        let (mut same, mut total) = (0, 0);
        for cfg in [
            SamplingConfig { temperature: 1.0, ..Default::default() },
            SamplingConfig { temperature: 1.0, top_p: 0.9, ..Default::default() },
            SamplingConfig { temperature: 0.8, top_k: 40, top_p: 0.9, ..Default::default() },
            SamplingConfig { temperature: 1.0, min_p: 0.05, ..Default::default() },
            SamplingConfig { temperature: 0.0, ..Default::default() },
        ] {
            let (p, q) = (distribution(&lp, &h, &[], &cfg, &mut bp), distribution(&lq, &h, &[], &cfg, &mut bq));
            let (p0, q0) =
                (reference::distribution(&lp, &[], &[], &cfg, &mut rp), reference::distribution(&lq, &[], &[], &cfg, &mut rq));
            let (a, b) = (crate::acceptance::overlap(p, q), reference::overlap(p0, q0));
            assert!((a - b).abs() <= 1e-6 * b.max(1e-9), "{cfg:?}: overlap {a} against {b}");
            for seed in 0..400 {
                let (mut r1, mut r2) = (StdRng::seed_from_u64(seed), StdRng::seed_from_u64(seed));
                let (x, x0) = (q.sample(&mut r1), q0.sample(&mut r2));
                let v = crate::acceptance::verify(p, q, x, &mut r1, &mut scratch);
                let v0 = reference::verify(p0, q0, x0, &mut r2, &mut ref_scratch);
                // The bonus draw from p.
                let (y, y0) = (p.sample(&mut r1), p0.sample(&mut r2));
                same += (x == x0 && v == v0 && y == y0) as usize;
                total += 1;
            }
        }
        println!("{same} of {total} draws and verdicts identical");
        assert!(same * 1000 >= total * 999, "{same} of {total}");
    }
}
