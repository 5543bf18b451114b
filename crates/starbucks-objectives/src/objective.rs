//! SRL, SRL with a deep corpus, 2DMSE and single-size training behind one interface: every
//! method takes the pooled embeddings of every layer from one encoder pass and returns a total
//! loss and its terms.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::Rng;
use serde::{Deserialize, Serialize};
use starbucks_model::Size;

use crate::losses::{cosent, kl_div_temperature, kl_divergence, mnrl, retrieval_ce, scores};
use crate::sizes::SizeList;

/// Pooled embeddings of one batch, `layers[n]` from layer *n* (0 = embedding output), raw (not
/// normalised), full width.
#[derive(Debug, Clone)]
pub enum Embeddings<B: Backend> {
    /// Rows `[anchors; positives; negatives…]`, `batch` rows per block (MNRL, scale 20).
    Triplets { layers: Vec<Tensor<B, 2>>, batch: usize },
    /// Rows `[first; second]` with a gold score per pair (CoSENT, scale 20).
    Scored { layers: Vec<Tensor<B, 2>>, labels: Tensor<B, 1> },
    /// Queries `[B, h]` and passages `[B·group, h]`, positive first in each group (CLS pooled).
    Retrieval { queries: Vec<Tensor<B, 2>>, passages: Vec<Tensor<B, 2>>, group: usize },
}

const SCALE: f64 = 20.0;

fn cut<B: Backend>(x: &Tensor<B, 2>, dims: usize) -> Tensor<B, 2> {
    x.clone().narrow(1, 0, dims)
}

impl<B: Backend> Embeddings<B> {
    /// The base loss at one size, and the retrieval score matrix when there is one.
    fn base(&self, size: Size) -> (Tensor<B, 1>, Option<Tensor<B, 2>>) {
        self.base_against(size, size.layers, false)
    }

    /// The base loss with the anchors, queries or first sentences at `size` and the other side
    /// (positives and negatives, passages, second sentences) at layer `other`, both cut to
    /// `size.dims`; and the retrieval score matrix when there is one. `detach_other`: the other
    /// side is a constant, so that only the first side learns from this loss.
    fn base_against(&self, size: Size, other: usize, detach_other: bool) -> (Tensor<B, 1>, Option<Tensor<B, 2>>) {
        let other_side = |x: &Tensor<B, 2>| {
            let x = cut(x, size.dims);
            if detach_other { x.detach() } else { x }
        };
        match self {
            Embeddings::Triplets { layers, batch } => {
                let (e, o) = (cut(&layers[size.layers], size.dims), other_side(&layers[other]));
                let [rows, _] = e.dims();
                (mnrl(e.narrow(0, 0, *batch), o.narrow(0, *batch, rows - batch), SCALE), None)
            }
            Embeddings::Scored { layers, labels } => {
                let (e, o) = (cut(&layers[size.layers], size.dims), other_side(&layers[other]));
                let [rows, _] = e.dims();
                let half = rows / 2;
                (cosent(e.narrow(0, 0, half), o.narrow(0, half, half), labels.clone(), SCALE), None)
            }
            Embeddings::Retrieval { queries, passages, group } => {
                let s = scores(cut(&queries[size.layers], size.dims), other_side(&passages[other]));
                (retrieval_ce(s.clone(), *group), Some(s))
            }
        }
    }

    /// Every text's embedding at `layer`, full width (for 2DMSE's KL).
    fn all_texts(&self, layer: usize) -> Tensor<B, 2> {
        match self {
            Embeddings::Triplets { layers, .. } | Embeddings::Scored { layers, .. } => layers[layer].clone(),
            Embeddings::Retrieval { queries, passages, .. } => {
                Tensor::cat(vec![queries[layer].clone(), passages[layer].clone()], 0)
            }
        }
    }
}

/// A total loss and its named terms (for logging), each a one-element tensor.
#[derive(Debug, Clone)]
pub struct LossOutput<B: Backend> {
    pub total: Tensor<B, 1>,
    pub terms: Vec<(String, Tensor<B, 1>)>,
}

/// 2DMSE (sentence-transformers `Matryoshka2dLoss` defaults): last layer at one random dim;
/// one random earlier layer k at a separately drawn dim, weighted 1/k; KL between the
/// full-width embeddings of layer k and the last layer at temperature 0.3, times 0.3.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mse2dConfig {
    /// Matryoshka dims, e.g. `[768, 512, 256, 128, 64, 32]`.
    pub dims: Vec<usize>,
    pub kl_temperature: f64,
    pub kl_weight: f64,
    /// sentence-transformers ≥ 5.2 detaches the last layer in the KL (its #3757); the version
    /// the paper used did not. Default false, as the paper's runs.
    pub detach_last_layer: bool,
}

