//! Unigram and bigram drafts, as the paper's cheapest approximation models: token frequencies
//! (after the previous token, for bigrams) from a count file or learnt from the sequence itself.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::{DraftContext, Drafter, Guess};
use crate::error::{Error, Result};

/// Token counts: unigram counts and bigram counts keyed by the previous token.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CountTable {
    pub unigram: HashMap<u32, f64>,
    pub bigram: HashMap<u32, HashMap<u32, f64>>,
}

impl CountTable {
    /// Counts of a token sequence.
    pub fn from_tokens(tokens: &[u32]) -> Self {
        let mut t = CountTable::default();
        t.add(tokens, None);
        t
    }

    /// Count `tokens`, whose predecessor (if any) is `prev`.
    fn add(&mut self, tokens: &[u32], mut prev: Option<u32>) {
        for &x in tokens {
            *self.unigram.entry(x).or_default() += 1.0;
            if let Some(p) = prev {
                *self.bigram.entry(p).or_default().entry(x).or_default() += 1.0;
            }
            prev = Some(x);
        }
    }

    /// Read a count file: one entry per line, `<id> <count>` for a unigram or
    /// `<prev> <id> <count>` for a bigram; blank lines and lines starting with `#` are skipped.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        // A device or FIFO would read forever or block: only regular files.
        if !std::fs::metadata(path).map_err(|e| Error::io(path, e))?.is_file() {
            return Err(Error::io(path, "not a regular file"));
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut t = CountTable::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad =
                || Error::io(path, format!("line {}: expected `<id> <count>` or `<prev> <id> <count>`, got `{line}`", i + 1));
            let fields: Vec<&str> = line.split_whitespace().collect();
            let id = |s: &str| s.parse::<u32>().map_err(|_| bad());
            let count = |s: &str| s.parse::<f64>().ok().filter(|c| c.is_finite() && *c >= 0.0).ok_or_else(bad);
            match fields[..] {
                [x, c] => *t.unigram.entry(id(x)?).or_default() += count(c)?,
                [p, x, c] => *t.bigram.entry(id(p)?).or_default().entry(id(x)?).or_default() += count(c)?,
                _ => return Err(bad()),
            }
        }
        Ok(t)
    }

    /// Write the table in the format [`CountTable::load`] reads.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let mut out = String::from("# specdec token counts: `<id> <count>` or `<prev> <id> <count>`\n");
        let mut uni: Vec<_> = self.unigram.iter().collect();
        uni.sort_by_key(|(k, _)| **k);
        for (x, c) in uni {
            out.push_str(&format!("{x} {c}\n"));
        }
        let mut bi: Vec<_> = self.bigram.iter().flat_map(|(p, row)| row.iter().map(move |(x, c)| (*p, *x, *c))).collect();
        bi.sort_by_key(|&(p, x, _)| (p, x));
        for (p, x, c) in bi {
            out.push_str(&format!("{p} {x} {c}\n"));
        }
        std::fs::write(path, out).map_err(|e| Error::io(path, e))
    }

    fn max_id(&self) -> Option<u32> {
        let bi = self.bigram.iter().flat_map(|(p, row)| std::iter::once(*p).chain(row.keys().copied()));
        self.unigram.keys().copied().chain(bi).max()
    }
}

pub struct CountsDrafter {
    order: usize,
    table: CountTable,
    /// Tokens of the sequence already counted (when learning from the sequence).
    counted: usize,
    learn: bool,
    /// Unigram log-probabilities, rebuilt only when the counts change (at most once a round).
    unigram: Vec<f32>,
    stale: bool,
    logits: Vec<f32>,
}

impl CountsDrafter {
    /// `order` 1 (unigram) or 2 (bigram); without a table the counts come from the sequence
    /// (prompt and output so far).
    pub fn new(order: usize, table: Option<Arc<CountTable>>, vocab_size: usize) -> Result<Self> {
        if !(1..=2).contains(&order) {
            return Err(Error::invalid(format!("count drafts are unigram (1) or bigram (2), got order {order}")));
        }
        if let Some(bad) = table.as_ref().and_then(|t| t.max_id()).filter(|&m| m as usize >= vocab_size) {
            return Err(Error::TokenOutOfRange { id: bad as i64, vocab_size });
        }
        let learn = table.is_none();
        let table = table.map(|t| (*t).clone()).unwrap_or_default();
        Ok(CountsDrafter {
            order,
            table,
            counted: 0,
            learn,
            unigram: vec![0.0; vocab_size],
            stale: true,
            logits: vec![0.0; vocab_size],
        })
    }
}

