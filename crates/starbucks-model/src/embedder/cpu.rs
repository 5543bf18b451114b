//! The CPU encoder: [`BertModel`]'s inference forward for the flex backend, on plain rows.
//!
//! burn runs the encoder op by op on padded `[batch, seq, hidden]` tensors, each op a fresh
//! buffer. For inference on the CPU this runs the same layers on the real tokens only (the
//! sequences of a batch one after another, no padding rows in any product), with the query,
//! key and value weights fused into one product, attention per sequence without a padded score
//! tensor, and each block's residual add and LayerNorm in one pass. Its matrix products run in
//! the [`Precision`] asked for. The weights are copied out of the model once, when the
//! [`crate::Embedder`] is made; the burn model stays the reference (training, other backends,
//! the tests that hold this path to it).

use burn::module::Param;
use burn::nn::{LayerNorm as BurnLayerNorm, Linear as BurnLinear};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use starbucks_kernels::Linear;
use starbucks_kernels::attention::attention;
use starbucks_kernels::norm::LayerNorm;
use starbucks_kernels::scratch;

use crate::bert::{BertLayer, BertModel};
use crate::config::{BertConfig, HiddenAct};
use crate::host::values;
use crate::pooling::Pooling;
use crate::precision::Precision;
use crate::tokenizer::Batch;

/// `BertModel`'s weights, prepared for the CPU kernels.
pub struct CpuEncoder {
    word_embeddings: Vec<f32>,
    position_embeddings: Vec<f32>,
    token_type_embeddings: Vec<f32>,
    embeddings_norm: LayerNorm,
    layers: Vec<CpuLayer>,
    hidden: usize,
    heads: usize,
}

/// Shapes only: the weights are tens of megabytes of floats.
impl std::fmt::Debug for CpuEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuEncoder")
            .field("layers", &self.layers.len())
            .field("hidden", &self.hidden)
            .field("heads", &self.heads)
            .finish_non_exhaustive()
    }
}

/// `encoder.layer.{i}`: the fused query/key/value product, then the model's own blocks.
struct CpuLayer {
    qkv: Linear,
    attention_output: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    hidden_act: HiddenAct,
    output: Linear,
    output_norm: LayerNorm,
}

fn param<B: Backend, const D: usize>(param: &Param<Tensor<B, D>>) -> Vec<f32> {
    values(param.val())
}

/// burn keeps a LayerNorm's epsilon private: it comes from the config (`layer_norm_eps`).
fn layer_norm<B: Backend>(norm: &BurnLayerNorm<B>, eps: f64) -> LayerNorm {
    LayerNorm {
        gamma: param(&norm.gamma),
        beta: norm.beta.as_ref().map(param).unwrap_or_else(|| vec![0.0; norm.gamma.dims()[0]]),
        eps: eps as f32,
    }
}

fn linear<B: Backend>(layer: &BurnLinear<B>, precision: Precision) -> Linear {
    let [in_features, out_features] = layer.weight.dims();
    let bias = layer.bias.as_ref().map(param);
    precision.linear(param(&layer.weight), in_features, out_features, bias)
}

impl CpuLayer {
    fn new<B: Backend>(layer: &BertLayer<B>, config: &BertConfig, precision: Precision) -> Self {
        let eps = config.layer_norm_eps;
        let attention = &layer.attention.self_attention;
        let [hidden, _] = attention.query.weight.dims();
        let (weight, bias) = attention.fused_qkv();
        let bias = bias.map(values);
        CpuLayer {
            qkv: precision.linear(values(weight), hidden, 3 * hidden, bias),
            attention_output: linear(&layer.attention.output.dense, precision),
            attention_norm: layer_norm(&layer.attention.output.layer_norm, eps),
            intermediate: linear(&layer.intermediate.dense, precision),
            hidden_act: layer.intermediate.hidden_act,
            output: linear(&layer.output.dense, precision),
            output_norm: layer_norm(&layer.output.layer_norm, eps),
        }
    }

