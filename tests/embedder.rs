//! What an embedder needs beyond generation: model metadata, a context limit without config.json,
//! loading from memory.

mod common;

use std::sync::Arc;

use common::*;
use specdec::{ContextLimitSource, ElemType, Error, GenerationConfig, Generator, Model, ModelOptions};

fn demo(name: &str) -> std::path::PathBuf {
    models_dir().join("demo").join(name)
}

fn greedy(max_new_tokens: usize) -> GenerationConfig {
    GenerationConfig { max_new_tokens, eos_ids: Some(vec![]), ..Default::default() }
}

fn prompt(i: usize) -> Vec<u32> {
    tokenizer().encode(PROMPTS[i]).unwrap()
}

fn run(g: &mut Generator, prompt: &[u32]) -> Vec<u32> {
    let before = g.tokens().len();
    g.append_tokens(prompt).unwrap();
    g.generate(|_| true).unwrap();
    g.tokens()[before + prompt.len()..].to_vec()
}

fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("specdec-embedder-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---------------------------------------------------------------------------------------------
// Metadata, context limits, loading from memory

#[test]
fn models_describe_themselves() {
    let m = load(demo("target"));
    let info = m.info();
    assert_eq!((info.bos_id, info.pad_id, info.eos_ids.as_slice()), (Some(0), None, &[0u32][..]));
    assert_eq!(info.architecture.as_deref(), Some("LlamaForCausalLM"));
    assert_eq!((info.layers, info.kv_heads, info.head_dim), (6, 2, 64));
    assert_eq!((info.context_limit, info.context_limit_source), (1024, ContextLimitSource::Config));
    assert_eq!((m.kv_type(), m.kv_type().name()), (ElemType::F32, "float32"));
    assert_eq!(m.device().to_string(), "cpu");
    assert_eq!(load(fixture("gpt2")).info().architecture.as_deref(), Some("GPT2LMHeadModel"));
}

/// A folder holding only `name`'s model.onnx (no config.json).
fn bare_copy(name: &str) -> std::path::PathBuf {
    let dir = scratch_dir(&format!("bare-{name}"));
    std::fs::copy(fixture(name).join("model.onnx"), dir.join("model.onnx")).unwrap();
    dir
}

#[test]
fn the_context_limit_comes_from_the_graph_without_config_json() {
    // GPT-2 learns a table of 512 positions: without config.json that is the limit, and
    // generation stops there instead of failing inside ONNX Runtime at token 513.
    let gpt2 = load(bare_copy("gpt2"));
    assert_eq!((gpt2.info().context_limit, gpt2.info().context_limit_source), (512, ContextLimitSource::Graph));
    let mut g = Generator::new(gpt2.clone(), None, greedy(64)).unwrap();
    g.append_tokens(&vec![3; 500]).unwrap();
    assert!(matches!(g.generate(|_| true), Err(Error::ContextLimit { needed: 513, limit: 512 })));
    assert_eq!(g.tokens().len(), 512);
    // Rotary models have no table: the default, said so (a warning, see tests/logging.rs).
    let llama = load(bare_copy("llama"));
    assert_eq!(
        (llama.info().context_limit, llama.info().context_limit_source),
        (specdec::model::DEFAULT_CONTEXT_LIMIT, ContextLimitSource::Default)
    );
    // The caller's value wins.
    let options = ModelOptions { context_limit: Some(300), ..Default::default() };
    let m = Model::load(bare_copy("llama"), &options).unwrap();
    assert_eq!((m.info().context_limit, m.info().context_limit_source), (300, ContextLimitSource::Options));
    let options = ModelOptions { context_limit: Some(0), ..Default::default() };
    assert!(matches!(Model::load(fixture("llama"), &options), Err(Error::InvalidArgument(_))));
}

#[test]
fn a_model_loads_from_memory() {
    let dir = fixture("llama");
    let bytes = std::fs::read(dir.join("model.onnx")).unwrap();
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let generation = std::fs::read_to_string(dir.join("generation_config.json")).unwrap();
    let options = ModelOptions { intra_threads: 1, ..Default::default() };
    let m = Arc::new(Model::load_from_memory(&bytes, Some(&config), Some(&generation), &options).unwrap());
    drop(bytes);
    let file = load(&dir);
    assert_eq!(m.path().to_str(), Some("<memory>"));
    assert_eq!(m.info().tokenizer_fingerprint, None);
    assert_eq!(
        (m.info().vocab_size, m.info().context_limit, &m.info().eos_ids),
        (file.info().vocab_size, file.info().context_limit, &file.info().eos_ids)
    );
    let p = prompt(1);
    let want = run(&mut Generator::new(file, None, greedy(24)).unwrap(), &p);
    assert_eq!(run(&mut Generator::new(m, Some(load(fixture("draft"))), greedy(24)).unwrap(), &p), want);
    // Without config files the graph's facts suffice here; bad bytes and bad JSON are refused.
    let bytes = std::fs::read(fixture("gpt2").join("model.onnx")).unwrap();
    let bare = Model::load_from_memory(&bytes, None, None, &options).unwrap();
    assert_eq!((bare.info().context_limit, bare.info().context_limit_source), (512, ContextLimitSource::Graph));
    assert!(matches!(Model::load_from_memory(b"not a model", None, None, &options), Err(Error::InvalidModel { .. })));
    assert!(matches!(Model::load_from_memory(&bytes, Some("{"), None, &options), Err(Error::Io { .. })));
}