impl Drafter for CountsDrafter {
    fn name(&self) -> &'static str {
        if self.order == 1 {
            "unigram"
        } else {
            "bigram"
        }
    }

    fn guess(&mut self, ctx: &DraftContext<'_>) -> Result<Guess<'_>> {
        if self.learn && self.counted < ctx.tokens.len() {
            let prev = self.counted.checked_sub(1).map(|i| ctx.tokens[i]);
            self.table.add(&ctx.tokens[self.counted..], prev);
            self.counted = ctx.tokens.len();
            self.stale = true;
        }
        if self.table.unigram.is_empty() {
            return Ok(Guess::Stop);
        }
        if std::mem::take(&mut self.stale) {
            // Add-½ smoothing: unseen tokens keep a small mass so sampling stays well defined.
            let total: f64 = self.table.unigram.values().sum();
            let norm = total + 0.5 * self.unigram.len() as f64;
            self.unigram.fill((0.5 / norm).ln() as f32);
            for (&x, &c) in &self.table.unigram {
                self.unigram[x as usize] = ((c + 0.5) / norm).ln() as f32;
            }
        }
        self.logits.copy_from_slice(&self.unigram);
        if self.order == 2 {
            let prev = ctx.drafts.last().or(ctx.tokens.last()).copied();
            if let Some(row) = prev.and_then(|p| self.table.bigram.get(&p)) {
                // Interpolate with the unigram (weight of one observation) so a rare predecessor
                // still proposes sensibly: (c(prev, x) + p_uni(x)) / (n + 1), which sums to 1.
                let n: f64 = row.values().sum();
                let shift = (n + 1.0).ln() as f32;
                self.logits.iter_mut().for_each(|l| *l -= shift);
                for (&x, &c) in row {
                    self.logits[x as usize] = ((c + (self.unigram[x as usize] as f64).exp()) / (n + 1.0)).ln() as f32;
                }
            }
        }
        Ok(Guess::Logits(&self.logits))
    }

    /// Counts learnt from tokens the sequence no longer holds are forgotten (learnt afresh from
    /// what it holds at the next guess).
    fn rollback(&mut self, tokens: &[u32], _keep: usize) -> Result<()> {
        if self.learn && self.counted > tokens.len() {
            self.table = CountTable::default();
            self.counted = 0;
            self.stale = true;
        }
        Ok(())
    }

    fn fork(&self, _tokens: &[u32], _keep: usize) -> Result<Box<dyn Drafter>> {
        let vocab = self.unigram.len();
        Ok(Box::new(CountsDrafter {
            order: self.order,
            // Counts from a file stay; counts learnt from the sequence are learnt from the fork's.
            table: if self.learn { CountTable::default() } else { self.table.clone() },
            counted: 0,
            learn: self.learn,
            unigram: vec![0.0; vocab],
            stale: true,
            logits: vec![0.0; vocab],
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_files_round_trip() {
        let t = CountTable::from_tokens(&[1, 2, 1, 2, 3]);
        assert_eq!(t.unigram[&1], 2.0);
        assert_eq!(t.bigram[&1][&2], 2.0);
        let path = std::env::temp_dir().join(format!("specdec-counts-{}.txt", std::process::id()));
        t.save(&path).unwrap();
        assert_eq!(CountTable::load(&path).unwrap(), t);
        std::fs::write(&path, "1 2 3 4\n").unwrap();
        assert!(CountTable::load(&path).is_err());
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn bigram_prefers_the_seen_successor() {
        let mut d = CountsDrafter::new(2, None, 8).unwrap();
        let tokens = [1, 2, 3, 1, 2, 3, 1];
        let Guess::Logits(l) = d.guess(&DraftContext { tokens: &tokens, drafts: &[], left: 1, best: None }).unwrap() else {
            panic!()
        };
        assert_eq!(crate::sampling::argmax(l), 2);
    }

    #[test]
    fn ids_outside_the_vocabulary_are_refused() {
        let t = Arc::new(CountTable::from_tokens(&[1, 9]));
        assert!(CountsDrafter::new(1, Some(t), 8).is_err());
        assert!(CountsDrafter::new(3, None, 8).is_err());
    }
}