impl Mse2dConfig {
    pub fn new(dims: Vec<usize>) -> Self {
        Mse2dConfig { dims, kl_temperature: 0.3, kl_weight: 1.0, detach_last_layer: false }
    }

    /// One step's random choices: uniform over `dims` for the last layer, uniform over layers
    /// 1..N−1, and an independent uniform dim for that layer.
    pub fn draw(&self, layers: usize, rng: &mut impl Rng) -> Mse2dDraw {
        Mse2dDraw {
            last_dims: self.dims[rng.random_range(0..self.dims.len())],
            layer: if layers > 1 { rng.random_range(1..layers) } else { 0 },
            layer_dims: self.dims[rng.random_range(0..self.dims.len())],
        }
    }
}

/// The random choices of one 2DMSE step (`layer` 0 means the model has a single layer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mse2dDraw {
    pub last_dims: usize,
    pub layer: usize,
    pub layer_dims: usize,
}

/// How a model is trained. All methods read the sizes they need from one [`Embeddings`].
#[derive(Debug, Clone)]
pub enum Objective {
    /// Starbucks Representation Learning: base loss at every size plus `kl_weight` · KL of every
    /// smaller size against the full one (0.3 over dims, not detached, for STS; 1.0 over
    /// passage scores with the full size detached, for retrieval).
    Srl {
        sizes: SizeList,
        kl_weight: f64,
    },
    /// SRL for a corpus embedded at full depth: SRL's terms, each family weighted, plus at every
    /// size (n, d) with n below the full depth N the base loss of the anchors or queries at
    /// (n, d) against the other side at (N, d) (see [`srl_deep`]).
    SrlDeep {
        sizes: SizeList,
        weights: SrlWeights,
    },
    Mse2d(Mse2dConfig),
    /// Plain training of one size (a separately trained model, or the full model alone).
    Single(Size),
}

impl Objective {
    /// SRL with the paper's KL weight for this kind of data.
    pub fn srl(sizes: SizeList, retrieval: bool) -> Self {
        Objective::Srl { sizes, kl_weight: Self::default_kl_weight(retrieval) }
    }

    /// The paper's SRL KL weight: 0.3 for STS, 1.0 for retrieval.
    pub fn default_kl_weight(retrieval: bool) -> f64 {
        if retrieval { 1.0 } else { 0.3 }
    }

    /// The deepest layer this objective reads (run the encoder that far).
    pub fn layers(&self, num_layers: usize) -> usize {
        match self {
            Objective::Srl { sizes, .. } | Objective::SrlDeep { sizes, .. } => sizes.full().layers,
            Objective::Mse2d(_) => num_layers,
            Objective::Single(size) => size.layers,
        }
    }

    /// The loss of one batch. `rng` is drawn from by 2DMSE only.
    pub fn loss<B: Backend>(&self, embeddings: &Embeddings<B>, rng: &mut impl Rng) -> LossOutput<B> {
        match self {
            Objective::Srl { sizes, kl_weight } => srl(sizes, *kl_weight, embeddings),
            Objective::SrlDeep { sizes, weights } => srl_deep(sizes, *weights, embeddings),
            Objective::Mse2d(config) => {
                let layers = match embeddings {
                    Embeddings::Triplets { layers, .. } | Embeddings::Scored { layers, .. } => layers.len() - 1,
                    Embeddings::Retrieval { queries, .. } => queries.len() - 1,
                };
                mse2d(config, config.draw(layers, rng), embeddings)
            }
            Objective::Single(size) => {
                let (loss, _) = embeddings.base(*size);
                LossOutput { total: loss.clone(), terms: vec![(format!("base{size}"), loss)] }
            }
        }
    }
}

/// The weight of each family of terms of [`srl_deep`] (the full size's base loss weighs 1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SrlWeights {
    /// SRL's base loss at each smaller size, both sides at that size.
    pub symmetric: f64,
    /// The base loss of each size shallower than the full depth against the other side at
    /// full depth.
    pub deep: f64,
    /// SRL's KL of each smaller size against the full one.
    pub kl: f64,
    /// The deep terms' full-depth side detached: only the shallow side learns from them, and
    /// the documents' full-depth vectors are trained by SRL's terms alone.
    pub deep_detached: bool,
}

