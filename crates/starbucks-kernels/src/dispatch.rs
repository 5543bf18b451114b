//! Choosing a kernel by the caller's backend type. burn cannot replace one op of a backend
//! without wrapping the whole backend type, so each public op here checks whether `B` is flex or
//! autodiff over flex (`TypeId`, which the compiler folds away) and hands the caller's tensors
//! back (`Err`) when it is neither.

use std::any::Any;

use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorPrimitive};
use burn_flex::Flex;

/// `value` as a `U`, when `T` is `U`.
pub fn cast<T: 'static, U: 'static>(value: T) -> Result<U, T> {
    let mut slot = Some(value);
    match (&mut slot as &mut dyn Any).downcast_mut::<Option<U>>() {
        Some(same) => Ok(same.take().expect("filled above")),
        None => Err(slot.expect("left untouched")),
    }
}

/// `value` as a `U`, where the caller has already found that `T` is `U`.
pub fn same<T: 'static, U: 'static>(value: T) -> U {
    cast(value).unwrap_or_else(|_| unreachable!("the backend type was checked"))
}

/// Applies `op` to the float primitive of `x`.
pub fn on_primitive<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    op: fn(FloatTensor<B>) -> FloatTensor<B>,
) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(op(x.into_primitive().tensor())))
}

/// `x` through `flex_op` when `B` is flex, through `autodiff_op` when `B` is autodiff over
/// flex; `Err(x)` otherwise.
pub fn on_flex<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    flex_op: fn(FloatTensor<Flex>) -> FloatTensor<Flex>,
    autodiff_op: fn(FloatTensor<Autodiff<Flex>>) -> FloatTensor<Autodiff<Flex>>,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    let x = match cast::<_, Tensor<Flex, D>>(x) {
        Ok(x) => return Ok(same(on_primitive(x, flex_op))),
        Err(x) => x,
    };
    match cast::<_, Tensor<Autodiff<Flex>, D>>(x) {
        Ok(x) => Ok(same(on_primitive(x, autodiff_op))),
        Err(x) => Err(x),
    }
}
