//! Pooling a layer's hidden states into one vector per text, and L2 normalisation.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

/// How a sequence becomes one vector: the paper uses `Mean` for STS and `Cls` for retrieval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Mean over non-padding tokens (sentence-transformers `pooling_mode_mean_tokens`).
    Mean,
    /// The first token's vector (`pooling_mode_cls_token`).
    Cls,
}

/// `hidden`: `[batch, seq, hidden]`, `mask`: `[batch, seq]` (1 token, 0 padding) → `[batch, hidden]`.
/// Cut to *d* dims after pooling with `slice([.., 0..d])`: both poolings commute with the cut.
pub fn pool<B: Backend>(hidden: Tensor<B, 3>, mask: Tensor<B, 2>, pooling: Pooling) -> Tensor<B, 2> {
    let [batch, _, width] = hidden.dims();
    match pooling {
        Pooling::Mean => {
            let mask = mask.unsqueeze_dim::<3>(2);
            let summed = (hidden * mask.clone()).sum_dim(1).reshape([batch, width]);
            let counts = mask.sum_dim(1).reshape([batch, 1]).clamp_min(1e-9);
            summed / counts
        }
        Pooling::Cls => hidden.narrow(1, 0, 1).reshape([batch, width]),
    }
}

/// Divides each row by its L2 norm (floored at 1e-12, as `torch.nn.functional.normalize`).
pub fn normalize<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}
