//! Bad model folders give a one-line error naming the file, never a panic.

use std::fs;
use std::path::Path;

use starbucks_model::{Embedder, Error, Size, config::BertConfig, tokenizer::Tokenizer};
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

/// `tokenizer.json` of `dir` as JSON text, edited by `edit`.
fn edit_tokenizer(dir: &Path, edit: impl Fn(String) -> String) {
    let path = dir.join("tokenizer.json");
    fs::write(&path, edit(fs::read_to_string(&path).unwrap())).unwrap();
}

/// Three panics inside tokenizers and burn that fuzzing found (fuzz target `model_folder`,
/// docs/reliability.md): each is now an error naming tokenizer.json.
#[test]
fn tokenizer_files_that_panicked_are_errors() {
    // A syntax error inside `decoder`: tokenizers' own parser panics on it.
    let dir = model_copy();
    edit_tokenizer(dir.path(), |t| t.replacen("\"decoder\":{", "\"decoder\":={", 1));
    let message = load_error(dir.path());
    assert!(message.contains("tokenizer.json: not valid JSON"), "{message}");

    let edit_json = |edit: &dyn Fn(&mut serde_json::Value)| {
        let dir = model_copy();
        edit_tokenizer(dir.path(), |text| {
            let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
            edit(&mut json);
            json.to_string()
        });
        load_error(dir.path())
    };
    // A template token that `special_tokens` lacks (a misspelt `type` still reads as a template).
    let message = edit_json(&|json| {
        json["post_processor"]["type"] = "Template9rocessing".into();
        json["post_processor"]["single"][0]["SpecialToken"]["id"] = "[=CLS]".into();
    });
    assert!(message.contains("tokenizer.json: key `post_processor`") && message.contains("[=CLS]"), "{message}");

    // A token type id that the model has no embedding for (the lookup panicked in burn-flex).
    let message = edit_json(&|json| json["post_processor"]["single"][1]["Sequence"]["type_id"] = 5.into());
    assert!(message.contains("token type id 5 is beyond the model's `type_vocab_size` 2"), "{message}");
}
