//! `x @ weight + bias` on rows, f32: the output starts as the bias rows and one `gemm` call
//! accumulates the product into it, with its autodiff op. burn-flex zeroes a fresh buffer
//! for every product, copies it once more to align it, then adds the bias in another pass.

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, FloatTensorOps};
use burn::tensor::{Bytes, DType, FloatDType, Shape, Tensor, TensorMetadata, TensorPrimitive};
use burn_flex::{Flex, FlexTensor, Layout};

use crate::copy::copy_contiguous;
use crate::dispatch::{cast, same};
use crate::gemm::{accumulate, bias_rows};

/// The inputs of [`linear`]: rows `x`, the weight `[in, out]`, the bias.
pub type LinearInputs<B> = (Tensor<B, 2>, Tensor<B, 2>, Option<Tensor<B, 1>>);
type LinearOp<B> = fn(FloatTensor<B>, FloatTensor<B>, Option<FloatTensor<B>>) -> FloatTensor<B>;

/// `x @ weight + bias` by our kernel when `B` is flex or autodiff over flex; `Err` otherwise.
pub fn linear<B: Backend>(
    x: Tensor<B, 2>,
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
) -> Result<Tensor<B, 2>, LinearInputs<B>> {
    fn run<B: Backend>((x, weight, bias): LinearInputs<B>, op: LinearOp<B>) -> Tensor<B, 2> {
        let [x, weight] = [x, weight].map(|t| t.into_primitive().tensor());
        let bias = bias.map(|b| b.into_primitive().tensor());
        Tensor::from_primitive(TensorPrimitive::Float(op(x, weight, bias)))
    }
    let f32s = x.dtype() == DType::F32
        && weight.dtype() == DType::F32
        && bias.as_ref().is_none_or(|b| b.dtype() == DType::F32);
    if !f32s {
        return Err((x, weight, bias));
    }
    let inputs = match cast::<_, LinearInputs<Flex>>((x, weight, bias)) {
        Ok(inputs) => return Ok(same(run(inputs, linear_forward))),
        Err(inputs) => inputs,
    };
    match cast::<_, LinearInputs<Autodiff<Flex>>>(inputs) {
        Ok(inputs) => Ok(same(run(inputs, linear_autodiff))),
        Err(inputs) => Err(inputs),
    }
}

/// `x @ weight + bias`, f32, any strides: the bias rows first, then `gemm` adds the product.
fn linear_forward(x: FlexTensor, weight: FlexTensor, bias: Option<FlexTensor>) -> FlexTensor {
    let ([m, k], [k2, n]) = (x.shape().dims::<2>(), weight.shape().dims::<2>());
    assert_eq!(k, k2, "linear: x is [{m}, {k}] but the weight is [{k2}, {n}]");
    let bias = bias.map(copy_contiguous);
    let mut out = bias_rows(bias.as_ref().map(|b| b.storage::<f32>()), m, n);
    let (x_strides, w_strides) = (x.layout().strides(), weight.layout().strides());
    let (x_data, w_data) = (x.storage::<f32>(), weight.storage::<f32>());
    // SAFETY: `out` holds m × n values; `x` and `weight` are read inside their own storage, at
    // their layouts' offsets and strides over their m × k and k × n shapes (checked above).
    unsafe {
        accumulate(
            [m, n, k],
            out.as_mut_ptr(),
            (x_data.as_ptr().add(x.layout().start_offset()), [x_strides[0], x_strides[1]]),
            (w_data.as_ptr().add(weight.layout().start_offset()), [w_strides[0], w_strides[1]]),
        );
    }
    FlexTensor::new(Bytes::from_elems(out), Layout::contiguous(Shape::new([m, n])), DType::F32)
}

/// [`linear_forward`] on autodiff over flex, with the usual gradients: `g weightᵀ` for `x`,
/// `xᵀ g` for the weight, the column sums of `g` for the bias.
fn linear_autodiff(
    x: FloatTensor<Autodiff<Flex>>,
    weight: FloatTensor<Autodiff<Flex>>,
    bias: Option<FloatTensor<Autodiff<Flex>>>,
) -> FloatTensor<Autodiff<Flex>> {
    #[derive(Debug)]
    struct LinearBackward;

    impl Backward<Flex, 3> for LinearBackward {
        /// `x` and the weight, as the forward pass read them.
        type State = (FlexTensor, FlexTensor);

        fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
            let (x, weight) = ops.state;
            let grad = grads.consume::<Flex>(&ops.node);
            let [x_node, weight_node, bias_node] = ops.parents;
            if let Some(node) = x_node {
                grads.register::<Flex>(node.id, Flex::float_matmul(grad.clone(), weight.transpose(0, 1)));
            }
            if let Some(node) = weight_node {
                grads.register::<Flex>(node.id, Flex::float_matmul(x.transpose(0, 1), grad.clone()));
            }
            if let Some(node) = bias_node {
                let n = grad.shape()[1];
                grads.register::<Flex>(node.id, Flex::float_reshape(Flex::float_sum_dim(grad, 0), Shape::new([n])));
            }
        }
    }

    // A bias-free linear has no third parent: a fresh untracked node stands in for it.
    let bias = bias.unwrap_or_else(|| {
        let n = weight.primitive.shape()[1];
        Autodiff::<Flex>::float_zeros(Shape::new([n]), &Default::default(), FloatDType::F32)
    });
    let nodes = [x.node.clone(), weight.node.clone(), bias.node.clone()];
    let out = linear_forward(x.primitive.clone(), weight.primitive.clone(), Some(bias.primitive));
    match LinearBackward.prepare::<NoCheckpointing>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish((x.primitive, weight.primitive), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}
