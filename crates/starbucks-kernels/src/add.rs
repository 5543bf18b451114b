//! The broadcast add of the attention's padding bias. burn-flex adds a broadcast through its
//! strided iterator one element at a time on one core; here a row of the last dimension is added
//! at a time, rows in parallel.

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, binary};
use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, FloatTensorOps};
use burn::tensor::{DType, Shape, Tensor, TensorMetadata, TensorPrimitive};
use burn_flex::{Flex, FlexTensor};

use crate::copy::update_f32;
use crate::dispatch::{cast, same};
use crate::rows::{par_rows, row_offset};

/// `lhs + rhs` by our kernel when `B` is flex or autodiff over flex; `Err` otherwise.
#[allow(clippy::type_complexity)]
pub fn add_broadcast<B: Backend, const D: usize>(
    lhs: Tensor<B, D>,
    rhs: Tensor<B, D>,
) -> Result<Tensor<B, D>, (Tensor<B, D>, Tensor<B, D>)> {
    fn add<B: Backend, const D: usize>(
        lhs: Tensor<B, D>,
        rhs: Tensor<B, D>,
        op: fn(FloatTensor<B>, FloatTensor<B>) -> FloatTensor<B>,
    ) -> Tensor<B, D> {
        let [lhs, rhs] = [lhs, rhs].map(|t| t.into_primitive().tensor());
        Tensor::from_primitive(TensorPrimitive::Float(op(lhs, rhs)))
    }
    let pair = match cast::<_, (Tensor<Flex, D>, Tensor<Flex, D>)>((lhs, rhs)) {
        Ok((lhs, rhs)) => return Ok(same(add(lhs, rhs, add_forward))),
        Err(pair) => pair,
    };
    match cast::<_, (Tensor<Autodiff<Flex>, D>, Tensor<Autodiff<Flex>, D>)>(pair) {
        Ok((lhs, rhs)) => Ok(same(add(lhs, rhs, add_autodiff))),
        Err(pair) => Err(pair),
    }
}

/// Rows per rayon task of a broadcast add.
const ADD_ROWS: usize = 64;

fn add_forward(lhs: FlexTensor, rhs: FlexTensor) -> FlexTensor {
    let (dims, rhs_dims) = (lhs.shape(), rhs.shape());
    let broadcastable = dims.num_dims() == rhs_dims.num_dims()
        && dims.num_dims() > 0
        && dims.iter().zip(rhs_dims.iter()).all(|(&d, &r)| r == d || r == 1);
    if lhs.dtype() != DType::F32 || rhs.dtype() != DType::F32 || !broadcastable || !rhs.layout().has_positive_strides()
    {
        return Flex::float_add(lhs, rhs);
    }
    let dims: Vec<usize> = dims.iter().copied().collect();
    // rhs's step along each of lhs's dims: 0 where it broadcasts.
    let steps: Vec<usize> = rhs_dims
        .iter()
        .zip(rhs.layout().strides())
        .map(|(&r, &stride)| if r == 1 { 0 } else { stride as usize })
        .collect();
    let (width, last_step) = (dims[dims.len() - 1], steps[steps.len() - 1]);
    let (start, src) = (rhs.layout().start_offset(), rhs.storage::<f32>());
    let add_rows = |values: &mut [f32]| {
        par_rows(values, width, ADD_ROWS, |r, row| {
            let offset = row_offset(r, start, &dims, &steps);
            match last_step {
                1 => row.iter_mut().zip(&src[offset..offset + width]).for_each(|(v, r)| *v += r),
                0 => row.iter_mut().for_each(|v| *v += src[offset]),
                step => row.iter_mut().enumerate().for_each(|(j, v)| *v += src[offset + j * step]),
            }
        })
    };
    update_f32(lhs, add_rows)
}

/// [`add_forward`] on autodiff over flex: `lhs` gets the gradient as it is, `rhs` its sum
/// over the dims it was broadcast along.
fn add_autodiff(lhs: FloatTensor<Autodiff<Flex>>, rhs: FloatTensor<Autodiff<Flex>>) -> FloatTensor<Autodiff<Flex>> {
    #[derive(Debug)]
    struct AddBroadcast;

    impl Backward<Flex, 2> for AddBroadcast {
        type State = Shape;

        fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
            let rhs_shape = ops.state;
            let reduce = |mut grad: FlexTensor| {
                for (dim, &size) in rhs_shape.iter().enumerate() {
                    if size == 1 && grad.shape()[dim] != 1 {
                        grad = Flex::float_sum_dim(grad, dim);
                    }
                }
                grad
            };
            binary::<Flex, _, _>(ops.parents, ops.node, grads, |grad| grad, reduce);
        }
    }

    let rhs_shape = rhs.primitive.shape();
    match AddBroadcast.prepare::<NoCheckpointing>([lhs.node.clone(), rhs.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(rhs_shape, add_forward(lhs.primitive, rhs.primitive)),
        OpsKind::UnTracked(prep) => prep.finish(add_forward(lhs.primitive, rhs.primitive)),
    }
}
