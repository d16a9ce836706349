//! What `auto` learnt on finished sequences, kept for the next sequence on the same target, draft
//! and sampling settings: worth a few dozen positions, so a new sequence starts from it instead of
//! from the prior.

use std::sync::{Arc, Mutex, OnceLock};

use super::estimate::{AcceptanceEstimate, Prober};
use super::guard::RateGuard;

/// Buckets of the draft's top probability, each with its own acceptance estimate (5, 10 and 20
/// simulated within 2% of each other on the demo pair).
pub(crate) const BUCKETS: usize = 5;

/// Positions' worth of record a new sequence inherits from earlier ones: enough to start from,
/// little enough that its own 30 or so positions outweigh it.
pub(crate) const MEMORY_WEIGHT: f64 = 30.0;
/// Targets × draft sources × sampling settings remembered.
const MEMORY_ENTRIES: usize = 32;

/// The part of `auto`'s record that carries over to the next sequence.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub(super) alpha: AcceptanceEstimate,
    pub(super) bucket_beta: [f64; BUCKETS],
    pub(super) bucket_count: [f64; BUCKETS],
    pub(super) first_step: Option<f64>,
    pub(super) next_step: Option<f64>,
    pub(super) rates: RateGuard,
    /// Where the probing schedules stand: a drafter that keeps failing its probes is probed less
    /// often from sequence to sequence, not afresh at the start of each.
    pub(super) probe: Prober,
    pub(super) guard_probe: Prober,
}

/// `auto`'s records from finished sequences, by a key the generator makes from the target
/// instance, the draft source and the sampling settings. Generators are handed one (by default
/// the process-wide [`PolicyMemory::shared`]); the newest [`MEMORY_ENTRIES`] are kept.
#[derive(Debug, Default)]
pub struct PolicyMemory {
    entries: Mutex<Vec<(String, Snapshot)>>,
}

impl PolicyMemory {
    /// The registry generators use unless handed another.
    pub fn shared() -> Arc<PolicyMemory> {
        static SHARED: OnceLock<Arc<PolicyMemory>> = OnceLock::new();
        SHARED.get_or_init(Arc::default).clone()
    }

    pub(crate) fn get(&self, key: &str) -> Option<Snapshot> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.iter().find(|(k, _)| k == key).map(|(_, s)| s.clone())
    }

    /// Remember `snapshot` under `key`, as the newest entry (the oldest goes when full).
    pub(crate) fn put(&self, key: String, snapshot: Snapshot) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|(k, _)| *k != key);
        if entries.len() >= MEMORY_ENTRIES {
            entries.remove(0);
        }
        entries.push((key, snapshot));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_entry_goes_first() {
        let s = Snapshot {
            alpha: AcceptanceEstimate::new(0.5, 1.0, 0.99),
            bucket_beta: [0.0; BUCKETS],
            bucket_count: [0.0; BUCKETS],
            first_step: None,
            next_step: None,
            rates: RateGuard::default(),
            probe: Prober::new(1, 1),
            guard_probe: Prober::new(1, 1),
        };
        let memory = PolicyMemory::default();
        for i in 0..MEMORY_ENTRIES + 1 {
            memory.put(format!("key {i}"), s.clone());
        }
        assert!(memory.get("key 0").is_none());
        assert!(memory.get(&format!("key {MEMORY_ENTRIES}")).is_some());
    }
}
