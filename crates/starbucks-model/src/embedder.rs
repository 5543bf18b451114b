//! `Embedder`: text in, `Vec<f32>` out, at any size; the entry point for programs. Loading and
//! options here, the layer-by-layer [`Pass`] the server batches with in `pass.rs`, the CPU
//! encoder it runs on with the `flex` feature in `cpu.rs`.

#[cfg(feature = "flex")]
mod cpu;
mod pass;

pub use pass::Pass;

use std::path::Path;

use burn::tensor::Tensor;
#[cfg(feature = "flex")]
use burn::tensor::TensorData;
use burn::tensor::backend::Backend;

use crate::bert::{BertInput, BertModel};
use crate::config::BertConfig;
use crate::error::{Error, Result};
use crate::host::values;
use crate::pooling::{Pooling, normalize_vector, pool};
use crate::precision::Precision;
use crate::sentence_transformers::{Dense, SentenceConfig};
use crate::size::Size;
use crate::tokenizer::{Batch, Tokenizer};

/// Embeds texts with a 2D Matryoshka BERT at any [`Size`], in batches, on any backend.
///
/// On the CPU (flex) backend the forward pass runs on the CPU encoder (`cpu.rs`: real tokens
/// only, fused kernels), in f32 by default or in int8 or bf16 ([`Embedder::with_precision`]);
/// on other backends it runs [`BertModel::forward`].
#[derive(Debug)]
pub struct Embedder<B: Backend> {
    model: BertModel<B>,
    /// Built at first use, in the precision then set: `from_pretrained(..)?.with_precision(..)`
    /// copies and packs the weights once, not once per precision.
    #[cfg(feature = "flex")]
    cpu: std::sync::OnceLock<cpu::CpuEncoder>,
    precision: Precision,
    /// The folder's Dense module, when it has one.
    dense: Option<Dense<B>>,
    config: BertConfig,
    tokenizer: Tokenizer,
    sentence: SentenceConfig,
    batch_size: usize,
    device: B::Device,
}

impl<B: Backend> Embedder<B> {
    /// Loads an HF or sentence-transformers model: `config.json`, `model.safetensors`,
    /// `tokenizer.json`, and the sentence-transformers files where present. `name_or_path` is a
    /// folder, or a hub id (`org/name[@revision]`) fetched into the HuggingFace cache as
    /// sentence-transformers does (a folder at that path wins; see [`resolve_model`](crate::resolve_model)).
    pub fn from_pretrained(name_or_path: impl AsRef<Path>, device: &B::Device) -> Result<Self> {
        let dir = &crate::resolve_model(name_or_path.as_ref())?;
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
        let dense = sentence.dense.as_ref().map(|d| Dense::load(d, device)).transpose()?;
        Ok(Embedder::assemble(model, dense, config, tokenizer, sentence, device))
    }

    fn assemble(
        model: BertModel<B>,
        dense: Option<Dense<B>>,
        config: BertConfig,
        tokenizer: Tokenizer,
        sentence: SentenceConfig,
        device: &B::Device,
    ) -> Self {
        Embedder {
            model,
            #[cfg(feature = "flex")]
            cpu: std::sync::OnceLock::new(),
            precision: Precision::F32,
            dense,
            config,
            tokenizer,
            sentence,
            batch_size: 32,
            device: device.clone(),
        }
    }

    /// Whether this embedder runs on the CPU encoder: the flex backend, in a build with the
    /// `flex` feature (the default; see the crate's front page).
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

