//! `specdec bench`: the measured speed-up beside the paper's prediction from measured α, c and
//! verification cost. Everything runs in one process, interleaved per repetition after a warm-up,
//! so slow drifts of the machine hit every variant alike.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use specdec::policy::{expected_tokens, predicted_speedup};
use specdec::{Device, DraftPolicy, DraftSource, Error, GenerationConfig, Generator, Model, ModelOptions, NGramConfig, SamplingConfig, Stats, Tokenizer};

use crate::{median, num, usage, CliError};

struct BenchOpts {
    target: PathBuf,
    draft: PathBuf,
    prompts: PathBuf,
    new_tokens: usize,
    repeats: usize,
    gammas: Vec<usize>,
    temperatures: Vec<f32>,
    variants: Vec<String>,
    threads: usize,
    draft_threads: usize,
    opt_level: u8,
    spinning: bool,
    out: PathBuf,
    ort_lib: Option<PathBuf>,
    device: Device,
    draft_device: Option<Device>,
    args: Vec<String>,
}

fn parse(args: &[String]) -> Result<BenchOpts, CliError> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut o = BenchOpts {
        target: root.join("models/demo/target"),
        draft: root.join("models/demo/draft"),
        prompts: root.join("benches/prompts.jsonl"),
        new_tokens: 128,
        repeats: 5,
        gammas: (1..=8).collect(),
        temperatures: vec![0.0, 1.0],
        variants: vec!["target".into(), "gammas".into(), "auto".into()],
        threads: 1,
        draft_threads: 1,
        opt_level: 3,
        spinning: true,
        out: root.join("target/bench"),
        ort_lib: None,
        device: Device::Cpu,
        draft_device: None,
        args: args.to_vec(),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or_else(|| usage(format!("{name} needs a value")));
        match flag.as_str() {
            "--target" => o.target = value(flag)?.into(),
            "--draft" => o.draft = value(flag)?.into(),
            "--prompts" => o.prompts = value(flag)?.into(),
            "--max-new-tokens" => o.new_tokens = num(flag, &value(flag)?)?,
            "--repeats" => o.repeats = num(flag, &value(flag)?)?,
            "--gammas" => o.gammas = range_list(flag, &value(flag)?)?,
            "--temperatures" => o.temperatures = value(flag)?.split(',').map(|t| num(flag, t.trim())).collect::<Result<_, _>>()?,
            "--variants" => o.variants = value(flag)?.split(',').map(|s| s.trim().to_string()).collect(),
            "--threads" => o.threads = num(flag, &value(flag)?)?,
            "--draft-threads" => o.draft_threads = num(flag, &value(flag)?)?,
            "--opt-level" => o.opt_level = num(flag, &value(flag)?)?,
            "--no-spin" => o.spinning = false,
            "--out" => o.out = value(flag)?.into(),
            "--ort-lib" => o.ort_lib = Some(value(flag)?.into()),
            "--device" => o.device = value(flag)?.parse()?,
            "--draft-device" => o.draft_device = Some(value(flag)?.parse()?),
            "--quick" => {
                o.new_tokens = 24;
                o.repeats = 1;
                o.gammas = vec![1, 4];
            }
            "-h" | "--help" => return Err(usage("help")),
            other => return Err(usage(format!("unknown option `{other}`"))),
        }
    }
    if o.repeats == 0 || o.new_tokens < 2 || o.gammas.is_empty() || o.temperatures.is_empty() {
        return Err(usage("bench needs --repeats >= 1, --max-new-tokens >= 2, some gammas and temperatures"));
    }
    Ok(o)
}

/// "1-8" or "1,2,4".
fn range_list(flag: &str, v: &str) -> Result<Vec<usize>, CliError> {
    if let Some((a, b)) = v.split_once('-') {
        let (a, b): (usize, usize) = (num(flag, a)?, num(flag, b)?);
        return Ok((a..=b).collect());
    }
    v.split(',').map(|s| num(flag, s.trim())).collect()
}

/// One thing measured: a draft source with its length policy at one temperature.
struct Variant {
    name: String,
    temperature: f32,
    source: Option<DraftSource>,
    policy: DraftPolicy,
    gamma: usize,
    confidence_stop: f32,
    /// Per repetition: tokens/s and the summed stats over all prompts.
    runs: Vec<(f64, Stats)>,
}

