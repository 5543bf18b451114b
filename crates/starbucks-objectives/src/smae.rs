//! SMAE pre-training (METHOD.md): an MLM head whose dense layer reads only the first d input
//! columns for a d-dim slice, and a one-layer decoder initialised from encoder layer 0, sharing
//! the embeddings and the head. For each size (n, d):
//! - MLM_n: the encoder's layer-n output, cut to d, predicts the encoder-masked tokens;
//! - MAE_n: the decoder reads the decoder-masked text with position 0 replaced by layer n's CLS
//!   vector (cut to d, through the head's transform) and predicts the decoder-masked tokens.
//!
//! Total = mean over sizes of (MLM_n + MAE_n) / 2. Vocabulary logits are computed only at
//! masked positions.

use std::path::Path;

use burn::module::{Module, ModuleMapper, Param};
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use starbucks_model::{
    bert::{BertInput, BertLayer, BertModel, attention_bias, settle},
    config::BertConfig,
    ops::gelu,
    weights::{load_module, read_safetensors_header},
};

use crate::losses::cross_entropy_rows;
use crate::objective::LossOutput;
use crate::sizes::SizeList;

/// `cls.predictions.transform`: dense hidden→hidden, GELU, LayerNorm.
#[derive(Module, Debug)]
pub struct PredictionHeadTransform<B: Backend> {
    pub dense: Linear<B>,
    pub layer_norm: LayerNorm<B>,
}

/// `cls.predictions`: the transform, then the vocabulary decoder tied to the word embeddings,
/// plus its own bias.
#[derive(Module, Debug)]
pub struct MlmHead<B: Backend> {
    pub transform: PredictionHeadTransform<B>,
    pub bias: Param<Tensor<B, 1>>,
}

impl<B: Backend> MlmHead<B> {
    /// A new head (normal 0.02 dense weights, LayerNorm 1/0, zero bias), as HF initialises one.
    pub fn new(config: &BertConfig, device: &B::Device) -> Self {
        let h = config.hidden_size;
        MlmHead {
            transform: PredictionHeadTransform {
                dense: LinearConfig::new(h, h)
                    .with_initializer(Initializer::Normal { mean: 0.0, std: 0.02 })
                    .init(device),
                layer_norm: LayerNormConfig::new(h).with_epsilon(config.layer_norm_eps).init(device),
            },
            bias: Param::from_tensor(Tensor::zeros([config.vocab_size], device)),
        }
    }

    /// The head of an HF `BertForMaskedLM` checkpoint (`cls.predictions.*`) when the file has
    /// one, else a new head.
    pub fn from_safetensors_or_new(
        config: &BertConfig,
        path: &Path,
        device: &B::Device,
    ) -> starbucks_model::Result<Self> {
        let has_head = read_safetensors_header(path)?.keys().any(|k| k.starts_with("cls.predictions.transform."));
        let head = MlmHead::new(config, device);
        if has_head { load_module(head, path, "cls.predictions.") } else { Ok(head) }
    }

    /// `x` `[rows, d]`, d ≤ hidden: the dense layer through its first d input columns only,
    /// then GELU and LayerNorm → `[rows, hidden]`.
    pub fn transform(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let [_, d] = x.dims();
        let dense = &self.transform.dense;
        // burn stores a Linear weight as [input, output]: the first d rows are the first d input columns.
        let mut y = x.matmul(dense.weight.val().narrow(0, 0, d));
        if let Some(bias) = &dense.bias {
            y = y + bias.val().unsqueeze();
        }
        self.transform.layer_norm.forward(gelu(y))
    }

    /// Vocabulary logits `[rows, vocab]` of transformed states, decoder tied to `word_embeddings`.
    pub fn logits(&self, transformed: Tensor<B, 2>, word_embeddings: Tensor<B, 2>) -> Tensor<B, 2> {
        transformed.matmul(word_embeddings.transpose()) + self.bias.val().unsqueeze()
    }
}

/// The masked positions of a `[batch, seq]` label matrix (-100 = not masked): flat indices and
/// their target tokens, on the device.
#[derive(Debug, Clone)]
pub struct Masked<B: Backend> {
    pub positions: Tensor<B, 1, Int>,
    pub targets: Tensor<B, 1, Int>,
    pub count: usize,
}

impl<B: Backend> Masked<B> {
    pub fn from_labels(labels: &[i64], device: &B::Device) -> Self {
        let (positions, targets): (Vec<i64>, Vec<i64>) =
            labels.iter().enumerate().filter(|&(_, &l)| l >= 0).map(|(i, &l)| (i as i64, l)).unzip();
        let count = positions.len();
        Masked {
            positions: Tensor::from_data(TensorData::new(positions, [count]), device),
            targets: Tensor::from_data(TensorData::new(targets, [count]), device),
            count,
        }
    }

    /// The rows of `hidden` `[batch, seq, h]` at the masked positions → `[count, h]`.
    pub fn gather(&self, hidden: Tensor<B, 3>) -> Tensor<B, 2> {
        let [batch, seq, h] = hidden.dims();
        hidden.reshape([batch * seq, h]).select(0, self.positions.clone())
    }
}

/// Gives every float parameter a new id, with a detached copy of its value.
struct FreshParams;

