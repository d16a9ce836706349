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
unsafe fn generate_c(target: *const specdec_model, draft: *const specdec_model, prompt: &[u32], gamma: u32, temperature: f32, seed: u64) -> Vec<u32> {
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
