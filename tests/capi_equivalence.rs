//! The C ABI forwards to the Rust API without changing results: greedy output through the C
//! functions equals the Rust API's token for token, and a seeded sampled run repeats exactly.

mod common;

use std::ffi::CString;
use std::ptr;

use common::*;
use specdec::ffi::*;
use specdec::{GenerationConfig, Generator, SamplingConfig};

unsafe fn ok(status: specdec_status, err: *mut specdec_error) {
    if status != specdec_status::Ok {
        let msg = std::ffi::CStr::from_ptr(specdec_error_message(err)).to_string_lossy().into_owned();
        specdec_error_free(err);
        panic!("{status:?}: {msg}");
    }
}

unsafe fn load_c(path: &std::path::Path) -> *mut specdec_model {
    let c = CString::new(path.to_str().unwrap()).unwrap();
    let (mut m, mut e) = (ptr::null_mut(), ptr::null_mut());
    ok(specdec_model_load(c.as_ptr(), ptr::null(), &mut m, &mut e), e);
    m
}

/// Generate through the C ABI; returns the new tokens.
unsafe fn generate_c(
    target: *const specdec_model,
    draft: *const specdec_model,
    prompt: &[u32],
    gamma: u32,
    temperature: f32,
    seed: u64,
) -> Vec<u32> {
    let mut e = ptr::null_mut();
    let cfg = specdec_gen_config_new();
    ok(specdec_gen_config_set_gamma(cfg, gamma, &mut e), e);
    ok(specdec_gen_config_set_temperature(cfg, temperature, &mut e), e);
    ok(specdec_gen_config_set_seed(cfg, seed, &mut e), e);
    ok(specdec_gen_config_set_max_new_tokens(cfg, 48, &mut e), e);
    let none: [u32; 0] = [];
    ok(specdec_gen_config_set_eos_ids(cfg, none.as_ptr(), 0, &mut e), e);
    let mut g = ptr::null_mut();
    ok(specdec_generator_new(target, draft, cfg, &mut g, &mut e), e);
    specdec_gen_config_free(cfg);
    ok(specdec_generator_append_tokens(g, prompt.as_ptr(), prompt.len(), &mut e), e);
    let mut reason = specdec_finish_reason::None;
    ok(specdec_generator_generate(g, None, ptr::null_mut(), &mut reason, &mut e), e);
    assert_eq!(reason, specdec_finish_reason::MaxTokens);
    let (mut toks, mut n) = (ptr::null(), 0usize);
    ok(specdec_generator_tokens(g, &mut toks, &mut n, &mut e), e);
    let out = std::slice::from_raw_parts(toks, n)[prompt.len()..].to_vec();
    specdec_generator_free(g);
    out
}

fn generate_rust(prompt: &[u32], gamma: usize, temperature: f32, seed: u64, with_draft: bool) -> Vec<u32> {
    let cfg = GenerationConfig {
        gamma,
        seed,
        max_new_tokens: 48,
        eos_ids: Some(vec![]),
        sampling: SamplingConfig { temperature, ..Default::default() },
        ..Default::default()
    };
    let draft = with_draft.then(|| load(fixture("draft")));
    let mut g = Generator::new(load(fixture("llama")), draft, cfg).unwrap();
    g.append_tokens(prompt).unwrap();
    g.generate(|_| true).unwrap();
    g.tokens()[prompt.len()..].to_vec()
}

#[test]
fn c_abi_matches_the_rust_api() {
    let prompt = tokenizer().encode(PROMPTS[0]).unwrap();
    unsafe {
        let target = load_c(&fixture("llama"));
        let draft = load_c(&fixture("draft"));
        for gamma in [1, 3, 8] {
            let c = generate_c(target, draft, &prompt, gamma, 0.0, 0);
            assert_eq!(c, generate_rust(&prompt, gamma as usize, 0.0, 0, true), "greedy, gamma {gamma}");
            assert_eq!(c, generate_c(target, ptr::null(), &prompt, gamma, 0.0, 0), "greedy speculative vs target-only");
        }
        let a = generate_c(target, draft, &prompt, 4, 1.0, 1234);
        assert_eq!(a, generate_c(target, draft, &prompt, 4, 1.0, 1234), "same seed, same output");
        assert_eq!(a, generate_rust(&prompt, 4, 1.0, 1234, true), "C and Rust sample the same stream");
        assert_ne!(a, generate_c(target, draft, &prompt, 4, 1.0, 1235), "another seed should differ");
        specdec_model_free(draft);
        specdec_model_free(target);
    }
}

