//! Text in and out, through the model folder's tokenizer.json.

use std::path::Path;

use crate::error::{Error, Result};

/// A Hugging Face tokenizer (tokenizer.json). Immutable and shareable across threads.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
}

impl Tokenizer {
    /// Load `path`, or `path/tokenizer.json` when `path` is a folder.
    pub fn load(path: impl AsRef<Path>) -> Result<Tokenizer> {
        let path = path.as_ref();
        let file = if path.is_dir() { path.join("tokenizer.json") } else { path.to_path_buf() };
        let bytes = std::fs::read(&file).map_err(|e| Error::io(&file, e))?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes)
            .map_err(|e| Error::Tokenizer(format!("{}: invalid tokenizer.json: {e}", file.display())))?;
        Ok(Tokenizer { inner })
    }

    /// Token ids of `text`, without added special tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, false).map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids`, skipping special tokens. Incomplete UTF-8 at the end shows as U+FFFD;
    /// use [`StreamDecoder`] for streaming.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let vocab = self.vocab_size();
        if let Some(&bad) = ids.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::TokenOutOfRange { id: bad as i64, vocab_size: vocab });
        }
        self.inner.decode(ids, true).map_err(|e| Error::Tokenizer(e.to_string()))
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }
}

/// Incremental detokenisation that never emits a partial UTF-8 character: text is released only
/// once the bytes decoded so far form complete characters. Also keeps the spacing that some
/// decoders apply at word starts right, by decoding a window with some left context.
#[derive(Debug, Default, Clone)]
pub struct StreamDecoder {
    ids: Vec<u32>,
    /// Start of the context window and end of what was already emitted, in `ids`.
    prefix: usize,
    read: usize,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add tokens; returns the newly completed text (possibly empty).
    pub fn push(&mut self, tok: &Tokenizer, new: &[u32]) -> Result<String> {
        // Refuse bad ids before storing them, so one bad call cannot poison the stream.
        let vocab = tok.vocab_size();
        if let Some(&bad) = new.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::TokenOutOfRange { id: bad as i64, vocab_size: vocab });
        }
        self.ids.extend_from_slice(new);
        let before = tok.decode(&self.ids[self.prefix..self.read])?;
        let now = tok.decode(&self.ids[self.prefix..])?;
        if now.len() > before.len() && !now.ends_with('\u{FFFD}') && now.starts_with(&before) {
            let text = now[before.len()..].to_string();
            self.prefix = self.read;
            self.read = self.ids.len();
            Ok(text)
        } else {
            Ok(String::new())
        }
    }

    /// Whatever is still held back (for example an incomplete character at the very end).
    pub fn flush(&mut self, tok: &Tokenizer) -> Result<String> {
        let before = tok.decode(&self.ids[self.prefix..self.read])?;
        let now = tok.decode(&self.ids[self.prefix..])?;
        self.prefix = self.ids.len();
        self.read = self.ids.len();
        Ok(now.get(before.len()..).unwrap_or("").to_string())
    }
}
