//! Kernels of our own, for the ops where burn's CPU backend has no fast one.
//!
//! burn-flex 0.21 computes GELU (forward and backward) with a scalar `libm` erf, one element at a
//! time on one core: in a MiniLM forward pass that was 21 % of the time, more than anything but
//! the matrix products. [`gelu`] is burn's own `gelu` on every backend except flex, with or
//! without autodiff; there it runs [`gelu_f32`] (a rational erf that the compiler vectorises,
//! for AVX-512, AVX2 or the baseline, chosen at run time) split over rayon's threads, and its
//! derivative [`gelu_grad_f32`] in the backward pass.
//!
//! burn 0.21 cannot replace one op of a backend without wrapping the whole backend type, so the
//! choice is made on the backend's type (`TypeId`, which the compiler folds away). Builds without
//! the `flex` feature compile burn's `gelu` only.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// GELU with the exact (erf) form, `0.5 x (1 + erf(x / √2))`, as BERT's `"gelu"`.
pub fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let x = match flex::gelu(x) {
        Ok(y) => return y,
        Err(x) => x,
    };
    burn::tensor::activation::gelu(x)
}

/// `x` laid out contiguously, for a view (a transpose, a narrow) that is about to be reshaped.
/// burn-flex 0.21 copies such a view one element at a time through a strided iterator, on one
/// core (in a MiniLM forward pass, the attention context's copy alone was 10 % of the time);
/// on flex this copies runs of the last dimension, split over rayon's threads. Other backends
/// get `x` back unchanged (their `reshape` copies when it must). No-op in the backward pass.
pub fn contiguous<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let x = match flex::contiguous(x) {
        Ok(y) => return y,
        Err(x) => x,
    };
    x
}

/// erf for f32: Eigen's rational approximation `x P(x²) / Q(x²)` on [-4, 4] (±1 outside), with
/// no branches and no table, so that a loop of it vectorises. Error below 1e-6 (checked against
/// libm's f64 erf in the tests).
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
    p = r.mul_add(p, 5.000_000_1e-1);
    let y = (r * r).mul_add(p, r) + 1.0;
    y * f32::from_bits(((n as i32 + 127) << 23) as u32)
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

#[cfg(feature = "flex")]
mod flex {
    //! The flex kernels and their autodiff op.

    use std::any::Any;

    use burn::backend::Autodiff;
    use burn::backend::autodiff::NodeId;
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
    use burn::tensor::backend::Backend;
    use burn::tensor::ops::{ActivationOps, FloatTensor};
    use burn::tensor::{Bytes, DType, Tensor, TensorMetadata, TensorPrimitive};
    use burn_flex::{Flex, FlexTensor, Layout};
    use rayon::prelude::*;

    use super::{gelu_f32, gelu_grad_f32};

    /// Elements per rayon task: large enough to amortise the task, small enough to split a
    /// `[rows, 1536]` FFN activation over every core.
    const CHUNK: usize = 16 * 1024;

    /// `value` as a `U`, when `T` is `U`.
    fn cast<T: 'static, U: 'static>(value: T) -> Result<U, T> {
        let mut slot = Some(value);
        match (&mut slot as &mut dyn Any).downcast_mut::<Option<U>>() {
            Some(same) => Ok(same.take().expect("filled above")),
            None => Err(slot.expect("left untouched")),
        }
    }

    /// Applies `op` to the float primitive of `x`.
    fn on_primitive<B: Backend, const D: usize>(
        x: Tensor<B, D>,
        op: fn(FloatTensor<B>) -> FloatTensor<B>,
    ) -> Tensor<B, D> {
        Tensor::from_primitive(TensorPrimitive::Float(op(x.into_primitive().tensor())))
    }

