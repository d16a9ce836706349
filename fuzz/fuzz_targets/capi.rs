//! The C ABI's configuration and generation argument layer, driven by a sequence of operations
//! decoded from the fuzz input: config setters with arbitrary values, generator creation with or
//! without a draft or config, prompts with arbitrary ids, steps, short generations, cancellation,
//! stats with arbitrary struct sizes, NULL error slots; draft policies, confidence stop, the KV
//! memory budget; drafters (model, n-gram, counts, and a host callback whose proposals, return
//! value and probability rows come from the fuzz input too). The tiny fixture models are loaded
//! once.
//!
//! Checked after every call: the status is OK or one documented for that function, never a
//! caught panic; a failing call with an error slot stores an error with that code and a
//! message; a failed constructor leaves `*out` NULL; the sequence stays within the vocabulary and
//! the context, and a failed append leaves it unchanged.
#![no_main]

use std::ffi::{c_char, c_void, CStr};
use std::ptr::{null, null_mut};
use std::sync::OnceLock;

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use specdec::ffi::*;
use specdec_status as S;

struct Fixtures {
    target: *mut specdec_model,
    draft: *mut specdec_model,
    other_vocab: *mut specdec_model,
    tok: *mut specdec_tokenizer,
}
unsafe impl Send for Fixtures {}
unsafe impl Sync for Fixtures {}

fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| unsafe {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/fixtures/");
        let opts = specdec_model_options_new();
        assert_eq!(specdec_model_options_set_intra_threads(opts, 1, null_mut()), S::Ok);
        let load = |name: &str| {
            let path = format!("{dir}{name}\0");
            let mut m = null_mut();
            let mut err = null_mut();
            let s = specdec_model_load(path.as_ptr() as *const c_char, opts, &mut m, &mut err);
            assert_eq!(s, S::Ok, "{path}: {:?}", CStr::from_ptr(specdec_error_message(err)));
            m
        };
        let f = Fixtures { target: load("llama"), draft: load("draft"), other_vocab: load("vocab600"), tok: null_mut() };
        specdec_model_options_free(opts);
        let mut tok = null_mut();
        let path = format!("{dir}llama\0");
        assert_eq!(specdec_tokenizer_load(path.as_ptr() as *const c_char, &mut tok, null_mut()), S::Ok);
        Fixtures { tok, ..f }
    })
}

/// Checks one call's outcome against the statuses documented for it, then frees the error.
/// Returns whether the call succeeded.
fn outcome(what: &str, status: specdec_status, err: *mut specdec_error, slot: bool, allowed: &[specdec_status]) -> bool {
    if status == S::Ok {
        assert!(err.is_null(), "{what}: success stored an error");
        return true;
    }
    if !slot {
        assert!(err.is_null());
        assert!(status != S::Panic, "{what}: panic caught at the boundary");
        assert!(allowed.contains(&status), "{what}: undocumented status {status:?}");
        return false;
    }
    assert!(!err.is_null(), "{what}: failure without an error object");
    let msg = unsafe { CStr::from_ptr(specdec_error_message(err)) }.to_string_lossy().into_owned();
    assert_eq!(unsafe { specdec_error_code(err) }, status);
    assert!(status != S::Panic, "{what}: panic caught at the boundary: {msg}");
    assert!(allowed.contains(&status), "{what}: undocumented status {status:?}: {msg}");
    assert!(!msg.is_empty(), "{what}: empty message");
    unsafe { specdec_error_free(err) };
    false
}

/// Values near the edges of each setter's range, or arbitrary bits.
fn float(u: &mut Unstructured) -> Result<f32> {
    const EDGES: [f32; 13] =
        [0.0, -0.0, 0.5, 1.0, 1.5, 2.0, -1.0, 1e-30, 1e30, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MIN_POSITIVE];
    if u.ratio(1u8, 4)? {
        Ok(f32::from_bits(u.arbitrary()?))
    } else {
        Ok(*u.choose(&EDGES)?)
    }
}

fn small_u32(u: &mut Unstructured) -> Result<u32> {
    Ok(match u.int_in_range(0u8..=3)? {
        0 => u.int_in_range(0..=8)?,
        1 => u.int_in_range(0..=70)?,
        2 => u32::MAX,
        _ => u.arbitrary()?,
    })
}