/// SRL: `base(full) + Σ_{n ≠ full} (base(n) + kl_weight · KL_n)`.
pub fn srl<B: Backend>(sizes: &SizeList, kl_weight: f64, embeddings: &Embeddings<B>) -> LossOutput<B> {
    srl_deep(sizes, SrlWeights { symmetric: 1.0, deep: 0.0, kl: kl_weight, deep_detached: false }, embeddings)
}

/// SRL with a deep corpus (docs/objectives.md):
/// `base(full) + Σ_{(n, d) ≠ full} (w_sym · base(n, d) + w_kl · KL_(n, d)) +
/// w_deep · Σ_{(n, d), n < N} base((n, d) against (N, d))`, where the last family scores the
/// anchors or queries at (n, d) against the positives and negatives (or passages) at the full
/// depth N cut to d, as a corpus indexed once at full depth is searched by a shallow query.
/// Sizes at the full depth have no deep term: there it is their symmetric one. A family of
/// weight 0 is not computed; with `deep` 0 and `symmetric` 1 this is SRL. With
/// `deep_detached` the full-depth side of the deep terms is a constant.
pub fn srl_deep<B: Backend>(sizes: &SizeList, weights: SrlWeights, embeddings: &Embeddings<B>) -> LossOutput<B> {
    let full = sizes.full();
    let (full_loss, full_scores) = embeddings.base(full);
    let mut total = full_loss.clone();
    let mut terms = Vec::new();
    for &size in sizes.sizes() {
        if size == full {
            terms.push((format!("base{full}"), full_loss.clone()));
            continue;
        }
        if weights.symmetric != 0.0 || weights.kl != 0.0 {
            let (loss, size_scores) = embeddings.base(size);
            if weights.symmetric != 0.0 {
                total = total + loss.clone() * weights.symmetric;
                terms.push((format!("base{size}"), loss));
            }
            if weights.kl != 0.0 {
                let kl = match (embeddings, &full_scores, size_scores) {
                    // Retrieval: over the passage axis of the score matrices, full size detached.
                    (Embeddings::Retrieval { .. }, Some(teacher), Some(student)) => {
                        kl_divergence(teacher.clone(), student, true)
                    }
                    // STS: over the first d dims of the raw pooled embeddings, not detached.
                    (Embeddings::Triplets { layers, .. } | Embeddings::Scored { layers, .. }, _, _) => {
                        kl_divergence(cut(&layers[full.layers], size.dims), cut(&layers[size.layers], size.dims), false)
                    }
                    _ => unreachable!("retrieval embeddings always give scores"),
                };
                total = total + kl.clone() * weights.kl;
                terms.push((format!("kl{size}"), kl));
            }
        }
        if weights.deep != 0.0 && size.layers < full.layers {
            let (loss, _) = embeddings.base_against(size, full.layers, weights.deep_detached);
            total = total + loss.clone() * weights.deep;
            terms.push((format!("deep{size}"), loss));
        }
    }
    LossOutput { total, terms }
}

/// 2DMSE for one draw (see [`Mse2dConfig`]).
pub fn mse2d<B: Backend>(config: &Mse2dConfig, draw: Mse2dDraw, embeddings: &Embeddings<B>) -> LossOutput<B> {
    let last = match embeddings {
        Embeddings::Triplets { layers, .. } | Embeddings::Scored { layers, .. } => layers.len() - 1,
        Embeddings::Retrieval { queries, .. } => queries.len() - 1,
    };
    let (last_loss, _) = embeddings.base(Size::new(last, draw.last_dims));
    let mut terms = vec![(format!("base({last}, {})", draw.last_dims), last_loss.clone())];
    let mut total = last_loss;
    if draw.layer > 0 {
        let (layer_loss, _) = embeddings.base(Size::new(draw.layer, draw.layer_dims));
        let teacher = embeddings.all_texts(last);
        let teacher = if config.detach_last_layer { teacher.detach() } else { teacher };
        let kl = kl_div_temperature(teacher, embeddings.all_texts(draw.layer), config.kl_temperature);
        total =
            total + layer_loss.clone() / draw.layer as f64 + kl.clone() * (config.kl_temperature * config.kl_weight);
        terms.push((format!("base({}, {})", draw.layer, draw.layer_dims), layer_loss));
        terms.push((format!("kl({})", draw.layer), kl));
    }
    LossOutput { total, terms }
}

/// Float labels on the device, for [`Embeddings::Scored`].
pub fn labels<B: Backend>(values: &[f32], device: &B::Device) -> Tensor<B, 1> {
    Tensor::from_data(TensorData::new(values.to_vec(), [values.len()]), device)
}
