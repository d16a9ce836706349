//! Tokenizer handles and streaming detokenisation.

use std::ffi::c_char;
use std::sync::Arc;

use super::*;
use crate::{StreamDecoder, Tokenizer};

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
    guard(err, || {
        let tok = handle(tokenizer, "tokenizer")?;
        let n_ids = out_arg(n_ids, "n_ids")?;
        let bytes = slice_arg(text as *const u8, text_len, "text")?;
        let text = std::str::from_utf8(bytes).map_err(|_| FfiError::utf8("text"))?;
        let encoded = tok.inner.encode(text)?;
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
    })
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
        *len = text.len();
        if text.len() + 1 > capacity {
            return Err(FfiError::too_small("decoded text (with its NUL)", text.len() + 1, capacity));
        }
        if buf.is_null() {
            return Err(FfiError::null("buf"));
        }
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf as *mut u8, text.len());
        *buf.add(text.len()) = 0;
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
