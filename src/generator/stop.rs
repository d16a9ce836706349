//! When a generation ends: an end-of-sequence id, a stop sequence (tokens or text), or the token
//! budget, checked after each committed token.

use super::FinishReason;
use crate::error::Result;
use crate::tokenizer::Tokenizer;

pub(super) struct StopRule {
    pub(super) eos: Vec<u32>,
    sequences: Vec<Vec<u32>>,
    texts: Vec<String>,
    max_new_tokens: usize,
}

impl StopRule {
    pub(super) fn new(eos: Vec<u32>, sequences: Vec<Vec<u32>>, texts: Vec<String>, max_new_tokens: usize) -> Self {
        StopRule { eos, sequences, texts, max_new_tokens }
    }

    /// Whether text stop sequences are set (they need a tokenizer).
    pub(super) fn needs_tokenizer(&self) -> bool {
        !self.texts.is_empty()
    }

    /// Why the generation ends after its newest token, the last of `generated` (the tokens
    /// generated since the last prompt), if it does.
    pub(super) fn check(&self, generated: &[u32], tokenizer: Option<&Tokenizer>) -> Result<Option<FinishReason>> {
        let Some(&newest) = generated.last() else { return Ok(None) };
        if self.eos.contains(&newest) {
            return Ok(Some(FinishReason::Eos));
        }
        if self.hit_stop_sequence(generated, tokenizer)? {
            return Ok(Some(FinishReason::StopSequence));
        }
        if generated.len() == self.max_new_tokens {
            return Ok(Some(FinishReason::MaxTokens));
        }
        Ok(None)
    }

    /// Whether the newest token completes a stop sequence inside the generated part.
    fn hit_stop_sequence(&self, generated: &[u32], tokenizer: Option<&Tokenizer>) -> Result<bool> {
        if self.sequences.iter().any(|s| generated.ends_with(s)) {
            return Ok(true);
        }
        if let (Some(tok), false) = (tokenizer, self.texts.is_empty()) {
            // Every non-special token decodes to at least one byte, so this window holds any
            // match that involves the newest token; older matches would have stopped earlier.
            let longest = self.texts.iter().map(String::len).max().unwrap_or(0);
            let window = &generated[generated.len().saturating_sub(longest + 4)..];
            let text = tok.decode_known(window)?;
            return Ok(self.texts.iter().any(|s| text.contains(s.as_str())));
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eos_then_stop_sequences_then_the_budget() {
        let rule = StopRule::new(vec![2], vec![vec![5, 6]], Vec::new(), 4);
        assert_eq!(rule.check(&[7], None).unwrap(), None);
        assert_eq!(rule.check(&[7, 2], None).unwrap(), Some(FinishReason::Eos));
        assert_eq!(rule.check(&[5, 6], None).unwrap(), Some(FinishReason::StopSequence));
        assert_eq!(rule.check(&[1, 1, 1, 1], None).unwrap(), Some(FinishReason::MaxTokens));
        // EOS wins when it is also the last token of the budget.
        assert_eq!(rule.check(&[1, 1, 1, 2], None).unwrap(), Some(FinishReason::Eos));
    }
}
