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

/// [`normalize`] of one vector on the host, in place.
pub fn normalize_vector(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::tensor::TensorData;

    use super::*;

    #[test]
    fn mean_skips_padding_and_cls_takes_the_first_token() {
        let device = Default::default();
        // batch 2, seq 3, width 2; the second row has one padding token.
        let hidden = Tensor::<Flex, 3>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 10.0, 20.0, 30.0, 40.0, 99.0, 99.0], [2, 3, 2]),
            &device,
        );
        let mask =
            Tensor::<Flex, 2>::from_data(TensorData::new(vec![1.0f32, 1.0, 1.0, 1.0, 1.0, 0.0], [2, 3]), &device);
        let mean = pool(hidden.clone(), mask.clone(), Pooling::Mean).into_data().to_vec::<f32>().unwrap();
        assert_eq!(mean, vec![3.0, 4.0, 20.0, 30.0]);
        let cls = pool(hidden, mask, Pooling::Cls).into_data().to_vec::<f32>().unwrap();
        assert_eq!(cls, vec![1.0, 2.0, 10.0, 20.0]);
    }

    #[test]
    fn normalize_gives_unit_rows_and_keeps_zero_rows_finite() {
        let x = Tensor::<Flex, 2>::from_data(TensorData::new(vec![3.0f32, 4.0, 0.0, 0.0], [2, 2]), &Default::default());
        assert_eq!(normalize(x).into_data().to_vec::<f32>().unwrap(), vec![0.6, 0.8, 0.0, 0.0]);
    }
}
