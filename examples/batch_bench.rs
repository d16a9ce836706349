//! Aggregate throughput of the batch engine: tokens/s over all sequences for 1, 2, 4, 8 and 16
//! concurrent sequences, speculative and target-only, at temperature 0 and 1; and, at 8
//! sequences, 8 threads each running its own Generator on the same shared model pair (the
//! baseline the engine replaces). Configurations are interleaved within each repeat (paired
//! runs on a shared machine); medians with min–max over the repeats.
//!
//! cargo run --release --example batch_bench [-- --repeats 7 --max-new-tokens 128 --gamma 3
//!     --threads 1 [--no-spin] --sizes 1,2,4,8,16 --out benches/results/batch.md --readme README.md]
//!
//! `--readme` rewrites the block between `<!-- batch:begin -->` and `<!-- batch:end -->` in that
//! file with the medians of this run (figures are recorded, never typed).
//!
//! BATCH_BENCH_VERBOSE=1 prints each engine run's split of time (target calls, draft calls,
//! prefill, the rest) on stderr.
//!
//! Prompts: benches/prompts.jsonl, cycled; sequence i uses seed i; EOS off so that every
//! sequence generates exactly max-new-tokens.

use std::sync::Arc;
use std::time::Instant;

use specdec::{Engine, EngineOptions, GenerationConfig, Generator, Model, ModelOptions, SamplingConfig, Tokenizer};

struct Args {
    repeats: usize,
    max_new_tokens: usize,
    gamma: usize,
    threads: usize,
    sizes: Vec<usize>,
    out: Option<String>,
    readme: Option<String>,
    spin: bool,
}

fn args() -> Args {
    let mut a = Args {
        repeats: 7,
        max_new_tokens: 128,
        gamma: 3,
        threads: 1,
        sizes: vec![1, 2, 4, 8, 16],
        out: None,
        readme: None,
        spin: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--repeats" => a.repeats = value().parse().expect("--repeats N"),
            "--max-new-tokens" => a.max_new_tokens = value().parse().expect("--max-new-tokens N"),
            "--gamma" => a.gamma = value().parse().expect("--gamma N"),
            "--threads" => a.threads = value().parse().expect("--threads N"),
            "--sizes" => a.sizes = value().split(',').map(|s| s.parse().expect("--sizes 1,2,4")).collect(),
            "--out" => a.out = Some(value()),
            "--readme" => a.readme = Some(value()),
            "--no-spin" => a.spin = false,
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Engine { speculative: bool },
    Threads,
}

struct Setup<'a> {
    target: &'a Arc<Model>,
    draft: &'a Arc<Model>,
    prompts: &'a [Vec<u32>],
    max_new_tokens: usize,
    gamma: usize,
}

