//! `Embedder`: text in, `Vec<f32>` out, at any size; the entry point for programs.

use std::path::Path;

use burn::tensor::backend::Backend;
use serde::Deserialize;

use crate::bert::{BertInput, BertModel};
use crate::config::BertConfig;
use crate::error::{Error, Result, read_json};
use crate::pooling::{Pooling, normalize, pool};
use crate::size::Size;
use crate::tokenizer::Tokenizer;
use crate::weights::{LoadReport, load_safetensors};

impl<B: Backend> BertModel<B> {
    /// Builds the encoder for `config` and loads its weights from an HF `model.safetensors`.
    pub fn from_safetensors(config: &BertConfig, path: impl AsRef<Path>, device: &B::Device) -> Result<(Self, LoadReport)> {
        load_safetensors(BertModel::new(config, device), config, path.as_ref())
    }
}

/// The sentence-transformers settings of a model folder: how long a text may be, how the tokens
/// are pooled, whether the embedding is L2-normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct SentenceConfig {
    pub max_seq_length: usize,
    pub pooling: Pooling,
    pub normalize: bool,
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
            match (p.pooling_mode_cls_token, p.pooling_mode_mean_tokens, p.pooling_mode_max_tokens, p.pooling_mode_mean_sqrt_len_tokens) {
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
        let normalize = modules_path.exists()
            && read_json::<Vec<ModuleEntry>>(&modules_path)?.iter().any(|m| m.kind.ends_with(".Normalize"));
        Ok(SentenceConfig { max_seq_length, pooling, normalize })
    }
}

/// Embeds texts with a 2D Matryoshka BERT at any [`Size`], in batches, on any backend.
#[derive(Debug)]
pub struct Embedder<B: Backend> {
    model: BertModel<B>,
    config: BertConfig,
    tokenizer: Tokenizer,
    sentence: SentenceConfig,
    batch_size: usize,
    device: B::Device,
}

impl<B: Backend> Embedder<B> {
    /// Loads an HF or sentence-transformers folder: `config.json`, `model.safetensors`,
    /// `tokenizer.json`, and the sentence-transformers files where present.
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &B::Device) -> Result<Self> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(Error::io(dir, std::io::Error::new(std::io::ErrorKind::NotFound, "model folder not found")));
        }
        let config = BertConfig::from_file(dir.join("config.json"))?;
        let sentence = SentenceConfig::from_dir(dir, &config)?;
        let tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"), sentence.max_seq_length)?;
        let (model, _) = BertModel::from_safetensors(&config, dir.join("model.safetensors"), device)?;
        Ok(Embedder { model, config, tokenizer, sentence, batch_size: 32, device: device.clone() })
    }

    pub fn with_pooling(mut self, pooling: Pooling) -> Self {
        self.sentence.pooling = pooling;
        self
    }

    pub fn with_normalize(mut self, normalize: bool) -> Self {
        self.sentence.normalize = normalize;
        self
    }

    /// Texts per forward pass (default 32).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    pub fn sentence_config(&self) -> &SentenceConfig {
        &self.sentence
    }

    pub fn model(&self) -> &BertModel<B> {
        &self.model
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// One vector of `size.dims` floats per text, from the first `size.layers` layers only.
    pub fn embed<S: AsRef<str>>(&self, texts: &[S], size: Size) -> Result<Vec<Vec<f32>>> {
        Ok(self.embed_sizes(texts, &[size])?.remove(0))
    }

    /// Embeds at several sizes from one pass through the deepest one: `result[i][j]` is text
    /// `j` at `sizes[i]`. Texts are batched longest first, as sentence-transformers does.
    pub fn embed_sizes<S: AsRef<str>>(&self, texts: &[S], sizes: &[Size]) -> Result<Vec<Vec<Vec<f32>>>> {
        for size in sizes {
            size.check(&self.config)?;
        }
        let layers = sizes.iter().map(|s| s.layers).max().unwrap_or(0);
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(texts[i].as_ref().chars().count()));

        let mut out: Vec<Vec<Vec<f32>>> = sizes.iter().map(|_| vec![Vec::new(); texts.len()]).collect();
        for chunk in order.chunks(self.batch_size) {
            let chunk_texts: Vec<&str> = chunk.iter().map(|&i| texts[i].as_ref()).collect();
            let batch = self.tokenizer.encode(&chunk_texts)?;
            let input = BertInput::<B>::from_batch(&batch, &self.device);
            let mask = input.attention_mask.clone();
            let hidden = self.model.forward(input, layers);
            for (s, size) in sizes.iter().enumerate() {
                let mut pooled = pool(hidden[size.layers].clone(), mask.clone(), self.sentence.pooling).narrow(1, 0, size.dims);
                if self.sentence.normalize {
                    pooled = normalize(pooled);
                }
                let values: Vec<f32> = pooled.into_data().convert::<f32>().to_vec().expect("converted to f32");
                for (row, &i) in values.chunks(size.dims).zip(chunk) {
                    out[s][i] = row.to_vec();
                }
            }
        }
        Ok(out)
    }

}
