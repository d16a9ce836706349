//! Chat templates against Hugging Face transformers, byte for byte: tests/chat/*.json hold real
//! templates (Llama-3, Qwen2, Qwen2.5, Phi-3, Mistral, Zephyr in the list form, and one for
//! tojson and Python string methods) with the renderings `apply_chat_template` gave for
//! multi-turn conversations (made by tests/chat/make_expected.py). Each template goes into a
//! tokenizer_config.json next to the fixture tokenizer, loaded by `Tokenizer::load` as a model
//! folder would be. Also encode/decode with and without special tokens and token<->id lookup
//! (tests/chat/bos: the fixture tokenizer with a BOS-adding post-processor).

use std::path::{Path, PathBuf};

use serde_json::Value;
use specdec::tokenizer::ChatMessage;
use specdec::Tokenizer;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("specdec-chat-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A tokenizer folder: the fixture tokenizer.json and `config` as tokenizer_config.json.
fn folder(name: &str, config: &Value) -> PathBuf {
    let d = scratch(name);
    std::fs::copy(root().join("models/fixtures/llama/tokenizer.json"), d.join("tokenizer.json")).unwrap();
    std::fs::write(d.join("tokenizer_config.json"), serde_json::to_string_pretty(config).unwrap()).unwrap();
    d
}

fn messages(v: &Value) -> Vec<ChatMessage> {
    v.as_array().unwrap().iter().map(|m| ChatMessage::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap())).collect()
}

