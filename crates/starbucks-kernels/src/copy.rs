//! Copies of strided views into contiguous buffers (and the copy-on-write the in-place kernels use).
//! burn-flex copies a strided view one element at a time through its `StridedIter`, on one
//! core; here a run of the last dimension is copied at a time, rows in parallel.

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, unary};
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Bytes, DType, Tensor, TensorMetadata};
use burn_flex::{Flex, FlexTensor, Layout};

use crate::dispatch::{cast, on_flex, same};
use crate::rows::{par_rows, row_offset};

/// `x` made contiguous by our copy when `B` is flex or autodiff over flex; `Err(x)` otherwise.
pub fn contiguous<B: Backend, const D: usize>(x: Tensor<B, D>) -> Result<Tensor<B, D>, Tensor<B, D>> {
    on_flex(x, copy_contiguous, contiguous_autodiff)
}

/// The values of `x`, row-major, in one copy, when `B` is flex and `x` is f32; `Err(x)`
/// otherwise. burn's `into_data` of a tensor whose buffer is shared (a model's parameter)
/// copies it into bytes, then again to align them, and `TensorData::to_vec` a third time: three
/// copies of every weight of a model the CPU encoder is made from.
pub fn f32_values<B: Backend, const D: usize>(x: Tensor<B, D>) -> Result<Vec<f32>, Tensor<B, D>> {
    let x = cast::<_, Tensor<Flex, D>>(x)?;
    if x.dtype() != DType::F32 {
        return Err(same(x));
    }
    let x = copy_contiguous(x.into_primitive().tensor());
    Ok(x.storage::<f32>()[..x.layout().num_elements()].to_vec())
}

/// Rows (runs of the last dimension) per rayon task of a copy.
const COPY_ROWS: usize = 256;

/// `x` in a fresh contiguous buffer of exactly its elements, copied a last-dimension run at a
/// time, rows in parallel. Returns `x` itself when it is already contiguous and whole; uses
/// flex's own copy for what this does not cover (flipped strides, element types other than
/// f32).
pub(crate) fn copy_contiguous(x: FlexTensor) -> FlexTensor {
    let layout = x.layout();
    let whole = layout.is_contiguous() && layout.start_offset() == 0 && x.bytes().len() == layout.num_elements() * 4;
    if x.dtype() != DType::F32 || whole || !layout.has_positive_strides() || layout.num_dims() == 0 {
        return x.to_contiguous();
    }
    let dims: Vec<usize> = layout.shape().iter().copied().collect();
    let strides: Vec<usize> = layout.strides().iter().map(|&s| s as usize).collect();
    let (start, width, step) = (layout.start_offset(), dims[dims.len() - 1], strides[strides.len() - 1]);
    let src = x.storage::<f32>();
    let mut out = vec![0f32; layout.num_elements()];
    par_rows(&mut out, width, COPY_ROWS, |r, row| {
        let offset = row_offset(r, start, &dims, &strides);
        if step == 1 {
            row.copy_from_slice(&src[offset..offset + width]);
        } else {
            row.iter_mut().enumerate().for_each(|(j, v)| *v = src[offset + j * step]);
        }
    });
    FlexTensor::new(Bytes::from_elems(out), Layout::contiguous(x.shape()), DType::F32)
}

/// [`copy_contiguous`] on autodiff over flex: the values do not change, so the gradient
/// passes through as it is.
fn contiguous_autodiff(x: FloatTensor<Autodiff<Flex>>) -> FloatTensor<Autodiff<Flex>> {
    #[derive(Debug)]
    struct Identity;

    impl Backward<Flex, 1> for Identity {
        type State = ();

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
            unary::<Flex, _>(ops.parents, ops.node, grads, |grad| grad);
        }
    }

    Identity.prepare::<NoCheckpointing>([x.node.clone()]).compute_bound().stateless(copy_contiguous(x.primitive))
}

/// `x` (f32) made contiguous, with `op` applied to its values: in place when `x` owns its
/// buffer, else on a copy (a tensor another op still reads is never written).
pub(crate) fn update_f32(x: FlexTensor, op: impl FnOnce(&mut [f32])) -> FlexTensor {
    let mut x = copy_contiguous(x);
    if let Some(values) = x.try_storage_mut::<f32>() {
        op(values);
        return x;
    }
    let mut values = x.storage::<f32>().to_vec();
    op(&mut values);
    FlexTensor::new(Bytes::from_elems(values), Layout::contiguous(x.shape()), DType::F32)
}
