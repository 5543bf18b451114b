//! Tensors to host values: where the encoder's results leave burn.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// A tensor's values on the host, as f32: on flex in one copy (`starbucks_kernels::f32_values`).
pub(crate) fn values<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Vec<f32> {
    #[cfg(feature = "flex")]
    let tensor = match starbucks_kernels::f32_values(tensor) {
        Ok(values) => return values,
        Err(tensor) => tensor,
    };
    tensor.into_data().convert::<f32>().into_vec().expect("converted to f32")
}
