//! Text in and out, through the model folder's tokenizer.json; prompts from its chat template
//! (tokenizer_config.json, see [`chat`]).

pub mod chat;

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::{Arc, Once};

pub use chat::{ChatMessage, ChatTemplate, SpecialTokens};

use crate::error::{Error, Result};

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Run a `tokenizers` call, turning a panic into an error. The crate panics on some malformed
/// tokenizer.json files (for example a `decoder` object whose keys are not strings: an
/// `expect("Helper")` in its deserializer), and a bad file must be an error, not a crash. The
/// panic's default report is kept off stderr while this runs; other panics still reach the
/// previous hook.
fn no_panic<T>(f: impl FnOnce() -> std::result::Result<T, tokenizers::Error>) -> std::result::Result<T, tokenizers::Error> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
    let was = QUIET.with(|q| q.replace(true));
    let out = catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(was));
    out.unwrap_or_else(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        Err(format!("the tokenizers library failed on it ({what})").into())
    })
}

/// A Hugging Face tokenizer (tokenizer.json), with the chat template and special tokens of its
/// folder's tokenizer_config.json. Immutable (but for [`Tokenizer::set_chat_template`]) and
/// shareable across threads.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// One past the largest id (vocabulary and added tokens), computed once: `tokenizers`
    /// rebuilds its whole vocabulary map to answer `get_vocab_size`, and counts tokens rather
    /// than ids, which is too small when the ids have gaps.
    vocab_size: usize,
    /// Special tokens named by tokenizer_config.json / special_tokens_map.json (for templates).
    special: SpecialTokens,
    /// The chat template, none, or why the folder's could not be read (reported only when a
    /// template is asked for: a broken config must not stop plain tokenisation).
    chat: std::result::Result<Option<Arc<ChatTemplate>>, String>,
}

impl Tokenizer {
    /// Load `path`, or `path/tokenizer.json` when `path` is a folder.
    pub fn load(path: impl AsRef<Path>) -> Result<Tokenizer> {
        let path = path.as_ref();
        let file = if path.is_dir() { path.join("tokenizer.json") } else { path.to_path_buf() };
        // Only a regular file: reading a device (/dev/zero) or a FIFO would never end.
        let meta = std::fs::metadata(&file).map_err(|e| Error::io(&file, e))?;
        if !meta.is_file() {
            return Err(Error::io(&file, "not a regular file"));
        }
        let bytes = std::fs::read(&file).map_err(|e| Error::io(&file, e))?;
        let mut tok =
            Self::parse(&bytes).map_err(|e| Error::Tokenizer(format!("{}: invalid tokenizer.json: {e}", file.display())))?;
        let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        match ChatTemplate::find_in(dir) {
            Ok((template, special)) => {
                tok.special = special;
                tok.chat = Ok(template.map(Arc::new));
            }
            Err(e) => tok.chat = Err(e.to_string()),
        }
        Ok(tok)
    }

    /// A tokenizer from the bytes of a tokenizer.json (for the fuzzer; callers use [`Tokenizer::load`]).
    #[doc(hidden)]
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Tokenizer> {
        Self::parse(bytes).map_err(|e| Error::Tokenizer(format!("invalid tokenizer.json: {e}")))
    }

    fn parse(bytes: &[u8]) -> std::result::Result<Tokenizer, tokenizers::Error> {
        let inner = no_panic(|| tokenizers::Tokenizer::from_bytes(bytes))?;
        let vocab_size = inner.get_vocab(true).values().map(|&id| id as usize + 1).max().unwrap_or(0);
        Ok(Tokenizer { inner, vocab_size, special: SpecialTokens::default(), chat: Ok(None) })
    }

