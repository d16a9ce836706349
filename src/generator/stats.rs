//! Counters and timings of a generator.

use std::time::Duration;

/// Counters and timings of a generator (cumulative over its prompts).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    pub target_calls: u64,
    pub draft_calls: u64,
    /// Iterations of the loop: one target verification each.
    pub rounds: u64,
    pub drafted: u64,
    pub accepted: u64,
    /// Rounds that ended in a rejection (the others accepted every proposal).
    pub rejected: u64,
    pub new_tokens: u64,
    pub draft_time: Duration,
    pub target_time: Duration,
    pub total_time: Duration,
    /// Time to first token of the latest generation: from the start of its first step (the
    /// prefill of whatever the caches lacked included) to the end of the step that produced its
    /// first token. Zero until then. Stats added together sum it.
    pub time_to_first_token: Duration,
}

/// One round (one step) of the current generation, timed from the generation's start: the start
/// of its first step after the prompt was appended, the generator rewound or forked.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RoundTiming {
    /// When the round started and ended.
    pub start: Duration,
    pub end: Duration,
    /// Time in the drafter and in the target's ONNX Runtime calls during the round.
    pub draft_time: Duration,
    pub target_time: Duration,
    /// Proposals verified, proposals accepted, and tokens the round added to the sequence.
    pub proposed: usize,
    pub accepted: usize,
    pub emitted: usize,
}

impl std::ops::AddAssign<&Stats> for Stats {
    /// Accumulate another generator's counters and timings (e.g. over prompts).
    fn add_assign(&mut self, b: &Stats) {
        self.target_calls += b.target_calls;
        self.draft_calls += b.draft_calls;
        self.rounds += b.rounds;
        self.drafted += b.drafted;
        self.accepted += b.accepted;
        self.rejected += b.rejected;
        self.new_tokens += b.new_tokens;
        self.draft_time += b.draft_time;
        self.target_time += b.target_time;
        self.total_time += b.total_time;
        self.time_to_first_token += b.time_to_first_token;
    }
}

impl Stats {
    /// Share of drafted tokens the target accepted (0 when nothing was drafted).
    pub fn acceptance_rate(&self) -> f64 {
        if self.drafted == 0 {
            0.0
        } else {
            self.accepted as f64 / self.drafted as f64
        }
    }

    /// The paper's α estimated per verified position: proposals after a rejection are never
    /// judged, so they do not count (0 when nothing was verified).
    pub fn alpha(&self) -> f64 {
        let verified = self.accepted + self.rejected;
        if verified == 0 {
            0.0
        } else {
            self.accepted as f64 / verified as f64
        }
    }

    /// Generated tokens per verification round.
    pub fn tokens_per_target_call(&self) -> f64 {
        if self.rounds == 0 {
            0.0
        } else {
            self.new_tokens as f64 / self.rounds as f64
        }
    }

    /// Wall time outside ONNX Runtime calls: sampling, acceptance, cache bookkeeping.
    pub fn other_time(&self) -> Duration {
        self.total_time.saturating_sub(self.draft_time + self.target_time)
    }

    pub fn tokens_per_second(&self) -> f64 {
        let s = self.total_time.as_secs_f64();
        if s > 0.0 {
            self.new_tokens as f64 / s
        } else {
            0.0
        }
    }
}
