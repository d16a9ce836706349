//! bench.json: every figure of the report with the run's settings, for scripts (the plot,
//! scripts/policy_sim.py) and for comparing runs.

use super::{Report, Summary, MIN_REPS_FOR_CHOICE};

impl Report<'_> {
    pub(in crate::bench) fn json(&self) -> serde_json::Value {
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
                    "decode_speedup": {"median": r.decode_speedup.med, "min": r.decode_speedup.min, "max": r.decode_speedup.max},
                    "measured_over_predicted": r.predicted.map(|p| r.speedup.med / p),
                    "decode_over_predicted": r.predicted.map(|p| r.decode_speedup.med / p),
                    "per_repetition_tokens_per_second": r.v.runs.iter().map(|x| x.0).collect::<Vec<_>>(),
                })
            })
            .collect();
        serde_json::json!({
            "command": format!("specdec bench {}", self.o.args.join(" ")),
            "target": self.o.target, "draft": self.o.draft, "prompts_file": self.o.prompts, "prompts": self.prompts,
            "new_tokens_per_prompt": self.o.new_tokens, "repetitions": self.o.repeats,
            "threads": {"target": self.o.threads, "draft": self.o.draft_threads}, "graph_optimization_level": self.o.opt_level, "spinning": self.o.spinning, "truncation": {"top_k": self.o.truncation.top_k, "top_p": self.o.truncation.top_p, "min_p": self.o.truncation.min_p},
            "devices": {"target": self.o.device.to_string(), "draft": self.o.draft_device.unwrap_or(self.o.device).to_string()},
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "target_call_seconds": self.costs.target.iter().enumerate().map(|(i, t)| serde_json::json!({"k": i + 1, "median": t.0, "min": t.1, "max": t.2})).collect::<Vec<_>>(),
            "verification_cost": (1..=self.costs.target.len()).map(|k| (self.verify)(k)).collect::<Vec<_>>(),
            "target_only_step_seconds": self.costs.target_only,
            "draft_step_seconds": {"cold": self.costs.draft_cold, "warm": self.costs.draft_warm},
            "c": {"cold": self.c_cold(), "warm": self.c_warm()},
            "rows": rows,
            "greedy_near_ties": self.near_ties,
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
}
