//! Sampling transforms. They define the distributions the algorithm compares: the same transform,
//! with the same token history, is applied to the target's p and the draft's q at every position.

use rand::Rng;

use crate::error::{Error, Result};

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
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig { temperature: 0.0, top_k: 0, top_p: 1.0, min_p: 0.0, repetition_penalty: 1.0 }
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
        Ok(())
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }
}

/// A next-token distribution: a point mass (greedy, or a deterministic proposal) or probabilities
/// over the vocabulary.
#[derive(Debug, Clone, Copy)]
pub enum Dist<'a> {
    Point(u32),
    Probs(&'a [f32]),
}

impl Dist<'_> {
    /// The top probability: of the distribution itself, or for a greedy point mass, of the
    /// softmax of the `scores` it was taken from (how sure a draft was of its guess).
    pub fn confidence(&self, scores: &[f32]) -> f32 {
        match self {
            Dist::Probs(p) => p.iter().copied().fold(0.0, f32::max),
            Dist::Point(_) => {
                let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                1.0 / scores.iter().map(|&s| (s - max).exp()).sum::<f32>()
            }
        }
    }

    pub fn prob(&self, x: u32) -> f32 {
        match *self {
            Dist::Point(t) => (t == x) as u32 as f32,
            Dist::Probs(p) => p.get(x as usize).copied().unwrap_or(0.0),
        }
    }

    pub fn sample(&self, rng: &mut impl Rng) -> u32 {
        match *self {
            Dist::Point(t) => t,
            Dist::Probs(p) => sample_index(p, rng),
        }
    }
}

/// Tokens whose logits the repetition penalty touches: the committed sequence (deduplicated once,
/// incrementally) plus the draft tokens before the current position.
#[derive(Debug, Default, Clone)]
pub struct History {
    seen: Vec<bool>,
    list: Vec<u32>,
}

impl History {
    pub fn new(vocab: usize) -> Self {
        History { seen: vec![false; vocab], list: Vec::new() }
    }

    pub fn push(&mut self, t: u32) {
        if let Some(s) = self.seen.get_mut(t as usize) {
            if !*s {
                *s = true;
                self.list.push(t);
            }
        }
    }

    fn for_each_unique(&self, extra: &[u32], mut f: impl FnMut(u32)) {
        self.list.iter().for_each(|&t| f(t));
        for (i, &t) in extra.iter().enumerate() {
            if !self.seen.get(t as usize).copied().unwrap_or(true) && !extra[..i].contains(&t) {
                f(t);
            }
        }
    }
}

/// Turn one logits row into the distribution to sample from. `buf` receives the probabilities
/// (sampling) or is left alone (greedy); the result borrows it.
pub fn distribution<'b>(
    logits: &[f32],
    history: &History,
    extra: &[u32],
    cfg: &SamplingConfig,
    buf: &'b mut Vec<f32>,
) -> Dist<'b> {
    let penalise = cfg.repetition_penalty != 1.0;
    if cfg.is_greedy() && !penalise {
        return Dist::Point(argmax(logits));
    }
    buf.clear();
    buf.extend_from_slice(logits);
    if penalise {
        let r = cfg.repetition_penalty;
        history.for_each_unique(extra, |t| {
            let l = &mut buf[t as usize];
            *l = if *l > 0.0 { *l / r } else { *l * r };
        });
    }
    if cfg.is_greedy() {
        return Dist::Point(argmax(buf));
    }
    let inv_t = 1.0 / cfg.temperature;
    let max = buf.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f64;
    for l in buf.iter_mut() {
        *l = ((*l - max) * inv_t).exp();
        sum += *l as f64;
    }
    let inv = (1.0 / sum) as f32;
    buf.iter_mut().for_each(|p| *p *= inv);
    truncate(buf, cfg);
    Dist::Probs(buf)
}

/// Top-k, then top-p, then min-p, on normalised probabilities; renormalises what is left.
fn truncate(p: &mut [f32], cfg: &SamplingConfig) {
    let k_on = cfg.top_k > 0 && cfg.top_k < p.len();
    let p_on = cfg.top_p < 1.0;
    if k_on || p_on {
        let mut order: Vec<u32> = (0..p.len() as u32).collect();
        // Descending by probability, ties by lower id, so truncation is deterministic.
        order.sort_unstable_by(|&a, &b| p[b as usize].total_cmp(&p[a as usize]).then(a.cmp(&b)));
        let mut keep = if k_on { cfg.top_k } else { p.len() };
        if p_on {
            let mut cum = 0.0f64;
            let kept_mass: f64 = order[..keep].iter().map(|&i| p[i as usize] as f64).sum();
            for (n, &i) in order[..keep].iter().enumerate() {
                cum += p[i as usize] as f64 / kept_mass;
                if cum >= cfg.top_p as f64 {
                    keep = n + 1;
                    break;
                }
            }
        }
        for &i in &order[keep..] {
            p[i as usize] = 0.0;
        }
    }
    if cfg.min_p > 0.0 {
        let top = p.iter().copied().fold(0.0f32, f32::max);
        let floor = cfg.min_p * top;
        p.iter_mut().filter(|x| **x < floor).for_each(|x| *x = 0.0);
    }
    let sum: f64 = p.iter().map(|&x| x as f64).sum();
    if sum > 0.0 {
        let inv = (1.0 / sum) as f32;
        p.iter_mut().for_each(|x| *x *= inv);
    }
}

/// First index of the largest value (matches torch.argmax on ties).
pub fn argmax(x: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best as u32
}

/// Draw an index with probability proportional to `w` (which need not sum to exactly 1).
pub fn sample_index(w: &[f32], rng: &mut impl Rng) -> u32 {
    let total: f64 = w.iter().map(|&x| x as f64).sum();
    let mut r = rng.random::<f64>() * total;
    let mut last = 0;
    for (i, &x) in w.iter().enumerate() {
        if x > 0.0 {
            last = i;
            r -= x as f64;
            if r < 0.0 {
                return i as u32;
            }
        }
    }
    last as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probs(logits: &[f32], cfg: &SamplingConfig) -> Vec<f32> {
        let mut buf = Vec::new();
        match distribution(logits, &History::new(logits.len()), &[], cfg, &mut buf) {
            Dist::Probs(p) => p.to_vec(),
            Dist::Point(t) => (0..logits.len()).map(|i| (i as u32 == t) as u32 as f32).collect(),
        }
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
        let mut buf = Vec::new();
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
    fn validation_rejects_out_of_range_values() {
        for bad in [
            SamplingConfig { temperature: -1.0, ..Default::default() },
            SamplingConfig { temperature: f32::NAN, ..Default::default() },
            SamplingConfig { top_p: 0.0, ..Default::default() },
            SamplingConfig { top_p: 1.5, ..Default::default() },
            SamplingConfig { min_p: -0.1, ..Default::default() },
            SamplingConfig { repetition_penalty: 0.0, ..Default::default() },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        assert!(SamplingConfig::default().validate().is_ok());
    }

    #[test]
    fn argmax_takes_the_first_maximum() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
    }
}
