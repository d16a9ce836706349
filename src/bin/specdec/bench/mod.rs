//! `specdec bench`: the measured speed-up beside the paper's prediction from measured α, c and
//! verification cost. Everything runs in one process, interleaved per repetition after a warm-up,
//! so slow drifts of the machine hit every variant alike.

use specdec::policy::{expected_tokens, predicted_speedup};
use specdec::{DraftPolicy, DraftSource, Error, Tokenizer};

use crate::{median, CliError};

mod costs;
mod instances;
mod options;
mod run;
mod variants;

use costs::{measure_costs, Costs};
use instances::{load_instances, Instance};
use options::{parse, BenchOpts};
use run::{load_prompts, run_all};
use variants::{variants, Variant};

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
    let instances = load_instances(&o)?;
    let (target, draft_model) = (instances[0].target.clone(), instances[0].draft.clone());
    let tok = Tokenizer::load(&o.target)?;
    let prompts = load_prompts(&o.prompts, &tok)?;
    let (mut vs, groups) = variants(&o, &instances)?;

    // Costs first: T_target(k) for k = 1..=9 and T_draft(1), after a prefix as long as the
    // average context during the runs (attention cost grows with it).
    let mean_prompt = prompts.iter().map(Vec::len).sum::<usize>() / prompts.len();
    let prefix: Vec<u32> = prompts.concat().into_iter().cycle().take(mean_prompt + o.new_tokens / 2).collect();
    let prefix = &prefix;
    let costs = measure_costs(&target, &draft_model, prefix, 9, 40)?;
    let t0 = costs.target_only;
    let verify = |k: usize| costs.target.get(k - 1).map_or(1.0 + 0.1 * (k as f64 - 1.0), |t| t.0 / t0);

    let greedy_diff = run_all(&o, &instances, &mut vs, &groups, &prompts)?;

    let report = Report {
        o: &o,
        vs: &vs,
        instances: &instances,
        greedy_diff: &greedy_diff,
        costs: &costs,
        verify: &verify,
        prompts: prompts.len(),
    };
    std::fs::create_dir_all(&o.out).map_err(|e| Error::InvalidArgument(format!("{}: {e}", o.out.display())))?;
    let json = report.json();
    let md = report.markdown();
    let write = |name: &str, body: String| {
        std::fs::write(o.out.join(name), body).map_err(|e| Error::InvalidArgument(format!("{}: {e}", o.out.join(name).display())))
    };
    write("bench.json", serde_json::to_string_pretty(&json).unwrap_or_default())?;
    write("bench.md", md.clone())?;
    println!("{md}");
    println!("wrote {} and {}", o.out.join("bench.json").display(), o.out.join("bench.md").display());
    Ok(())
}

struct Report<'a> {
    o: &'a BenchOpts,
    vs: &'a [Variant],
    instances: &'a [Instance],
    /// Per instance: prompts whose greedy output differs from instance 0's (None: no T = 0 runs).
    greedy_diff: &'a [Option<usize>],
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
    /// The paper's formula with measured α̂, c and T(k)/T₀: with one draft step cost c (the
    /// cold one, as a round starts), and with the first step cold and the others warm.
    predicted_paper: Option<f64>,
    predicted: Option<f64>,
}

