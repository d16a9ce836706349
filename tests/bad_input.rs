//! Bad input to the Rust API and to the CLI ends in a clear error, never a panic, and leaves
//! models and generators usable.

mod common;

use std::process::Command;

use common::*;
use specdec::{Error, GenerationConfig, Generator, Model, ModelOptions, SamplingConfig, Tokenizer};

fn scratch(name: &str) -> std::path::PathBuf {
    // One folder per file: a model file's siblings (config, tokenizer) are read with it.
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bad_input").join(name.replace('.', "_"));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn load_err(path: &std::path::Path) -> Error {
    specdec::runtime::init(None).unwrap();
    match Model::load(path, &ModelOptions::default()) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e,
    }
}

#[test]
fn unloadable_models_are_refused_with_their_cause() {
    let e = load_err(std::path::Path::new("/no/such/model"));
    assert!(matches!(e, Error::Io { .. }) && e.to_string().contains("/no/such/model"), "{e}");
    let e = load_err(&models_dir());
    assert!(e.to_string().contains("no model.onnx"), "{e}");

    let not_onnx = scratch("not-onnx.onnx");
    std::fs::write(&not_onnx, "this is not a protobuf").unwrap();
    let e = load_err(&not_onnx);
    assert!(matches!(e, Error::InvalidModel { .. }), "{e}");

    let truncated = scratch("truncated.onnx");
    let bytes = std::fs::read(fixture("llama").join("model.onnx")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let e = load_err(&truncated);
    assert!(matches!(e, Error::InvalidModel { .. }), "{e}");
    assert_eq!(e.code(), 7004);
}

#[test]
fn a_draft_with_another_vocabulary_is_refused() {
    let e = Generator::new(load(fixture("llama")), Some(load(fixture("vocab600"))), GenerationConfig::default()).err().unwrap();
    assert!(matches!(e, Error::VocabMismatch(_)), "{e}");
    assert!(e.to_string().contains("512") && e.to_string().contains("600"), "{e}");
}

#[test]
fn out_of_range_settings_are_refused() {
    let target = load(fixture("llama"));
    for cfg in [
        GenerationConfig { gamma: 0, ..Default::default() },
        GenerationConfig { gamma: 65, ..Default::default() },
        GenerationConfig { sampling: SamplingConfig { temperature: f32::NAN, ..Default::default() }, ..Default::default() },
        GenerationConfig { sampling: SamplingConfig { top_p: 0.0, ..Default::default() }, ..Default::default() },
        GenerationConfig { eos_ids: Some(vec![9999]), ..Default::default() },
        GenerationConfig { stop_sequences: vec![vec![1, 600]], ..Default::default() },
        GenerationConfig { stop_sequences: vec![vec![]], ..Default::default() },
    ] {
        let e = Generator::new(target.clone(), None, cfg.clone()).err().unwrap_or_else(|| panic!("{cfg:?} accepted"));
        assert!(matches!(e, Error::InvalidArgument(_) | Error::TokenOutOfRange { .. }), "{e}");
    }
}

#[test]
fn bad_tokens_and_prompts_leave_the_generator_usable() {
    let target = load(fixture("llama"));
    let cfg = GenerationConfig { max_new_tokens: 8, eos_ids: Some(vec![]), ..Default::default() };
    let mut g = Generator::new(target.clone(), Some(load(fixture("draft"))), cfg).unwrap();
    assert!(matches!(g.step(), Err(Error::InvalidArgument(m)) if m.contains("empty prompt")));
    assert!(matches!(g.append_tokens(&[1, 512]), Err(Error::TokenOutOfRange { id: 512, vocab_size: 512 })));
    let limit = target.info().context_limit;
    assert!(matches!(g.append_tokens(&vec![5; limit]), Err(Error::ContextLimit { .. })));
    assert!(g.tokens().is_empty(), "a refused prompt must not be half-appended");
    g.append_tokens(&[10, 20, 30]).unwrap();
    g.generate(|_| true).unwrap();
    assert_eq!(g.tokens().len(), 3 + 8);
}

#[test]
fn reaching_the_context_limit_is_an_error_not_garbage() {
    let target = load(fixture("llama"));
    let limit = target.info().context_limit;
    let cfg = GenerationConfig { max_new_tokens: 100, eos_ids: Some(vec![]), ..Default::default() };
    let mut g = Generator::new(target, Some(load(fixture("draft"))), cfg).unwrap();
    g.append_tokens(&vec![7; limit - 20]).unwrap();
    let e = g.generate(|_| true).unwrap_err();
    assert!(matches!(e, Error::ContextLimit { limit: l, .. } if l == limit), "{e}");
    assert_eq!(g.tokens().len(), limit, "generation should fill the context exactly, then stop");
}

#[test]
fn a_corrupt_tokenizer_is_refused() {
    let bad = scratch("tokenizer.json");
    std::fs::write(&bad, "{\"model\": 3").unwrap();
    assert!(matches!(Tokenizer::load(&bad), Err(Error::Tokenizer(_))));
    assert!(matches!(Tokenizer::load("/no/such/tokenizer.json"), Err(Error::Io { .. })));
    assert!(matches!(tokenizer().decode(&[100_000]), Err(Error::TokenOutOfRange { .. })));
}

/// Run the CLI; returns (exit code, stderr).
fn cli(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_specdec")).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn cli_reports_bad_input_in_one_line() {
    let llama = fixture("llama");
    let llama = llama.to_str().unwrap();
    let vocab600 = fixture("vocab600");
    let not_onnx = scratch("cli-not-onnx.onnx");
    std::fs::write(&not_onnx, "garbage").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["generate", "--target", "/no/such/dir", "--prompt", "x"], "/no/such/dir"),
        (vec!["generate", "--target", not_onnx.to_str().unwrap(), "--prompt-ids", "1"], "not a loadable ONNX model"),
        (vec!["generate", "--target", llama, "--draft", vocab600.to_str().unwrap(), "--prompt", "x"], "vocabulary mismatch"),
        (vec!["generate", "--target", llama, "--prompt", ""], "prompt is empty"),
        (vec!["generate", "--target", llama, "--prompt-ids", "1,512"], "token id 512 is out of range"),
        (vec!["generate", "--target", llama, "--prompt-ids", "-1"], "token id -1 is out of range"),
        (vec!["generate", "--target", llama, "--prompt-ids", "1,x"], "not an integer"),
        (vec!["generate", "--target", llama, "--prompt", "x", "--gamma", "0"], "gamma"),
        (vec!["generate", "--target", llama, "--prompt", "x", "--gamma", "100000"], "gamma"),
        (vec!["generate", "--target", llama, "--prompt", "x", "--temperature", "-1"], "temperature"),
        (vec!["generate", "--target", llama, "--prompt", "x", "--top-p", "2"], "top_p"),
        (vec!["generate", "--target", llama, "--prompt", "x", "--bogus"], "unknown option"),
        (vec!["generate", "--prompt", "x"], "--target is required"),
        (
            vec!["generate", "--target", llama, "--prompt", "x", "--ort-lib", "/no/such/libonnxruntime.so"],
            "/no/such/libonnxruntime.so",
        ),
        (vec!["frobnicate"], "unknown command"),
    ];
    for (args, needle) in cases {
        let (code, stderr) = cli(&args);
        assert_ne!(code, 0, "{args:?} succeeded");
        assert!(!stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: not one line: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr:?} lacks {needle:?}");
    }
}

#[test]
fn cli_json_output_has_stable_keys() {
    let out = Command::new(env!("CARGO_BIN_EXE_specdec"))
        .args(["generate", "--target", fixture("llama").to_str().unwrap(), "--draft", fixture("draft").to_str().unwrap()])
        .args([
            "--prompt",
            "def f(x):",
            "--max-new-tokens",
            "12",
            "--samples",
            "3",
            "--temperature",
            "1",
            "--seed",
            "5",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    for (i, v) in lines.iter().enumerate() {
        assert_eq!(v["seed"], 5 + i as u64);
        assert!(v["tokens"].as_array().unwrap().len() <= 12);
        assert!(v["text"].is_string());
        for key in [
            "target_calls",
            "draft_calls",
            "drafted",
            "accepted",
            "acceptance_rate",
            "tokens_per_target_call",
            "draft_ms",
            "target_ms",
            "other_ms",
        ] {
            assert!(v["stats"].get(key).is_some(), "missing stats.{key}");
        }
    }
}