    /// GELU by our kernel when `B` is flex or autodiff over flex; `Err(x)` otherwise.
    pub fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Result<Tensor<B, D>, Tensor<B, D>> {
        let x = match cast::<_, Tensor<Flex, D>>(x) {
            Ok(x) => return Ok(cast(on_primitive(x, gelu_forward)).ok().expect("B is Flex")),
            Err(x) => x,
        };
        match cast::<_, Tensor<Autodiff<Flex>, D>>(x) {
            Ok(x) => Ok(cast(on_primitive(x, gelu_autodiff)).ok().expect("B is Autodiff<Flex>")),
            Err(x) => Err(x),
        }
    }

    /// `x` made contiguous by our copy when `B` is flex or autodiff over flex; `Err(x)` otherwise.
    pub fn contiguous<B: Backend, const D: usize>(x: Tensor<B, D>) -> Result<Tensor<B, D>, Tensor<B, D>> {
        let x = match cast::<_, Tensor<Flex, D>>(x) {
            Ok(x) => return Ok(cast(on_primitive(x, copy_contiguous)).ok().expect("B is Flex")),
            Err(x) => x,
        };
        match cast::<_, Tensor<Autodiff<Flex>, D>>(x) {
            Ok(x) => Ok(cast(on_primitive(x, contiguous_autodiff)).ok().expect("B is Autodiff<Flex>")),
            Err(x) => Err(x),
        }
    }

    /// Rows (runs of the last dimension) per rayon task of a copy.
    const COPY_ROWS: usize = 256;

