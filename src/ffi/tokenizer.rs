//! Tokenizer handles and streaming detokenisation.

use std::ffi::c_char;
use std::sync::Arc;

use super::*;
use crate::tokenizer::ChatMessage;
use crate::{StreamDecoder, Tokenizer};

/// specdec_tokenizer_encode_ex flag: add the special tokens the tokenizer's post-processor adds
/// (a BOS token, for example), as transformers' `encode` does by default.
pub const SPECDEC_ENCODE_ADD_SPECIAL_TOKENS: u32 = 1;
/// specdec_tokenizer_decode_ex flag: keep special tokens (`<|eot_id|>`, `</s>`, ...) in the text
/// instead of skipping them.
pub const SPECDEC_DECODE_KEEP_SPECIAL_TOKENS: u32 = 1;

/// One message of a conversation for specdec_tokenizer_apply_chat_template: NUL-terminated UTF-8
/// `role` ("system", "user", "assistant", ...) and `content`.
#[repr(C)]
pub struct specdec_chat_message {
    pub role: *const c_char,
    pub content: *const c_char,
}

/// A tokenizer (tokenizer.json). Read-only and shareable across threads.
pub struct specdec_tokenizer {
    pub(crate) inner: Arc<Tokenizer>,
}

/// Incremental decoder for streaming: releases text only in whole UTF-8 characters.
pub struct specdec_stream_decoder {
    tokenizer: Arc<Tokenizer>,
    state: StreamDecoder,
    /// The last text handed out, NUL-terminated (interior NULs kept, as specdec_tokenizer_decode does).
    text: Vec<u8>,
}

/// Load `path` (a tokenizer.json, or a folder holding one). `*out` is set to NULL on failure.
///
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_INVALID_UTF8, SPECDEC_STATUS_IO,
/// SPECDEC_STATUS_TOKENIZER (not a valid tokenizer.json). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn specdec_tokenizer_load(
    path: *const c_char,
    out: *mut *mut specdec_tokenizer,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || new_handle(out, || Ok(specdec_tokenizer { inner: Arc::new(Tokenizer::load(str_arg(path, "path")?)?) })))
}

/// Free a tokenizer. Stream decoders made from it keep it alive. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn specdec_tokenizer_free(tokenizer: *mut specdec_tokenizer) {
    free_boxed(tokenizer);
}

/// Tokenize `text` (`text_len` bytes of UTF-8, no terminator needed) without special tokens.
/// Writes up to `capacity` ids to `ids` and the count to `*n_ids`. If `capacity` is too small,
/// nothing is written to `ids`, `*n_ids` receives the count needed and
/// SPECDEC_STATUS_BUFFER_TOO_SMALL is returned (call with capacity 0 to ask for the size).
///
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_INVALID_UTF8, SPECDEC_STATUS_BUFFER_TOO_SMALL,
/// SPECDEC_STATUS_TOKENIZER. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn specdec_tokenizer_encode(
    tokenizer: *const specdec_tokenizer,
    text: *const c_char,
    text_len: usize,
    ids: *mut u32,
    capacity: usize,
    n_ids: *mut usize,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || encode(tokenizer, text, text_len, false, ids, capacity, n_ids))
}

/// specdec_tokenizer_encode with options: `flags` 0 is specdec_tokenizer_encode;
/// SPECDEC_ENCODE_ADD_SPECIAL_TOKENS adds the special tokens the tokenizer's post-processor adds.
/// (A chat prompt from specdec_tokenizer_apply_chat_template already holds its special tokens:
/// encode it with flags 0.)
///
/// Errors: as specdec_tokenizer_encode, and SPECDEC_STATUS_INVALID_ARGUMENT for an unknown flag.
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn specdec_tokenizer_encode_ex(
    tokenizer: *const specdec_tokenizer,
    text: *const c_char,
    text_len: usize,
    flags: u32,
    ids: *mut u32,
    capacity: usize,
    n_ids: *mut usize,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        check_flags(flags, SPECDEC_ENCODE_ADD_SPECIAL_TOKENS)?;
        encode(tokenizer, text, text_len, flags & SPECDEC_ENCODE_ADD_SPECIAL_TOKENS != 0, ids, capacity, n_ids)
    })
}