    /// Token ids of `text`, without added special tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.encode_with(text, false)
    }

    /// Token ids of `text`; with `add_special_tokens` the tokenizer's post-processor adds what
    /// it adds (a BOS token, for example), as transformers' `encode(text)` does by default.
    pub fn encode_with(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = no_panic(|| self.inner.encode(text, add_special_tokens)).map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids`, skipping special tokens. Incomplete UTF-8 at the end shows as U+FFFD;
    /// use [`StreamDecoder`] for streaming.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.decode_with(ids, true)
    }

    /// Text of `ids`; special tokens (`<|eot_id|>`, `</s>`, ...) are left out with
    /// `skip_special_tokens`, kept as text without.
    pub fn decode_with(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        let vocab = self.vocab_size();
        if let Some(&bad) = ids.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::TokenOutOfRange { id: bad as i64, vocab_size: vocab });
        }
        no_panic(|| self.inner.decode(ids, skip_special_tokens)).map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// Text of the ids this tokenizer has, skipping the others (a model's vocabulary is often
    /// larger than its tokenizer's, e.g. Qwen2's 151,936 logits for ~151,650 tokens: an id the
    /// tokenizer lacks has no text) and skipping special tokens.
    pub fn decode_known(&self, ids: &[u32]) -> Result<String> {
        let known = self.known_ids(ids);
        no_panic(|| self.inner.decode(&known, true)).map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// The ids among `ids` this tokenizer has, in order.
    pub fn known_ids(&self, ids: &[u32]) -> Vec<u32> {
        ids.iter().copied().filter(|&t| (t as usize) < self.vocab_size).collect()
    }

    /// One past the largest token id: every id below it may be passed to [`Tokenizer::decode`].
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The id of `token` (a vocabulary entry or an added token, as written in tokenizer.json).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The token string of `id` (as written in tokenizer.json: `Ġthe` for byte-level BPE), or
    /// `None` for an id the tokenizer does not have.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The special tokens named by the folder's tokenizer_config.json (or special_tokens_map.json).
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }

    /// The chat template: the one set with [`Tokenizer::set_chat_template`], else the folder's
    /// (see [`ChatTemplate::find_in`]). `Ok(None)`: there is none. Errors: the folder's
    /// tokenizer_config.json or template could not be read or compiled.
    pub fn chat_template(&self) -> Result<Option<&ChatTemplate>> {
        match &self.chat {
            Ok(t) => Ok(t.as_deref()),
            Err(e) => Err(Error::Tokenizer(e.clone())),
        }
    }

    /// Use `template` (Jinja source) as the chat template instead of the folder's, with the
    /// folder's special tokens. Errors: `Error::Tokenizer` when it does not compile (the
    /// template in use is then unchanged).
    pub fn set_chat_template(&mut self, template: &str) -> Result<()> {
        self.set_chat_template_compiled(ChatTemplate::new(template, self.special.clone())?);
        Ok(())
    }

    /// Use `template` as the chat template (it keeps its own special tokens).
    pub fn set_chat_template_compiled(&mut self, template: ChatTemplate) {
        self.chat = Ok(Some(Arc::new(template)));
    }

    /// The prompt text of `messages` in the chat template's format, as transformers'
    /// `apply_chat_template(messages, tokenize=False, add_generation_prompt=...)` renders it.
    /// Tokenize it with `encode` (the template already writes the BOS token where the model
    /// wants one). Errors: `Error::Tokenizer` when there is no template or rendering fails
    /// (including the template's own `raise_exception`).
    pub fn apply_chat_template(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        match self.chat_template()? {
            Some(t) => t.render(messages, add_generation_prompt),
            None => Err(Error::Tokenizer(
                "the tokenizer has no chat template (none in tokenizer_config.json or chat_template.jinja); set one".into(),
            )),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_json() -> String {
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/models/fixtures/llama/tokenizer.json")).unwrap()
    }

    #[test]
    fn a_file_that_makes_the_tokenizers_crate_panic_is_an_error() {
        // Found by the tokenizer fuzz target: `tokenizers` 0.22 `expect`s its decoder to parse.
        let json = fixture_json();
        let start = json.find("\"decoder\":").unwrap();
        let end = start + json[start..].find('}').unwrap() + 1;
        let broken = format!("{}\"decoder\": {{1: 2}}{}", &json[..start], &json[end..]);
        match Tokenizer::from_json_bytes(broken.as_bytes()) {
            Err(Error::Tokenizer(m)) => assert!(m.contains("invalid tokenizer.json"), "{m}"),
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("accepted"),
        }
        // The process is fine and the real file still loads.
        assert_eq!(Tokenizer::from_json_bytes(json.as_bytes()).unwrap().vocab_size(), 512);
    }

    #[test]
    fn vocab_size_covers_ids_with_gaps() {
        let json = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,
            "pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,
            "model":{"type":"WordLevel","vocab":{"a":0,"b":1,"[UNK]":7},"unk_token":"[UNK]"}}"#;
        let t = Tokenizer::from_json_bytes(json.as_bytes()).unwrap();
        // Three tokens, but ids up to 7: every id the tokenizer produces must decode.
        assert_eq!(t.vocab_size(), 8);
        let ids = t.encode("a zzz b").unwrap();
        assert_eq!(ids, [0, 7, 1]);
        assert_eq!(t.decode(&ids).unwrap(), "a [UNK] b");
        assert!(matches!(t.decode(&[8]), Err(Error::TokenOutOfRange { id: 8, vocab_size: 8 })));
    }
}