    /// Multiply in `precision` from now on. `Int8` and `Bf16` need the CPU (flex) backend, and
    /// `Bf16` a CPU with AVX-512 BF16; the weights are converted once, at the first embedding.
    pub fn with_precision(mut self, precision: Precision) -> Result<Self> {
        if precision != Precision::F32 && !Self::on_cpu() {
            let backend = std::any::type_name::<B>();
            let backend = if cfg!(feature = "flex") {
                backend.to_string()
            } else {
                format!("{backend}, in a build of starbucks-model without its `flex` feature")
            };
            return Err(Error::Precision { precision, backend });
        }
        if !precision.runs_on_this_cpu() {
            return Err(Error::NoBf16);
        }
        if precision != self.precision {
            self.precision = precision;
            #[cfg(feature = "flex")]
            {
                self.cpu = std::sync::OnceLock::new();
            }
        }
        Ok(self)
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The CPU encoder, when this embedder runs on one: made from the model in the current
    /// precision the first time it is asked for.
    #[cfg(feature = "flex")]
    fn cpu(&self) -> Option<&cpu::CpuEncoder> {
        Self::on_cpu().then(|| self.cpu.get_or_init(|| cpu::CpuEncoder::new(&self.model, &self.config, self.precision)))
    }

    #[cfg(not(feature = "flex"))]
    fn cpu(&self) -> Option<&std::convert::Infallible> {
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
        let layers: Vec<usize> = sizes.iter().map(|s| s.layers).collect();
        let width = self.full_size().dims;
        for chunk in order.chunks(self.batch_size) {
            let chunk_texts: Vec<&str> = chunk.iter().map(|&i| texts[i].as_ref()).collect();
            let batch = self.tokenizer.encode(&chunk_texts)?;
            for ((s, size), values) in sizes.iter().enumerate().zip(self.sentence_vectors(&batch, &layers)) {
                for (row, &i) in values.chunks(width).zip(chunk) {
                    let mut vector = row[..size.dims].to_vec();
                    if self.sentence.normalize {
                        normalize_vector(&mut vector);
                    }
                    out[s][i] = vector;
                }
            }
        }
        Ok(out)
    }

    /// The sentence vectors of `batch` after each of `layers`, every dim (`[batch, width]` row
    /// by row), from one pass through the deepest: on the CPU encoder where there is one (its
    /// pooled rows as they are, unless a Dense module follows), else through
    /// [`BertModel::forward`].
    fn sentence_vectors(&self, batch: &Batch, layers: &[usize]) -> Vec<Vec<f32>> {
        #[cfg(feature = "flex")]
        if let Some(cpu) = self.cpu() {
            let pooled = cpu.pooled(batch, layers, self.sentence.pooling);
            if self.dense.is_none() {
                return pooled;
            }
            let shape = [batch.batch_size, self.config.hidden_size];
            let to_tensor = |values| Tensor::<B, 2>::from_data(TensorData::new(values, shape), &self.device);
            return pooled.into_iter().map(|rows| values(self.dense(to_tensor(rows)))).collect();
        }
        let input = BertInput::<B>::from_batch(batch, &self.device);
        let mask = input.attention_mask.clone();
        let hidden = self.model.forward(input, layers.iter().copied().max().unwrap_or(0));
        layers.iter().map(|&n| values(self.pool(hidden[n].clone(), mask.clone()))).collect()
    }
}

impl<B: Backend> Embedder<B> {
    /// The sentence vector of each row of `hidden` `[rows, seq, hidden]`: pooled over `mask`,
    /// then through the Dense module when the folder has one (every dim; the caller cuts).
    /// (The server's layer-by-layer [`Pass`] runs on the burn model.)
    fn pool(&self, hidden: Tensor<B, 3>, mask: Tensor<B, 2>) -> Tensor<B, 2> {
        self.dense(pool(hidden, mask, self.sentence.pooling))
    }

    /// The sentence vector of each text of `rows` (the CPU encoder's hidden states), as
    /// [`Self::pool`].
    #[cfg(feature = "flex")]
    fn pooled_rows(&self, rows: &cpu::Rows) -> Tensor<B, 2> {
        let shape = [rows.texts(), self.config.hidden_size];
        self.dense(Tensor::from_data(TensorData::new(rows.pool(self.sentence.pooling), shape), &self.device))
    }

    /// `pooled` `[rows, hidden]` through the Dense module when the folder has one.
    fn dense(&self, pooled: Tensor<B, 2>) -> Tensor<B, 2> {
        match &self.dense {
            Some(dense) => dense.forward(pooled),
            None => pooled,
        }
    }
}
