//! The device path: ONNX Runtime IoBinding with the KV cache kept where the execution provider
//! puts it, compacted there, and only the logits rows that sampling needs copied to the host.
//!
//! On any machine the same code path runs on the CPU (`ModelOptions::io_binding`) and must give the
//! plain path's logits and greedy outputs with no host copy of KV data. With
//! `SPECDEC_TEST_DEVICE=cuda` (or `cuda:N`; `scripts/gpu-check.sh` sets it) the CUDA tests run
//! too: target and draft on CUDA, a CPU draft with a CUDA target, CUDA against CPU greedy output,
//! and the cache's residence on the GPU. Without it, asking for CUDA must fail with a message that
//! names what is missing.

mod common;

use specdec::DecoderState;
use std::sync::Arc;

use common::*;
use specdec::{Device, Error, Model, ModelOptions, Stats};

const NEW_TOKENS: usize = 64;

fn load_on(path: impl AsRef<std::path::Path>, device: Device, io_binding: bool) -> Arc<Model> {
    specdec::runtime::init(None).expect("ONNX Runtime (run scripts/setup.sh or set ORT_DYLIB_PATH)");
    let options = ModelOptions { intra_threads: 1, device, io_binding, ..Default::default() };
    Arc::new(Model::load(path.as_ref(), &options).unwrap_or_else(|e| panic!("{} on {device}: {e}", path.as_ref().display())))
}

