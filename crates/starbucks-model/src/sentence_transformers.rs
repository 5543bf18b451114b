//! The sentence-transformers folder format, read and written in one place: the modules after
//! the transformer (`modules.json`), `sentence_bert_config.json`, `1_Pooling/config.json`, a
//! `Dense` module (`linear.weight`, `linear.bias`, loaded and saved through burn-store as the
//! encoder is) and `Normalize`.

use std::path::Path;

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::BertConfig;
use crate::error::{Error, Result, read_json, write_json};
use crate::pooling::Pooling;
use crate::size::Size;
use crate::weights::{load_module, save_module};

/// The sentence-transformers settings of a model folder: how long a text may be, how the tokens
/// are pooled, whether the embedding is L2-normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct SentenceConfig {
    pub max_seq_length: usize,
    pub pooling: Pooling,
    /// A sentence-transformers `Dense` module after pooling (identity activation).
    pub dense: Option<DenseConfig>,
    pub normalize: bool,
}

/// A `Dense` module's folder and shape.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DenseConfig {
    #[serde(skip)]
    pub path: std::path::PathBuf,
    pub in_features: usize,
    pub out_features: usize,
    #[serde(default = "yes")]
    pub bias: bool,
    #[serde(default = "identity")]
    pub activation_function: String,
}

fn yes() -> bool {
    true
}

