//! The encoder against an independent numpy forward pass (tests/reference/encoder_parity.py):
//! token ids, the mean-pooled embedding of every layer and the CLS vector of the last layer.

use std::collections::BTreeMap;

use serde::Deserialize;
use starbucks_model::{Embedder, Pooling, Size};
use starbucks_tests::{TestBackend, fixture, max_abs_diff, minilm_dir};

#[derive(Deserialize)]
struct Fixture {
    max_length: usize,
    sentences: Vec<String>,
    input_ids: Vec<Vec<i64>>,
    mean: BTreeMap<String, Vec<Vec<f32>>>,
    cls_6: Vec<Vec<f32>>,
}

fn load() -> (Fixture, Embedder<TestBackend>) {
    let text = std::fs::read_to_string(fixture("encoder_parity.json")).expect("fixture present");
    let fixture: Fixture = serde_json::from_str(&text).expect("fixture parses");
    let embedder = Embedder::<TestBackend>::from_pretrained(minilm_dir(), &Default::default())
        .expect("all-MiniLM-L6-v2 loads")
        .with_normalize(false);
    (fixture, embedder)
}

#[test]
fn token_ids_match_the_reference_tokenizer() {
    let (fixture, embedder) = load();
    assert_eq!(embedder.tokenizer().max_length(), fixture.max_length);
    for (sentence, expected) in fixture.sentences.iter().zip(&fixture.input_ids) {
        let batch = embedder.tokenizer().encode(&[sentence]).unwrap();
        assert_eq!(&batch.input_ids, expected, "token ids of {sentence:?}");
    }
}

#[test]
fn mean_pooled_embedding_of_every_layer_matches_numpy() {
    let (fixture, embedder) = load();
    let sizes: Vec<Size> = (1..=6).map(|layers| Size::new(layers, 384)).collect();
    // One batch holds every sentence: 2 to 256 tokens, so padding is exercised too.
    let by_size = embedder.with_batch_size(32).embed_sizes(&fixture.sentences, &sizes).unwrap();
    for (size, vectors) in sizes.iter().zip(&by_size) {
        let expected = &fixture.mean[&size.layers.to_string()];
        for (i, (got, want)) in vectors.iter().zip(expected).enumerate() {
            let diff = max_abs_diff(got, want);
            assert!(diff <= 1e-4, "layer {} sentence {i} ({:?}): max |Δ| = {diff}", size.layers, fixture.sentences[i]);
        }
    }
}

#[test]
fn cls_vector_of_the_last_layer_matches_numpy() {
    let (fixture, embedder) = load();
    let vectors = embedder.with_pooling(Pooling::Cls).embed(&fixture.sentences, Size::new(6, 384)).unwrap();
    for (i, (got, want)) in vectors.iter().zip(&fixture.cls_6).enumerate() {
        let diff = max_abs_diff(got, want);
        assert!(diff <= 1e-4, "sentence {i}: max |Δ| = {diff}");
    }
}

#[test]
fn a_size_cut_from_the_full_pass_equals_its_early_exit_run() {
    let (fixture, embedder) = load();
    let texts = &fixture.sentences[..12];
    for size in [Size::new(1, 32), Size::new(3, 96), Size::new(5, 256)] {
        let from_full = embedder.embed_sizes(texts, &[Size::new(6, 384), size]).unwrap().remove(1);
        let early_exit = embedder.embed(texts, size).unwrap();
        for (a, b) in from_full.iter().zip(&early_exit) {
            assert_eq!(a.len(), size.dims);
            assert!(max_abs_diff(a, b) <= 1e-6, "size {size}");
        }
        // The cut is the prefix of the full-width embedding of the same layer.
        let wide = embedder.embed(texts, Size::new(size.layers, 384)).unwrap();
        for (a, b) in early_exit.iter().zip(&wide) {
            assert!(max_abs_diff(a, &b[..size.dims]) <= 1e-6, "size {size}");
        }
    }
}

#[test]
fn padding_does_not_change_an_embedding() {
    let (fixture, embedder) = load();
    let all = embedder.embed(&fixture.sentences, Size::new(6, 384)).unwrap();
    for i in [0, 13, 19] {
        let alone = embedder.embed(&fixture.sentences[i..=i], Size::new(6, 384)).unwrap();
        assert!(max_abs_diff(&alone[0], &all[i]) <= 1e-5, "sentence {i}");
    }
}

#[test]
fn normalised_embeddings_have_unit_length() {
    let (fixture, embedder) = load();
    let embedder = embedder.with_normalize(true);
    for v in embedder.embed(&fixture.sentences[..4], Size::new(2, 64)).unwrap() {
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
    }
}