fn check_flags(flags: u32, known: u32) -> FfiResult<()> {
    if flags & !known != 0 {
        return Err(crate::Error::InvalidArgument(format!("flags: unknown bits {:#x}", flags & !known)).into());
    }
    Ok(())
}

unsafe fn encode(
    tokenizer: *const specdec_tokenizer,
    text: *const c_char,
    text_len: usize,
    add_special_tokens: bool,
    ids: *mut u32,
    capacity: usize,
    n_ids: *mut usize,
) -> FfiResult<()> {
    let tok = handle(tokenizer, "tokenizer")?;
    let n_ids = out_arg(n_ids, "n_ids")?;
    let bytes = slice_arg(text as *const u8, text_len, "text")?;
    let text = std::str::from_utf8(bytes).map_err(|_| FfiError::utf8("text"))?;
    let encoded = tok.inner.encode_with(text, add_special_tokens)?;
    *n_ids = encoded.len();
    if encoded.len() > capacity {
        return Err(FfiError::too_small("encoding", encoded.len(), capacity));
    }
    if !encoded.is_empty() {
        if ids.is_null() {
            return Err(FfiError::null("ids"));
        }
        std::ptr::copy_nonoverlapping(encoded.as_ptr(), ids, encoded.len());
    }
    Ok(())
}

/// Copy `text` and a NUL into `buf` (`capacity` bytes); `*len` receives its length either way.
unsafe fn write_text(text: &str, what: &'static str, buf: *mut c_char, capacity: usize, len: &mut usize) -> FfiResult<()> {
    *len = text.len();
    if text.len() + 1 > capacity {
        return Err(FfiError::too_small(what, text.len() + 1, capacity));
    }
    if buf.is_null() {
        return Err(FfiError::null("buf"));
    }
    std::ptr::copy_nonoverlapping(text.as_ptr(), buf as *mut u8, text.len());
    *buf.add(text.len()) = 0;
    Ok(())
}

/// Decode `n_ids` ids to UTF-8 text (special tokens skipped) into `buf`, NUL-terminated.
/// `*len` receives the text length in bytes, without the NUL. If `capacity` < length + 1, nothing
/// is written, `*len` receives the length and SPECDEC_STATUS_BUFFER_TOO_SMALL is returned.
///
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_TOKEN_OUT_OF_RANGE,
/// SPECDEC_STATUS_BUFFER_TOO_SMALL, SPECDEC_STATUS_TOKENIZER. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn specdec_tokenizer_decode(
    tokenizer: *const specdec_tokenizer,
    ids: *const u32,
    n_ids: usize,
    buf: *mut c_char,
    capacity: usize,
    len: *mut usize,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        let tok = handle(tokenizer, "tokenizer")?;
        let len = out_arg(len, "len")?;
        let text = tok.inner.decode(slice_arg(ids, n_ids, "ids")?)?;
        write_text(&text, "decoded text (with its NUL)", buf, capacity, len)
    })
}

/// specdec_tokenizer_decode with options: `flags` 0 is specdec_tokenizer_decode;
/// SPECDEC_DECODE_KEEP_SPECIAL_TOKENS keeps special tokens in the text.
///
/// Errors: as specdec_tokenizer_decode, and SPECDEC_STATUS_INVALID_ARGUMENT for an unknown flag.
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn specdec_tokenizer_decode_ex(
    tokenizer: *const specdec_tokenizer,
    ids: *const u32,
    n_ids: usize,
    flags: u32,
    buf: *mut c_char,
    capacity: usize,
    len: *mut usize,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        check_flags(flags, SPECDEC_DECODE_KEEP_SPECIAL_TOKENS)?;
        let tok = handle(tokenizer, "tokenizer")?;
        let len = out_arg(len, "len")?;
        let skip = flags & SPECDEC_DECODE_KEEP_SPECIAL_TOKENS == 0;
        let text = tok.inner.decode_with(slice_arg(ids, n_ids, "ids")?, skip)?;
        write_text(&text, "decoded text (with its NUL)", buf, capacity, len)
    })
}

