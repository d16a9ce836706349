//! The token history the sampling transforms read: which tokens the sequence holds (the
//! repetition penalty) and how often the current generation produced each (the presence and
//! frequency penalties), kept incrementally so that a position costs nothing per vocabulary entry.

/// Tokens whose logits the repetition penalty touches: the committed sequence (deduplicated once,
/// incrementally) plus the draft tokens before the current position.
#[derive(Debug, Default, Clone)]
pub struct History {
    seen: Vec<bool>,
    pub(super) list: Vec<u32>,
    /// How often the current generation produced each token (the presence and frequency
    /// penalties), and each produced token once.
    counts: Vec<u32>,
    produced: Vec<u32>,
}

impl History {
    pub fn new(vocab: usize) -> Self {
        History { seen: vec![false; vocab], list: Vec::new(), counts: Vec::new(), produced: Vec::new() }
    }

    /// A token of the sequence that the current generation did not produce (the prompt).
    pub fn push(&mut self, t: u32) {
        if let Some(s) = self.seen.get_mut(t as usize) {
            if !*s {
                *s = true;
                self.list.push(t);
            }
        }
    }

    /// A token the current generation produced.
    pub fn push_generated(&mut self, t: u32) {
        self.push(t);
        if (t as usize) < self.seen.len() {
            if self.counts.is_empty() {
                self.counts = vec![0; self.seen.len()];
            }
            let c = &mut self.counts[t as usize];
            if *c == 0 {
                self.produced.push(t);
            }
            *c += 1;
        }
    }

    /// Start a new generation: no token has been produced yet.
    pub fn new_generation(&mut self) {
        for &t in &self.produced {
            self.counts[t as usize] = 0;
        }
        self.produced.clear();
    }

    /// Every token produced so far with its count, counting `extra` (tokens drafted before the
    /// current position) as produced.
    pub(super) fn for_each_produced(&self, extra: &[u32], mut f: impl FnMut(u32, u32)) {
        let in_extra = |t: u32| extra.iter().filter(|&&x| x == t).count() as u32;
        for &t in &self.produced {
            f(t, self.counts[t as usize] + in_extra(t));
        }
        for (i, &t) in extra.iter().enumerate() {
            let before = self.counts.get(t as usize).copied().unwrap_or(0);
            if before == 0 && (t as usize) < self.seen.len() && !extra[..i].contains(&t) {
                f(t, in_extra(t));
            }
        }
    }

    pub(super) fn for_each_unique(&self, extra: &[u32], mut f: impl FnMut(u32)) {
        self.list.iter().for_each(|&t| f(t));
        for (i, &t) in extra.iter().enumerate() {
            if !self.seen.get(t as usize).copied().unwrap_or(true) && !extra[..i].contains(&t) {
                f(t);
            }
        }
    }
}