impl Setup<'_> {
    fn config(&self, i: usize, temperature: f32) -> GenerationConfig {
        GenerationConfig {
            gamma: self.gamma,
            max_new_tokens: self.max_new_tokens,
            sampling: SamplingConfig { temperature, ..Default::default() },
            seed: i as u64,
            eos_ids: Some(vec![]),
            ..Default::default()
        }
    }

    /// Aggregate tokens/s of `n` sequences in `mode`, and the acceptance rate.
    fn run(&self, mode: Mode, n: usize, temperature: f32) -> (f64, f64) {
        let started = Instant::now();
        let (tokens, accepted, drafted) = match mode {
            Mode::Engine { speculative } => {
                let draft = speculative.then(|| self.draft.clone());
                let opts = EngineOptions { max_batch: n.max(1), ..Default::default() };
                let engine = Engine::new(self.target.clone(), draft, opts).unwrap();
                let ids: Vec<u64> = (0..n)
                    .map(|i| engine.add(&self.prompts[i % self.prompts.len()], self.config(i, temperature)).unwrap())
                    .collect();
                let mut sink = Vec::new();
                while engine.step().unwrap() > 0 {
                    for &id in &ids {
                        sink.clear();
                        engine.poll(id, &mut sink, usize::MAX).unwrap();
                    }
                }
                let s = engine.stats();
                if std::env::var_os("BATCH_BENCH_VERBOSE").is_some() {
                    let other = s.total_time.saturating_sub(s.target_time + s.draft_time + s.prefill_time);
                    eprintln!(
                        "  n={n} rounds {} target {:.0} ms, draft {:.0} ms, prefill {:.0} ms, other {:.0} ms",
                        s.rounds,
                        s.target_time.as_secs_f64() * 1e3,
                        s.draft_time.as_secs_f64() * 1e3,
                        s.prefill_time.as_secs_f64() * 1e3,
                        other.as_secs_f64() * 1e3
                    );
                }
                (s.new_tokens, s.accepted, s.drafted)
            }
            Mode::Threads => {
                let handles: Vec<_> = (0..n)
                    .map(|i| {
                        let (target, draft) = (self.target.clone(), self.draft.clone());
                        let (prompt, cfg) = (self.prompts[i % self.prompts.len()].clone(), self.config(i, temperature));
                        std::thread::spawn(move || {
                            let mut g = Generator::new(target, Some(draft), cfg).unwrap();
                            g.append_tokens(&prompt).unwrap();
                            g.generate(|_| true).unwrap();
                            *g.stats()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap())
                    .fold((0, 0, 0), |(t, a, d), s| (t + s.new_tokens, a + s.accepted, d + s.drafted))
            }
        };
        let rate = if drafted > 0 { accepted as f64 / drafted as f64 } else { 0.0 };
        (tokens as f64 / started.elapsed().as_secs_f64(), rate)
    }
}

/// Median, min and max.
fn summary(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = if s.len() % 2 == 1 { s[s.len() / 2] } else { (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0 };
    (m, s[0], s[s.len() - 1])
}

fn cell(v: &[f64]) -> String {
    let (m, lo, hi) = summary(v);
    format!("{m:.0} ({lo:.0}–{hi:.0})")
}

fn main() {
    let a = args();
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    specdec::runtime::init(None).expect("ONNX Runtime (make setup, or set ORT_DYLIB_PATH)");
    let options = ModelOptions { intra_threads: a.threads, spinning: a.spin, ..Default::default() };
    let target = Arc::new(Model::load(root.join("models/demo/target"), &options).unwrap());
    let draft = Arc::new(Model::load(root.join("models/demo/draft"), &options).unwrap());
    let tok = Tokenizer::load(root.join("models/demo/target")).unwrap();
    let text = std::fs::read_to_string(root.join("benches/prompts.jsonl")).unwrap();
    let prompts: Vec<Vec<u32>> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| tok.encode(serde_json::from_str::<String>(l).unwrap().as_str()).unwrap())
        .collect();
    let setup = Setup { target: &target, draft: &draft, prompts: &prompts, max_new_tokens: a.max_new_tokens, gamma: a.gamma };

    // (temperature, n, mode) in the order each repeat runs them.
    let mut configs = Vec::new();
    for &t in &[0.0f32, 1.0] {
        for &n in &a.sizes {
            configs.push((t, n, Mode::Engine { speculative: true }));
            configs.push((t, n, Mode::Engine { speculative: false }));
            if n == 8 {
                configs.push((t, n, Mode::Threads));
            }
        }
    }
    // A warm-up pass at small sizes (sessions, allocators, the cost curve).
    for &(t, _, mode) in configs.iter().filter(|c| c.1 == 1) {
        setup.run(mode, 2, t);
    }
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); 4];
    let mut acceptance: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
    for r in 0..a.repeats {
        // Alternate the direction so that no configuration always follows the same one.
        let order: Vec<usize> = if r % 2 == 0 { (0..configs.len()).collect() } else { (0..configs.len()).rev().collect() };
        for i in order {
            let (t, n, mode) = configs[i];
            let (tps, acc) = setup.run(mode, n, t);
            rates[i].push(tps);
            acceptance[i].push(acc);
            eprintln!("repeat {r}: T={t} n={n:>2} {:<22} {tps:>7.0} tokens/s", label(mode));
        }
        // Paired ratios of this repeat, at 8 sequences.
        for (k, &t) in [0.0f32, 1.0].iter().enumerate() {
            let find = |n: usize, m: Mode| configs.iter().position(|&c| c == (t, n, m)).map(|i| rates[i][r]);
            if let (Some(spec), Some(plain), Some(threads)) = (
                find(8, Mode::Engine { speculative: true }),
                find(8, Mode::Engine { speculative: false }),
                find(8, Mode::Threads),
            ) {
                ratios[2 * k].push(spec / threads);
                ratios[2 * k + 1].push(spec / plain);
            }
        }
    }

    let mut md = String::new();
    md.push_str(&format!(
        "# Batch engine throughput\n\nRecorded with `cargo run --release --example batch_bench -- --repeats {} --max-new-tokens {} --gamma {} --threads {}{}{}` \
         on {} ({} cores), demo pair (models/demo, fp32 Optimum), {} intra-op thread(s) per model.\n\n\
         Aggregate tokens/s over all sequences (every sequence generates {} tokens, EOS off; prompts from benches/prompts.jsonl, \
         sequence i seeded i); median (min–max) of {} repeats, configurations interleaved within each repeat.\n\n",
        a.repeats,
        a.max_new_tokens,
        a.gamma,
        a.threads,
        if a.spin { "" } else { " --no-spin" },
        a.out.as_ref().map(|o| format!(" --out {o}")).unwrap_or_default(),
        cpu_name(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        a.threads,
        a.max_new_tokens,
        a.repeats
    ));
    for &t in &[0.0f32, 1.0] {
        md.push_str(&format!(
            "## T = {t}\n\n| sequences | speculative (γ {}) | target-only | speculative / target-only | acceptance |\n|---:|---:|---:|---:|---:|\n",
            a.gamma
        ));
        for &n in &a.sizes {
            let at = |m: Mode| configs.iter().position(|&c| c == (t, n, m)).unwrap();
            let (s, p) = (at(Mode::Engine { speculative: true }), at(Mode::Engine { speculative: false }));
            let paired: Vec<f64> = rates[s].iter().zip(&rates[p]).map(|(a, b)| a / b).collect();
            let (ps, lo, hi) = summary(&paired);
            md.push_str(&format!(
                "| {n} | {} | {} | {ps:.2}× ({lo:.2}–{hi:.2}) | {:.1}% |\n",
                cell(&rates[s]),
                cell(&rates[p]),
                100.0 * summary(&acceptance[s]).0
            ));
        }
        if let Some(i) = configs.iter().position(|&c| c == (t, 8, Mode::Threads)) {
            md.push_str(&format!(
                "\n8 threads, each its own `Generator` (speculative, γ {}) on the shared pair: {} tokens/s.\n\n",
                a.gamma,
                cell(&rates[i])
            ));
        }
    }
    md.push_str("## Acceptance ratios at 8 sequences (paired per repeat)\n\n| ratio | T = 0 | T = 1 |\n|---|---:|---:|\n");
    let r = |v: &[f64]| {
        if v.is_empty() {
            return "–".to_string();
        }
        let (m, lo, hi) = summary(v);
        format!("{m:.2}× ({lo:.2}–{hi:.2})")
    };
    md.push_str(&format!("| engine speculative / 8 threads with own Generators | {} | {} |\n", r(&ratios[0]), r(&ratios[2])));
    md.push_str(&format!("| engine speculative / engine target-only | {} | {} |\n", r(&ratios[1]), r(&ratios[3])));
    print!("{md}");
    if let Some(out) = &a.out {
        std::fs::write(out, &md).unwrap();
    }
    if let Some(path) = &a.readme {
        let mut block = format!(
            "Aggregate tokens/s, medians of {} paired repeats (γ {}; {}):\n\n| sequences | T=0 speculative | T=0 target-only | T=1 speculative | T=1 target-only |\n|---:|---:|---:|---:|---:|\n",
            a.repeats,
            a.gamma,
            a.out.as_deref().unwrap_or("not recorded")
        );
        for &n in &a.sizes {
            let med = |t: f32, m: Mode| configs.iter().position(|&c| c == (t, n, m)).map_or(0.0, |i| summary(&rates[i]).0);
            let (s, p) = (Mode::Engine { speculative: true }, Mode::Engine { speculative: false });
            block.push_str(&format!(
                "| {n} | {:.0} | {:.0} | {:.0} | {:.0} |\n",
                med(0.0, s),
                med(0.0, p),
                med(1.0, s),
                med(1.0, p)
            ));
        }
        block.push_str(&format!(
            "\nAt 8 sequences, paired per repeat: engine speculative / 8 threads each with its own `Generator` {} at T=0, {} at T=1; \
             engine speculative / engine target-only {} at T=0, {} at T=1.",
            r(&ratios[0]),
            r(&ratios[2]),
            r(&ratios[1]),
            r(&ratios[3])
        ));
        let text = std::fs::read_to_string(path).unwrap();
        let (begin, end) = ("<!-- batch:begin -->\n", "<!-- batch:end -->");
        let (Some(i), Some(j)) = (text.find(begin), text.find(end)) else { panic!("{path} has no batch block") };
        let updated = format!("{}{block}\n{}", &text[..i + begin.len()], &text[j..]);
        std::fs::write(path, updated).unwrap();
    }
}

fn label(mode: Mode) -> &'static str {
    match mode {
        Mode::Engine { speculative: true } => "engine speculative",
        Mode::Engine { speculative: false } => "engine target-only",
        Mode::Threads => "8 threads x Generator",
    }
}

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