    /// One layer on `x` (`[rows, hidden]`, sequences at `offsets`), in place.
    fn forward(&self, x: &mut Vec<f32>, offsets: &[usize], heads: usize) {
        let (rows, hidden) = (offsets.last().copied().unwrap_or(0), self.attention_output.out_features());
        // Each buffer goes back to the kernels' scratch as soon as it is read for the last time,
        // where the next product takes it: a layer reuses its own buffers, a call the last one's.
        let qkv = self.qkv.forward(x, rows);
        let context = attention(&qkv, offsets, heads, hidden / heads);
        scratch::keep(qkv);
        let mut attended = self.attention_output.forward(&context, rows);
        scratch::keep(context);
        self.attention_norm.forward(&mut attended, Some(x));
        let mut inner = self.intermediate.forward(&attended, rows);
        match self.hidden_act {
            HiddenAct::Gelu => starbucks_kernels::gelu_in_place(&mut inner),
            HiddenAct::GeluNew => starbucks_kernels::gelu_tanh_in_place(&mut inner),
            HiddenAct::Relu => starbucks_kernels::relu_in_place(&mut inner),
        }
        let mut out = self.output.forward(&inner, rows);
        scratch::keep(inner);
        self.output_norm.forward(&mut out, Some(&attended));
        scratch::keep(attended);
        scratch::keep(std::mem::replace(x, out));
    }
}

impl CpuEncoder {
    /// Copies `model`'s weights out (shaped by `config`), its matrix products prepared in
    /// `precision`.
    pub fn new<B: Backend>(model: &BertModel<B>, config: &BertConfig, precision: Precision) -> Self {
        let embeddings = &model.embeddings;
        CpuEncoder {
            word_embeddings: param(&embeddings.word_embeddings.weight),
            position_embeddings: param(&embeddings.position_embeddings.weight),
            token_type_embeddings: param(&embeddings.token_type_embeddings.weight),
            embeddings_norm: layer_norm(&embeddings.layer_norm, config.layer_norm_eps),
            layers: model.encoder.layer.iter().map(|l| CpuLayer::new(l, config, precision)).collect(),
            hidden: config.hidden_size,
            heads: config.num_attention_heads,
        }
    }

    /// The pooled vector of every text of `batch` after each layer in `layers` (0: the
    /// embeddings), from one pass through the deepest: `result[i]` is `[batch, hidden]`,
    /// row-major, for `layers[i]`.
    pub fn pooled(&self, batch: &Batch, layers: &[usize], pooling: Pooling) -> Vec<Vec<f32>> {
        on_pool(|| self.pooled_here(batch, layers, pooling))
    }

    fn pooled_here(&self, batch: &Batch, layers: &[usize], pooling: Pooling) -> Vec<Vec<f32>> {
        let mut rows = self.start(batch);
        let deepest = layers.iter().copied().max().unwrap_or(0);
        let mut out = vec![Vec::new(); layers.len()];
        for depth in 0..=deepest {
            if depth > 0 {
                self.layer(&mut rows, depth);
            }
            for (i, _) in layers.iter().enumerate().filter(|(_, n)| **n == depth) {
                out[i] = rows.pool(pooling);
            }
        }
        out
    }

    /// Runs layer `layer` (1-based) on `rows`.
    ///
    /// Panics if the model has fewer layers; check sizes with [`crate::Size::check`].
    pub fn layer(&self, rows: &mut Rows, layer: usize) {
        assert!((1..=self.layers.len()).contains(&layer), "no layer {layer} in a {}-layer model", self.layers.len());
        on_pool(|| self.layers[layer - 1].forward(&mut rows.x, &rows.offsets, self.heads));
    }

