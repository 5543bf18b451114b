//! HF checkpoint variants load to the same encoder: a `bert.` key prefix (as `BertForMaskedLM`
//! and `BertForPreTraining` save), old `LayerNorm.gamma`/`beta` names, extra heads reported.

use std::collections::HashMap;
use std::fs;

use safetensors::{Dtype, SafeTensors, serialize_to_file, tensor::TensorView};
use starbucks_model::{Embedder, Size, bert::BertModel, config::BertConfig};
use starbucks_tests::{TestBackend, max_abs_diff, minilm_dir};

#[test]
fn a_prefixed_checkpoint_with_old_layer_norm_names_loads_the_same_weights() {
    let source = minilm_dir();
    let bytes = fs::read(source.join("model.safetensors")).unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let mut renamed: HashMap<String, TensorView> = HashMap::new();
    for (name, view) in tensors.tensors() {
        let name = format!("bert.{name}")
            .replace("LayerNorm.weight", "LayerNorm.gamma")
            .replace("LayerNorm.bias", "LayerNorm.beta");
        renamed.insert(name, view);
    }
    let head_bias = vec![0u8; 4 * 30522];
    renamed.insert("cls.predictions.bias".into(), TensorView::new(Dtype::F32, vec![30522], &head_bias).unwrap());

    let dir = tempfile::tempdir().unwrap();
    for name in ["config.json", "tokenizer.json"] {
        fs::copy(source.join(name), dir.path().join(name)).unwrap();
    }
    serialize_to_file(renamed, None, &dir.path().join("model.safetensors")).unwrap();

    let config = BertConfig::from_file(dir.path().join("config.json")).unwrap();
    let (_, report) =
        BertModel::<TestBackend>::from_safetensors(&config, dir.path().join("model.safetensors"), &Default::default())
            .unwrap();
    assert_eq!(report.prefix, "bert.");
    for key in ["cls.predictions.bias", "embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias"] {
        assert!(report.unused.iter().any(|k| k == key), "{key} not reported in {:?}", report.unused);
    }

    let texts = ["A man is playing a guitar.", "Zwei Hunde spielen im Schnee."];
    let original =
        Embedder::<TestBackend>::from_pretrained(&source, &Default::default()).unwrap().with_normalize(false);
    let variant = Embedder::<TestBackend>::from_pretrained(dir.path(), &Default::default()).unwrap();
    let size = Size::new(6, 384);
    for (a, b) in original.embed(&texts, size).unwrap().iter().zip(&variant.embed(&texts, size).unwrap()) {
        assert_eq!(max_abs_diff(a, b), 0.0);
    }
    // A plain HF folder (no sentence-transformers files) means mean pooling, no normalisation.
    assert!(!variant.sentence_config().normalize);
    assert_eq!(variant.sentence_config().max_seq_length, 512);
}

#[test]
fn sentence_transformers_folders_with_cls_pooling_load_as_cls() {
    let source = minilm_dir();
    let dir = tempfile::tempdir().unwrap();
    for name in ["config.json", "tokenizer.json", "modules.json", "sentence_bert_config.json"] {
        fs::copy(source.join(name), dir.path().join(name)).unwrap();
    }
    std::os::unix::fs::symlink(source.join("model.safetensors"), dir.path().join("model.safetensors")).unwrap();
    fs::create_dir(dir.path().join("1_Pooling")).unwrap();
    fs::write(
        dir.path().join("1_Pooling/config.json"),
        r#"{"word_embedding_dimension": 384, "pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}"#,
    )
    .unwrap();
    let cls = Embedder::<TestBackend>::from_pretrained(dir.path(), &Default::default()).unwrap();
    assert_eq!(cls.sentence_config().pooling, starbucks_model::Pooling::Cls);
    assert!(cls.sentence_config().normalize, "modules.json lists Normalize");
    let manual = Embedder::<TestBackend>::from_pretrained(&source, &Default::default())
        .unwrap()
        .with_pooling(starbucks_model::Pooling::Cls);
    let texts = ["A man is playing a guitar."];
    let size = Size::new(6, 384);
    assert_eq!(max_abs_diff(&cls.embed(&texts, size).unwrap()[0], &manual.embed(&texts, size).unwrap()[0]), 0.0);
}
