//! Export of a standalone (n layers, d dims) model folder that sentence-transformers and
//! text-embeddings-inference load with no code: `config.json` with `num_hidden_layers = n`,
//! `model.safetensors` holding only the embeddings and the first n layers, the tokenizer files,
//! `modules.json`, `sentence_bert_config.json`, `config_sentence_transformers.json`,
//! `1_Pooling/config.json`, a `2_Dense` identity slice of the first d dims when d < hidden, and
//! `3_Normalize` when asked. The trained size list goes into `config.json`.

use std::path::Path;

use burn::tensor::backend::Backend;
use serde_json::{Value, json};

use crate::embedder::Embedder;
use crate::error::{Error, Result, read_json, write_json};
use crate::sentence_transformers::write_modules;
use crate::size::Size;
use crate::weights::save_hf_safetensors;

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub size: Size,
    /// Append a `Normalize` module (unit-length embeddings).
    pub normalize: bool,
    /// Write the sentence-transformers modules; without them the folder is a plain HF
    /// `BertModel` (config, weights, tokenizer), which cannot express a dims cut.
    pub sentence_transformers: bool,
    /// The sizes the model was trained for, recorded in `config.json` (`starbucks_sizes`, and
    /// `matryoshka_dimensions` for the exported depth) so servers can refuse other sizes.
    pub trained_sizes: Vec<Size>,
}

const TOKENIZER_FILES: [&str; 5] =
    ["tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"];

/// Writes the exported folder `out` (created; must not exist yet) from the model folder `source`
/// that `embedder` was loaded from.
pub fn export_sentence_transformers<B: Backend>(
    embedder: &Embedder<B>,
    source: &Path,
    out: &Path,
    options: &ExportOptions,
) -> Result<()> {
    options.size.check(embedder.config())?;
    if !options.sentence_transformers && (options.size.dims != embedder.config().hidden_size || options.normalize) {
        return Err(Error::invalid(
            out,
            "a plain HF folder keeps every dim and no Normalize: export with the sentence-transformers format to cut dims",
        ));
    }
    if out.exists() {
        return Err(Error::invalid(out, "the output folder already exists"));
    }
    let staging = out.with_extension("partial");
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    }
    let result = write_folder(embedder, source, &staging, options);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
        return result;
    }
    std::fs::rename(&staging, out).map_err(|e| Error::io(out, e))
}

fn write_folder<B: Backend>(embedder: &Embedder<B>, source: &Path, out: &Path, options: &ExportOptions) -> Result<()> {
    let config = embedder.config();
    let size = options.size;
    let mkdir = |p: &Path| std::fs::create_dir_all(p).map_err(|e| Error::io(p, e));
    mkdir(out)?;

    let mut hf: Value = read_json(&source.join("config.json"))?;
    hf["num_hidden_layers"] = json!(size.layers);
    hf["architectures"] = json!(["BertModel"]);
    hf["model_type"] = json!("bert");
    let sizes: Vec<Size> = if options.trained_sizes.is_empty() { vec![size] } else { options.trained_sizes.clone() };
    hf["starbucks_sizes"] = json!(sizes.iter().map(|s| [s.layers, s.dims]).collect::<Vec<_>>());
    let mut dims: Vec<usize> =
        sizes.iter().filter(|s| s.layers == size.layers && s.dims <= size.dims).map(|s| s.dims).collect();
    dims.sort_unstable_by(|a, b| b.cmp(a));
    dims.dedup();
    hf["matryoshka_dimensions"] = json!(dims);
    write_json(&out.join("config.json"), &hf)?;

    save_hf_safetensors(embedder.model(), &out.join("model.safetensors"), size.layers)?;
    for name in TOKENIZER_FILES {
        let from = source.join(name);
        if from.is_file() {
            std::fs::copy(&from, out.join(name)).map_err(|e| Error::io(&from, e))?;
        }
    }

    if !options.sentence_transformers {
        return Ok(());
    }
    let device = embedder.device();
    write_modules::<B>(out, embedder.sentence_config(), config, size, options.normalize, device)
}