impl Report<'_> {
    fn c_cold(&self) -> f64 {
        self.costs.draft_cold / self.costs.target_only
    }

    fn c_warm(&self) -> f64 {
        self.costs.draft_warm / self.costs.target_only
    }

    /// Target-only on instance `inst` at temperature `t`: the speed-ups' denominator.
    fn target_only(&self, inst: usize, t: f32) -> Option<&Variant> {
        self.vs.iter().find(|b| b.inst == inst && b.source.is_none() && b.temperature == t)
    }

    fn rows(&self) -> Vec<Row<'_>> {
        self.vs
            .iter()
            .filter(|v| v.inst == 0)
            .map(|v| {
                let base = self.target_only(0, v.temperature).expect("target-only variant");
                let s = v.total();
                let total = s.total_time.as_secs_f64().max(1e-12);
                let draft = s.draft_time.as_secs_f64() / total;
                let target = s.target_time.as_secs_f64() / total;
                let alpha = s.alpha();
                let fixed = v.source.is_some()
                    && v.policy == DraftPolicy::Fixed
                    && v.confidence_stop == 0.0
                    && matches!(v.source, Some(DraftSource::Model(_)));
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

    /// The session-option comparison: for each setting measured on every instance (target-only
    /// and γ = --options-gamma, per temperature), the run's own options first, then each other
    /// instance, with tokens/s paired per repetition against the run's own options.
    fn option_rows(&self) -> Vec<OptionRow<'_>> {
        if self.instances.len() < 2 {
            return Vec::new();
        }
        let mut out = Vec::new();
        for d in self.vs.iter().filter(|v| v.inst == 0 && v.options_mode(self.o.options_gamma)) {
            let mut members: Vec<&Variant> =
                self.vs.iter().filter(|v| v.same_setting(d) && (v.inst != 0 || std::ptr::eq(*v, d))).collect();
            members.sort_by_key(|v| v.inst);
            for v in members {
                let own_base = self.target_only(v.inst, v.temperature);
                let s = v.total();
                let ratio = summarise(v.runs.iter().zip(&d.runs).map(|(a, b)| a.0 / b.0).collect());
                let verdict = if v.inst == 0 {
                    "–"
                } else if v.runs.len() < MIN_REPS_FOR_CHOICE {
                    "too few reps"
                } else if ratio.min > 1.0 {
                    "faster"
                } else if ratio.max < 1.0 {
                    "slower"
                } else {
                    "mixed"
                };
                out.push(OptionRow {
                    v,
                    inst: &self.instances[v.inst],
                    tps: summarise(v.runs.iter().map(|r| r.0).collect()),
                    ratio,
                    speedup: v
                        .source
                        .as_ref()
                        .and(own_base)
                        .map(|b| summarise(v.runs.iter().zip(&b.runs).map(|(a, b)| a.0 / b.0).collect())),
                    alpha: s.alpha(),
                    tokens_per_round: s.tokens_per_target_call(),
                    verdict,
                });
            }
        }
        out
    }

    /// The options this run's measurements pick: an alternative only where it was faster than the
    /// run's own options in every repetition of every setting it was measured at (the one with the
    /// largest geometric-mean median ratio if several are), else the run's own.
    fn option_choice(&self, rows: &[OptionRow]) -> Option<(usize, f64)> {
        if self.o.repeats < MIN_REPS_FOR_CHOICE {
            return None;
        }
        (1..self.instances.len())
            .filter_map(|i| {
                let mine: Vec<&OptionRow> = rows.iter().filter(|r| r.v.inst == i).collect();
                (!mine.is_empty() && mine.iter().all(|r| r.ratio.min > 1.0))
                    .then(|| (i, (mine.iter().map(|r| r.ratio.med.ln()).sum::<f64>() / mine.len() as f64).exp()))
            })
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }

    fn options_label(&self, i: usize) -> String {
        let inst = &self.instances[i];
        if i == 0 {
            format!("run's own (opt-level {}{})", inst.optimization_level, if inst.io_binding { ", iobinding" } else { "" })
        } else {
            inst.label.clone()
        }
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
            "target_only_step_seconds": self.costs.target_only,
            "draft_step_seconds": {"cold": self.costs.draft_cold, "warm": self.costs.draft_warm},
            "c": {"cold": self.c_cold(), "warm": self.c_warm()},
            "rows": rows,
            "session_options": self.options_json(),
        })
    }

    fn options_json(&self) -> serde_json::Value {
        let rows = self.option_rows();
        if rows.is_empty() {
            return serde_json::Value::Null;
        }
        let sum = |s: &Summary| serde_json::json!({"median": s.med, "min": s.min, "max": s.max});
        let choice = self.option_choice(&rows);
        let decided = self.o.repeats >= MIN_REPS_FOR_CHOICE;
        serde_json::json!({
            "gamma": self.o.options_gamma,
            "instances": self.instances.iter().enumerate().map(|(i, inst)| serde_json::json!({
                "label": self.options_label(i),
                "graph_optimization_level": inst.optimization_level,
                "io_binding": inst.io_binding,
                "greedy_prompts_differing_from_run_options": self.greedy_diff[i],
            })).collect::<Vec<_>>(),
            "rows": rows.iter().map(|r| serde_json::json!({
                "options": self.options_label(r.v.inst),
                "graph_optimization_level": r.inst.optimization_level,
                "io_binding": r.inst.io_binding,
                "temperature": r.v.temperature,
                "setting": r.v.name,
                "gamma": r.v.source.as_ref().map(|_| r.v.gamma),
                "tokens_per_second": sum(&r.tps),
                "ratio_to_run_options": sum(&r.ratio),
                "speedup_over_own_target_only": r.speedup.as_ref().map(sum),
                "alpha": r.v.source.as_ref().map(|_| r.alpha),
                "tokens_per_target_call": r.tokens_per_round,
                "every_repetition": r.verdict,
                "per_repetition_tokens_per_second": r.v.runs.iter().map(|x| x.0).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "choice": {
                "options": decided.then(|| self.options_label(choice.map_or(0, |c| c.0))),
                "geometric_mean_ratio": choice.map(|c| c.1),
                "rule": format!("an alternative only if faster than the run's own options in every repetition of every setting it was measured at; none with fewer than {MIN_REPS_FOR_CHOICE} repetitions"),
            },
        })
    }

    fn markdown(&self) -> String {
        let mut s = String::new();
        let curve: Vec<String> = (1..=self.costs.target.len()).map(|k| format!("{:.2}", (self.verify)(k))).collect();
        s += &format!(
            "Target-only step T₀ = {:.3} ms (the later calls of a run of target calls, as target-only decoding meets them); draft step {:.3} ms cold (first of a round, right after a target call), {:.3} ms warm: c = {:.3} / {:.3} of T₀; a target call on k tokens right after draft steps, T(k)/T₀, k = 1..{}: {}\n\n",
            self.costs.target_only * 1e3,
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
        s += "Predicted: (1 − α̂^(γ+1)) / ((1 − α̂)(c_cold + (γ − 1)·c_warm + T(γ+1)/T₀)); in brackets the paper's form with one c (= c_cold) for every step.\n\n";
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
        s += &self.options_markdown();
        s
    }

    fn options_markdown(&self) -> String {
        let rows = self.option_rows();
        if rows.is_empty() {
            return String::new();
        }
        let own = &self.instances[0];
        let mut s = format!(
            "\nSession options (`opt`, `iobinding`): each alternative loads both models again with one option changed from this run's (graph optimization level {}, {} path, threads and spinning as above) and runs target-only and the model draft at γ = {} in the same repetitions, back to back with the run's own options (order rotated per repetition). Ratio: tokens/s over the run's own options in the same setting, paired per repetition; \"every rep\": faster or slower in every repetition, else mixed.\n\n",
            own.optimization_level,
            if own.io_binding { "IoBinding" } else { "plain" },
            self.o.options_gamma
        );
        s += "| T | options | setting | tokens/s | vs run's options | speed-up vs own target-only | α̂ | tokens/call | every rep | greedy = run's options |\n";
        s += "|---|---|---|---|---|---|---|---|---|---|\n";
        for r in &rows {
            let greedy = match (r.v.temperature == 0.0, self.greedy_diff[r.v.inst]) {
                (false, _) | (_, None) => "–".to_string(),
                (true, Some(0)) => "yes".into(),
                (true, Some(n)) => format!("{n} of {} prompts differ", self.prompts),
            };
            s += &format!(
                "| {} | {} | {} | {:.1} ({:.1}–{:.1}) | {:.2}x ({:.2}–{:.2}) | {} | {} | {:.2} | {} | {} |\n",
                r.v.temperature,
                self.options_label(r.v.inst),
                r.v.name,
                r.tps.med,
                r.tps.min,
                r.tps.max,
                r.ratio.med,
                r.ratio.min,
                r.ratio.max,
                r.speedup.as_ref().map_or("–".into(), |x| format!("{:.2}x ({:.2}–{:.2})", x.med, x.min, x.max)),
                if r.v.source.is_some() { format!("{:.3}", r.alpha) } else { "–".into() },
                r.tokens_per_round,
                r.verdict,
                greedy,
            );
        }
        s += &match self.option_choice(&rows) {
            Some((i, g)) => format!("\nChoice by this run: {} ({:.2}x geometric mean of the median ratios; faster in every repetition of every setting).\n", self.options_label(i), g),
            None if self.o.repeats < MIN_REPS_FOR_CHOICE => format!("\nChoice by this run: none ({} repetition(s); a choice needs at least {MIN_REPS_FOR_CHOICE}).\n", self.o.repeats),
            None => format!("\nChoice by this run: the run's own options (opt-level {}); no alternative was faster in every repetition of every setting.\n", own.optimization_level),
        };
        s
    }
}

/// Fewer repetitions than this give no verdict on session options ("faster in every repetition"
/// means little over one or two).
const MIN_REPS_FOR_CHOICE: usize = 3;

/// One row of the session-option comparison.
struct OptionRow<'a> {
    v: &'a Variant,
    inst: &'a Instance,
    tps: Summary,
    /// Paired per repetition against the same setting on the run's own options.
    ratio: Summary,
    /// Speculative rows: against the same instance's target-only.
    speedup: Option<Summary>,
    alpha: f64,
    tokens_per_round: f64,
    verdict: &'static str,
}