    /// `x` in a fresh contiguous buffer of exactly its elements, copied a last-dimension run at a
    /// time, rows in parallel. Returns `x` itself when it is already contiguous and whole; uses flex's own copy
    /// for what this does not cover (flipped strides, element types other than f32).
    fn copy_contiguous(x: FlexTensor) -> FlexTensor {
        let layout = x.layout();
        let whole =
            layout.is_contiguous() && layout.start_offset() == 0 && x.bytes().len() == layout.num_elements() * 4;
        if x.dtype() != DType::F32 || whole || !layout.has_positive_strides() || layout.num_dims() == 0 {
            return x.to_contiguous();
        }
        let dims: Vec<usize> = layout.shape().iter().copied().collect();
        let strides: Vec<usize> = layout.strides().iter().map(|&s| s as usize).collect();
        let (start, width, step) = (layout.start_offset(), dims[dims.len() - 1], strides[strides.len() - 1]);
        let src = x.storage::<f32>();
        // The source offset of row `r` (a multi-index over every dimension but the last).
        let row_offset = |mut r: usize| {
            let mut offset = start;
            for (&dim, &stride) in dims[..dims.len() - 1].iter().zip(&strides).rev() {
                offset += (r % dim) * stride;
                r /= dim;
            }
            offset
        };
        let mut out = vec![0f32; layout.num_elements()];
        if width > 0 {
            out.par_chunks_mut(width * COPY_ROWS).enumerate().for_each(|(task, rows)| {
                for (i, row) in rows.chunks_mut(width).enumerate() {
                    let offset = row_offset(task * COPY_ROWS + i);
                    if step == 1 {
                        row.copy_from_slice(&src[offset..offset + width]);
                    } else {
                        row.iter_mut().enumerate().for_each(|(j, v)| *v = src[offset + j * step]);
                    }
                }
            });
        }
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

    /// Applies `op` to every element, in place, on every core.
    fn map_in_place(values: &mut [f32], op: fn(&mut [f32])) {
        values.par_chunks_mut(CHUNK).for_each(op);
    }

    fn gelu_forward(x: FlexTensor) -> FlexTensor {
        if x.dtype() != DType::F32 {
            return Flex::gelu(x);
        }
        let mut x = copy_contiguous(x);
        if let Some(values) = x.try_storage_mut::<f32>() {
            map_in_place(values, simd::gelu);
            return x;
        }
        let mut values = x.storage::<f32>().to_vec();
        map_in_place(&mut values, simd::gelu);
        FlexTensor::new(Bytes::from_elems(values), Layout::contiguous(x.shape()), DType::F32)
    }

    /// `grad · gelu'(x)`.
    fn gelu_backward(x: FlexTensor, grad: FlexTensor) -> FlexTensor {
        if x.dtype() != DType::F32 || grad.dtype() != DType::F32 || x.shape() != grad.shape() {
            return Flex::gelu_backward(x, grad);
        }
        let x = copy_contiguous(x);
        let mut grad = copy_contiguous(grad);
        let xs = x.storage::<f32>();
        let chain = |values: &mut [f32]| {
            values.par_chunks_mut(CHUNK).zip(xs.par_chunks(CHUNK)).for_each(|(g, x)| simd::gelu_chain(g, x))
        };
        if let Some(values) = grad.try_storage_mut::<f32>() {
            chain(values);
            return grad;
        }
        let mut values = grad.storage::<f32>().to_vec();
        chain(&mut values);
        FlexTensor::new(Bytes::from_elems(values), Layout::contiguous(x.shape()), DType::F32)
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

    /// The element loops, compiled once per instruction set and picked at run time, so that
    /// they vectorise with the widest registers the CPU has (the crate itself is built for the
    /// baseline x86-64).
    mod simd {
        use super::{gelu_f32, gelu_grad_f32};

        macro_rules! dispatch {
            ($name:ident ( $($arg:ident : $ty:ty),* ) $body:block) => {
                pub fn $name($($arg: $ty),*) {
                    #[inline(always)]
                    fn body($($arg: $ty),*) $body
                    #[cfg(target_arch = "x86_64")]
                    {
                        #[target_feature(enable = "avx512f")]
                        fn avx512($($arg: $ty),*) { body($($arg),*) }
                        #[target_feature(enable = "avx2,fma")]
                        fn avx2($($arg: $ty),*) { body($($arg),*) }
                        if std::arch::is_x86_feature_detected!("avx512f") {
                            // SAFETY: the CPU has AVX-512F (checked on the line above).
                            return unsafe { avx512($($arg),*) };
                        }
                        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                            // SAFETY: the CPU has AVX2 and FMA (checked on the line above).
                            return unsafe { avx2($($arg),*) };
                        }
                    }
                    body($($arg),*)
                }
            };
        }

        dispatch!(gelu(values: &mut [f32]) {
            for v in values.iter_mut() {
                *v = gelu_f32(*v);
            }
        });

        dispatch!(gelu_chain(grad: &mut [f32], x: &[f32]) {
            for (g, &x) in grad.iter_mut().zip(x) {
                *g *= gelu_grad_f32(x);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every 1/64 over [-12, 12], plus the extremes and special values.
    fn inputs() -> Vec<f32> {
        let mut xs: Vec<f32> = (-768..=768).map(|i| i as f32 / 64.0).collect();
        xs.extend([f32::MIN, -1e30, -100.0, -1e-30, 0.0, 1e-30, 100.0, 1e30, f32::MAX]);
        xs
    }

    fn erf64(x: f64) -> f64 {
        burn::backend::flex::ops::unary::erf_f64(x)
    }

    #[test]
    fn erf_is_within_1e6_of_libm() {
        for x in inputs() {
            let err = (erf_f32(x) as f64 - erf64(x as f64)).abs();
            assert!(err < 1e-6, "erf({x}): error {err}");
        }
    }

    #[test]
    fn exp_is_within_3e7_relative() {
        for x in (-873..=880).map(|i| i as f32 / 10.0) {
            let want = (x as f64).exp();
            let err = ((exp_f32(x) as f64 - want) / want).abs();
            assert!(err < 3e-7, "exp({x}): relative error {err}");
        }
        assert_eq!(exp_f32(-1000.0), exp_f32(-87.3));
    }

    #[test]
    fn gelu_and_its_derivative_match_the_exact_forms() {
        for x in inputs() {
            let x64 = x as f64;
            let cdf = 0.5 * (1.0 + erf64(x64 / std::f64::consts::SQRT_2));
            let want = x64 * cdf;
            let got = gelu_f32(x) as f64;
            assert!((got - want).abs() <= 1e-6 * want.abs().max(1.0), "gelu({x}) = {got}, want {want}");
            let pdf = (-0.5 * x64 * x64).exp() / (2.0 * std::f64::consts::PI).sqrt();
            let want = cdf + x64 * pdf;
            let got = gelu_grad_f32(x) as f64;
            assert!((got - want).abs() < 2e-6, "gelu'({x}) = {got}, want {want}");
        }
    }

    #[cfg(feature = "flex")]
    mod on_flex {
        use burn::backend::{Autodiff, Flex};
        use burn::tensor::{Distribution, Tensor, TensorData, Tolerance};

        type Ad = Autodiff<Flex>;

        fn random(shape: [usize; 3]) -> Tensor<Flex, 3> {
            Tensor::random(shape, Distribution::Normal(0.0, 3.0), &Default::default())
        }

        #[test]
        fn flex_and_autodiff_flex_take_the_kernel() {
            assert!(super::super::flex::gelu(random([2, 3, 4])).is_ok());
            assert!(super::super::flex::gelu(Tensor::<Ad, 3>::from_inner(random([2, 3, 4]))).is_ok());
        }

        #[test]
        fn forward_matches_burn_on_contiguous_shared_and_strided_inputs() {
            let x = random([4, 33, 70]);
            let want = burn::tensor::activation::gelu(x.clone());
            // `x` is shared here (the kernel must not write into it), then unique, then strided.
            let before = x.to_data();
            let shared = super::super::gelu(x.clone());
            shared.to_data().assert_approx_eq::<f32>(&want.to_data(), Tolerance::absolute(1e-6));
            x.to_data().assert_eq(&before, true);
            let strided = super::super::gelu(x.clone().swap_dims(1, 2));
            let want_strided = burn::tensor::activation::gelu(x.clone().swap_dims(1, 2));
            strided.to_data().assert_approx_eq::<f32>(&want_strided.to_data(), Tolerance::absolute(1e-6));
            super::super::gelu(x).to_data().assert_approx_eq::<f32>(&want.to_data(), Tolerance::absolute(1e-6));
        }

        #[test]
        fn contiguous_copies_views_exactly_and_passes_gradients_through() {
            // 600 rows of 8 after the first swap: several rayon tasks of `COPY_ROWS`.
            let x = random([4, 150, 8]);
            let views = [
                x.clone().swap_dims(0, 1),
                x.clone().narrow(2, 2, 4),
                x.clone().reshape([4, 150, 2, 4]).narrow(2, 1, 1).swap_dims(1, 2).reshape([4, 150, 4]),
                x.clone().swap_dims(1, 2).swap_dims(0, 1),
                x.clone().flip([1]),
            ];
            for view in views {
                let copy = super::super::contiguous(view.clone());
                copy.to_data().assert_eq(&view.to_data(), true);
                assert!(copy.into_primitive().tensor().is_contiguous());
            }
            let x = Tensor::<Ad, 3>::from_inner(x).require_grad();
            let weights = Tensor::<Ad, 3>::from_inner(random([150, 4, 8]));
            let grads = (super::super::contiguous(x.clone().swap_dims(0, 1)) * weights.clone()).sum().backward();
            let want = weights.inner().swap_dims(0, 1);
            x.grad(&grads).expect("x requires grad").to_data().assert_eq(&want.to_data(), true);
        }

        #[test]
        fn gradient_matches_burn() {
            let x = random([3, 17, 40]);
            let weights = random([3, 17, 40]);
            let grad = |ours: bool| -> TensorData {
                let x = Tensor::<Ad, 3>::from_inner(x.clone()).require_grad();
                let y = if ours { super::super::gelu(x.clone()) } else { burn::tensor::activation::gelu(x.clone()) };
                let grads = (y * Tensor::from_inner(weights.clone())).sum().backward();
                x.grad(&grads).expect("x requires grad").into_data()
            };
            grad(true).assert_approx_eq::<f32>(&grad(false), Tolerance::absolute(1e-5));
        }
    }
}
