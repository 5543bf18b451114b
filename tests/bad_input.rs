//! Bad model folders give a one-line error naming the file, never a panic.

use std::fs;
use std::path::Path;

use starbucks_model::{BertConfig, Embedder, Error, Size, Tokenizer};
use starbucks_tests::{TestBackend, minilm_dir};

/// A copy of all-MiniLM-L6-v2 (weights linked, not copied) that a test may break.
fn model_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let source = minilm_dir();
    for name in ["config.json", "tokenizer.json", "sentence_bert_config.json", "modules.json"] {
        fs::copy(source.join(name), dir.path().join(name)).unwrap();
    }
    fs::create_dir(dir.path().join("1_Pooling")).unwrap();
    fs::copy(source.join("1_Pooling/config.json"), dir.path().join("1_Pooling/config.json")).unwrap();
    std::os::unix::fs::symlink(source.join("model.safetensors"), dir.path().join("model.safetensors")).unwrap();
    dir
}

fn load_error(dir: &Path) -> String {
    let err = Embedder::<TestBackend>::from_pretrained(dir, &Default::default()).expect_err("loading must fail");
    let message = err.to_string();
    assert!(!message.contains('\n'), "one line expected, got {message:?}");
    message
}

fn edit_config(dir: &Path, key: &str, value: serde_json::Value) {
    let path = dir.join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    config[key] = value;
    fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
}

#[test]
fn an_intact_copy_loads() {
    let dir = model_copy();
    Embedder::<TestBackend>::from_pretrained(dir.path(), &Default::default()).unwrap();
}

#[test]
fn a_missing_file_is_named() {
    let dir = model_copy();
    fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let message = load_error(dir.path());
    assert!(message.contains("model.safetensors"), "{message}");

    let dir = model_copy();
    fs::remove_file(dir.path().join("config.json")).unwrap();
    let message = load_error(dir.path());
    assert!(message.contains("config.json"), "{message}");

    let message = load_error(Path::new("/nonexistent/model"));
    assert!(message.contains("/nonexistent/model"), "{message}");
}

#[test]
fn a_truncated_safetensors_file_is_named() {
    let dir = model_copy();
    let weights = dir.path().join("model.safetensors");
    let bytes = fs::read(&weights).unwrap();
    fs::remove_file(&weights).unwrap();
    fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let message = load_error(dir.path());
    assert!(message.contains("model.safetensors") && message.contains("truncated"), "{message}");

    fs::write(&weights, &bytes[..4]).unwrap();
    let message = load_error(dir.path());
    assert!(message.contains("model.safetensors"), "{message}");
}

#[test]
fn hidden_size_not_divisible_by_heads_is_a_config_error() {
    let dir = model_copy();
    edit_config(dir.path(), "num_attention_heads", 7.into());
    let message = load_error(dir.path());
    assert!(message.contains("config.json") && message.contains("not divisible"), "{message}");
}

#[test]
fn a_wrongly_typed_config_value_names_the_key() {
    let dir = model_copy();
    edit_config(dir.path(), "hidden_size", "large".into());
    let message = load_error(dir.path());
    assert!(message.contains("config.json") && message.contains("hidden_size"), "{message}");
}

#[test]
fn a_tokenizer_that_is_not_json_is_named() {
    let dir = model_copy();
    fs::write(dir.path().join("tokenizer.json"), "this is not json {").unwrap();
    let message = load_error(dir.path());
    assert!(message.contains("tokenizer.json"), "{message}");
    let err = Tokenizer::from_file(dir.path().join("tokenizer.json"), 128).unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }));
}

#[test]
fn a_shape_mismatch_names_the_key_and_both_shapes() {
    let dir = model_copy();
    edit_config(dir.path(), "intermediate_size", 1000.into());
    let message = load_error(dir.path());
    assert!(message.contains("model.safetensors"), "{message}");
    assert!(message.contains("encoder.layer.0.intermediate.dense.weight"), "{message}");
    assert!(message.contains("[1536, 384]") && message.contains("[1000, 384]"), "{message}");
}

#[test]
fn missing_weights_are_named() {
    let dir = model_copy();
    edit_config(dir.path(), "num_hidden_layers", 7.into());
    let message = load_error(dir.path());
    assert!(message.contains("missing weights") && message.contains("encoder.layer.6."), "{message}");
}

#[test]
fn a_size_larger_than_the_model_is_an_error() {
    let embedder = Embedder::<TestBackend>::from_pretrained(minilm_dir(), &Default::default()).unwrap();
    for size in [Size::new(7, 384), Size::new(6, 768), "trenta".parse().unwrap()] {
        let err = embedder.embed(&["text"], size).unwrap_err();
        assert!(matches!(err, Error::SizeTooLarge { .. }), "{err}");
    }
    let config = BertConfig::from_file(minilm_dir().join("config.json")).unwrap();
    assert!(Size::new(6, 384).check(&config).is_ok());
}