/// The id of `token` (`token_len` bytes of UTF-8: a vocabulary entry or added token as written in
/// tokenizer.json, e.g. "<|endoftext|>" or "Ġthe"). `*found` receives whether the tokenizer has
/// it and `*id` its id (0 when not found); a missing token is not an error.
///
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_INVALID_UTF8. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn specdec_tokenizer_token_to_id(
    tokenizer: *const specdec_tokenizer,
    token: *const c_char,
    token_len: usize,
    id: *mut u32,
    found: *mut bool,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        let tok = handle(tokenizer, "tokenizer")?;
        let bytes = slice_arg(token as *const u8, token_len, "token")?;
        let (id, found) = (out_arg(id, "id")?, out_arg(found, "found")?);
        let token = std::str::from_utf8(bytes).map_err(|_| FfiError::utf8("token"))?;
        let hit = tok.inner.token_to_id(token);
        *id = hit.unwrap_or(0);
        *found = hit.is_some();
        Ok(())
    })
}

/// The token string of `id` (as written in tokenizer.json) into `buf`, NUL-terminated, with the
/// buffer protocol of specdec_tokenizer_decode.
///
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_TOKEN_OUT_OF_RANGE (an id the tokenizer
/// does not have), SPECDEC_STATUS_BUFFER_TOO_SMALL. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn specdec_tokenizer_id_to_token(
    tokenizer: *const specdec_tokenizer,
    id: u32,
    buf: *mut c_char,
    capacity: usize,
    len: *mut usize,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        let tok = handle(tokenizer, "tokenizer")?;
        let len = out_arg(len, "len")?;
        let vocab_size = tok.inner.vocab_size();
        let token = tok.inner.id_to_token(id).ok_or(crate::Error::TokenOutOfRange { id: id as i64, vocab_size })?;
        write_text(&token, "token (with its NUL)", buf, capacity, len)
    })
}

/// Render `n_messages` messages with the tokenizer's chat template (the one set with
/// specdec_tokenizer_set_chat_template, else the folder's chat_template.jinja or
/// tokenizer_config.json `chat_template`), as transformers' `apply_chat_template(messages,
/// tokenize=False, add_generation_prompt=...)` does: byte for byte the same prompt. With
/// `add_generation_prompt` the text ends with the header of an assistant turn. The prompt goes to
/// `buf`, NUL-terminated, with the buffer protocol of specdec_tokenizer_decode (`*len` receives
/// the length; SPECDEC_STATUS_BUFFER_TOO_SMALL when `capacity` < length + 1). Encode it with
/// flags 0: the template writes the special tokens itself.
///
/// Errors: SPECDEC_STATUS_NULL_PARAMETER (also a NULL role or content), SPECDEC_STATUS_INVALID_UTF8,
/// SPECDEC_STATUS_BUFFER_TOO_SMALL, SPECDEC_STATUS_TOKENIZER (no chat template, the folder's does
/// not compile, or rendering failed, including the template's own raise_exception: the message
/// says why). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn specdec_tokenizer_apply_chat_template(
    tokenizer: *const specdec_tokenizer,
    messages: *const specdec_chat_message,
    n_messages: usize,
    add_generation_prompt: bool,
    buf: *mut c_char,
    capacity: usize,
    len: *mut usize,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        let tok = handle(tokenizer, "tokenizer")?;
        let len = out_arg(len, "len")?;
        let msgs = slice_arg(messages, n_messages, "messages")?
            .iter()
            .map(|m| Ok(ChatMessage::new(str_arg(m.role, "role")?, str_arg(m.content, "content")?)))
            .collect::<FfiResult<Vec<_>>>()?;
        let text = tok.inner.apply_chat_template(&msgs, add_generation_prompt)?;
        write_text(&text, "chat prompt (with its NUL)", buf, capacity, len)
    })
}