fn variants(o: &BenchOpts, draft: &DraftSource) -> Result<Vec<Variant>, CliError> {
    let mut out = Vec::new();
    for &t in &o.temperatures {
        let mut add = |name: String, source: Option<DraftSource>, policy, gamma, confidence_stop| {
            out.push(Variant { name, temperature: t, source, policy, gamma, confidence_stop, runs: Vec::new() })
        };
        for v in &o.variants {
            let ngram = DraftSource::NGram(NGramConfig::default());
            match v.as_str() {
                "target" => add("target-only".into(), None, DraftPolicy::Fixed, 1, 0.0),
                "gammas" => o.gammas.iter().for_each(|&g| add(format!("model γ={g}"), Some(draft.clone()), DraftPolicy::Fixed, g, 0.0)),
                "auto" => add("model auto".into(), Some(draft.clone()), DraftPolicy::Auto, 4, 0.0),
                "heuristic" => add("model heuristic".into(), Some(draft.clone()), DraftPolicy::Heuristic, 4, 0.0),
                "confidence" => add("model γ=8 conf≥0.3".into(), Some(draft.clone()), DraftPolicy::Fixed, 8, 0.3),
                "ngram" => add("ngram γ≤8".into(), Some(ngram), DraftPolicy::Fixed, 8, 0.0),
                "ngram-auto" => add("ngram auto".into(), Some(ngram), DraftPolicy::Auto, 8, 0.0),
                "bigram" => add("bigram γ=2".into(), Some(DraftSource::Counts { order: 2, table: None }), DraftPolicy::Fixed, 2, 0.0),
                "unigram" => add("unigram γ=2".into(), Some(DraftSource::Counts { order: 1, table: None }), DraftPolicy::Fixed, 2, 0.0),
                other => return Err(usage(format!("unknown bench variant `{other}`"))),
            }
        }
    }
    if !out.iter().any(|v| v.source.is_none()) {
        return Err(usage("the bench variants must include `target`: every speed-up is relative to it"));
    }
    Ok(out)
}

/// Generate `new_tokens` after each prompt (EOS off, so every variant does the same work);
/// tokens/s over the time spent in generation, and the stats summed over prompts.
fn run_variant(target: &Arc<Model>, v: &Variant, prompts: &[Vec<u32>], new_tokens: usize, rep: usize) -> Result<(f64, Stats, Vec<Vec<u32>>), Error> {
    let mut total = Stats::default();
    let mut outputs = Vec::with_capacity(prompts.len());
    for (i, prompt) in prompts.iter().enumerate() {
        let cfg = GenerationConfig {
            gamma: v.gamma,
            draft_policy: v.policy,
            confidence_stop: v.confidence_stop,
            max_new_tokens: new_tokens,
            eos_ids: Some(vec![]),
            seed: (rep * 1000 + i) as u64,
            sampling: SamplingConfig { temperature: v.temperature, ..Default::default() },
            ..Default::default()
        };
        let mut g = Generator::from_source(target.clone(), v.source.as_ref(), cfg)?;
        g.append_tokens(prompt)?;
        g.generate(|_| true)?;
        total += g.stats();
        outputs.push(g.tokens()[prompt.len()..].to_vec());
    }
    Ok((total.tokens_per_second(), total, outputs))
}

/// Call costs as speculative decoding meets them: for each k = 1..=kmax, a draft step right after
/// a target call (cold: the target's weights pushed the draft's out of the CPU caches), a second
/// draft step (warm), then the target fed k tokens; `reps` interleaved rounds after a warm-up,
/// caches cut back to `prefix` after every call. Returns (min, median, max) per k of the target,
/// and the cold and warm draft steps.
struct Costs {
    target: Vec<(f64, f64, f64)>,
    draft_cold: f64,
    draft_warm: f64,
}