fn load_cases(name: &str) -> Value {
    let text = std::fs::read_to_string(root().join("tests/chat").join(format!("{name}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn check_template(name: &str) {
    let data = load_cases(name);
    let dir = folder(name, &data["tokenizer_config"]);
    let tok = Tokenizer::load(&dir).unwrap();
    let mut checked = 0;
    for case in data["cases"].as_array().unwrap() {
        let conv = case["conversation"].as_str().unwrap();
        let agp = case["add_generation_prompt"].as_bool().unwrap();
        let msgs = messages(&data["conversations"][conv]);
        let got = tok.apply_chat_template(&msgs, agp);
        match (&case["expected"], &case["error"]) {
            (Value::String(want), _) => {
                let got = got.unwrap_or_else(|e| panic!("{name}/{conv}/{agp}: {e}"));
                assert_eq!(got, *want, "{name}/{conv}/add_generation_prompt={agp}");
            }
            (_, Value::String(err)) => {
                let e = got.expect_err(&format!("{name}/{conv}/{agp}: rendered, transformers raised {err}"));
                assert!(e.to_string().contains(err.as_str()), "{name}/{conv}/{agp}: {e} lacks {err}");
            }
            _ => panic!("{name}: case without expected or error"),
        }
        checked += 1;
    }
    assert!(checked >= 6, "{name}: {checked} cases");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn llama3_matches_transformers() {
    check_template("llama3");
}

#[test]
fn qwen2_matches_transformers() {
    check_template("qwen2");
}

#[test]
fn qwen2_5_matches_transformers() {
    check_template("qwen2_5");
}

#[test]
fn phi3_matches_transformers() {
    check_template("phi3");
}

#[test]
fn mistral_matches_transformers_and_raises_its_exception() {
    check_template("mistral");
}

#[test]
fn the_default_of_a_template_list_is_used() {
    check_template("zephyr_list");
}

#[test]
fn tojson_and_python_methods_match_transformers() {
    check_template("pymethods");
}

#[test]
fn an_explicit_template_overrides_the_files() {
    let data = load_cases("llama3");
    let dir = folder("override", &data["tokenizer_config"]);
    let mut tok = Tokenizer::load(dir.join("tokenizer.json")).unwrap();
    assert!(tok.chat_template().unwrap().is_some());
    let qwen = load_cases("qwen2");
    let src = qwen["tokenizer_config"]["chat_template"].as_str().unwrap();
    tok.set_chat_template(src).unwrap();
    let msgs = messages(&data["conversations"]["user_assistant_user"]);
    let want = qwen["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["conversation"] == "user_assistant_user" && c["add_generation_prompt"] == true)
        .unwrap();
    assert_eq!(tok.apply_chat_template(&msgs, true).unwrap(), want["expected"].as_str().unwrap());
    // The special tokens are still the folder's.
    tok.set_chat_template("{{ bos_token }}|{{ eos_token }}|{{ pad_token }}").unwrap();
    assert_eq!(tok.apply_chat_template(&[], false).unwrap(), "<|begin_of_text|>|<|eot_id|>|");
    // A template that does not compile is refused and the one in use stays.
    assert!(tok.set_chat_template("{% if %}").unwrap_err().to_string().contains("chat template"));
    assert_eq!(tok.apply_chat_template(&[], false).unwrap(), "<|begin_of_text|>|<|eot_id|>|");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn no_template_or_a_broken_config_is_an_error_only_when_asked() {
    let tok = Tokenizer::load(root().join("models/fixtures/llama")).unwrap();
    assert!(tok.chat_template().unwrap().is_none());
    let e = tok.apply_chat_template(&[ChatMessage::new("user", "hi")], true).unwrap_err();
    assert!(e.to_string().contains("no chat template"), "{e}");

    let d = scratch("broken");
    std::fs::copy(root().join("models/fixtures/llama/tokenizer.json"), d.join("tokenizer.json")).unwrap();
    std::fs::write(d.join("tokenizer_config.json"), "{\"chat_template\": \"{% for %}\"}").unwrap();
    let tok = Tokenizer::load(&d).unwrap();
    assert!(!tok.encode("def").unwrap().is_empty());
    let e = tok.apply_chat_template(&[], true).unwrap_err();
    assert!(e.to_string().contains("chat template"), "{e}");

    // chat_template.jinja wins over tokenizer_config.json, as in transformers.
    std::fs::write(d.join("chat_template.jinja"), "{{ messages[0].content }}!").unwrap();
    let tok = Tokenizer::load(&d).unwrap();
    assert_eq!(tok.apply_chat_template(&[ChatMessage::new("user", "hi")], false).unwrap(), "hi!");
    std::fs::remove_dir_all(d).unwrap();
}

fn bos() -> (Tokenizer, Value) {
    let d: &Path = &root().join("tests/chat/bos");
    let expected: Value = serde_json::from_str(&std::fs::read_to_string(d.join("expected.json")).unwrap()).unwrap();
    (Tokenizer::load(d).unwrap(), expected)
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

#[test]
fn special_tokens_in_encode_and_decode_match_transformers() {
    let (tok, exp) = bos();
    let text = exp["text"].as_str().unwrap();
    let with = ids(&exp["with_special_tokens"]);
    assert_eq!(tok.encode_with(text, true).unwrap(), with);
    assert_eq!(tok.encode_with(text, false).unwrap(), ids(&exp["without_special_tokens"]));
    assert_eq!(tok.encode(text).unwrap(), ids(&exp["without_special_tokens"]));
    assert_eq!(tok.decode_with(&with, false).unwrap(), exp["decode_keep_special"].as_str().unwrap());
    assert_eq!(tok.decode_with(&with, true).unwrap(), exp["decode_skip_special"].as_str().unwrap());
    assert_eq!(tok.decode(&with).unwrap(), exp["decode_skip_special"].as_str().unwrap());

    // The chat prompt, its ids (the template writes the BOS itself: no special tokens added).
    let prompt = tok.apply_chat_template(&[ChatMessage::new("user", "Hello!")], true).unwrap();
    assert_eq!(prompt, exp["prompt"].as_str().unwrap());
    let prompt_ids = tok.encode_with(&prompt, false).unwrap();
    assert_eq!(prompt_ids, ids(&exp["prompt_ids"]));
    assert_eq!(tok.decode_with(&prompt_ids, false).unwrap(), exp["prompt_decode_keep_special"].as_str().unwrap());
}

#[test]
fn token_id_lookup_matches_transformers() {
    let (tok, exp) = bos();
    for (token, id) in exp["tokens"].as_object().unwrap() {
        let Some(id) = id.as_u64().map(|i| i as u32) else {
            assert_eq!(tok.token_to_id(token), None, "{token}");
            continue;
        };
        assert_eq!(tok.token_to_id(token), Some(id), "{token}");
        assert_eq!(tok.id_to_token(id).as_deref(), Some(token.as_str()), "{id}");
    }
    assert_eq!(tok.token_to_id("no such token"), None);
    assert_eq!(tok.id_to_token(tok.vocab_size() as u32), None);
    assert_eq!(tok.special_tokens().bos_token.as_deref(), Some("<|endoftext|>"));
}
