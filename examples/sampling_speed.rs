//! Per-position cost of the sampling transforms and the acceptance rule at real vocabulary sizes:
//! the straightforward implementation (`src/sampling/reference.rs`, the code before the fast path,
//! the tests' oracle) against the library's, on the same rows with the same seeds, alternating
//! which goes first from position to position.
//!
//! cargo run --release --example sampling_speed [-- --positions N] [--rows peaked|flat] [--vocab N] > table.md
//!
//! Each position draws a target row (a normal background, a few peaked tokens, as a language
//! model's logits look) and a draft row (the target's plus noise, so acceptance is partial), then
//! times: p's distribution, q's distribution, the draw of the proposal x ~ q, and the acceptance
//! test (verify, with the residual draw on rejection). Medians and min–max in microseconds.

#[path = "../src/sampling/reference.rs"]
mod reference;

use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use specdec::acceptance;
use specdec::sampling::{distribution, DistBuf, History};
use specdec::SamplingConfig;

/// Timings of one position, in seconds: p, q, draw, verify.
type Times = [f64; 4];
const PHASES: [&str; 4] = ["dist p", "dist q", "draw x~q", "verify"];

fn normal(rng: &mut StdRng) -> f32 {
    let (u, v): (f32, f32) = (rng.random::<f32>().max(1e-12), rng.random());
    (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
}

/// A target row and a draft row that mostly agrees with it. `flat` rows are what a randomly
/// initialised model puts out (logits with σ ≈ 0.45, no peaks: top-p 0.9 keeps most of the
/// vocabulary), the hard case for truncation.
fn rows(vocab: usize, flat: bool, rng: &mut StdRng) -> (Vec<f32>, Vec<f32>) {
    if flat {
        let p: Vec<f32> = (0..vocab).map(|_| 0.45 * normal(rng)).collect();
        let q = p.iter().map(|&l| 0.7 * l + 0.2 * normal(rng)).collect();
        return (p, q);
    }
    let sigma = rng.random_range(1.5..3.0);
    let mut p: Vec<f32> = (0..vocab).map(|_| sigma * normal(rng)).collect();
    for _ in 0..rng.random_range(1..8) {
        let i = rng.random_range(0..vocab);
        p[i] += rng.random_range(8.0..20.0);
    }
    let q = p.iter().map(|&l| l + 0.8 * normal(rng)).collect();
    (p, q)
}

struct Case {
    name: &'static str,
    cfg: SamplingConfig,
    history: usize,
}

fn main() {
    let mut positions = 240usize;
    let mut flat = false;
    let mut vocabs = vec![151_936usize, 32_000];
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--positions" => positions = args.next().and_then(|v| v.parse().ok()).expect("--positions N"),
            "--rows" => flat = args.next().expect("--rows peaked|flat") == "flat",
            "--vocab" => vocabs = vec![args.next().and_then(|v| v.parse().ok()).expect("--vocab N")],
            _ => panic!("unknown argument {flag}"),
        }
    }
    let t = |temperature| SamplingConfig { temperature, ..Default::default() };
    let cases = [
        Case { name: "greedy", cfg: t(0.0), history: 0 },
        Case { name: "T=1", cfg: t(1.0), history: 0 },
        Case { name: "T=1 top-p 0.9", cfg: SamplingConfig { top_p: 0.9, ..t(1.0) }, history: 0 },
        Case { name: "T=0.8 top-k 40 top-p 0.9", cfg: SamplingConfig { top_k: 40, top_p: 0.9, ..t(0.8) }, history: 0 },
        Case {
            name: "T=1 min-p 0.05 rep 1.1 (500-token history)",
            cfg: SamplingConfig { min_p: 0.05, repetition_penalty: 1.1, ..t(1.0) },
            history: 500,
        },
    ];
    println!("Per position, microseconds: median (min–max) over {positions} positions; old = the reference");
    println!("implementation (dense row, libm exp, full sort), new = the library's. Same rows, same seeds.\n");
    println!("| vocab | config | phase | old | new | old/new |");
    println!("|---|---|---|---|---|---|");
    let mut summary = Vec::new();
    for &vocab in &vocabs {
        for case in &cases {
            let mut rng = StdRng::seed_from_u64(vocab as u64);
            let (mut old, mut new) = (Vec::new(), Vec::new());
            let (mut accepted, mut agree) = (0usize, 0usize);
            let (mut bp, mut bq, mut scratch) = (DistBuf::new(), DistBuf::new(), Vec::new());
            let (mut rp, mut rq, mut rscratch) = (Vec::new(), Vec::new(), Vec::new());
            for pos in 0..positions {
                let (lp, lq) = rows(vocab, flat, &mut rng);
                let mut history = History::new(vocab);
                let mut seen = vec![false; vocab];
                let mut penalised = Vec::new();
                // The history repeats tokens, the peaked ones among them.
                let top: Vec<u32> = {
                    let mut idx: Vec<u32> = (0..vocab as u32).collect();
                    idx.select_nth_unstable_by(8, |&a, &b| lp[b as usize].total_cmp(&lp[a as usize]));
                    idx[..8].to_vec()
                };
                for h in 0..case.history {
                    let tok = if h % 10 == 0 { top[h % 8] } else { rng.random_range(0..vocab as u32) };
                    history.push(tok);
                    if !std::mem::replace(&mut seen[tok as usize], true) {
                        penalised.push(tok);
                    }
                }
                let extra: Vec<u32> = if case.history > 0 { vec![top[0], rng.random_range(0..vocab as u32)] } else { vec![] };
                for &tok in &extra {
                    if !seen[tok as usize] && !penalised.contains(&tok) {
                        penalised.push(tok);
                    }
                }
                let seed = pos as u64;
                let mut run_old = || -> (Times, Option<u32>, u32) {
                    let mut r = StdRng::seed_from_u64(seed);
                    let t0 = Instant::now();
                    let p = reference::distribution(&lp, &penalised, &[], &case.cfg, &mut rp);
                    let t1 = Instant::now();
                    let q = reference::distribution(&lq, &penalised, &[], &case.cfg, &mut rq);
                    let t2 = Instant::now();
                    let x = q.sample(&mut r);
                    let t3 = Instant::now();
                    let v = reference::verify(p, q, x, &mut r, &mut rscratch);
                    let t4 = Instant::now();
                    (secs([t0, t1, t2, t3, t4]), v, x)
                };
                let mut run_new = || -> (Times, Option<u32>, u32) {
                    let mut r = StdRng::seed_from_u64(seed);
                    let t0 = Instant::now();
                    let p = distribution(&lp, &history, &extra, &case.cfg, &mut bp);
                    let t1 = Instant::now();
                    let q = distribution(&lq, &history, &extra, &case.cfg, &mut bq);
                    let t2 = Instant::now();
                    let x = q.sample(&mut r);
                    let t3 = Instant::now();
                    let v = acceptance::verify(p, q, x, &mut r, &mut scratch);
                    let t4 = Instant::now();
                    (secs([t0, t1, t2, t3, t4]), v, x)
                };
                let (a, b) = if pos % 2 == 0 {
                    let a = run_old();
                    (a, run_new())
                } else {
                    let b = run_new();
                    (run_old(), b)
                };
                agree += (a.1 == b.1 && a.2 == b.2) as usize;
                accepted += b.1.is_none() as usize;
                old.push(a.0);
                new.push(b.0);
            }
            let total = |v: &[Times]| v.iter().map(|t| t.iter().sum::<f64>()).collect::<Vec<_>>();
            for (i, phase) in PHASES.iter().enumerate().chain([(4, &"total")]) {
                let (o, n) = if i < 4 {
                    (old.iter().map(|t| t[i]).collect::<Vec<_>>(), new.iter().map(|t| t[i]).collect::<Vec<_>>())
                } else {
                    (total(&old), total(&new))
                };
                let (so, sn) = (stats(o), stats(n));
                println!("| {vocab} | {} | {phase} | {} | {} | {:.1}× |", case.name, fmt(so), fmt(sn), so.0 / sn.0.max(1e-9));
                if i == 4 {
                    summary.push(format!(
                        "| {vocab} | {} | {} | {} | {:.1}× | {:.0}% | {agree}/{positions} |",
                        case.name,
                        fmt(so),
                        fmt(sn),
                        so.0 / sn.0.max(1e-9),
                        100.0 * accepted as f64 / positions as f64
                    ));
                }
            }
        }
    }
    println!("\nTotals (dist p + dist q + draw + verify), with the acceptance rate and the positions where old and new");
    println!("drew the same x and reached the same verdict:\n");
    println!("| vocab | config | old total | new total | old/new | accepted | same outcome |");
    println!("|---|---|---|---|---|---|---|");
    summary.iter().for_each(|l| println!("{l}"));
}

fn secs(t: [Instant; 5]) -> Times {
    std::array::from_fn(|i| (t[i + 1] - t[i]).as_secs_f64())
}

/// Median, min and max.
fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn fmt((med, min, max): (f64, f64, f64)) -> String {
    let us = |s: f64| if s < 1e-5 { format!("{:.2}", s * 1e6) } else { format!("{:.0}", s * 1e6) };
    format!("{} ({}–{})", us(med), us(min), us(max))
}
