//! GELU (BERT's exact erf form): the scalar functions, a vectorised loop of them, and the flex op
//! with its autodiff derivative. burn-flex runs GELU as a scalar `libm` erf per element on
//! one core.

use burn::backend::Autodiff;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::tensor::backend::Backend;
use burn::tensor::ops::{ActivationOps, FloatTensor};
use burn::tensor::{DType, Tensor, TensorMetadata};
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;

use crate::CHUNK;
use crate::copy::{copy_contiguous, update_f32};
use crate::dispatch::on_flex;
use crate::simd::simd;

#[inline(always)]
pub fn erf_f32(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2.mul_add(-2.726_142_3e-10, 2.770_681_4e-8);
    p = x2.mul_add(p, -2.101_024e-6);
    p = x2.mul_add(p, -5.692_506_4e-5);
    p = x2.mul_add(p, -7.349_906_3e-4);
    p = x2.mul_add(p, -2.954_600_1e-3);
    p = x2.mul_add(p, -1.609_603_3e-2);
    let mut q = x2.mul_add(-1.456_607_2e-5, -2.133_740_6e-4);
    q = x2.mul_add(q, -1.682_827e-3);
    q = x2.mul_add(q, -7.373_329_2e-3);
    q = x2.mul_add(q, -1.426_474e-2);
    x * p / q
}

/// `exp(x)` for f32 without branches (Cephes' `expf`: x = n ln 2 + r, a degree-6 polynomial in
/// r, 2ⁿ from the exponent bits). Inputs are clamped to [-87.3, 88], where 2ⁿ and the result
/// are normal f32s. Relative error below 2e-7.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.0);
    let n = x.mul_add(std::f32::consts::LOG2_E, 0.5).floor();
    let r = n.mul_add(-0.693_359_4, x);
    let r = n.mul_add(2.121_944_4e-4, r);
    let mut p = r.mul_add(1.987_569_1e-4, 1.398_2e-3);
    p = r.mul_add(p, 8.333_452e-3);
    p = r.mul_add(p, 4.166_579_6e-2);
    p = r.mul_add(p, 1.666_666_5e-1);
    p = r.mul_add(p, 0.5);
    let y = (r * r).mul_add(p, r) + 1.0;
    // 2ⁿ from n's bits: adding 1.5 × 2²³ puts the integer n (|n| ≤ 127 here) in the low bits of
    // the sum's mantissa, whose higher bits the shift drops. Rust's `n as i32` saturates and
    // maps NaN to 0, which compiled to scalar code lane by lane and was most of a vectorised
    // loop's time (a NaN stays a NaN through `y`).
    let shifted = (n + 12_582_912.0).to_bits();
    y * f32::from_bits(shifted.wrapping_add(127) << 23)
}

/// GELU of one value.
#[inline(always)]
pub fn gelu_f32(x: f32) -> f32 {
    let y = 0.5 * x * (1.0 + erf_f32(x * std::f32::consts::FRAC_1_SQRT_2));
    // Below -10 GELU is under 1e-22 in size; 1 + erf is not exactly 0 there, and x may be huge.
    if x < -10.0 { 0.0 } else { y }
}

/// The derivative of GELU at `x`: `Φ(x) + x φ(x)`.
#[inline(always)]
pub fn gelu_grad_f32(x: f32) -> f32 {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    let cdf = 0.5 * (1.0 + erf_f32(x * std::f32::consts::FRAC_1_SQRT_2));
    // Beyond ±10, x φ(x) < 1e-21: clamping keeps x² finite and x φ(x) at 0 for huge x.
    let x = x.clamp(-10.0, 10.0);
    cdf + x * INV_SQRT_2PI * exp_f32(-0.5 * x * x)
}

/// GELU by our kernel when `B` is flex or autodiff over flex; `Err(x)` otherwise.
pub fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Result<Tensor<B, D>, Tensor<B, D>> {
    on_flex(x, gelu_forward, gelu_autodiff)
}

/// GELU (erf form) of every value, in place, on every core: for slices of the CPU encoder.
pub fn gelu_in_place(values: &mut [f32]) {
    map_in_place(values, gelu_loop);
}

/// The tanh approximation of GELU (HF's `"gelu_new"`) of every value, in place, on every core.
pub fn gelu_tanh_in_place(values: &mut [f32]) {
    map_in_place(values, gelu_tanh_loop);
}

/// `max(x, 0)` of every value, in place, on every core.
pub fn relu_in_place(values: &mut [f32]) {
    map_in_place(values, relu_loop);
}

/// Applies `op` to every element, in place, on every core.
fn map_in_place(values: &mut [f32], op: fn(&mut [f32])) {
    values.par_chunks_mut(CHUNK).for_each(op);
}

fn gelu_forward(x: FlexTensor) -> FlexTensor {
    if x.dtype() != DType::F32 {
        return Flex::gelu(x);
    }
    update_f32(x, |values| map_in_place(values, gelu_loop))
}

/// `grad · gelu'(x)`.
fn gelu_backward(x: FlexTensor, grad: FlexTensor) -> FlexTensor {
    if x.dtype() != DType::F32 || grad.dtype() != DType::F32 || x.shape() != grad.shape() {
        return Flex::gelu_backward(x, grad);
    }
    let x = copy_contiguous(x);
    let xs = x.storage::<f32>();
    update_f32(grad, |values| {
        values.par_chunks_mut(CHUNK).zip(xs.par_chunks(CHUNK)).for_each(|(g, x)| gelu_chain(g, x))
    })
}

/// GELU on autodiff over flex: our forward kernel, and our derivative in the backward pass
/// (the input is kept for it, as burn's own GELU keeps it).
fn gelu_autodiff(x: FloatTensor<Autodiff<Flex>>) -> FloatTensor<Autodiff<Flex>> {
    #[derive(Debug)]
    struct GeluBackward;

    impl Backward<Flex, 1> for GeluBackward {
        type State = NodeId;

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
            let input: FlexTensor = checkpointer.retrieve_node_output(ops.state);
            unary::<Flex, _>(ops.parents, ops.node, grads, |grad| gelu_backward(input, grad));
        }
    }

    match GeluBackward.prepare::<NoCheckpointing>([x.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(mut prep) => {
            let state = prep.checkpoint(&x);
            prep.finish(state, gelu_forward(x.primitive))
        }
        OpsKind::UnTracked(prep) => prep.finish(gelu_forward(x.primitive)),
    }
}

simd!(gelu_loop(values: &mut [f32]) {
    for v in values.iter_mut() {
        *v = gelu_f32(*v);
    }
});

simd!(gelu_chain(grad: &mut [f32], x: &[f32]) {
    for (g, &x) in grad.iter_mut().zip(x) {
        *g *= gelu_grad_f32(x);
    }
});

simd!(gelu_tanh_loop(values: &mut [f32]) {
    const C: f32 = 0.797_884_6; // √(2/π)
    for v in values.iter_mut() {
        let x = *v;
        // tanh(y) = 1 - 2 / (e^{2y} + 1), exact at both ends of exp_f32's clamped range.
        let y = C * (x + 0.044_715 * x * x * x);
        let tanh = 1.0 - 2.0 / (exp_f32(2.0 * y) + 1.0);
        *v = 0.5 * x * (1.0 + tanh);
    }
});

simd!(relu_loop(values: &mut [f32]) {
    for v in values.iter_mut() {
        *v = v.max(0.0);
    }
});