/// Use `chat_template` (NUL-terminated Jinja source) as the tokenizer's chat template instead of
/// its folder's; the special tokens stay the folder's. On failure the template in use is
/// unchanged. Not thread-safe: set it before sharing the tokenizer (stream decoders made earlier
/// are not affected).
///
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_INVALID_UTF8, SPECDEC_STATUS_TOKENIZER
/// (it does not compile; the message gives the line).
#[no_mangle]
pub unsafe extern "C" fn specdec_tokenizer_set_chat_template(
    tokenizer: *mut specdec_tokenizer,
    chat_template: *const c_char,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        let tok = handle_mut(tokenizer, "tokenizer")?;
        let source = str_arg(chat_template, "chat_template")?;
        let template = crate::tokenizer::ChatTemplate::new(source, tok.inner.special_tokens().clone())?;
        // Copy-on-write: stream decoders hold the tokenizer too.
        Arc::make_mut(&mut tok.inner).set_chat_template_compiled(template);
        Ok(())
    })
}

/// Vocabulary size of the tokenizer: one past its largest token id, added tokens included (0 for
/// NULL). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn specdec_tokenizer_vocab_size(tokenizer: *const specdec_tokenizer) -> usize {
    tokenizer.as_ref().map_or(0, |t| t.inner.vocab_size())
}

/// A stream decoder over `tokenizer` (which it keeps alive). Free with specdec_stream_decoder_free.
///
/// Errors: SPECDEC_STATUS_NULL_PARAMETER.
#[no_mangle]
pub unsafe extern "C" fn specdec_stream_decoder_new(
    tokenizer: *const specdec_tokenizer,
    out: *mut *mut specdec_stream_decoder,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        new_handle(out, || {
            Ok(specdec_stream_decoder {
                tokenizer: handle(tokenizer, "tokenizer")?.inner.clone(),
                state: StreamDecoder::new(),
                text: vec![0],
            })
        })
    })
}

/// Add `n_ids` generated ids; `*text` receives the newly completed text (NUL-terminated, possibly
/// empty) and `*len` its length in bytes (a token that decodes to U+0000 leaves a NUL inside, as
/// in specdec_tokenizer_decode). Bytes of an incomplete UTF-8 character are held back until the
/// token that completes them arrives. The text is owned by the decoder and valid until its next
/// call. Not thread-safe: one decoder per stream.
///
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_TOKEN_OUT_OF_RANGE, SPECDEC_STATUS_TOKENIZER.
#[no_mangle]
pub unsafe extern "C" fn specdec_stream_decoder_push(
    decoder: *mut specdec_stream_decoder,
    ids: *const u32,
    n_ids: usize,
    text: *mut *const c_char,
    len: *mut usize,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        let d = handle_mut(decoder, "decoder")?;
        let (text, len) = (out_arg(text, "text")?, out_arg(len, "len")?);
        let new = d.state.push(&d.tokenizer, slice_arg(ids, n_ids, "ids")?)?;
        publish(d, new, text, len);
        Ok(())
    })
}

/// Release whatever text the decoder still holds back (at the end of a stream), like
/// specdec_stream_decoder_push.
///
/// Errors: SPECDEC_STATUS_NULL_PARAMETER, SPECDEC_STATUS_TOKENIZER.
#[no_mangle]
pub unsafe extern "C" fn specdec_stream_decoder_flush(
    decoder: *mut specdec_stream_decoder,
    text: *mut *const c_char,
    len: *mut usize,
    err: *mut *mut specdec_error,
) -> specdec_status {
    guard(err, || {
        let d = handle_mut(decoder, "decoder")?;
        let (text, len) = (out_arg(text, "text")?, out_arg(len, "len")?);
        let rest = d.state.flush(&d.tokenizer)?;
        publish(d, rest, text, len);
        Ok(())
    })
}

fn publish(d: &mut specdec_stream_decoder, s: String, text: &mut *const c_char, len: &mut usize) {
    *len = s.len();
    // The same bytes specdec_tokenizer_decode gives, NUL included should a token decode to one:
    // the caller has the exact length.
    d.text.clear();
    d.text.extend_from_slice(s.as_bytes());
    d.text.push(0);
    *text = d.text.as_ptr() as *const c_char;
}

/// Free a stream decoder. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn specdec_stream_decoder_free(decoder: *mut specdec_stream_decoder) {
    free_boxed(decoder);
}
