//! The broadcast add of the attention's padding bias, and dropout. burn-flex adds a
//! broadcast through its strided iterator one element at a time on one core, and draws dropout
//! masks element by element from one `StdRng`.

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, binary, unary};
use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, FloatTensorOps};
use burn::tensor::{DType, Distribution, Int, Shape, Tensor, TensorMetadata, TensorPrimitive};
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;

use crate::CHUNK;
use crate::copy::{par_rows, row_offset, update_f32};
use crate::dispatch::{cast, same};

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

/// SplitMix64's finaliser: a well-mixed 64-bit hash of `z`.
#[inline(always)]
pub fn splitmix64(z: u64) -> u64 {
    let z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Dropout by our kernel when `B` is autodiff over flex (without autodiff burn's dropout is
/// the identity); `Err(x)` otherwise.
pub fn dropout<B: Backend, const D: usize>(x: Tensor<B, D>, prob: f64) -> Result<Tensor<B, D>, Tensor<B, D>> {
    let x = cast::<_, Tensor<Autodiff<Flex>, D>>(x)?;
    if prob == 0.0 || x.dtype() != DType::F32 {
        return Err(same(x));
    }
    // Four 16-bit draws from flex's random stream make the seed of this call's mask.
    let draws = Tensor::<Flex, 1, Int>::random([4], Distribution::Uniform(0.0, 65_536.0), &Default::default());
    let draws = draws.into_data().convert::<i64>().to_vec::<i64>().expect("four integer draws");
    let mask = Mask {
        seed: draws.iter().fold(0u64, |seed, &d| (seed << 16) | d as u64),
        // Keep an element when the top 32 bits of its hash are below this.
        threshold: ((1.0 - prob) * 4_294_967_296.0) as u64,
        scale: (1.0 / (1.0 - prob)) as f32,
    };
    let primitive = x.into_primitive().tensor();
    Ok(same(Tensor::<Autodiff<Flex>, D>::from_primitive(TensorPrimitive::Float(dropout_autodiff(primitive, mask)))))
}

/// One dropout call's mask: element `i` (row-major) is kept, and scaled, when
/// `splitmix64(seed + i)`'s top 32 bits are below `threshold`.
#[derive(Debug, Clone, Copy)]
struct Mask {
    seed: u64,
    threshold: u64,
    scale: f32,
}

impl Mask {
    /// `x` (f32) times the mask, scaled.
    fn apply(self, x: FlexTensor) -> FlexTensor {
        let apply = |values: &mut [f32]| {
            values.par_chunks_mut(CHUNK).enumerate().for_each(|(task, chunk)| {
                let base = self.seed.wrapping_add((task * CHUNK) as u64);
                for (i, v) in chunk.iter_mut().enumerate() {
                    let keep = splitmix64(base.wrapping_add(i as u64)) >> 32 < self.threshold;
                    *v = if keep { *v * self.scale } else { 0.0 };
                }
            })
        };
        update_f32(x, apply)
    }
}

fn dropout_autodiff(x: FloatTensor<Autodiff<Flex>>, mask: Mask) -> FloatTensor<Autodiff<Flex>> {
    #[derive(Debug)]
    struct DropoutBackward;

    impl Backward<Flex, 1> for DropoutBackward {
        type State = Mask;

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
            let mask = ops.state;
            unary::<Flex, _>(ops.parents, ops.node, grads, |grad| mask.apply(grad));
        }
    }

    match DropoutBackward.prepare::<NoCheckpointing>([x.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(mask, mask.apply(x.primitive)),
        OpsKind::UnTracked(prep) => prep.finish(mask.apply(x.primitive)),
    }
}
