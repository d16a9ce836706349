//! A chunked forward of k tokens must give the logits of k single steps, and a cache rolled back
//! (holes masked, or compacted) must behave exactly like one that never saw the rejected tokens.

mod common;

use common::*;
use specdec::DecoderState;
use specdec::Model;
use std::sync::Arc;

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn single_steps(model: &Arc<Model>, tokens: &[u32]) -> Vec<f32> {
    let mut cache = DecoderState::new(model.clone()).unwrap();
    let (mut all, mut row) = (Vec::new(), Vec::new());
    for t in tokens {
        cache.forward(std::slice::from_ref(t), 1, &mut row).unwrap();
        all.extend_from_slice(&row);
    }
    all
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

#[test]
fn chunked_forward_equals_single_steps() {
    let tok = tokenizer();
    let tokens = tok.encode(PROMPTS[0]).unwrap();
    let k = tokens.len();
    assert!(k >= 8);
    for path in all_models() {
        let model = load(&path);
        let steps = single_steps(&model, &tokens);
        let mut cache = DecoderState::new(model.clone()).unwrap();
        let mut chunked = Vec::new();
        // A prefix first, then the rest in one call: both call shapes the engine uses.
        cache.forward(&tokens[..3], 3, &mut chunked).unwrap();
        let mut rest = Vec::new();
        cache.forward(&tokens[3..], k - 3, &mut rest).unwrap();
        chunked.extend_from_slice(&rest);
        let diff = max_abs_diff(&steps, &chunked);
        println!("{}: {k} tokens, max |chunked - single| = {diff:.3e}", path.display());
        assert!(diff <= 1e-4, "{}: max abs diff {diff}", path.display());
    }
}

#[test]
fn rolled_back_cache_matches_a_fresh_one() {
    let tok = tokenizer();
    // Long enough that three rejected rounds stay under the compaction threshold, so the
    // masked-hole path is what gets compared.
    let prompt = tok.encode(&PROMPTS.concat()).unwrap();
    let junk = tok.encode(" junk tokens that get rejected").unwrap();
    let cont = tok.encode(" the real continuation").unwrap();
    for path in all_models() {
        let model = load(&path);
        let mut fresh = DecoderState::new(model.clone()).unwrap();
        let mut want = Vec::new();
        fresh.forward(&[prompt.clone(), cont.clone()].concat(), cont.len(), &mut want).unwrap();

        // Several rounds of speculate-and-reject leave holes (or force compaction).
        let mut cache = DecoderState::new(model.clone()).unwrap();
        let mut got = Vec::new();
        cache.forward(&prompt, 1, &mut got).unwrap();
        for round in 0..3 {
            cache.forward(&junk[..4 - round], 1, &mut got).unwrap();
            cache.rewind(prompt.len()).unwrap();
            assert_eq!(cache.len(), prompt.len());
        }
        cache.forward(&cont, cont.len(), &mut got).unwrap();
        let diff = max_abs_diff(&want, &got);
        println!(
            "{}: after rollback, max |diff| = {diff:.3e} (physical {} for {} tokens)",
            path.display(),
            cache.cache().physical_len(),
            cache.len()
        );
        if model.layout().supports_masked_rollback() {
            assert!(cache.cache().physical_len() > cache.len(), "holes were expected to stay masked");
        }
        assert!(diff <= 1e-4, "{}: rollback changed the logits by {diff}", path.display());

        cache.compact().unwrap();
        assert_eq!(cache.cache().physical_len(), cache.len());
        cache.forward(&cont[..1], 1, &mut got).unwrap();
        fresh.forward(&cont[..1], 1, &mut want).unwrap();
        assert!(max_abs_diff(&want, &got) <= 1e-4, "{}: compaction changed the logits", path.display());
    }
}

#[test]
fn prompts_longer_than_one_chunk_are_fed_in_pieces_exactly() {
    // Over 256 tokens: the model splits the feed, and the rows asked for span the split.
    let tok = tokenizer();
    let text = PROMPTS.concat().repeat(4);
    let tokens = tok.encode(&text).unwrap();
    assert!(tokens.len() > 300, "{} tokens", tokens.len());
    let tokens = &tokens[..300];
    for arch in ARCHS {
        let model = load(fixture(arch));
        let steps = single_steps(&model, tokens);
        let vocab = model.info().vocab_size;
        let mut cache = DecoderState::new(model.clone()).unwrap();
        let mut rows = Vec::new();
        cache.forward(tokens, 50, &mut rows).unwrap();
        assert_eq!(cache.len(), 300);
        let diff = max_abs_diff(&steps[250 * vocab..], &rows);
        println!("{arch}: 300 tokens in chunks, last 50 rows, max |diff| = {diff:.3e}");
        assert!(diff <= 1e-4, "{arch}: {diff}");
    }
}
