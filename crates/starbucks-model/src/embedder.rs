//! `Embedder`: text in, `Vec<f32>` out, at any size; the entry point for programs.

use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use serde::Deserialize;

use crate::bert::{BertInput, BertModel};
use crate::config::BertConfig;
use crate::error::{Error, Result, read_json};
use crate::pooling::{Pooling, normalize, pool};
use crate::precision::Precision;
use crate::size::Size;
use crate::tokenizer::Tokenizer;
use crate::weights::{LoadReport, load_safetensors};

impl<B: Backend> BertModel<B> {
    /// Builds the encoder for `config` and loads its weights from an HF `model.safetensors`.
    pub fn from_safetensors(
        config: &BertConfig,
        path: impl AsRef<Path>,
        device: &B::Device,
    ) -> Result<(Self, LoadReport)> {
        load_safetensors(BertModel::new(config, device), config, path.as_ref())
    }
}

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

/// Embeds texts with a 2D Matryoshka BERT at any [`Size`], in batches, on any backend.
///
/// On the CPU (flex) backend the forward pass runs on the CPU encoder (`cpu.rs`: real tokens
/// only, fused kernels), in f32 by default or in int8 ([`Embedder::with_precision`]); on other
/// backends it runs [`BertModel::forward`].
#[derive(Debug)]
pub struct Embedder<B: Backend> {
    model: BertModel<B>,
    #[cfg(feature = "flex")]
    cpu: Option<crate::cpu::CpuEncoder>,
    precision: Precision,
    /// The Dense module's weight `[in, out]` and bias, when the folder has one.
    dense: Option<(Tensor<B, 2>, Option<Tensor<B, 1>>)>,
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
            let why = if dir.exists() { "a file, not a model folder" } else { "model folder not found" };
            return Err(Error::invalid(dir, why));
        }
        let config = BertConfig::from_file(dir.join("config.json"))?;
        let sentence = SentenceConfig::from_dir(dir, &config)?;
        let tokenizer_path = dir.join("tokenizer.json");
        let tokenizer = Tokenizer::from_file(&tokenizer_path, sentence.max_seq_length)?;
        tokenizer.check_vocab(&config, &tokenizer_path)?;
        let (model, _) = BertModel::from_safetensors(&config, dir.join("model.safetensors"), device)?;
        let dense = sentence.dense.as_ref().map(|d| load_dense(d, device)).transpose()?;
        Ok(Embedder::assemble(model, dense, config, tokenizer, sentence, device))
    }

    fn assemble(
        model: BertModel<B>,
        dense: Option<(Tensor<B, 2>, Option<Tensor<B, 1>>)>,
        config: BertConfig,
        tokenizer: Tokenizer,
        sentence: SentenceConfig,
        device: &B::Device,
    ) -> Self {
        let mut embedder = Embedder {
            model,
            #[cfg(feature = "flex")]
            cpu: None,
            precision: Precision::F32,
            dense,
            config,
            tokenizer,
            sentence,
            batch_size: 32,
            device: device.clone(),
        };
        embedder.prepare_cpu();
        embedder
    }

    /// Whether this embedder runs on the CPU encoder: the flex backend, in a build with the
    /// `flex` feature.
    fn on_cpu() -> bool {
        #[cfg(feature = "flex")]
        {
            std::any::TypeId::of::<B>() == std::any::TypeId::of::<burn_flex::Flex>()
        }
        #[cfg(not(feature = "flex"))]
        {
            false
        }
    }

    /// (Re)builds the CPU encoder from the model in the current precision, on flex.
    fn prepare_cpu(&mut self) {
        #[cfg(feature = "flex")]
        {
            self.cpu = Self::on_cpu().then(|| crate::cpu::CpuEncoder::new(&self.model, &self.config, self.precision));
        }
    }

    /// Multiply in `precision` from now on. `Int8` needs the CPU (flex) backend; the weights are
    /// quantised here, once.
    pub fn with_precision(mut self, precision: Precision) -> Result<Self> {
        if precision != Precision::F32 && !Self::on_cpu() {
            return Err(Error::Precision { precision, backend: std::any::type_name::<B>().to_string() });
        }
        if precision != self.precision {
            self.precision = precision;
            self.prepare_cpu();
        }
        Ok(self)
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The CPU encoder, when this embedder runs on one.
    #[cfg(feature = "flex")]
    pub(crate) fn cpu(&self) -> Option<&crate::cpu::CpuEncoder> {
        self.cpu.as_ref()
    }

    #[cfg(not(feature = "flex"))]
    pub(crate) fn cpu(&self) -> Option<&std::convert::Infallible> {
        None
    }

    /// An embedder around a model in memory (one being trained, say), with its config,
    /// tokenizer and sentence settings. The model has no Dense module: `sentence.dense` is ignored.
    pub fn from_parts(
        model: BertModel<B>,
        config: BertConfig,
        tokenizer: Tokenizer,
        sentence: SentenceConfig,
        device: &B::Device,
    ) -> Self {
        let sentence = SentenceConfig { dense: None, ..sentence };
        Embedder::assemble(model, None, config, tokenizer, sentence, device)
    }

    pub fn with_pooling(mut self, pooling: Pooling) -> Self {
        self.sentence.pooling = pooling;
        self
    }

    pub fn with_normalize(mut self, normalize: bool) -> Self {
        self.sentence.normalize = normalize;
        self
    }

    /// Truncate texts at `max_seq_length` tokens, special tokens included (default: the
    /// folder's `sentence_bert_config.json`), as sentence-transformers' `max_seq_length`.
    pub fn with_max_seq_length(mut self, max_seq_length: usize) -> Result<Self> {
        let limit = self.config.max_position_embeddings;
        if !(3..=limit).contains(&max_seq_length) {
            return Err(Error::Tokenize(format!(
                "max_seq_length {max_seq_length} is outside 3..={limit} (the model's max_position_embeddings)"
            )));
        }
        self.tokenizer = self.tokenizer.with_max_length(max_seq_length)?;
        self.sentence.max_seq_length = max_seq_length;
        Ok(self)
    }

    /// Texts per forward pass (default 32).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// The largest size this folder embeds at: all layers, and the Dense module's output width
    /// (the hidden size when there is none).
    pub fn full_size(&self) -> Size {
        Size::new(
            self.config.num_hidden_layers,
            self.sentence.dense.as_ref().map_or(self.config.hidden_size, |d| d.out_features),
        )
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

    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// One vector of `size.dims` floats per text, from the first `size.layers` layers only.
    pub fn embed<S: AsRef<str>>(&self, texts: &[S], size: Size) -> Result<Vec<Vec<f32>>> {
        Ok(self.embed_sizes(texts, &[size])?.remove(0))
    }

    /// Embeds at several sizes from one pass through the deepest one: `result[i][j]` is text
    /// `j` at `sizes[i]`. Texts are batched longest first, as sentence-transformers does.
    pub fn embed_sizes<S: AsRef<str>>(&self, texts: &[S], sizes: &[Size]) -> Result<Vec<Vec<Vec<f32>>>> {
        for size in sizes {
            size.check_within(self.full_size())?;
        }
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(texts[i].as_ref().chars().count()));

        let mut out: Vec<Vec<Vec<f32>>> = sizes.iter().map(|_| vec![Vec::new(); texts.len()]).collect();
        for chunk in order.chunks(self.batch_size) {
            let chunk_texts: Vec<&str> = chunk.iter().map(|&i| texts[i].as_ref()).collect();
            let batch = self.tokenizer.encode(&chunk_texts)?;
            let pooled = self.pooled(&batch, &sizes.iter().map(|s| s.layers).collect::<Vec<_>>());
            for ((s, size), pooled) in sizes.iter().enumerate().zip(pooled) {
                let mut pooled = self.dense(pooled).narrow(1, 0, size.dims);
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

    /// `batch` pooled after each of `layers` (`[batch, hidden]` each), from one pass through the
    /// deepest: on the CPU encoder where there is one, else through [`BertModel::forward`].
    fn pooled(&self, batch: &crate::tokenizer::Batch, layers: &[usize]) -> Vec<Tensor<B, 2>> {
        #[cfg(feature = "flex")]
        if let Some(cpu) = &self.cpu {
            let shape = [batch.batch_size, self.config.hidden_size];
            return cpu
                .pooled(batch, layers, self.sentence.pooling)
                .into_iter()
                .map(|values| Tensor::from_data(TensorData::new(values, shape), &self.device))
                .collect();
        }
        let input = BertInput::<B>::from_batch(batch, &self.device);
        let mask = input.attention_mask.clone();
        let hidden = self.model.forward(input, layers.iter().copied().max().unwrap_or(0));
        layers.iter().map(|&n| pool(hidden[n].clone(), mask.clone(), self.sentence.pooling)).collect()
    }
}

impl<B: Backend> Embedder<B> {
    /// The sentence vector of each row of `hidden` `[rows, seq, hidden]`: pooled over `mask`,
    /// then through the Dense module when the folder has one (every dim; the caller cuts).
    /// (The server's layer-by-layer [`crate::Pass`] runs on the burn model.)
    pub(crate) fn pool(&self, hidden: Tensor<B, 3>, mask: Tensor<B, 2>) -> Tensor<B, 2> {
        self.dense(pool(hidden, mask, self.sentence.pooling))
    }

    /// The sentence vector of each text of `rows` (the CPU encoder's hidden states), as
    /// [`Self::pool`].
    #[cfg(feature = "flex")]
    pub(crate) fn pooled_rows(&self, rows: &crate::cpu::Rows) -> Tensor<B, 2> {
        let shape = [rows.texts(), self.config.hidden_size];
        self.dense(Tensor::from_data(TensorData::new(rows.pool(self.sentence.pooling), shape), &self.device))
    }

    /// `pooled` `[rows, hidden]` through the Dense module when the folder has one.
    fn dense(&self, pooled: Tensor<B, 2>) -> Tensor<B, 2> {
        match &self.dense {
            Some((weight, Some(bias))) => pooled.matmul(weight.clone()) + bias.clone().unsqueeze(),
            Some((weight, None)) => pooled.matmul(weight.clone()),
            None => pooled,
        }
    }
}

/// Reads a Dense module's `model.safetensors` (`linear.weight` `[out, in]`, `linear.bias`).
fn load_dense<B: Backend>(dense: &DenseConfig, device: &B::Device) -> Result<(Tensor<B, 2>, Option<Tensor<B, 1>>)> {
    let path = dense.path.join("model.safetensors");
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let tensors = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| Error::invalid(&path, e.to_string()))?;
    let read = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
        let view = tensors.tensor(name).map_err(|_| Error::invalid(&path, format!("no `{name}` tensor")))?;
        if view.dtype() != safetensors::Dtype::F32 || view.shape() != shape {
            return Err(Error::invalid(
                &path,
                format!("`{name}` must be F32 {shape:?}, found {:?} {:?}", view.dtype(), view.shape()),
            ));
        }
        Ok(view.data().chunks(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect())
    };
    let weight = read("linear.weight", &[dense.out_features, dense.in_features])?;
    let weight =
        Tensor::<B, 2>::from_data(TensorData::new(weight, [dense.out_features, dense.in_features]), device).transpose();
    let bias = if dense.bias {
        let b = read("linear.bias", &[dense.out_features])?;
        Some(Tensor::from_data(TensorData::new(b, [dense.out_features]), device))
    } else {
        None
    };
    Ok((weight, bias))
}
