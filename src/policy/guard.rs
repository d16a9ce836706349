//! `auto`'s check on itself: the rate its speculative rounds really reach against the rate of
//! rounds without drafting, both measured on the wall clock of whole rounds (sampling, cache
//! rollback and everything else outside ONNX Runtime included).
//!
//! The closed form in `auto` predicts from α, the draft's step cost and T(k); it misses what those
//! do not capture (the draft's weights evicting the target's from the CPU caches, a verify curve
//! that bends after the lengths it has seen, work outside the model calls). On the int4 demo pair
//! it predicted 1.15× where every fixed γ ran at 0.65–0.74×. The guard measures instead: when
//! speculative rounds are seen to emit tokens more slowly than plain rounds, `auto` stops drafting
//! (probing now and then with a full round, so that it notices when speculation starts paying);
//! while it speculates it runs a plain round now and then to keep the comparison current.

use std::time::Duration;

/// Per-round decay of both rates: about the last 12 rounds of each kind count.
const DECAY: f64 = 0.92;
/// Decayed weight of samples of each kind before the guard judges: 3 and 4 rounds.
const MIN_PLAIN: f64 = 2.7;
const MIN_SPEC: f64 = 3.5;
/// Speculation is judged to lose when its rate is under the plain rate by more than this (round
/// times on a busy CPU jitter by a few percent).
const MARGIN: f64 = 0.03;
/// While the plain rate is thin: a plain round after this many speculative ones.
const PLAIN_EARLY: u32 = 4;
/// Later, to keep it current: one plain round per this many speculative ones (a cost of about
/// (1 − 1/speed-up)/PLAIN_EVERY, ~1% where speculation gains 1.6×).
const PLAIN_EVERY: u32 = 40;

/// Decayed sums of tokens emitted and seconds taken by one kind of round.
#[derive(Debug, Clone, Copy, Default)]
struct Rate {
    tokens: f64,
    seconds: f64,
    rounds: f64,
}

impl Rate {
    fn record(&mut self, tokens: usize, seconds: f64) {
        self.tokens = self.tokens * DECAY + tokens as f64;
        self.seconds = self.seconds * DECAY + seconds;
        self.rounds = self.rounds * DECAY + 1.0;
    }

    fn per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.tokens / self.seconds
        } else {
            0.0
        }
    }
}

/// A round as the wall clock saw it.
#[derive(Debug, Clone, Copy)]
pub struct RoundTime {
    /// Whether it verified any proposal.
    pub speculative: bool,
    /// Tokens it added to the sequence.
    pub emitted: usize,
    pub elapsed: Duration,
    /// False where the round also did one-off work (a prompt's prefill, the draft catching up on
    /// rounds it skipped) or ended the generation early: such rounds are not judged.
    pub typical: bool,
}

/// The measured rates of speculative and plain rounds, and when to run a plain round.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RateGuard {
    plain: Rate,
    spec: Rate,
    spec_since_plain: u32,
}

impl RateGuard {
    pub(crate) fn record(&mut self, t: &RoundTime) {
        if !t.typical || t.emitted == 0 {
            return;
        }
        if t.speculative {
            self.spec.record(t.emitted, t.elapsed.as_secs_f64());
            self.spec_since_plain += 1;
        } else {
            self.plain.record(t.emitted, t.elapsed.as_secs_f64());
            self.spec_since_plain = 0;
        }
    }

    /// Whether speculative rounds were measured emitting tokens more slowly than plain ones.
    pub(crate) fn speculation_loses(&self) -> bool {
        self.plain.rounds >= MIN_PLAIN
            && self.spec.rounds >= MIN_SPEC
            && self.spec.per_second() < self.plain.per_second() * (1.0 - MARGIN)
    }

    /// Whether the next round, which would speculate, should run plain to refresh the comparison.
    pub(crate) fn plain_round_due(&self) -> bool {
        let every = if self.plain.rounds < MIN_PLAIN { PLAIN_EARLY } else { PLAIN_EVERY };
        self.spec_since_plain >= every
    }

    /// Seconds per token of plain rounds, once measured.
    pub(crate) fn plain_seconds_per_token(&self) -> Option<f64> {
        (self.plain.rounds >= MIN_PLAIN && self.plain.tokens > 0.0).then(|| self.plain.seconds / self.plain.tokens)
    }

    /// Measured speculative rate over plain rate (None until both are measured).
    #[cfg(test)]
    pub(crate) fn measured_speedup(&self) -> Option<f64> {
        (self.plain.rounds >= MIN_PLAIN && self.spec.rounds >= MIN_SPEC).then(|| self.spec.per_second() / self.plain.per_second())
    }

    /// This record with each kind's weight capped at `rounds` (what a new sequence inherits).
    pub(crate) fn scaled(&self, rounds: f64) -> RateGuard {
        let cap = |r: Rate| {
            let w = if r.rounds > rounds { rounds / r.rounds } else { 1.0 };
            Rate { tokens: r.tokens * w, seconds: r.seconds * w, rounds: r.rounds * w }
        };
        RateGuard { plain: cap(self.plain), spec: cap(self.spec), spec_since_plain: self.spec_since_plain }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(speculative: bool, emitted: usize, ms: f64) -> RoundTime {
        RoundTime { speculative, emitted, elapsed: Duration::from_secs_f64(ms * 1e-3), typical: true }
    }

    #[test]
    fn slower_speculation_is_noticed_and_faster_is_not_blocked() {
        let mut g = RateGuard::default();
        assert!(!g.speculation_loses() && g.measured_speedup().is_none());
        // Plain: 1 token per 10 ms. Speculative: 2 tokens per 25 ms (0.8x).
        for _ in 0..4 {
            g.record(&round(false, 1, 10.0));
        }
        for _ in 0..3 {
            g.record(&round(true, 2, 25.0));
            assert!(!g.speculation_loses(), "judged on too few rounds");
        }
        g.record(&round(true, 2, 25.0));
        assert!(g.speculation_loses());
        assert!((g.measured_speedup().unwrap() - 0.8).abs() < 1e-9);
        // Speculation improves to 3 tokens per 20 ms (1.5x): within a dozen rounds it is allowed.
        for _ in 0..12 {
            g.record(&round(true, 3, 20.0));
        }
        assert!(!g.speculation_loses(), "{:?}", g.measured_speedup());
        // Atypical rounds (a prefill, the draft catching up) are not judged.
        g.record(&RoundTime { typical: false, ..round(true, 1, 500.0) });
        assert!(!g.speculation_loses());
    }

    #[test]
    fn plain_rounds_come_often_at_first_then_rarely() {
        let mut g = RateGuard::default();
        let mut plain_at = Vec::new();
        for i in 1..=200 {
            let plain = g.plain_round_due();
            if plain {
                plain_at.push(i);
            }
            g.record(&round(!plain, if plain { 1 } else { 3 }, 10.0));
        }
        assert_eq!(&plain_at[..3], &[5, 10, 15], "{plain_at:?}");
        assert!(plain_at.len() <= 3 + 200 / PLAIN_EVERY as usize, "{plain_at:?}");
    }

    #[test]
    fn a_new_sequence_inherits_a_capped_record() {
        let mut g = RateGuard::default();
        for _ in 0..50 {
            g.record(&round(false, 1, 10.0));
            g.record(&round(true, 2, 30.0));
        }
        let s = g.scaled(4.0);
        assert!(s.speculation_loses(), "the verdict carries over");
        let mut s = s;
        // ...but a few rounds of the new sequence can overturn it.
        for _ in 0..6 {
            s.record(&round(true, 4, 20.0));
        }
        assert!(!s.speculation_loses());
    }
}