impl<B: Backend> ModuleMapper<B> for FreshParams {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        Param::from_tensor(param.val().detach())
    }
}

/// The SMAE-only modules: the MLM head and the one-layer decoder.
#[derive(Module, Debug)]
pub struct Smae<B: Backend> {
    pub head: MlmHead<B>,
    pub decoder: BertLayer<B>,
}

/// One SMAE batch: the encoder's layer outputs for the encoder-masked text, and the
/// decoder-masked text with both label sets.
pub struct SmaeBatch<'a, B: Backend> {
    /// `hidden[n]` `[batch, seq, h]`, from one encoder pass over the encoder-masked input.
    pub hidden: &'a [Tensor<B, 3>],
    /// The decoder-masked input (same padding mask as the encoder's).
    pub decoder_input: BertInput<B>,
    pub encoder_masked: &'a Masked<B>,
    pub decoder_masked: &'a Masked<B>,
}

impl<B: Backend> Smae<B> {
    /// `head` and a decoder copied from encoder layer 0. The copy gets parameters of its own
    /// (new ids), so an optimiser updates it apart from the encoder's layer 0.
    pub fn new(encoder: &BertModel<B>, head: MlmHead<B>) -> Self {
        let layer0 = &encoder.encoder.layer[0];
        // Parameters are initialised lazily: settle layer 0's values before copying them, or a
        // clone of a never-read parameter would draw its own random values.
        settle(layer0);
        let decoder = layer0.clone().map(&mut FreshParams);
        Smae { head, decoder }
    }

    /// The SMAE loss; terms `mlm(n, d)` and `mae(n, d)` per size.
    ///
    /// Computed without waste, the same numbers as the reference's way: the decoder input of
    /// every size differs from the others only at position 0 (the size's CLS vector), so the
    /// decoder's key, value and query projections of positions 1.. are computed once for all
    /// sizes, and the decoder's attention output, FFN and both LayerNorms run only at the
    /// decoder-masked positions (the only ones predicted). The vocabulary logits of every term
    /// come from one product with the tied word embeddings.
    pub fn loss(&self, encoder: &BertModel<B>, sizes: &SizeList, batch: SmaeBatch<'_, B>) -> LossOutput<B> {
        let words = encoder.embeddings.word_embeddings.weight.val();
        let mask_bias = attention_bias(batch.decoder_input.attention_mask.clone());
        let decoder_embeddings =
            encoder.embeddings.forward(batch.decoder_input.input_ids, batch.decoder_input.token_type_ids);
        let [b, seq, hidden] = decoder_embeddings.dims();
        let rest = decoder_embeddings.narrow(1, 1, seq - 1);
        let attention = &self.decoder.attention.self_attention;
        let shared = attention.project(rest.clone());

        // Rows to predict, in term order mlm(s1), mae(s1), mlm(s2), …, and their targets.
        let mut rows = Vec::new();
        let mut targets = Vec::new();
        for &size in sizes.sizes() {
            let layer = batch.hidden[size.layers].clone();
            rows.push(self.head.transform(batch.encoder_masked.gather(layer.clone()).narrow(1, 0, size.dims)));
            targets.push(batch.encoder_masked.targets.clone());

            let cls = self.head.transform(layer.narrow(1, 0, 1).reshape([b, hidden]).narrow(1, 0, size.dims));
            let cls = cls.unsqueeze_dim::<3>(1);
            let decoder_in = Tensor::cat(vec![cls.clone(), rest.clone()], 1);
            let [q, k, v] = attention.project(cls.clone());
            let [q, k, v] = [(q, &shared[0]), (k, &shared[1]), (v, &shared[2])]
                .map(|(first, others)| Tensor::cat(vec![first, others.clone()], 2));
            let context = attention.attend(q, k, v, mask_bias.clone());
            let at_masks = |t: Tensor<B, 3>| batch.decoder_masked.gather(t);
            let attended = self.decoder.attention.output.forward(at_masks(context), at_masks(decoder_in));
            let decoded = self.decoder.feed_forward(attended);
            rows.push(self.head.transform(decoded));
            targets.push(batch.decoder_masked.targets.clone());
        }
        let counts: Vec<usize> = rows.iter().map(|r| r.dims()[0]).collect();
        let logits = self.head.logits(Tensor::cat(rows, 0), words);
        let losses = cross_entropy_rows(logits, Tensor::cat(targets, 0));

        let mut terms = Vec::new();
        let mut total: Option<Tensor<B, 1>> = None;
        let mut start = 0;
        for (i, &size) in sizes.sizes().iter().enumerate() {
            let mut term = |k: usize| {
                let n = counts[2 * i + k];
                let mean = losses.clone().narrow(0, start, n).mean();
                start += n;
                mean
            };
            let (mlm, mae) = (term(0), term(1));
            let pair = (mlm.clone() + mae.clone()) / 2.0;
            total = Some(match total {
                Some(t) => t + pair,
                None => pair,
            });
            terms.push((format!("mlm{size}"), mlm));
            terms.push((format!("mae{size}"), mae));
        }
        let total = total.expect("a size list is never empty") / sizes.sizes().len() as f64;
        LossOutput { total, terms }
    }
}
