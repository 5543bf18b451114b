//! The BERT encoder, one struct per HuggingFace module.
//!
//! Field names follow the HF weight keys (`embeddings.word_embeddings`,
//! `encoder.layer.{i}.attention.self.query`, …) with two spellings that Rust forces:
//! `LayerNorm` is `layer_norm` and `attention.self` is `attention.self_attention`
//! (see `weights.rs` for the mapping).

use burn::module::Module;
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig,
};
use burn::tensor::activation::{gelu_approximate, relu, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::config::{BertConfig, HiddenAct};
use crate::ops::{add_broadcast, contiguous, dropout, gelu, linear};
use crate::tokenizer::Batch;

/// Token ids, token types and the padding mask of a batch, on the device.
#[derive(Debug, Clone)]
pub struct BertInput<B: Backend> {
    /// `[batch, seq]`
    pub input_ids: Tensor<B, 2, Int>,
    /// `[batch, seq]`
    pub token_type_ids: Tensor<B, 2, Int>,
    /// `[batch, seq]`, 1.0 for real tokens, 0.0 for padding.
    pub attention_mask: Tensor<B, 2>,
}

impl<B: Backend> BertInput<B> {
    pub fn from_batch(batch: &Batch, device: &B::Device) -> Self {
        let shape = [batch.batch_size, batch.seq_len];
        let ints = |v: &[i64]| Tensor::<B, 2, Int>::from_data(TensorData::new(v.to_vec(), shape), device);
        let mask: Vec<f32> = batch.attention_mask.iter().map(|&m| m as f32).collect();
        BertInput {
            input_ids: ints(&batch.input_ids),
            token_type_ids: ints(&batch.token_type_ids),
            attention_mask: Tensor::from_data(TensorData::new(mask, shape), device),
        }
    }
}

fn new_linear<B: Backend>(d_input: usize, d_output: usize, config: &BertConfig, device: &B::Device) -> Linear<B> {
    LinearConfig::new(d_input, d_output).with_initializer(normal_init(config)).init(device)
}

fn layer_norm<B: Backend>(config: &BertConfig, device: &B::Device) -> LayerNorm<B> {
    LayerNormConfig::new(config.hidden_size).with_epsilon(config.layer_norm_eps).init(device)
}

/// `layer` applied to the last dimension of `x`, with the leading dimensions flattened into rows
/// first. The same numbers as `layer.forward(x)`, but burn computes the weight gradient of a
/// rank-3 input as one `[in, out]` product per batch row, then sums them (for a BERT FFN at
/// batch 96, a 226 MB intermediate per layer and step): on rows it is one `[in, out]` product.
pub fn dense<B: Backend, const D: usize>(layer: &Linear<B>, x: Tensor<B, D>) -> Tensor<B, D> {
    let mut dims = x.dims();
    let width = dims[D - 1];
    let rows = x.shape().num_elements() / width.max(1);
    let y = linear(x.reshape([rows, width]), layer.weight.val(), layer.bias.as_ref().map(|b| b.val()));
    dims[D - 1] = y.dims()[1];
    y.reshape(dims)
}

/// HF's `initializer_range` 0.02 normal init, used when a module is created rather than loaded.
fn normal_init(_config: &BertConfig) -> Initializer {
    Initializer::Normal { mean: 0.0, std: 0.02 }
}

/// `embeddings`: word + position + token-type embeddings, LayerNorm, dropout.
#[derive(Module, Debug)]
pub struct BertEmbeddings<B: Backend> {
    pub word_embeddings: Embedding<B>,
    pub position_embeddings: Embedding<B>,
    pub token_type_embeddings: Embedding<B>,
    pub layer_norm: LayerNorm<B>,
    pub dropout: Dropout,
}

impl<B: Backend> BertEmbeddings<B> {
    pub fn new(config: &BertConfig, device: &B::Device) -> Self {
        let embedding = |n, d| EmbeddingConfig::new(n, d).with_initializer(normal_init(config)).init(device);
        BertEmbeddings {
            word_embeddings: embedding(config.vocab_size, config.hidden_size),
            position_embeddings: embedding(config.max_position_embeddings, config.hidden_size),
            token_type_embeddings: embedding(config.type_vocab_size, config.hidden_size),
            layer_norm: layer_norm(config, device),
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
        }
    }

    /// `[batch, seq]` ids → `[batch, seq, hidden]`.
    pub fn forward(&self, input_ids: Tensor<B, 2, Int>, token_type_ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [_, seq_len] = input_ids.dims();
        let device = input_ids.device();
        let positions = Tensor::<B, 1, Int>::arange(0..seq_len as i64, &device).unsqueeze::<2>();
        let x = self.word_embeddings.forward(input_ids)
            + self.token_type_embeddings.forward(token_type_ids)
            + self.position_embeddings.forward(positions);
        dropout(&self.dropout, self.layer_norm.forward(x))
    }
}

/// `attention.self`: multi-head scaled dot-product attention over the padding mask.
#[derive(Module, Debug)]
pub struct BertSelfAttention<B: Backend> {
    pub query: Linear<B>,
    pub key: Linear<B>,
    pub value: Linear<B>,
    pub dropout: Dropout,
    #[module(skip)]
    pub num_attention_heads: usize,
}

impl<B: Backend> BertSelfAttention<B> {
    pub fn new(config: &BertConfig, device: &B::Device) -> Self {
        let h = config.hidden_size;
        BertSelfAttention {
            query: new_linear(h, h, config, device),
            key: new_linear(h, h, config, device),
            value: new_linear(h, h, config, device),
            dropout: DropoutConfig::new(config.attention_probs_dropout_prob).init(),
            num_attention_heads: config.num_attention_heads,
        }
    }

    /// `x`: `[batch, seq, hidden]`; `mask_bias`: `[batch, 1, 1, seq]`, 0 for tokens and a large
    /// negative number for padding keys.
    pub fn forward(&self, x: Tensor<B, 3>, mask_bias: Tensor<B, 4>) -> Tensor<B, 3> {
        let [q, k, v] = self.project(x);
        self.attend(q, k, v, mask_bias)
    }

    /// The query, key and value weights side by side, `[hidden, 3 · hidden]`, and their biases,
    /// with the query's scaled by `1/√head_dim` (so that no pass over the attention scores
    /// does it): the one product both [`Self::project`] and the CPU encoder compute.
    pub fn fused_qkv(&self) -> (Tensor<B, 2>, Option<Tensor<B, 1>>) {
        let [hidden, _] = self.query.weight.dims();
        let scale = 1.0 / ((hidden / self.num_attention_heads) as f64).sqrt();
        let layers = [&self.query, &self.key, &self.value];
        let [wq, wk, wv] = layers.map(|l| l.weight.val());
        let weight = Tensor::cat(vec![wq.mul_scalar(scale), wk, wv], 1);
        let bias = match layers.map(|l| l.bias.as_ref()) {
            [Some(q), Some(k), Some(v)] => Some(Tensor::cat(vec![q.val().mul_scalar(scale), k.val(), v.val()], 0)),
            _ => None,
        };
        (weight, bias)
    }

    /// The query, key and value projections of `x` `[batch, seq, hidden]`, split into heads
    /// `[batch, heads, seq, head_dim]`: one product of [`Self::fused_qkv`] (one pass over `x`,
    /// forward and backward), and views of it (no copies). The queries come scaled.
    pub fn project(&self, x: Tensor<B, 3>) -> [Tensor<B, 4>; 3] {
        let [batch, seq, hidden] = x.dims();
        let heads = self.num_attention_heads;
        let head_dim = hidden / heads;
        let (weight, bias) = self.fused_qkv();
        let qkv = linear(x.reshape([batch * seq, hidden]), weight, bias);
        let qkv = qkv.reshape([batch, seq, 3 * heads, head_dim]);
        [0, 1, 2].map(|i| qkv.clone().narrow(2, i * heads, heads).swap_dims(1, 2))
    }

    /// Multi-head scaled dot-product attention of projected queries `q` `[batch, heads, seq_q,
    /// head_dim]` over projected keys and values `[batch, heads, seq, head_dim]`, as
    /// [`Self::project`] returns them (queries already scaled) → `[batch, seq_q, hidden]`.
    pub fn attend(&self, q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>, mask_bias: Tensor<B, 4>) -> Tensor<B, 3> {
        let [batch, heads, seq_q, head_dim] = q.dims();
        let scores = add_broadcast(q.matmul(k.swap_dims(2, 3)), mask_bias);
        let probs = dropout(&self.dropout, softmax(scores, 3));
        let context = contiguous(probs.matmul(v).swap_dims(1, 2));
        context.reshape([batch, seq_q, heads * head_dim])
    }
}

/// `attention.output`: dense, dropout, residual, LayerNorm.
#[derive(Module, Debug)]
pub struct BertSelfOutput<B: Backend> {
    pub dense: Linear<B>,
    pub layer_norm: LayerNorm<B>,
    pub dropout: Dropout,
}

impl<B: Backend> BertSelfOutput<B> {
    pub fn new(config: &BertConfig, device: &B::Device) -> Self {
        BertSelfOutput {
            dense: new_linear(config.hidden_size, config.hidden_size, config, device),
            layer_norm: layer_norm(config, device),
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
        }
    }

    pub fn forward<const D: usize>(&self, hidden: Tensor<B, D>, residual: Tensor<B, D>) -> Tensor<B, D> {
        self.layer_norm.forward(dropout(&self.dropout, dense(&self.dense, hidden)) + residual)
    }
}

/// `attention`: self-attention then its output block.
#[derive(Module, Debug)]
pub struct BertAttention<B: Backend> {
    pub self_attention: BertSelfAttention<B>,
    pub output: BertSelfOutput<B>,
}

impl<B: Backend> BertAttention<B> {
    pub fn new(config: &BertConfig, device: &B::Device) -> Self {
        BertAttention {
            self_attention: BertSelfAttention::new(config, device),
            output: BertSelfOutput::new(config, device),
        }
    }

    pub fn forward(&self, x: Tensor<B, 3>, mask_bias: Tensor<B, 4>) -> Tensor<B, 3> {
        let context = self.self_attention.forward(x.clone(), mask_bias);
        self.output.forward(context, x)
    }
}

/// `intermediate`: dense to the FFN width, then the activation.
#[derive(Module, Debug)]
pub struct BertIntermediate<B: Backend> {
    pub dense: Linear<B>,
    #[module(skip)]
    pub hidden_act: HiddenAct,
}

impl<B: Backend> BertIntermediate<B> {
    pub fn new(config: &BertConfig, device: &B::Device) -> Self {
        BertIntermediate {
            dense: new_linear(config.hidden_size, config.intermediate_size, config, device),
            hidden_act: config.hidden_act,
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let x = dense(&self.dense, x);
        match self.hidden_act {
            HiddenAct::Gelu => gelu(x),
            HiddenAct::GeluNew => gelu_approximate(x),
            HiddenAct::Relu => relu(x),
        }
    }
}

/// `output`: dense back to the hidden width, dropout, residual, LayerNorm.
#[derive(Module, Debug)]
pub struct BertOutput<B: Backend> {
    pub dense: Linear<B>,
    pub layer_norm: LayerNorm<B>,
    pub dropout: Dropout,
}

impl<B: Backend> BertOutput<B> {
    pub fn new(config: &BertConfig, device: &B::Device) -> Self {
        BertOutput {
            dense: new_linear(config.intermediate_size, config.hidden_size, config, device),
            layer_norm: layer_norm(config, device),
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
        }
    }

    pub fn forward<const D: usize>(&self, hidden: Tensor<B, D>, residual: Tensor<B, D>) -> Tensor<B, D> {
        self.layer_norm.forward(dropout(&self.dropout, dense(&self.dense, hidden)) + residual)
    }
}

/// `encoder.layer.{i}`: one post-LN transformer layer.
#[derive(Module, Debug)]
pub struct BertLayer<B: Backend> {
    pub attention: BertAttention<B>,
    pub intermediate: BertIntermediate<B>,
    pub output: BertOutput<B>,
}

impl<B: Backend> BertLayer<B> {
    pub fn new(config: &BertConfig, device: &B::Device) -> Self {
        BertLayer {
            attention: BertAttention::new(config, device),
            intermediate: BertIntermediate::new(config, device),
            output: BertOutput::new(config, device),
        }
    }

    pub fn forward(&self, x: Tensor<B, 3>, mask_bias: Tensor<B, 4>) -> Tensor<B, 3> {
        self.feed_forward(self.attention.forward(x, mask_bias))
    }

    /// The feed-forward block (`intermediate`, `output`) on the attention block's output, row
    /// by row: any leading shape, e.g. only the rows that are needed, `[rows, hidden]`.
    pub fn feed_forward<const D: usize>(&self, attended: Tensor<B, D>) -> Tensor<B, D> {
        self.output.forward(self.intermediate.forward(attended.clone()), attended)
    }
}

/// `encoder`: the stack of layers.
#[derive(Module, Debug)]
pub struct BertEncoder<B: Backend> {
    pub layer: Vec<BertLayer<B>>,
}

/// Added to attention scores at padding keys (BERT's classic value; finite in f16 and bf16).
const MASKED_SCORE: f64 = -10_000.0;

/// The additive attention bias `[batch, 1, 1, seq]` of a `[batch, seq]` padding mask (1 token,
/// 0 padding), as every layer's self-attention takes it.
pub fn attention_bias<B: Backend>(attention_mask: Tensor<B, 2>) -> Tensor<B, 4> {
    let [batch, seq] = attention_mask.dims();
    (attention_mask.neg() + 1.0).mul_scalar(MASKED_SCORE).reshape([batch, 1, 1, seq])
}

/// Reads every float parameter of `module` once. burn initialises parameters lazily, so a clone
/// of one never read draws its own random values: settle a module before copying it.
pub fn settle<B: Backend, M: Module<B>>(module: &M) {
    struct Settle;
    impl<B: Backend> burn::module::ModuleVisitor<B> for Settle {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
            let _ = param.val();
        }
    }
    module.visit(&mut Settle);
}

/// `BertModel` without the pooler: embeddings and encoder.
#[derive(Module, Debug)]
pub struct BertModel<B: Backend> {
    pub embeddings: BertEmbeddings<B>,
    pub encoder: BertEncoder<B>,
}

impl<B: Backend> BertModel<B> {
    /// A freshly initialised model (normal 0.02 weights), shaped by `config`.
    pub fn new(config: &BertConfig, device: &B::Device) -> Self {
        BertModel {
            embeddings: BertEmbeddings::new(config, device),
            encoder: BertEncoder {
                layer: (0..config.num_hidden_layers).map(|_| BertLayer::new(config, device)).collect(),
            },
        }
    }

    pub fn num_layers(&self) -> usize {
        self.encoder.layer.len()
    }

    /// Runs the embeddings and the first `layers` transformer layers, and returns the hidden
    /// states `[batch, seq, hidden]` of layers 0 (embedding output) to `layers`: element *n* is
    /// the output of layer *n*. Every size up to `layers` reads its embedding from this one pass.
    ///
    /// Panics if `layers` exceeds the model's depth; check sizes with [`crate::Size::check`].
    pub fn forward(&self, input: BertInput<B>, layers: usize) -> Vec<Tensor<B, 3>> {
        assert!(layers <= self.num_layers(), "asked for {layers} layers of a {}-layer model", self.num_layers());
        let mask_bias = attention_bias(input.attention_mask);
        let mut hidden = vec![self.embeddings.forward(input.input_ids, input.token_type_ids)];
        for layer in &self.encoder.layer[..layers] {
            let next = layer.forward(hidden.last().expect("starts with the embeddings").clone(), mask_bias.clone());
            hidden.push(next);
        }
        hidden
    }
}
