//! Tokenizer input: tokenizer.json loading from arbitrary bytes, and encode / decode / streaming
//! decode of arbitrary text and ids through the C ABI on the project's tokenizer. Nothing may
//! panic; encoded ids are in range; decoding its own encoding gives valid UTF-8; the stream
//! decoder's pieces are valid UTF-8 and add up to the full decode.
#![no_main]

use std::ffi::{c_char, CStr};
use std::ptr::{null, null_mut};
use std::sync::OnceLock;

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use specdec::ffi::*;

struct Tok(*mut specdec_tokenizer);
unsafe impl Send for Tok {}
unsafe impl Sync for Tok {}

fn project_tokenizer() -> *const specdec_tokenizer {
    static TOK: OnceLock<Tok> = OnceLock::new();
    TOK.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/fixtures/llama/tokenizer.json\0");
        let mut t = null_mut();
        let s = unsafe { specdec_tokenizer_load(path.as_ptr() as *const c_char, &mut t, null_mut()) };
        assert_eq!(s, specdec_status::Ok, "cannot load {path}");
        Tok(t)
    })
    .0
}

/// The status must be one of the documented ones, never a caught panic; frees the error.
fn ok(status: specdec_status, err: *mut specdec_error, allowed: &[specdec_status]) -> bool {
    if status == specdec_status::Ok {
        assert!(err.is_null());
        return true;
    }
    assert!(!err.is_null(), "failure without an error object");
    let msg = unsafe { CStr::from_ptr(specdec_error_message(err)) }.to_string_lossy().into_owned();
    assert_eq!(unsafe { specdec_error_code(err) }, status);
    assert!(status != specdec_status::Panic, "panic caught at the boundary: {msg}");
    assert!(allowed.contains(&status), "unexpected {status:?}: {msg}");
    assert!(!msg.is_empty());
    unsafe { specdec_error_free(err) };
    false
}

fn decode(tok: *const specdec_tokenizer, ids: &[u32]) -> Option<Vec<u8>> {
    let mut len = 0usize;
    let mut err = null_mut();
    let s = unsafe { specdec_tokenizer_decode(tok, ids.as_ptr(), ids.len(), null_mut(), 0, &mut len, &mut err) };
    if s != specdec_status::BufferTooSmall {
        ok(s, err, &[specdec_status::TokenOutOfRange, specdec_status::Tokenizer]);
        return None;
    }
    unsafe { specdec_error_free(err) };
    let mut buf = vec![0u8; len + 1];
    let mut err = null_mut();
    let s = unsafe {
        specdec_tokenizer_decode(tok, ids.as_ptr(), ids.len(), buf.as_mut_ptr() as *mut c_char, buf.len(), &mut len, &mut err)
    };
    assert!(ok(s, err, &[]), "decode failed with enough room");
    assert_eq!(buf[len], 0);
    buf.truncate(len);
    Some(buf)
}

fn check(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    let tok = project_tokenizer();
    let vocab = unsafe { specdec_tokenizer_vocab_size(tok) } as u32;
    match u.int_in_range(0u8..=3)? {
        // tokenizer.json from arbitrary bytes (the seed corpus holds real ones to mutate).
        0 => {
            let rest = u.take_rest();
            if let Ok(t) = specdec::Tokenizer::from_json_bytes(rest) {
                // A tokenizer that loads must also work on some text without panicking.
                let text = String::from_utf8_lossy(&rest[..rest.len().min(64)]);
                if let Ok(ids) = t.encode(&text) {
                    // What it encodes it must accept back.
                    assert!(
                        ids.iter().all(|&i| (i as usize) < t.vocab_size()),
                        "encode gave ids {ids:?} beyond vocab_size {}",
                        t.vocab_size()
                    );
                    t.decode(&ids).expect("decoding its own encoding");
                }
                let _ = t.decode(&[0, 1, 2, u32::MAX]);
            }
        }
        // Encode arbitrary bytes (valid UTF-8 or not), then decode the ids.
        1 => {
            let capacity = u.int_in_range(0usize..=64)?;
            let text = u.take_rest();
            let mut ids = vec![0u32; capacity];
            let (mut n, mut err) = (0usize, null_mut());
            let s = unsafe {
                specdec_tokenizer_encode(
                    tok,
                    text.as_ptr() as *const c_char,
                    text.len(),
                    ids.as_mut_ptr(),
                    capacity,
                    &mut n,
                    &mut err,
                )
            };
            let valid = std::str::from_utf8(text).is_ok();
            if s == specdec_status::InvalidUtf8 {
                assert!(!valid);
            }
            if !ok(s, err, &[specdec_status::InvalidUtf8, specdec_status::BufferTooSmall, specdec_status::Tokenizer]) {
                if s != specdec_status::BufferTooSmall {
                    return Ok(());
                }
                assert!(n > capacity);
                ids = vec![0; n];
                let mut err = null_mut();
                let s = unsafe {
                    specdec_tokenizer_encode(
                        tok,
                        text.as_ptr() as *const c_char,
                        text.len(),
                        ids.as_mut_ptr(),
                        n,
                        &mut n,
                        &mut err,
                    )
                };
                assert!(ok(s, err, &[]), "encode failed with enough room");
            }
            assert!(valid, "invalid UTF-8 was encoded");
            ids.truncate(n);
            assert!(ids.iter().all(|&t| t < vocab), "encode gave an id outside the vocabulary");
            let text_out = decode(tok, &ids).expect("decoding an encoding failed");
            assert!(std::str::from_utf8(&text_out).is_ok());
        }
        // Decode arbitrary ids (some out of range) in one call and through a stream decoder.
        _ => {
            let n = u.int_in_range(0usize..=48)?;
            let ids: Vec<u32> = (0..n)
                .map(|_| Ok(if u.ratio(1u8, 16)? { u.arbitrary::<u32>()? } else { u.int_in_range(0..=vocab.saturating_sub(1))? }))
                .collect::<Result<_>>()?;
            let whole = decode(tok, &ids);
            let mut d = null_mut();
            assert!(ok(unsafe { specdec_stream_decoder_new(tok, &mut d, null_mut()) }, null_mut(), &[]));
            let mut streamed = Vec::new();
            let mut rest = &ids[..];
            let mut refused = false;
            while !rest.is_empty() {
                let k = u.int_in_range(1..=rest.len()).unwrap_or(1);
                let (mut text, mut len, mut err) = (null(), 0usize, null_mut());
                let s = unsafe { specdec_stream_decoder_push(d, rest.as_ptr(), k, &mut text, &mut len, &mut err) };
                if ok(s, err, &[specdec_status::TokenOutOfRange, specdec_status::Tokenizer]) {
                    let piece = unsafe { std::slice::from_raw_parts(text as *const u8, len) };
                    assert!(std::str::from_utf8(piece).is_ok(), "stream piece is not UTF-8");
                    streamed.extend_from_slice(piece);
                } else {
                    refused = true;
                }
                rest = &rest[k..];
            }
            let (mut text, mut len, mut err) = (null(), 0usize, null_mut());
            let s = unsafe { specdec_stream_decoder_flush(d, &mut text, &mut len, &mut err) };
            if ok(s, err, &[specdec_status::Tokenizer]) {
                streamed.extend_from_slice(unsafe { std::slice::from_raw_parts(text as *const u8, len) });
            }
            unsafe { specdec_stream_decoder_free(d) };
            if let (Some(whole), false) = (whole, refused) {
                // The pieces add up to the whole decode.
                assert_eq!(String::from_utf8_lossy(&streamed), String::from_utf8_lossy(&whole), "ids {ids:?}");
            }
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = check(data);
});
