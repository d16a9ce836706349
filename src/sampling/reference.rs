//! The straightforward implementation of the sampling transforms and of the acceptance rule (the
//! code before the fast path: a dense probability row per position, a full exp, a full sort for
//! top-k/top-p), kept as the oracle the fast path is tested against. The library compiles it only
//! for its tests; `examples/sampling_speed.rs` includes this file to time the fast path against it.
//! It needs `SamplingConfig` in the including module's parent.
#![allow(dead_code)]

use rand::Rng;

use super::SamplingConfig;

/// A next-token distribution: a point mass or probabilities over the whole vocabulary.
#[derive(Debug, Clone, Copy)]
pub enum Dist<'a> {
    Point(u32),
    Probs(&'a [f32]),
}

impl Dist<'_> {
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

/// One logits row to its distribution; `penalised` lists each token the repetition penalty
/// touches once, `produced` each token the generation produced with its count (the presence and
/// frequency penalties).
pub fn distribution<'b>(
    logits: &[f32],
    penalised: &[u32],
    produced: &[(u32, u32)],
    cfg: &SamplingConfig,
    buf: &'b mut Vec<f32>,
) -> Dist<'b> {
    let penalise = cfg.repetition_penalty != 1.0;
    let counts = cfg.presence_penalty != 0.0 || cfg.frequency_penalty != 0.0;
    if cfg.temperature == 0.0 && !penalise && !counts && cfg.logit_bias.is_empty() {
        return Dist::Point(argmax(logits));
    }
    buf.clear();
    buf.extend_from_slice(logits);
    if penalise {
        let r = cfg.repetition_penalty;
        for &t in penalised {
            let l = &mut buf[t as usize];
            *l = if *l > 0.0 { *l / r } else { *l * r };
        }
    }
    if counts {
        for &(t, c) in produced {
            buf[t as usize] -= cfg.presence_penalty + cfg.frequency_penalty * c as f32;
        }
    }
    for &(t, b) in &cfg.logit_bias {
        buf[t as usize] += b;
    }
    if cfg.temperature == 0.0 {
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
pub fn truncate(p: &mut [f32], cfg: &SamplingConfig) {
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

/// First index of the largest value.
pub fn argmax(x: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best as u32
}

/// Draw an index with probability proportional to `w`.
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

/// Accept `x` iff r·q(x) < p(x); otherwise the token drawn from norm(max(0, p − q)).
pub fn verify(p: Dist<'_>, q: Dist<'_>, x: u32, rng: &mut impl Rng, scratch: &mut Vec<f32>) -> Option<u32> {
    let r: f32 = rng.random();
    if r * q.prob(x) < p.prob(x) {
        return None;
    }
    Some(residual(p, q, rng, scratch))
}

/// Σ min(p, q).
pub fn overlap(p: Dist<'_>, q: Dist<'_>) -> f64 {
    match (p, q) {
        (Dist::Point(a), Dist::Point(b)) => (a == b) as u32 as f64,
        (Dist::Point(t), Dist::Probs(d)) | (Dist::Probs(d), Dist::Point(t)) => d.get(t as usize).copied().unwrap_or(0.0) as f64,
        (Dist::Probs(a), Dist::Probs(b)) => a.iter().zip(b).map(|(&x, &y)| x.min(y) as f64).sum(),
    }
}

/// Sample from norm(max(0, p − q)); falls back to p where float rounding leaves no mass.
pub fn residual(p: Dist<'_>, q: Dist<'_>, rng: &mut impl Rng, scratch: &mut Vec<f32>) -> u32 {
    match (p, q) {
        (Dist::Point(a), _) => a,
        (Dist::Probs(pp), q) => {
            scratch.clear();
            match q {
                Dist::Point(y) => {
                    scratch.extend_from_slice(pp);
                    if let Some(v) = scratch.get_mut(y as usize) {
                        *v = 0.0;
                    }
                }
                Dist::Probs(qq) => scratch.extend(pp.iter().zip(qq).map(|(&a, &b)| (a - b).max(0.0))),
            }
            if scratch.iter().any(|&v| v > 0.0) {
                sample_index(scratch, rng)
            } else {
                sample_index(pp, rng)
            }
        }
    }
}