    /// The embedding output (layer 0) of every real token (`mask` 1) of `batch`, the texts one
    /// after another.
    pub fn start(&self, batch: &Batch) -> Rows {
        let (hidden, seq) = (self.hidden, batch.seq_len);
        let mut x = scratch::take(batch.input_ids.len() * hidden);
        let mut offsets = vec![0];
        for row in 0..batch.batch_size {
            for position in 0..seq {
                let at = row * seq + position;
                if batch.attention_mask[at] == 0 {
                    continue;
                }
                let (id, kind) = (batch.input_ids[at] as usize, batch.token_type_ids[at] as usize);
                let word = &self.word_embeddings[id * hidden..(id + 1) * hidden];
                let place = &self.position_embeddings[position * hidden..(position + 1) * hidden];
                let kind = &self.token_type_embeddings[kind * hidden..(kind + 1) * hidden];
                x.extend(word.iter().zip(place).zip(kind).map(|((w, p), t)| w + p + t));
            }
            offsets.push(x.len() / hidden);
        }
        self.embeddings_norm.forward(&mut x, None);
        Rows { x, offsets, hidden }
    }
}

/// Runs `work` on a thread of rayon's pool. Each kernel splits its work over the pool; called
/// from outside it, each of a layer's dozen kernels would hand its work to the pool and put the
/// caller to sleep until it is done, a wake-up per kernel that costs more than a short text's
/// whole product. Inside the pool, the kernels' splits run on the caller's worker and the idle
/// ones: one hand-over per call instead.
fn on_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| work())
}

/// The hidden states of some texts: their real tokens' rows one after another (`[tokens,
/// hidden]`), text `i` at rows `offsets[i]..offsets[i + 1]`.
#[derive(Debug, Clone)]
pub struct Rows {
    x: Vec<f32>,
    offsets: Vec<usize>,
    hidden: usize,
}

/// The rows' buffer goes back to the kernels' scratch, for the next call's first layer.
impl Drop for Rows {
    fn drop(&mut self) {
        scratch::keep(std::mem::take(&mut self.x));
    }
}

impl Rows {
    pub fn texts(&self) -> usize {
        self.offsets.len() - 1
    }

    /// One vector per text (`[texts, hidden]`, row-major), by `pooling`.
    pub fn pool(&self, pooling: Pooling) -> Vec<f32> {
        pool_rows(&self.x, &self.offsets, self.hidden, pooling)
    }

    /// Only the texts `keep` (indices, in that order).
    pub fn select(&self, keep: &[usize]) -> Rows {
        let mut rows = Rows { x: Vec::new(), offsets: vec![0], hidden: self.hidden };
        for &i in keep {
            rows.x.extend_from_slice(&self.x[self.offsets[i] * self.hidden..self.offsets[i + 1] * self.hidden]);
            rows.offsets.push(rows.x.len() / self.hidden);
        }
        rows
    }

    /// Text `i`'s tokens, one `hidden`-wide row each.
    pub fn tokens(&self, i: usize) -> std::slice::ChunksExact<'_, f32> {
        self.x[self.offsets[i] * self.hidden..self.offsets[i + 1] * self.hidden].chunks_exact(self.hidden)
    }

    /// `other`'s texts after these.
    pub fn append(&mut self, other: Rows) {
        let base = self.offsets.last().copied().unwrap_or(0);
        self.x.extend_from_slice(&other.x);
        self.offsets.extend(other.offsets[1..].iter().map(|o| o + base));
    }
}

/// One vector per sequence of `x` (`[rows, hidden]`, sequences at `offsets`), by `pooling`; an
/// empty sequence pools to zeros, as the padded mean does.
fn pool_rows(x: &[f32], offsets: &[usize], hidden: usize, pooling: Pooling) -> Vec<f32> {
    let mut out = vec![0.0; (offsets.len() - 1) * hidden];
    for (s, w) in offsets.windows(2).enumerate() {
        let target = &mut out[s * hidden..(s + 1) * hidden];
        let rows = x[w[0] * hidden..w[1] * hidden].chunks(hidden);
        match pooling {
            Pooling::Cls => {
                if let Some(first) = rows.clone().next() {
                    target.copy_from_slice(first);
                }
            }
            Pooling::Mean => {
                for row in rows {
                    target.iter_mut().zip(row).for_each(|(t, v)| *t += v);
                }
                let count = (w[1] - w[0]).max(1) as f32;
                target.iter_mut().for_each(|t| *t /= count);
            }
        }
    }
    out
}