/// Proposes the token 1 then whatever followed the last token before (fixed tokens).
unsafe extern "C" fn lookup_drafter(
    _: *mut std::ffi::c_void,
    tokens: *const u32,
    n: usize,
    max: usize,
    _vocab: usize,
    out: *mut u32,
    _probs: *mut f32,
) -> i32 {
    let tokens = std::slice::from_raw_parts(tokens, n);
    let last = tokens[n - 1];
    let next = tokens.windows(2).rev().find(|w| w[0] == last).map_or(1, |w| w[1]);
    let k = max.min(4);
    (0..k).for_each(|i| *out.add(i) = if i == 0 { next } else { 1 });
    k as i32
}

unsafe extern "C" fn failing_drafter(
    _: *mut std::ffi::c_void,
    _: *const u32,
    _: usize,
    _: usize,
    _: usize,
    _: *mut u32,
    _: *mut f32,
) -> i32 {
    -1
}

/// Greedy output through the C ABI's drafter handles (host callback, n-gram, bigram counts, the
/// model) with every policy equals target-only output; a failing callback is reported as
/// SPECDEC_STATUS_CALLBACK and leaves the generator usable.
#[test]
fn c_abi_drafters_keep_greedy_output() {
    let prompt = tokenizer().encode(PROMPTS[2]).unwrap();
    unsafe {
        let target = load_c(&fixture("llama"));
        let draft = load_c(&fixture("draft"));
        let want = generate_c(target, ptr::null(), &prompt, 1, 0.0, 0);
        let mut e = ptr::null_mut();
        let mut drafters = Vec::new();
        let mut d = ptr::null_mut();
        ok(specdec_drafter_new_callback(Some(lookup_drafter), ptr::null_mut(), false, &mut d, &mut e), e);
        drafters.push(("callback", d));
        ok(specdec_drafter_new_ngram(1, 3, 6, &mut d, &mut e), e);
        drafters.push(("ngram", d));
        ok(specdec_drafter_new_counts(2, ptr::null(), &mut d, &mut e), e);
        drafters.push(("bigram", d));
        ok(specdec_drafter_new_model(draft, &mut d, &mut e), e);
        drafters.push(("model", d));
        for (name, drafter) in &drafters {
            for policy in [specdec_draft_policy::Fixed, specdec_draft_policy::Heuristic, specdec_draft_policy::Auto] {
                let cfg = specdec_gen_config_new();
                ok(specdec_gen_config_set_max_new_tokens(cfg, 48, &mut e), e);
                ok(specdec_gen_config_set_eos_ids(cfg, ptr::null(), 0, &mut e), e);
                ok(specdec_gen_config_set_draft_policy(cfg, policy as u32, &mut e), e);
                let mut g = ptr::null_mut();
                ok(specdec_generator_new_with_drafter(target, *drafter, cfg, &mut g, &mut e), e);
                specdec_gen_config_free(cfg);
                ok(specdec_generator_append_tokens(g, prompt.as_ptr(), prompt.len(), &mut e), e);
                let mut reason = specdec_finish_reason::None;
                ok(specdec_generator_generate(g, None, ptr::null_mut(), &mut reason, &mut e), e);
                let (mut toks, mut n) = (ptr::null(), 0usize);
                ok(specdec_generator_tokens(g, &mut toks, &mut n, &mut e), e);
                assert_eq!(&std::slice::from_raw_parts(toks, n)[prompt.len()..], want.as_slice(), "{name} {policy:?}");
                specdec_generator_free(g);
            }
        }
        let cfg = specdec_gen_config_new();
        assert_eq!(specdec_gen_config_set_draft_policy(cfg, 7, &mut e), specdec_status::InvalidArgument);
        specdec_error_free(e);
        e = ptr::null_mut();
        specdec_gen_config_free(cfg);

        let mut failing = ptr::null_mut();
        ok(specdec_drafter_new_callback(Some(failing_drafter), ptr::null_mut(), false, &mut failing, &mut e), e);
        let mut g = ptr::null_mut();
        ok(specdec_generator_new_with_drafter(target, failing, ptr::null(), &mut g, &mut e), e);
        ok(specdec_generator_append_tokens(g, prompt.as_ptr(), prompt.len(), &mut e), e);
        let (mut toks, mut n) = (ptr::null(), 0usize);
        assert_eq!(specdec_generator_step(g, &mut toks, &mut n, &mut e), specdec_status::Callback);
        specdec_error_free(e);
        specdec_generator_free(g);
        specdec_drafter_free(failing);
        assert_eq!(
            specdec_drafter_new_callback(None, ptr::null_mut(), false, &mut failing, ptr::null_mut()),
            specdec_status::NullParameter
        );
        assert_eq!(specdec_drafter_new_ngram(0, 3, 4, &mut failing, ptr::null_mut()), specdec_status::InvalidArgument);
        assert_eq!(specdec_drafter_new_counts(3, ptr::null(), &mut failing, ptr::null_mut()), specdec_status::InvalidArgument);
        for (_, d) in drafters {
            specdec_drafter_free(d);
        }
        specdec_model_free(draft);
        specdec_model_free(target);
    }
}