/// The CUDA device the GPU tests use, from `SPECDEC_TEST_DEVICE` (unset or `cpu`: none).
fn test_device() -> Option<Device> {
    match std::env::var("SPECDEC_TEST_DEVICE").ok().filter(|v| !v.is_empty())?.parse::<Device>() {
        Ok(Device::Cpu) => None,
        Ok(d) => Some(d),
        Err(e) => panic!("SPECDEC_TEST_DEVICE: {e}"),
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn all_models() -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = ARCHS.iter().chain(["draft"].iter()).map(|a| fixture(a)).collect();
    for d in ["demo/target", "demo/draft"] {
        if models_dir().join(d).join("model.onnx").exists() {
            v.push(models_dir().join(d));
        }
    }
    v
}

/// Logits of the call shapes the engine uses, with speculate-and-reject rounds, a compaction and
/// a prompt longer than one chunk in between: every row, concatenated.
fn logits_trace(model: &Arc<Model>) -> (Vec<f32>, DecoderState) {
    let tok = tokenizer();
    let prompt = tok.encode(&PROMPTS.concat()).unwrap();
    let junk = tok.encode(" junk tokens that get rejected").unwrap();
    let cont = tok.encode(" the real continuation").unwrap();
    let mut cache = DecoderState::new(model.clone()).unwrap();
    let (mut all, mut rows) = (Vec::new(), Vec::new());
    // Every row (k rows of k: logits bound to host memory), then one row of many (gathered).
    cache.forward(&prompt[..3], 3, &mut rows).unwrap();
    all.extend_from_slice(&rows);
    cache.forward(&prompt[3..], 1, &mut rows).unwrap();
    all.extend_from_slice(&rows);
    for round in 0..3 {
        cache.forward(&junk[..4 - round], 2, &mut rows).unwrap();
        all.extend_from_slice(&rows);
        cache.rewind(prompt.len()).unwrap();
    }
    cache.forward(&cont, cont.len(), &mut rows).unwrap();
    all.extend_from_slice(&rows);
    cache.compact().unwrap();
    assert_eq!(cache.cache().physical_len(), cache.len());
    cache.forward(&cont[..1], 1, &mut rows).unwrap();
    all.extend_from_slice(&rows);
    // Over 256 tokens: fed in chunks whose logits are never read, then the last rows.
    let long = tok.encode(&PROMPTS.concat().repeat(4)).unwrap();
    cache.forward(&long[..300], 5, &mut rows).unwrap();
    all.extend_from_slice(&rows);
    (all, cache)
}

#[test]
fn io_binding_on_cpu_gives_the_plain_paths_logits_without_host_copies() {
    for path in all_models() {
        let plain = load_on(&path, Device::Cpu, false);
        let bound = load_on(&path, Device::Cpu, true);
        assert!(!plain.uses_io_binding() && bound.uses_io_binding());
        let (want, plain_cache) = logits_trace(&plain);
        let (got, bound_cache) = logits_trace(&bound);
        let diff = max_abs_diff(&want, &got);
        println!(
            "{}: IoBinding vs plain, {} logits, max |diff| = {diff:.3e}; host KV copies {} (plain path: {}); compactions {} ({}); cache in {}",
            path.display(),
            want.len(),
            bound_cache.cache().host_copies(),
            plain_cache.cache().host_copies(),
            bound_cache.cache().compactions(),
            plain_cache.cache().compactions(),
            bound_cache.cache().location()
        );
        assert!(diff <= 1e-5, "{}: IoBinding changed the logits by {diff}", path.display());
        assert!(bound_cache.cache().is_device_resident() && !plain_cache.cache().is_device_resident());
        assert!(bound_cache.cache().compactions() >= 1, "the device compaction went untested");
        assert_eq!(bound_cache.cache().host_copies(), 0, "{}: KV data went through host memory", path.display());
        assert_eq!(bound_cache.cache().host_copy_bytes(), 0);
        // The counter counts: the plain path's compaction copies every KV tensor on the host.
        assert!(plain_cache.cache().host_copies() >= 2 * plain.info().layers as u64);
        assert_eq!(bound.kv_copy_stats().host_copies, 0);
        assert!(bound.kv_copy_stats().compactions >= 1);
    }
}

/// Near-ties: a divergence where the reference's top-2 margin is below this is reported, not failed.
const NEAR_TIE: f32 = 1e-3;

fn generate(target: &Arc<Model>, draft: Option<&Arc<Model>>, prompt: &[u32], gamma: usize) -> (Vec<u32>, Stats) {
    generate_n(target, draft, prompt, gamma, NEW_TOKENS, &Default::default())
}

#[test]
fn io_binding_on_cpu_keeps_greedy_speculation_exact() {
    let tok = tokenizer();
    for (target_path, draft_path) in [(fixture("llama"), fixture("draft")), (fixture("qwen2"), fixture("gpt2"))] {
        let plain_target = load_on(&target_path, Device::Cpu, false);
        let target = load_on(&target_path, Device::Cpu, true);
        let draft = load_on(&draft_path, Device::Cpu, true);
        let plain_draft = load_on(&draft_path, Device::Cpu, false);
        let mut totals = Stats::default();
        for text in PROMPTS {
            let prompt = tok.encode(text).unwrap();
            let (want, _) = generate(&plain_target, None, &prompt, 1);
            let (base, _) = generate(&target, None, &prompt, 1);
            compare(NEAR_TIE, "IoBinding target-only vs plain", &plain_target, &prompt, &want, &base, true);
            for gamma in [1, 2, 3, 4, 6, 8] {
                for d in [&draft, &plain_draft] {
                    let (got, st) = generate(&target, Some(d), &prompt, gamma);
                    compare(
                        NEAR_TIE,
                        &format!("{} + {}, gamma {gamma}", target_path.display(), draft_path.display()),
                        &plain_target,
                        &prompt,
                        &want,
                        &got,
                        true,
                    );
                    totals.accepted += st.accepted;
                    totals.drafted += st.drafted;
                }
            }
        }
        let (t, d) = (target.kv_copy_stats(), draft.kv_copy_stats());
        println!(
            "{} + {}: IoBinding greedy identical to plain for gamma 1..8 on {} prompts (acceptance {}/{}); KV host copies target {} draft {}, compactions target {} draft {}",
            target_path.display(),
            draft_path.display(),
            PROMPTS.len(),
            totals.accepted,
            totals.drafted,
            t.host_copies,
            d.host_copies,
            t.compactions,
            d.compactions
        );
        assert!(totals.accepted > 0 && totals.accepted < totals.drafted, "accept and reject paths both needed");
        assert_eq!((t.host_copies, d.host_copies), (0, 0), "KV data went through host memory during generation");
        assert!(t.compactions + d.compactions > 0, "no compaction during generation: the device compaction went untested");
    }
}

#[test]
fn cuda_without_a_usable_gpu_fails_naming_what_is_missing() {
    if test_device().is_some() {
        return; // a GPU run: CUDA is expected to work there
    }
    let _ = load(fixture("draft")); // ONNX Runtime loaded the way every test loads it
    let options = ModelOptions { device: Device::Cuda(0), ..Default::default() };
    let e = Model::load(fixture("draft"), &options).err().expect("CUDA loaded on a machine without a usable GPU");
    println!("cuda:0 here: {e}");
    assert!(matches!(e, Error::Unavailable(_)), "{e:?}");
    assert_eq!(e.code(), 7012);
    let msg = e.to_string();
    assert!(msg.contains("CUDA"), "{msg}");
    let named = [
        "libonnxruntime_providers_cuda.so",
        "libcuda.so.1",
        "libcudart.so.13",
        "libcublasLt.so.13",
        "libcublas.so.13",
        "libcudnn.so.9",
        "libcurand.so.10",
    ];
    assert!(named.iter().any(|n| msg.contains(n)) || msg.contains("CUDA failure"), "the message names nothing missing: {msg}");

    // The opt-in fallback: a CPU model that says why.
    let options = ModelOptions { device: Device::Cuda(0), cuda_fallback_to_cpu: true, intra_threads: 1, ..Default::default() };
    let m = Model::load(fixture("draft"), &options).expect("fallback to CPU");
    assert_eq!(m.device(), Device::Cpu);
    assert!(!m.uses_io_binding());
    assert!(m.device_fallback().is_some_and(|why| why.contains("CUDA")), "{:?}", m.device_fallback());
    let plain = load(fixture("draft"));
    assert_eq!(plain.device_fallback(), None);
}

// ---- With a GPU (SPECDEC_TEST_DEVICE=cuda) ----

#[test]
fn cuda_logits_match_cpu_and_the_cache_stays_on_the_gpu() {
    let Some(dev) = test_device() else { return };
    for path in all_models() {
        let cpu = load_on(&path, Device::Cpu, false);
        let gpu = load_on(&path, dev, false);
        assert_eq!(gpu.device(), dev);
        assert!(gpu.uses_io_binding());
        let (want, _) = logits_trace(&cpu);
        let (got, cache) = logits_trace(&gpu);
        let diff = max_abs_diff(&want, &got);
        println!(
            "{} on {dev}: max |logits - CPU| = {diff:.3e}; cache in {}; host KV copies {}; compactions {}",
            path.display(),
            cache.cache().location(),
            cache.cache().host_copies(),
            cache.cache().compactions()
        );
        assert!(cache.cache().location().starts_with("Cuda:"), "the KV cache is in {} memory", cache.cache().location());
        assert_eq!(cache.cache().host_copies(), 0, "KV data went through host memory");
        assert!(cache.cache().compactions() >= 1);
        assert!(diff <= 1e-2, "{}: CUDA logits differ from CPU by {diff}", path.display());
    }
}

#[test]
fn cuda_greedy_speculation_is_exact() {
    let Some(dev) = test_device() else { return };
    let tok = tokenizer();
    let mut pairs: Vec<(std::path::PathBuf, std::path::PathBuf)> = ARCHS.iter().map(|a| (fixture(a), fixture("draft"))).collect();
    pairs.push((fixture("qwen2"), fixture("gpt2")));
    if models_dir().join("demo/target/model.onnx").exists() {
        pairs.push((models_dir().join("demo/target"), models_dir().join("demo/draft")));
    }
    let mut near_ties = Vec::new();
    for (target_path, draft_path) in pairs {
        let cpu_target = load_on(&target_path, Device::Cpu, false);
        let target = load_on(&target_path, dev, false);
        let draft = load_on(&draft_path, dev, false);
        let cpu_draft = load_on(&draft_path, Device::Cpu, false);
        let before = target.kv_copy_stats();
        let mut tokens = 0usize;
        for text in PROMPTS {
            let prompt = tok.encode(text).unwrap();
            let (want, _) = generate(&cpu_target, None, &prompt, 1);
            let (base, _) = generate(&target, None, &prompt, 1);
            let pair = format!("{} + {}", target_path.display(), draft_path.display());
            // CUDA greedy against CPU greedy: equal, or a reported near-tie.
            near_ties.extend(compare(
                NEAR_TIE,
                &format!("{pair}: CUDA target-only vs CPU"),
                &cpu_target,
                &prompt,
                &want,
                &base,
                false,
            ));
            for gamma in 1..=8 {
                // Both on CUDA, and a CPU draft feeding the CUDA target: speculation must give
                // CUDA's own target-only output (near-ties of batched verification reported).
                for (d, which) in [(&draft, "CUDA draft"), (&cpu_draft, "CPU draft")] {
                    let (got, _) = generate(&target, Some(d), &prompt, gamma);
                    tokens += got.len();
                    near_ties.extend(compare(
                        NEAR_TIE,
                        &format!("{pair}, {which}, gamma {gamma}"),
                        &target,
                        &prompt,
                        &base,
                        &got,
                        false,
                    ));
                }
            }
        }
        let after = target.kv_copy_stats();
        let d = draft.kv_copy_stats();
        println!(
            "{} + {} on {dev}: greedy speculation checked for gamma 1..8 with CUDA and CPU drafts, {tokens} tokens; KV host copies target {} draft {} (compactions {} / {})",
            target_path.display(),
            draft_path.display(),
            after.host_copies - before.host_copies,
            d.host_copies,
            after.compactions,
            d.compactions
        );
        assert_eq!(after.host_copies - before.host_copies, 0, "the CUDA target's KV data went through host memory");
        assert_eq!(d.host_copies, 0, "the CUDA draft's KV data went through host memory");
    }
    println!("near-tie divergences reported: {} (margins {:?})", near_ties.len(), near_ties);
}

/// On CUDA device reductions are on by default: with them off (whole rows to the host) the same
/// models give the same tokens, greedy and with top-k sampling at the same seeds, target-only and
/// speculative; a large-vocabulary builder pair included.
#[test]
fn cuda_reductions_give_the_full_row_tokens() {
    let Some(dev) = test_device() else { return };
    let tok = tokenizer();
    let load_r = |path: &std::path::Path, reductions: bool| {
        let options = ModelOptions { intra_threads: 1, device: dev, device_reductions: Some(reductions), ..Default::default() };
        Arc::new(Model::load(path, &options).unwrap_or_else(|e| panic!("{} on {dev}: {e}", path.display())))
    };
    let b = models_dir().join("builder");
    let mut pairs = vec![(fixture("llama"), fixture("draft")), (b.join("vocab32k-target"), b.join("vocab32k-draft"))];
    if models_dir().join("demo/target/model.onnx").exists() {
        pairs.push((models_dir().join("demo/target"), models_dir().join("demo/draft")));
    }
    let samplings = [
        specdec::SamplingConfig::default(),
        specdec::SamplingConfig { temperature: 0.8, top_k: 50, top_p: 0.9, ..Default::default() },
    ];
    for (tp, dp) in pairs {
        let (t_on, d_on) = (load_r(&tp, true), load_r(&dp, true));
        let (t_off, d_off) = (load_r(&tp, false), load_r(&dp, false));
        assert!(t_on.device_reductions() && !t_off.device_reductions());
        assert!(load_on(&tp, dev, false).device_reductions(), "reductions are not on by default on {dev}");
        for sampling in &samplings {
            for text in PROMPTS {
                let prompt = tok.encode(text).unwrap();
                for (gamma, with_draft) in [(1, false), (3, true), (8, true)] {
                    let run = |t: &Arc<Model>, d: &Arc<Model>| {
                        let cfg = specdec::GenerationConfig {
                            gamma,
                            max_new_tokens: 48,
                            eos_ids: Some(vec![]),
                            seed: 5,
                            sampling: sampling.clone(),
                            ..Default::default()
                        };
                        let mut g = specdec::Generator::new(t.clone(), with_draft.then(|| d.clone()), cfg).unwrap();
                        g.append_tokens(&prompt).unwrap();
                        g.generate(|_| true).unwrap();
                        g.tokens()[prompt.len()..].to_vec()
                    };
                    assert_eq!(
                        run(&t_on, &d_on),
                        run(&t_off, &d_off),
                        "{} + {} on {dev}: gamma {gamma} (draft {with_draft}), {sampling:?}: reductions changed the tokens",
                        tp.display(),
                        dp.display()
                    );
                }
            }
        }
        println!(
            "{} + {} on {dev}: reductions on = off, greedy and top-k sampling; rows reduced target {} draft {}",
            tp.display(),
            dp.display(),
            t_on.reduced_rows(),
            d_on.reduced_rows()
        );
        assert!(t_on.reduced_rows() > 0 && d_on.reduced_rows() > 0);
    }
}