/// Token ids, mostly inside the 512-token vocabulary.
fn ids(u: &mut Unstructured, max: usize) -> Result<Vec<u32>> {
    let n = u.int_in_range(0..=max)?;
    (0..n)
        .map(|_| {
            Ok(match u.int_in_range(0u8..=15)? {
                0 => *u.choose(&[511, 512, 600, u32::MAX, i32::MAX as u32, 0x8000_0000])?,
                _ => u.int_in_range(0..=511)?,
            })
        })
        .collect()
}

/// A C string from fuzz bytes (any bytes, valid UTF-8 or not), NUL-terminated.
fn cstring(u: &mut Unstructured) -> Result<Vec<u8>> {
    let n = u.int_in_range(0usize..=12)?;
    let mut v: Vec<u8> = u.bytes(n)?.iter().map(|&b| if b == 0 { b'a' } else { b }).collect();
    v.push(0);
    Ok(v)
}

thread_local! {
    /// Bytes the host draft callback reads its answers from (the end of the fuzz input).
    static TAPE: std::cell::RefCell<(Vec<u8>, usize)> = const { std::cell::RefCell::new((Vec::new(), 0)) };
}

fn tape_byte() -> u8 {
    TAPE.with(|t| {
        let mut t = t.borrow_mut();
        let (bytes, at) = &mut *t;
        let b = if bytes.is_empty() { 0 } else { bytes[*at % bytes.len()] };
        *at += 1;
        b
    })
}

/// A host drafter that answers from the tape: sometimes a failure, too many proposals, ids
/// outside the vocabulary, and probability rows that are valid, unnormalised, zero at the
/// proposal, negative, NaN or infinite.
unsafe extern "C" fn tape_drafter(
    _user_data: *mut c_void,
    tokens: *const u32,
    n_tokens: usize,
    max: usize,
    vocab: usize,
    proposals: *mut u32,
    probs: *mut f32,
) -> i32 {
    assert!(n_tokens > 0 && !tokens.is_null() && max > 0 && vocab == 512 && !proposals.is_null());
    let n = match tape_byte() % 16 {
        0 => return -1,
        1 => max as i32 + 1,
        2 => 0,
        b => ((b as usize) % (max + 1)) as i32,
    };
    for i in 0..(n as usize).min(max) {
        let b = tape_byte();
        *proposals.add(i) = match b % 32 {
            0 => 512,
            1 => u32::MAX,
            _ => (b as u32 * 7 + tape_byte() as u32) % 512,
        };
        if !probs.is_null() {
            let row = std::slice::from_raw_parts_mut(probs.add(i * vocab), vocab);
            let p = *proposals.add(i) as usize;
            match tape_byte() % 8 {
                0 => row.fill(1.0 / vocab as f32),
                1 => row.fill(0.0),
                2 => row.fill(f32::NAN),
                3 => {
                    row.fill(0.0);
                    row[(p + 1) % vocab] = 1.0;
                }
                4 => row.fill(-1.0),
                5 => row.fill(f32::INFINITY),
                6 => row.fill(2.0),
                _ => {
                    row.fill(0.0);
                    if p < vocab {
                        row[p] = 1.0;
                    }
                }
            }
        }
    }
    n
}

struct State {
    config: *mut specdec_gen_config,
    generator: *mut specdec_generator,
    vocab: u32,
    limit: usize,
    /// Iterations run by this input; each costs model calls, so they are capped.
    iterations: usize,
}

const MAX_ITERATIONS: usize = 12;

/// What a step or a generation may fail with: a host drafter's failure or bad answer
/// (Callback, InvalidArgument, TokenOutOfRange) included.
const STEP_ERRORS: [specdec_status; 6] =
    [S::NullParameter, S::InvalidArgument, S::Cancelled, S::ContextLimit, S::Callback, S::TokenOutOfRange];

unsafe extern "C" fn stop_after(user_data: *mut c_void, tokens: *const u32, n: usize) -> i32 {
    let left = &mut *(user_data as *mut usize);
    assert!(n > 0 && !tokens.is_null());
    for &t in std::slice::from_raw_parts(tokens, n) {
        assert!(t < 512, "callback got token {t}");
    }
    *left = left.saturating_sub(1);
    (*left == 0) as i32
}