fn measure_costs(target: &Model, draft: &Model, prefix: &[u32], kmax: usize, reps: usize) -> Result<Costs, Error> {
    let (mut tc, mut dc) = (target.new_cache()?, draft.new_cache()?);
    let mut row = Vec::new();
    target.forward(&mut tc, prefix, 1, &mut row)?;
    draft.forward(&mut dc, prefix, 1, &mut row)?;
    let feed: Vec<u32> = prefix.iter().cycle().take(kmax).copied().collect();
    let mut times = vec![Vec::with_capacity(reps); kmax + 1];
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    let timed = |m: &Model, cache: &mut specdec::kv_cache::KvCache, k: usize, row: &mut Vec<f32>| -> Result<f64, Error> {
        let started = Instant::now();
        m.forward(cache, &feed[..k], 1, row)?;
        let t = started.elapsed().as_secs_f64();
        cache.truncate(prefix.len())?;
        Ok(t)
    };
    for rep in 0..reps + 3 {
        for k in 1..=kmax {
            let c = timed(draft, &mut dc, 1, &mut row)?;
            let w = timed(draft, &mut dc, 1, &mut row)?;
            let t = timed(target, &mut tc, k, &mut row)?;
            if rep >= 3 {
                cold.push(c);
                warm.push(w);
                times[k].push(t);
            }
        }
    }
    let target = times.iter_mut().skip(1).map(|t| (median(t), t.iter().copied().fold(f64::MAX, f64::min), t.iter().copied().fold(0.0, f64::max))).collect();
    Ok(Costs { target, draft_cold: median(&mut cold), draft_warm: median(&mut warm) })
}

fn load_prompts(path: &PathBuf, tok: &Tokenizer) -> Result<Vec<Vec<u32>>, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let p: String = serde_json::from_str(line).map_err(|e| usage(format!("{} line {}: not a JSON string: {e}", path.display(), i + 1)))?;
        out.push(tok.encode(&p)?);
    }
    if out.is_empty() {
        return Err(usage(format!("{} holds no prompts", path.display())));
    }
    Ok(out)
}

struct Summary {
    med: f64,
    min: f64,
    max: f64,
}

fn summarise(mut v: Vec<f64>) -> Summary {
    let min = v.iter().copied().fold(f64::MAX, f64::min);
    let max = v.iter().copied().fold(0.0, f64::max);
    Summary { med: median(&mut v), min, max }
}

pub fn bench(args: &[String]) -> Result<(), CliError> {
    let o = parse(args)?;
    crate::init_runtime(o.ort_lib.as_deref(), o.device, o.draft_device)?;
    let opts = |threads, device| ModelOptions { intra_threads: threads, optimization_level: o.opt_level, spinning: o.spinning, device, ..Default::default() };
    let target = Arc::new(Model::load(&o.target, &opts(o.threads, o.device))?);
    let draft_model = Arc::new(Model::load(&o.draft, &opts(o.draft_threads, o.draft_device.unwrap_or(o.device)))?);
    let tok = Tokenizer::load(&o.target)?;
    let prompts = load_prompts(&o.prompts, &tok)?;
    let mut vs = variants(&o, &DraftSource::Model(draft_model.clone()))?;

    // Costs first: T_target(k) for k = 1..=9 and T_draft(1), after a prefix as long as the
    // average context during the runs (attention cost grows with it).
    let mean_prompt = prompts.iter().map(Vec::len).sum::<usize>() / prompts.len();
    let prefix: Vec<u32> = prompts.concat().into_iter().cycle().take(mean_prompt + o.new_tokens / 2).collect();
    let prefix = &prefix;
    let costs = measure_costs(&target, &draft_model, prefix, 9, 40)?;
    let t1 = costs.target[0].0;
    let verify = |k: usize| costs.target.get(k - 1).map_or(1.0 + 0.1 * (k as f64 - 1.0), |t| t.0 / t1);

    // Warm-up: one short pass of every variant (sessions plan and allocate on first use).
    for v in &vs {
        run_variant(&target, v, &prompts[..1], o.new_tokens.min(16), 0)?;
    }
    let mut reference: Vec<Option<Vec<Vec<u32>>>> = vec![None; o.temperatures.len()];
    let started = Instant::now();
    for rep in 0..o.repeats {
        for v in vs.iter_mut() {
            let (tps, stats, outputs) = run_variant(&target, v, &prompts, o.new_tokens, rep)?;
            // Greedy output must not depend on the variant: check every greedy run.
            if v.temperature == 0.0 {
                let ti = o.temperatures.iter().position(|&t| t == 0.0).unwrap_or(0);
                match &reference[ti] {
                    None => reference[ti] = Some(outputs),
                    Some(r) if *r != outputs => return Err(Error::Inference(format!("greedy output of `{}` differs from the other variants'", v.name)).into()),
                    Some(_) => {}
                }
            }
            v.runs.push((tps, stats));
        }
        eprintln!("repetition {}/{} done ({:.0} s)", rep + 1, o.repeats, started.elapsed().as_secs_f64());
    }

    let report = Report { o: &o, vs: &vs, costs: &costs, verify: &verify, prompts: prompts.len() };
    std::fs::create_dir_all(&o.out).map_err(|e| Error::InvalidArgument(format!("{}: {e}", o.out.display())))?;
    let json = report.json();
    let md = report.markdown();
    let write = |name: &str, body: String| std::fs::write(o.out.join(name), body).map_err(|e| Error::InvalidArgument(format!("{}: {e}", o.out.join(name).display())));
    write("bench.json", serde_json::to_string_pretty(&json).unwrap_or_default())?;
    write("bench.md", md.clone())?;
    println!("{md}");
    println!("wrote {} and {}", o.out.join("bench.json").display(), o.out.join("bench.md").display());
    Ok(())
}