fn identity() -> String {
    "torch.nn.modules.linear.Identity".into()
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: usize,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

#[derive(Deserialize)]
struct ModuleEntry {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: String,
}

impl SentenceConfig {
    /// Reads `sentence_bert_config.json`, `1_Pooling/config.json` and `modules.json` where
    /// present; a plain HF folder gets mean pooling, no normalisation, and the model's
    /// position limit.
    pub fn from_dir(dir: &Path, config: &BertConfig) -> Result<Self> {
        let sbert = dir.join("sentence_bert_config.json");
        let max_seq_length = if sbert.exists() {
            read_json::<SentenceBertConfig>(&sbert)?.max_seq_length.min(config.max_position_embeddings)
        } else {
            config.max_position_embeddings
        };
        let pooling_path = dir.join("1_Pooling").join("config.json");
        let pooling = if pooling_path.exists() {
            let p: PoolingConfig = read_json(&pooling_path)?;
            match (
                p.pooling_mode_cls_token,
                p.pooling_mode_mean_tokens,
                p.pooling_mode_max_tokens,
                p.pooling_mode_mean_sqrt_len_tokens,
            ) {
                (true, false, false, false) => Pooling::Cls,
                (false, true, false, false) => Pooling::Mean,
                _ => {
                    return Err(Error::invalid(
                        &pooling_path,
                        "unsupported pooling: exactly one of `pooling_mode_cls_token` and `pooling_mode_mean_tokens` must be true",
                    ));
                }
            }
        } else {
            Pooling::Mean
        };
        let modules_path = dir.join("modules.json");
        let modules: Vec<ModuleEntry> = if modules_path.exists() { read_json(&modules_path)? } else { Vec::new() };
        let normalize = modules.iter().any(|m| m.kind.ends_with(".Normalize"));
        let dense = match modules.iter().find(|m| m.kind.ends_with(".Dense")) {
            Some(m) => {
                let folder = dir.join(&m.path);
                let config_path = folder.join("config.json");
                let mut dense: DenseConfig = read_json(&config_path)?;
                if !dense.activation_function.ends_with("Identity") {
                    return Err(Error::invalid(
                        &config_path,
                        format!("unsupported Dense activation `{}` (only Identity)", dense.activation_function),
                    ));
                }
                if dense.in_features != config.hidden_size {
                    return Err(Error::invalid(
                        &config_path,
                        format!(
                            "`in_features` {} differs from the model's hidden size {}",
                            dense.in_features, config.hidden_size
                        ),
                    ));
                }
                dense.path = folder;
                Some(dense)
            }
            None => None,
        };
        Ok(SentenceConfig { max_seq_length, pooling, dense, normalize })
    }
}

/// sentence-transformers' `Dense` module with the identity activation: `[rows, in]` to
/// `[rows, out]`. Its parameter paths are the file's keys.
#[derive(Module, Debug)]
pub struct Dense<B: Backend> {
    linear: Linear<B>,
}

impl<B: Backend> Dense<B> {
    /// Reads the module's `model.safetensors` (PyTorch layout `[out, in]`).
    pub fn load(config: &DenseConfig, device: &B::Device) -> Result<Self> {
        let linear = LinearConfig::new(config.in_features, config.out_features).with_bias(config.bias).init(device);
        load_module(Dense { linear }, &config.path.join("model.safetensors"), "")
    }

    /// The first `dims` of `hidden` inputs, no bias: what an exported folder cut to `dims` adds.
    fn identity_slice(dims: usize, hidden: usize, device: &B::Device) -> Self {
        let mut eye = vec![0f32; hidden * dims];
        for i in 0..dims {
            eye[i * dims + i] = 1.0;
        }
        let weight = Tensor::from_data(TensorData::new(eye, [hidden, dims]), device);
        Dense { linear: Linear { weight: Param::from_tensor(weight), bias: None } }
    }

    fn save(&self, path: &Path) -> Result<()> {
        save_module(self, path)
    }

    pub fn forward(&self, pooled: Tensor<B, 2>) -> Tensor<B, 2> {
        self.linear.forward(pooled)
    }
}

/// Writes the sentence-transformers files of a folder whose transformer (config, weights,
/// tokenizer) is already in `out`: `sentence` as read back by [`SentenceConfig::from_dir`], a
/// `2_Dense` identity slice when `size` cuts dims, and `Normalize` when asked.
pub(crate) fn write_modules<B: Backend>(
    out: &Path,
    sentence: &SentenceConfig,
    config: &BertConfig,
    size: Size,
    normalize: bool,
    device: &B::Device,
) -> Result<()> {
    let mkdir = |p: &Path| std::fs::create_dir_all(p).map_err(|e| Error::io(p, e));
    write_json(
        &out.join("sentence_bert_config.json"),
        &json!({"max_seq_length": sentence.max_seq_length, "do_lower_case": false}),
    )?;
    write_json(
        &out.join("config_sentence_transformers.json"),
        &json!({"__version__": {"starbucks-rs": env!("CARGO_PKG_VERSION")}, "prompts": {}, "default_prompt_name": null, "similarity_fn_name": "cosine"}),
    )?;
    mkdir(&out.join("1_Pooling"))?;
    write_json(
        &out.join("1_Pooling/config.json"),
        &json!({
            "word_embedding_dimension": config.hidden_size,
            "pooling_mode_cls_token": sentence.pooling == Pooling::Cls,
            "pooling_mode_mean_tokens": sentence.pooling == Pooling::Mean,
            "pooling_mode_max_tokens": false,
            "pooling_mode_mean_sqrt_len_tokens": false,
            "pooling_mode_weightedmean_tokens": false,
            "pooling_mode_lasttoken": false,
            "include_prompt": true
        }),
    )?;
    let mut modules = vec![
        json!({"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}),
        json!({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}),
    ];
    if size.dims < config.hidden_size {
        mkdir(&out.join("2_Dense"))?;
        write_json(
            &out.join("2_Dense/config.json"),
            &json!({"in_features": config.hidden_size, "out_features": size.dims, "bias": false, "activation_function": "torch.nn.modules.linear.Identity"}),
        )?;
        Dense::<B>::identity_slice(size.dims, config.hidden_size, device)
            .save(&out.join("2_Dense/model.safetensors"))?;
        modules.push(json!({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}));
    }
    if normalize {
        let idx = modules.len();
        modules.push(json!({"idx": idx, "name": idx.to_string(), "path": format!("{idx}_Normalize"), "type": "sentence_transformers.models.Normalize"}));
        mkdir(&out.join(format!("{idx}_Normalize")))?;
    }
    write_json(&out.join("modules.json"), &Value::Array(modules))
}