unsafe fn op(u: &mut Unstructured, st: &mut State) -> Result<()> {
    let f = fixtures();
    // Half the calls pass an error slot, half NULL.
    let slot = u.arbitrary::<bool>()?;
    let mut err: *mut specdec_error = null_mut();
    let e = if slot { &mut err as *mut _ } else { null_mut() };
    // The config handle, or sometimes NULL.
    let cfg = if u.ratio(1u8, 20)? { null_mut() } else { st.config };
    let null_or_invalid = [S::NullParameter, S::InvalidArgument];
    match u.int_in_range(0u8..=30)? {
        0 => outcome("set_gamma", specdec_gen_config_set_gamma(cfg, small_u32(u)?, e), err, slot, &null_or_invalid),
        1 => outcome("set_temperature", specdec_gen_config_set_temperature(cfg, float(u)?, e), err, slot, &null_or_invalid),
        2 => outcome("set_top_k", specdec_gen_config_set_top_k(cfg, small_u32(u)?, e), err, slot, &null_or_invalid),
        3 => outcome("set_top_p", specdec_gen_config_set_top_p(cfg, float(u)?, e), err, slot, &null_or_invalid),
        4 => outcome("set_min_p", specdec_gen_config_set_min_p(cfg, float(u)?, e), err, slot, &null_or_invalid),
        5 => outcome(
            "set_repetition_penalty",
            specdec_gen_config_set_repetition_penalty(cfg, float(u)?, e),
            err,
            slot,
            &null_or_invalid,
        ),
        6 => outcome("set_seed", specdec_gen_config_set_seed(cfg, u.arbitrary()?, e), err, slot, &null_or_invalid),
        7 => outcome(
            "set_max_new_tokens",
            specdec_gen_config_set_max_new_tokens(cfg, small_u32(u)?, e),
            err,
            slot,
            &null_or_invalid,
        ),
        8 => {
            let v = ids(u, 4)?;
            let p = if v.is_empty() && u.arbitrary()? { null() } else { v.as_ptr() };
            outcome("set_eos_ids", specdec_gen_config_set_eos_ids(cfg, p, v.len(), e), err, slot, &null_or_invalid)
        }
        9 => outcome("use_model_eos_ids", specdec_gen_config_use_model_eos_ids(cfg, e), err, slot, &null_or_invalid),
        10 => {
            let v = ids(u, 4)?;
            let (p, n) = match u.int_in_range(0u8..=7)? {
                0 => (null(), v.len()),
                _ => (v.as_ptr(), v.len()),
            };
            outcome("add_stop_tokens", specdec_gen_config_add_stop_tokens(cfg, p, n, e), err, slot, &null_or_invalid)
        }
        11 => {
            let s = cstring(u)?;
            outcome(
                "add_stop_text",
                specdec_gen_config_add_stop_text(cfg, s.as_ptr() as *const c_char, e),
                err,
                slot,
                &[S::NullParameter, S::InvalidArgument, S::InvalidUtf8],
            )
        }
        12 => outcome("clear_stops", specdec_gen_config_clear_stops(cfg, e), err, slot, &null_or_invalid),
        13 => {
            // A new generator replaces the current one.
            let draft = match u.int_in_range(0u8..=5)? {
                0 => f.other_vocab as *const _,
                1 | 2 => null(),
                _ => f.draft as *const _,
            };
            let mut out = 1usize as *mut specdec_generator; // garbage, must be overwritten
            let s = specdec_generator_new(f.target, draft, cfg, &mut out, e);
            let allowed = [S::NullParameter, S::InvalidArgument, S::VocabMismatch, S::TokenOutOfRange];
            if outcome("generator_new", s, err, slot, &allowed) {
                assert!(!out.is_null());
                specdec_generator_free(st.generator);
                st.generator = out;
            } else {
                assert!(out.is_null(), "failed generator_new left *out set");
                if draft == f.other_vocab as *const _ {
                    assert_eq!(s, S::VocabMismatch);
                }
            }
            true
        }
        14 => {
            let v = if u.ratio(1u8, 32)? { vec![7; st.limit + u.int_in_range(0..=2)? - 1] } else { ids(u, 24)? };
            let before = tokens(st.generator);
            let p = if v.is_empty() && u.arbitrary()? { null() } else { v.as_ptr() };
            let s = specdec_generator_append_tokens(st.generator, p, v.len(), e);
            if !outcome("append_tokens", s, err, slot, &[S::NullParameter, S::TokenOutOfRange, S::ContextLimit, S::MemoryBudget])
            {
                assert_eq!(tokens(st.generator), before, "a failed append changed the sequence");
                if v.iter().any(|&t| t >= st.vocab) && !st.generator.is_null() {
                    assert_eq!(s, S::TokenOutOfRange);
                }
            }
            true
        }
        15 if st.iterations < MAX_ITERATIONS => {
            st.iterations += 1;
            let (mut t, mut n) = (1usize as *const u32, 7usize);
            let s = specdec_generator_step(st.generator, &mut t, &mut n, e);
            if outcome("step", s, err, slot, &STEP_ERRORS) {
                let new = if n == 0 { &[][..] } else { std::slice::from_raw_parts(t, n) };
                assert!(new.iter().all(|&x| x < st.vocab));
            } else if !st.generator.is_null() {
                assert_eq!((t, n), (null(), 0), "failed step left outputs set");
            }
            true
        }
        16 if st.iterations < MAX_ITERATIONS => {
            // A short generation: the callback stops it after a few iterations.
            let mut left: usize = u.int_in_range(1..=3)?;
            st.iterations += left;
            let mut reason = specdec_finish_reason::None;
            let s = specdec_generator_generate(
                st.generator,
                Some(stop_after),
                &mut left as *mut usize as *mut c_void,
                &mut reason,
                e,
            );
            if outcome("generate", s, err, slot, &STEP_ERRORS) {
                assert!(reason != specdec_finish_reason::None);
                assert_eq!(specdec_generator_finish_reason(st.generator), reason);
            }
            true
        }
        17 => {
            specdec_generator_cancel(st.generator);
            true
        }
        18 => {
            specdec_generator_clear_cancel(st.generator);
            true
        }
        19 => {
            let size = match u.int_in_range(0u8..=3)? {
                0 => u.int_in_range(0..=200)?,
                1 => SPECDEC_STATS_V1_SIZE - 1,
                _ => std::mem::size_of::<specdec_stats>(),
            };
            // Room for a larger caller struct than this library knows.
            let mut buf = [0xA5u8; 256];
            (buf.as_mut_ptr() as *mut usize).write_unaligned(size);
            let s = specdec_generator_stats(st.generator, buf.as_mut_ptr() as *mut specdec_stats, e);
            if outcome("stats", s, err, slot, &null_or_invalid) {
                let written = (buf.as_ptr() as *const usize).read_unaligned();
                assert!(written <= size && written >= SPECDEC_STATS_V1_SIZE);
                assert!(buf[written..].iter().all(|&b| b == 0xA5), "stats wrote past struct_size");
            } else if !st.generator.is_null() {
                assert!(size < SPECDEC_STATS_V1_SIZE);
            }
            true
        }
        20 => {
            let tok = if u.ratio(1u8, 8)? { null() } else { f.tok as *const _ };
            outcome("set_tokenizer", specdec_generator_set_tokenizer(st.generator, tok, e), err, slot, &[S::NullParameter])
        }
        21 => {
            // Reset the config to the defaults (a fresh object).
            specdec_gen_config_free(st.config);
            st.config = specdec_gen_config_new();
            assert!(!st.config.is_null());
            true
        }
        22 => {
            specdec_generator_free(st.generator);
            st.generator = null_mut();
            true
        }
        23 => {
            let (mut t, mut n) = (null(), 0usize);
            outcome("tokens", specdec_generator_tokens(st.generator, &mut t, &mut n, e), err, slot, &[S::NullParameter])
        }
        25 => outcome(
            "set_draft_policy",
            specdec_gen_config_set_draft_policy(cfg, *u.choose(&[0, 1, 2, 3, u32::MAX])?, e),
            err,
            slot,
            &null_or_invalid,
        ),
        26 => {
            outcome("set_confidence_stop", specdec_gen_config_set_confidence_stop(cfg, float(u)?, e), err, slot, &null_or_invalid)
        }
        27 => {
            let bytes = match u.int_in_range(0u8..=3)? {
                0 => 0,
                1 => u.int_in_range(1u64..=100_000)?,
                2 => u.int_in_range(100_000u64..=10_000_000)?,
                _ => u.arbitrary()?,
            };
            outcome("set_kv_memory_limit", specdec_gen_config_set_kv_memory_limit(cfg, bytes, e), err, slot, &null_or_invalid)
        }
        28 | 29 => {
            // A generator with a drafter (made here, freed right after: the generator keeps
            // what it needs).
            let mut d: *mut specdec_drafter = null_mut();
            let made = match u.int_in_range(0u8..=4)? {
                0 => specdec_drafter_new_model(if u.ratio(1u8, 4)? { f.other_vocab } else { f.draft }, &mut d, null_mut()),
                1 => {
                    let (a, b, c) = (small_u32(u)?, small_u32(u)?, small_u32(u)?);
                    let s = specdec_drafter_new_ngram(a, b, c, &mut d, e);
                    outcome("drafter_new_ngram", s, err, slot, &null_or_invalid);
                    s
                }
                2 => {
                    let path = if u.arbitrary()? { null() } else { c"/no/such/counts.txt".as_ptr() };
                    let s = specdec_drafter_new_counts(small_u32(u)? % 4, path, &mut d, e);
                    outcome("drafter_new_counts", s, err, slot, &[S::NullParameter, S::InvalidArgument, S::Io]);
                    s
                }
                _ => specdec_drafter_new_callback(Some(tape_drafter), null_mut(), u.arbitrary()?, &mut d, null_mut()),
            };
            if made == S::Ok {
                let mut err: *mut specdec_error = null_mut();
                let e = if slot { &mut err as *mut _ } else { null_mut() };
                let mut out = null_mut();
                let s = specdec_generator_new_with_drafter(f.target, d, cfg, &mut out, e);
                let allowed = [S::NullParameter, S::InvalidArgument, S::VocabMismatch, S::TokenOutOfRange];
                if outcome("generator_new_with_drafter", s, err, slot, &allowed) {
                    specdec_generator_free(st.generator);
                    st.generator = out;
                } else {
                    assert!(out.is_null());
                }
                specdec_drafter_free(d);
            } else {
                assert!(d.is_null());
            }
            true
        }
        30 => {
            let mut d = 1usize as *mut specdec_drafter;
            let s = specdec_drafter_new_callback(None, null_mut(), false, &mut d, e);
            outcome("drafter_new_callback(NULL)", s, err, slot, &[S::NullParameter]);
            assert!(s == S::NullParameter && d.is_null());
            true
        }
        _ => {
            // Out-pointer arguments NULL.
            let s = specdec_generator_step(st.generator, null_mut(), null_mut(), e);
            outcome("step(NULL outs)", s, err, slot, &[S::NullParameter]);
            assert_eq!(s, S::NullParameter);
            true
        }
    };
    // Invariants of the generator after any call.
    let seq = tokens(st.generator);
    assert!(seq.len() <= st.limit, "sequence of {} beyond the context {}", seq.len(), st.limit);
    assert!(seq.iter().all(|&t| t < st.vocab), "token outside the vocabulary");
    Ok(())
}

unsafe fn tokens(g: *const specdec_generator) -> Vec<u32> {
    if g.is_null() {
        return Vec::new();
    }
    let (mut t, mut n) = (null(), 0usize);
    assert_eq!(specdec_generator_tokens(g, &mut t, &mut n, null_mut()), S::Ok);
    if n == 0 {
        Vec::new()
    } else {
        std::slice::from_raw_parts(t, n).to_vec()
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixtures();
    // The first part drives the calls, the rest answers the host drafter.
    let split = data.len() * 3 / 4;
    TAPE.with(|t| *t.borrow_mut() = (data[split..].to_vec(), 0));
    let mut u = Unstructured::new(&data[..split]);
    unsafe {
        let mut st = State {
            config: specdec_gen_config_new(),
            generator: null_mut(),
            vocab: specdec_model_vocab_size(f.target) as u32,
            limit: specdec_model_context_limit(f.target).min(specdec_model_context_limit(f.draft)),
            iterations: 0,
        };
        for _ in 0..64 {
            if u.is_empty() || op(&mut u, &mut st).is_err() {
                break;
            }
        }
        specdec_generator_free(st.generator);
        specdec_gen_config_free(st.config);
    }
});
