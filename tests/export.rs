//! Export: a (3 layers, 128 dims) folder loads back and embeds exactly like the original model
//! cut to that size; a 1-layer export holds only the embeddings and layer 0; `starbucks embed`
//! writes JSON Lines and .npy.

use starbucks_model::{Embedder, ExportOptions, Size, export_sentence_transformers, weights::read_safetensors_header};
use starbucks_tests::{TestBackend, max_abs_diff, minilm_dir};

fn export(size: Size, normalize: bool) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("export");
    let embedder = Embedder::<TestBackend>::from_pretrained(minilm_dir(), &Default::default()).unwrap();
    let options = ExportOptions { size, normalize, sentence_transformers: true, trained_sizes: vec![] };
    export_sentence_transformers(&embedder, &minilm_dir(), &out, &options).unwrap();
    (dir, out)
}

const TEXTS: [&str; 4] =
    ["A man is playing a guitar.", "Ein Mann spielt Gitarre.", "   ", "The stock market fell sharply on Monday."];

#[test]
fn a_3_layer_128_dim_export_embeds_like_the_original_cut() {
    let (_dir, out) = export(Size::new(3, 128), false);
    let exported = Embedder::<TestBackend>::from_pretrained(&out, &Default::default()).unwrap();
    assert_eq!(exported.config().num_hidden_layers, 3);
    assert_eq!(exported.full_size(), Size::new(3, 128));
    let original =
        Embedder::<TestBackend>::from_pretrained(minilm_dir(), &Default::default()).unwrap().with_normalize(false);
    let want = original.embed(&TEXTS, Size::new(3, 128)).unwrap();
    let got = exported.embed(&TEXTS, Size::new(3, 128)).unwrap();
    for (g, w) in got.iter().zip(&want) {
        assert!(max_abs_diff(g, w) <= 1e-6, "{}", max_abs_diff(g, w));
    }
    // Smaller sizes of the export are prefixes too, and larger ones are refused.
    assert!(
        max_abs_diff(
            &exported.embed(&TEXTS[..1], Size::new(2, 64)).unwrap()[0],
            &original.embed(&TEXTS[..1], Size::new(2, 64)).unwrap()[0]
        ) <= 1e-6
    );
    assert!(exported.embed(&TEXTS, Size::new(3, 256)).is_err());
    assert!(exported.embed(&TEXTS, Size::new(4, 128)).is_err());
}

#[test]
fn a_normalized_export_has_unit_vectors_and_refuses_an_existing_folder() {
    let (_dir, out) = export(Size::new(6, 384), true);
    let exported = Embedder::<TestBackend>::from_pretrained(&out, &Default::default()).unwrap();
    assert!(exported.sentence_config().normalize);
    for v in exported.embed(&TEXTS, Size::new(6, 384)).unwrap() {
        assert!((v.iter().map(|x| x * x).sum::<f32>().sqrt() - 1.0).abs() < 1e-5);
    }
    let embedder = Embedder::<TestBackend>::from_pretrained(minilm_dir(), &Default::default()).unwrap();
    let options =
        ExportOptions { size: Size::new(1, 32), normalize: false, sentence_transformers: true, trained_sizes: vec![] };
    let err = export_sentence_transformers(&embedder, &minilm_dir(), &out, &options).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
}

#[test]
fn a_1_layer_export_holds_only_the_embeddings_and_layer_0() {
    let (_dir, out) = export(Size::new(1, 384), false);
    let header = read_safetensors_header(&out.join("model.safetensors")).unwrap();
    assert!(
        header.keys().all(|k| k.starts_with("embeddings.") || k.starts_with("encoder.layer.0.")),
        "{:?}",
        header.keys()
    );
    assert_eq!(header.keys().filter(|k| k.starts_with("encoder.layer.0.")).count(), 16);
    let params: usize = header.values().map(|(_, shape)| shape.iter().product::<usize>()).sum();
    // (30522 + 512 + 2) · 384 + 2 · 384 embedding values, 1,774,464 in layer 0.
    assert_eq!(params, 11_917_824 + 768 + 1_774_464);
    let full: usize = read_safetensors_header(&minilm_dir().join("model.safetensors"))
        .unwrap()
        .iter()
        .filter(|(k, _)| !k.starts_with("pooler.") && !k.contains("position_ids"))
        .map(|(_, (_, s))| s.iter().product::<usize>())
        .sum();
    assert!(params * 10 < full * 7, "{params} of {full}");
}
