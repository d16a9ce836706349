//! bench.md, also printed: the costs, the run's settings and the tables, for reading.

use super::{Report, MIN_REPS_FOR_CHOICE};

impl Report<'_> {
    pub(in crate::bench) fn markdown(&self) -> String {
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
        let t = &self.o.truncation;
        if t.top_k > 0 || t.top_p < 1.0 || t.min_p > 0.0 {
            s += &format!("Sampling at T > 0 with top-k {} (0 = off), top-p {}, min-p {}\n\n", t.top_k, t.top_p, t.min_p);
        }
        s += "Predicted: (1 − α̂^(γ+1)) / ((1 − α̂)(c_cold + (γ − 1)·c_warm + T(γ+1)/T₀)); in brackets the paper's form with one c (= c_cold) for every step. The formula describes decoding: decode / predicted compares it with the decode speed-up (tokens after each generation's first step over the time after it, paired per repetition), which leaves out the prompt's prefill (the target's, which both sides pay, and the draft's) and the first round; speed-up is end to end.\n\n";
        s += "| T | variant | tokens/s | speed-up | decode speed-up | α̂ | tokens/call | predicted | decode / predicted | draft / target / orchestration |\n";
        s += "|---|---|---|---|---|---|---|---|---|---|\n";
        for r in self.rows() {
            s += &format!(
                "| {} | {} | {:.1} ({:.1}–{:.1}) | {:.2}x ({:.2}–{:.2}) | {:.2}x ({:.2}–{:.2}) | {} | {:.2} | {} | {} | {:.1}% / {:.1}% / {:.1}% |\n",
                r.v.temperature,
                r.v.name,
                r.tps.med,
                r.tps.min,
                r.tps.max,
                r.speedup.med,
                r.speedup.min,
                r.speedup.max,
                r.decode_speedup.med,
                r.decode_speedup.min,
                r.decode_speedup.max,
                if r.v.source.is_some() { format!("{:.3}", r.alpha) } else { "–".into() },
                r.tokens_per_round,
                r.predicted.map_or("–".into(), |p| format!("{p:.2}x ({:.2}x)", r.predicted_paper.unwrap_or(0.0))),
                r.predicted.map_or("–".into(), |p| format!("{:.2}", r.decode_speedup.med / p)),
                100.0 * r.split.0,
                100.0 * r.split.1,
                100.0 * r.split.2,
            );
        }
        if !self.near_ties.is_empty() {
            s += "\nGreedy outputs agreed except at near-ties of the target's own logits (arithmetic of a k-token call differs from a 1-token step's):\n";
            s += &self.near_tie_lines();
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

    /// Greedy differences at near-ties, one line each (empty when there were none).
    fn near_tie_lines(&self) -> String {
        self.near_ties.iter().map(|t| format!("- Near-tie: {t}.\n")).collect()
    }
}