struct Report<'a> {
    o: &'a BenchOpts,
    vs: &'a [Variant],
    costs: &'a Costs,
    verify: &'a dyn Fn(usize) -> f64,
    prompts: usize,
}

/// Derived figures of one variant.
struct Row<'a> {
    v: &'a Variant,
    tps: Summary,
    speedup: Summary,
    alpha: f64,
    tokens_per_round: f64,
    split: (f64, f64, f64),
    /// The paper's formula with measured α̂, c and T(k)/T(1): with one draft step cost c (the
    /// cold one, as a round starts), and with the first step cold and the others warm.
    predicted_paper: Option<f64>,
    predicted: Option<f64>,
}

impl Report<'_> {
    fn c_cold(&self) -> f64 {
        self.costs.draft_cold / self.costs.target[0].0
    }

    fn c_warm(&self) -> f64 {
        self.costs.draft_warm / self.costs.target[0].0
    }

    fn rows(&self) -> Vec<Row<'_>> {
        self.vs
            .iter()
            .map(|v| {
                let base = self.vs.iter().find(|b| b.source.is_none() && b.temperature == v.temperature).expect("target-only variant");
                let mut s = Stats::default();
                v.runs.iter().for_each(|(_, st)| s += st);
                let total = s.total_time.as_secs_f64().max(1e-12);
                let draft = s.draft_time.as_secs_f64() / total;
                let target = s.target_time.as_secs_f64() / total;
                let alpha = s.alpha();
                let fixed = v.source.is_some() && v.policy == DraftPolicy::Fixed && v.confidence_stop == 0.0 && matches!(v.source, Some(DraftSource::Model(_)));
                Row {
                    v,
                    tps: summarise(v.runs.iter().map(|r| r.0).collect()),
                    speedup: summarise(v.runs.iter().zip(&base.runs).map(|(a, b)| a.0 / b.0).collect()),
                    alpha,
                    tokens_per_round: s.tokens_per_target_call(),
                    split: (draft, target, (1.0 - draft - target).max(0.0)),
                    predicted_paper: fixed.then(|| predicted_speedup(alpha, v.gamma, self.c_cold(), (self.verify)(v.gamma + 1))),
                    predicted: fixed.then(|| {
                        let draft = self.c_cold() + (v.gamma as f64 - 1.0) * self.c_warm();
                        expected_tokens(alpha, v.gamma) / (draft + (self.verify)(v.gamma + 1))
                    }),
                }
            })
            .collect()
    }

    fn json(&self) -> serde_json::Value {
        let rows: Vec<_> = self
            .rows()
            .iter()
            .map(|r| {
                serde_json::json!({
                    "variant": r.v.name,
                    "temperature": r.v.temperature,
                    "drafter": r.v.source.as_ref().map(|s| format!("{s:?}")),
                    "policy": format!("{:?}", r.v.policy),
                    "gamma": r.v.gamma,
                    "tokens_per_second": {"median": r.tps.med, "min": r.tps.min, "max": r.tps.max},
                    "speedup": {"median": r.speedup.med, "min": r.speedup.min, "max": r.speedup.max},
                    "alpha": r.alpha,
                    "tokens_per_target_call": r.tokens_per_round,
                    "time_split": {"draft": r.split.0, "target": r.split.1, "orchestration": r.split.2},
                    "predicted_speedup": r.predicted,
                    "predicted_speedup_one_draft_cost": r.predicted_paper,
                    "measured_over_predicted": r.predicted.map(|p| r.speedup.med / p),
                    "per_repetition_tokens_per_second": r.v.runs.iter().map(|x| x.0).collect::<Vec<_>>(),
                })
            })
            .collect();
        serde_json::json!({
            "command": format!("specdec bench {}", self.o.args.join(" ")),
            "target": self.o.target, "draft": self.o.draft, "prompts_file": self.o.prompts, "prompts": self.prompts,
            "new_tokens_per_prompt": self.o.new_tokens, "repetitions": self.o.repeats,
            "threads": {"target": self.o.threads, "draft": self.o.draft_threads}, "graph_optimization_level": self.o.opt_level, "spinning": self.o.spinning,
            "devices": {"target": self.o.device.to_string(), "draft": self.o.draft_device.unwrap_or(self.o.device).to_string()},
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "target_call_seconds": self.costs.target.iter().enumerate().map(|(i, t)| serde_json::json!({"k": i + 1, "median": t.0, "min": t.1, "max": t.2})).collect::<Vec<_>>(),
            "verification_cost": (1..=self.costs.target.len()).map(|k| (self.verify)(k)).collect::<Vec<_>>(),
            "draft_step_seconds": {"cold": self.costs.draft_cold, "warm": self.costs.draft_warm},
            "c": {"cold": self.c_cold(), "warm": self.c_warm()},
            "rows": rows,
        })
    }

    fn markdown(&self) -> String {
        let mut s = String::new();
        let curve: Vec<String> = (1..=self.costs.target.len()).map(|k| format!("{:.2}", (self.verify)(k))).collect();
        s += &format!(
            "Target step T(1) = {:.3} ms; draft step {:.3} ms cold (first of a round, right after a target call), {:.3} ms warm: c = {:.3} / {:.3}; verification cost T(k)/T(1), k = 1..{}: {}\n\n",
            self.costs.target[0].0 * 1e3,
            self.costs.draft_cold * 1e3,
            self.costs.draft_warm * 1e3,
            self.c_cold(),
            self.c_warm(),
            curve.len(),
            curve.join(", ")
        );
        s += &format!(
            "{} prompts × {} new tokens, {} repetitions (median, min–max), {} / {} intra-op threads (target / draft), spinning {}, graph optimization level {}, devices {} / {}\n\n",
            self.prompts,
            self.o.new_tokens,
            self.o.repeats,
            self.o.threads,
            self.o.draft_threads,
            if self.o.spinning { "on" } else { "off" },
            self.o.opt_level,
            self.o.device,
            self.o.draft_device.unwrap_or(self.o.device)
        );
        s += "Predicted: (1 − α̂^(γ+1)) / ((1 − α̂)(c_cold + (γ − 1)·c_warm + T(γ+1)/T(1))); in brackets the paper's form with one c (= c_cold) for every step.\n\n";
        s += "| T | variant | tokens/s | speed-up | α̂ | tokens/call | predicted | measured/predicted | draft / target / orchestration |\n";
        s += "|---|---|---|---|---|---|---|---|---|\n";
        for r in self.rows() {
            s += &format!(
                "| {} | {} | {:.1} ({:.1}–{:.1}) | {:.2}x ({:.2}–{:.2}) | {} | {:.2} | {} | {} | {:.1}% / {:.1}% / {:.1}% |\n",
                r.v.temperature,
                r.v.name,
                r.tps.med,
                r.tps.min,
                r.tps.max,
                r.speedup.med,
                r.speedup.min,
                r.speedup.max,
                if r.v.source.is_some() { format!("{:.3}", r.alpha) } else { "–".into() },
                r.tokens_per_round,
                r.predicted.map_or("–".into(), |p| format!("{p:.2}x ({:.2}x)", r.predicted_paper.unwrap_or(0.0))),
                r.predicted.map_or("–".into(), |p| format!("{:.2}", r.speedup.med / p)),
                100.0 * r.split.0,
                100.0 * r.split.1,
                100.0 * r.split.2,
            );
        }
        s
    }
}
