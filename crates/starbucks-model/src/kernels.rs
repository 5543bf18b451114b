//! Kernels of our own, for the encoder's ops where burn's CPU backend has no fast one.
//!
//! burn-flex 0.21 runs GELU with a scalar `libm` erf and its element-wise ops and strided copies
//! one element at a time on one core, draws dropout masks from one `StdRng`, and zeroes, then
//! copies, the output buffer of every matrix product. In a MiniLM forward pass GELU alone was
//! 21 % of the time, the copies 15 %. Each function here ([`gelu`], [`dropout`], [`linear`],
//! [`add_broadcast`], [`contiguous`]) is burn's own op on every backend except flex, with or
//! without autodiff; there it runs a kernel of this file, vectorised (for AVX-512, AVX2 or the
//! baseline, chosen at run time, where it matters) and split over rayon's threads, with its own
//! autodiff op for the backward pass.
//!
//! burn 0.21 cannot replace one op of a backend without wrapping the whole backend type, so the
//! choice is made on the backend's type (`TypeId`, which the compiler folds away). Builds without
//! the `flex` feature compile burn's ops only.

use burn::nn::Dropout;
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

/// `lhs + rhs`, `rhs` broadcast to `lhs`'s shape (same rank, each dim equal or 1), as the
/// attention scores `[batch, heads, seq_q, seq]` plus the padding bias `[batch, 1, 1, seq]`.
/// burn-flex 0.21 adds such a broadcast through its strided iterator, one element at a time on
/// one core; on flex this adds a row at a time, rows in parallel. burn's `+` elsewhere.
pub fn add_broadcast<B: Backend, const D: usize>(lhs: Tensor<B, D>, rhs: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let (lhs, rhs) = match flex::add_broadcast(lhs, rhs) {
        Ok(sum) => return sum,
        Err(pair) => pair,
    };
    lhs + rhs
}

/// `dropout.forward(x)`: on autodiff over flex, one pass that draws the keep mask from a
/// counter-based hash (SplitMix64 of a seed and the element's index, in parallel) and scales the
/// kept values by `1/(1-p)`; the backward pass rehashes the same mask instead of storing it.
/// burn's dropout draws every element from one `StdRng` on one core, then multiplies twice (in
/// a MiniLM training step, 14 % of the time). The seed comes from the backend's own random
/// stream, so `Backend::seed` still makes runs repeatable. burn's dropout elsewhere.
pub fn dropout<B: Backend, const D: usize>(dropout: &Dropout, x: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let x = match flex::dropout(x, dropout.prob) {
        Ok(y) => return y,
        Err(x) => x,
    };
    dropout.forward(x)
}

/// SplitMix64's finaliser: a well-mixed 64-bit hash of `z`.
#[cfg(feature = "flex")]
#[inline(always)]
pub fn splitmix64(z: u64) -> u64 {
    let z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `x @ weight + bias` for rows `x` `[rows, in]` and `weight` `[in, out]` (burn's `Linear`
/// layout). On flex (with or without autodiff) the output buffer starts as the bias rows and the
/// product is accumulated into it by one `gemm` call: burn-flex 0.21 zeroes a fresh buffer for
/// every product, copies it once more to align it, and then adds the bias in another pass, all
/// on one core (8 % of a MiniLM forward pass). burn's `matmul` and `+` elsewhere.
pub fn linear<B: Backend>(x: Tensor<B, 2>, weight: Tensor<B, 2>, bias: Option<Tensor<B, 1>>) -> Tensor<B, 2> {
    #[cfg(feature = "flex")]
    let (x, weight, bias) = match flex::linear(x, weight, bias) {
        Ok(y) => return y,
        Err(inputs) => inputs,
    };
    let y = x.matmul(weight);
    match bias {
        Some(bias) => y + bias.unsqueeze(),
        None => y,
    }
}

/// erf for f32: Eigen's rational approximation `x P(x²) / Q(x²)` on [-4, 4] (±1 outside), with
/// no branches and no table, so that a loop of it vectorises. Error below 1e-6 (checked against
/// libm's f64 erf in the tests).
#[cfg(any(feature = "flex", test))]
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
#[cfg(any(feature = "flex", test))]
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
    y * f32::from_bits(((n as i32 + 127) << 23) as u32)
}

/// GELU of one value.
#[cfg(any(feature = "flex", test))]
#[inline(always)]
pub fn gelu_f32(x: f32) -> f32 {
    let y = 0.5 * x * (1.0 + erf_f32(x * std::f32::consts::FRAC_1_SQRT_2));
    // Below -10 GELU is under 1e-22 in size; 1 + erf is not exactly 0 there, and x may be huge.
    if x < -10.0 { 0.0 } else { y }
}

/// The derivative of GELU at `x`: `Φ(x) + x φ(x)`.
#[cfg(any(feature = "flex", test))]
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
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, binary, unary};
    use burn::tensor::backend::Backend;
    use burn::tensor::ops::{ActivationOps, FloatTensor, FloatTensorOps};
    use burn::tensor::{Bytes, DType, Distribution, FloatDType, Int, Shape, Tensor, TensorMetadata, TensorPrimitive};
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

    /// `value` as a `U`, where the caller has already found that `T` is `U`.
    fn same<T: 'static, U: 'static>(value: T) -> U {
        cast(value).unwrap_or_else(|_| unreachable!("the backend type was checked"))
    }

    /// Applies `op` to the float primitive of `x`.
    fn on_primitive<B: Backend, const D: usize>(
        x: Tensor<B, D>,
        op: fn(FloatTensor<B>) -> FloatTensor<B>,
    ) -> Tensor<B, D> {
        Tensor::from_primitive(TensorPrimitive::Float(op(x.into_primitive().tensor())))
    }

    /// `x` through `flex_op` when `B` is flex, through `autodiff_op` when `B` is autodiff over
    /// flex; `Err(x)` otherwise.
    fn on_flex<B: Backend, const D: usize>(
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

    /// GELU by our kernel when `B` is flex or autodiff over flex; `Err(x)` otherwise.
    pub fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Result<Tensor<B, D>, Tensor<B, D>> {
        on_flex(x, gelu_forward, gelu_autodiff)
    }

    /// `x` made contiguous by our copy when `B` is flex or autodiff over flex; `Err(x)` otherwise.
    pub fn contiguous<B: Backend, const D: usize>(x: Tensor<B, D>) -> Result<Tensor<B, D>, Tensor<B, D>> {
        on_flex(x, copy_contiguous, contiguous_autodiff)
    }

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
                        let keep = super::splitmix64(base.wrapping_add(i as u64)) >> 32 < self.threshold;
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

    /// The inputs of [`super::linear`], and its op on primitives.
    type LinearInputs<B> = (Tensor<B, 2>, Tensor<B, 2>, Option<Tensor<B, 1>>);
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

    /// Multiply-adds from which a product runs on every core (burn-flex's own threshold).
    const GEMM_PARALLEL_OPS: usize = 192 * 192 * 192;

    /// `x @ weight + bias`, f32, any strides: the bias rows first, then `gemm` adds the product.
    fn linear_forward(x: FlexTensor, weight: FlexTensor, bias: Option<FlexTensor>) -> FlexTensor {
        let ([m, k], [k2, n]) = (x.shape().dims::<2>(), weight.shape().dims::<2>());
        assert_eq!(k, k2, "linear: x is [{m}, {k}] but the weight is [{k2}, {n}]");
        let mut out = match bias {
            Some(bias) => {
                let bias = copy_contiguous(bias);
                let bias = bias.storage::<f32>();
                assert_eq!(bias.len(), n, "linear: {n} outputs but {} biases", bias.len());
                let mut out = Vec::<f32>::with_capacity(m * n);
                par_rows(&mut out.spare_capacity_mut()[..m * n], n, ADD_ROWS, |_, row| {
                    row.iter_mut().zip(bias).for_each(|(value, &b)| {
                        value.write(b);
                    });
                });
                // SAFETY: `par_rows` wrote all m × n values (m rows of the n biases).
                unsafe { out.set_len(m * n) };
                out
            }
            None => vec![0f32; m * n],
        };
        if m * n * k > 0 {
            let parallelism =
                if m * n * k >= GEMM_PARALLEL_OPS { gemm::Parallelism::Rayon(0) } else { gemm::Parallelism::None };
            let (x_strides, w_strides) = (x.layout().strides(), weight.layout().strides());
            let (x_data, w_data) = (x.storage::<f32>(), weight.storage::<f32>());
            // SAFETY: `out` holds m × n values written at column stride 1 and row stride n;
            // `x` and `weight` are read inside their own storage, at their layouts' offsets and
            // strides over their m × k and k × n shapes (checked above).
            unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    out.as_mut_ptr(),
                    1,
                    n as isize,
                    true,
                    x_data.as_ptr().add(x.layout().start_offset()),
                    x_strides[1],
                    x_strides[0],
                    w_data.as_ptr().add(weight.layout().start_offset()),
                    w_strides[1],
                    w_strides[0],
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    parallelism,
                );
            }
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

    /// Rows per rayon task of a broadcast add.
    const ADD_ROWS: usize = 64;

    fn add_forward(lhs: FlexTensor, rhs: FlexTensor) -> FlexTensor {
        let (dims, rhs_dims) = (lhs.shape(), rhs.shape());
        let broadcastable = dims.num_dims() == rhs_dims.num_dims()
            && dims.num_dims() > 0
            && dims.iter().zip(rhs_dims.iter()).all(|(&d, &r)| r == d || r == 1);
        if lhs.dtype() != DType::F32
            || rhs.dtype() != DType::F32
            || !broadcastable
            || !rhs.layout().has_positive_strides()
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

    /// Calls `op(r, row)` for every row `r` (a run of `width` values) of `values`, `per_task` rows
    /// to a rayon task.
    fn par_rows<T: Send>(values: &mut [T], width: usize, per_task: usize, op: impl Fn(usize, &mut [T]) + Sync) {
        if width == 0 {
            return;
        }
        values.par_chunks_mut(width * per_task).enumerate().for_each(|(task, rows)| {
            for (i, row) in rows.chunks_mut(width).enumerate() {
                op(task * per_task + i, row);
            }
        });
    }

    /// The storage offset of row `r` of a tensor starting at `start`, with `dims` and per-dim
    /// element `steps`: `r` as a multi-index over every dim but the last.
    fn row_offset(mut r: usize, start: usize, dims: &[usize], steps: &[usize]) -> usize {
        let mut offset = start;
        for (&dim, &step) in dims[..dims.len() - 1].iter().zip(steps).rev() {
            offset += (r % dim) * step;
            r /= dim;
        }
        offset
    }

    /// Rows (runs of the last dimension) per rayon task of a copy.
    const COPY_ROWS: usize = 256;

    /// `x` in a fresh contiguous buffer of exactly its elements, copied a last-dimension run at a
    /// time, rows in parallel. Returns `x` itself when it is already contiguous and whole; uses
    /// flex's own copy for what this does not cover (flipped strides, element types other than
    /// f32).
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
    fn update_f32(x: FlexTensor, op: impl FnOnce(&mut [f32])) -> FlexTensor {
        let mut x = copy_contiguous(x);
        if let Some(values) = x.try_storage_mut::<f32>() {
            op(values);
            return x;
        }
        let mut values = x.storage::<f32>().to_vec();
        op(&mut values);
        FlexTensor::new(Bytes::from_elems(values), Layout::contiguous(x.shape()), DType::F32)
    }

    /// Applies `op` to every element, in place, on every core.
    fn map_in_place(values: &mut [f32], op: fn(&mut [f32])) {
        values.par_chunks_mut(CHUNK).for_each(op);
    }

    fn gelu_forward(x: FlexTensor) -> FlexTensor {
        if x.dtype() != DType::F32 {
            return Flex::gelu(x);
        }
        update_f32(x, |values| map_in_place(values, simd::gelu))
    }

    /// `grad · gelu'(x)`.
    fn gelu_backward(x: FlexTensor, grad: FlexTensor) -> FlexTensor {
        if x.dtype() != DType::F32 || grad.dtype() != DType::F32 || x.shape() != grad.shape() {
            return Flex::gelu_backward(x, grad);
        }
        let x = copy_contiguous(x);
        let xs = x.storage::<f32>();
        update_f32(grad, |values| {
            values.par_chunks_mut(CHUNK).zip(xs.par_chunks(CHUNK)).for_each(|(g, x)| simd::gelu_chain(g, x))
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

        fn random<const D: usize>(shape: [usize; D]) -> Tensor<Flex, D> {
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
            shared.to_data().assert_approx_eq::<f32>(&want.to_data(), Tolerance::rel_abs(1e-6, 1e-6));
            x.to_data().assert_eq(&before, true);
            let strided = super::super::gelu(x.clone().swap_dims(1, 2));
            let want_strided = burn::tensor::activation::gelu(x.clone().swap_dims(1, 2));
            strided.to_data().assert_approx_eq::<f32>(&want_strided.to_data(), Tolerance::rel_abs(1e-6, 1e-6));
            super::super::gelu(x).to_data().assert_approx_eq::<f32>(&want.to_data(), Tolerance::rel_abs(1e-6, 1e-6));
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
        fn add_broadcast_matches_burn_with_gradients() {
            let lhs = random([4, 3, 70, 70]);
            for rhs_shape in [[4, 1, 1, 70], [1, 3, 70, 1], [4, 3, 70, 70], [1, 1, 1, 1]] {
                let rhs = random(rhs_shape);
                let run = |ours: bool| -> [TensorData; 3] {
                    let l = Tensor::<Ad, 4>::from_inner(lhs.clone()).require_grad();
                    let r = Tensor::<Ad, 4>::from_inner(rhs.clone()).require_grad();
                    let sum =
                        if ours { super::super::add_broadcast(l.clone(), r.clone()) } else { l.clone() + r.clone() };
                    let grads = (sum.clone() * sum.clone()).sum().backward();
                    [sum.into_data(), l.grad(&grads).unwrap().into_data(), r.grad(&grads).unwrap().into_data()]
                };
                for (ours, burn) in run(true).iter().zip(&run(false)) {
                    ours.assert_approx_eq::<f32>(burn, Tolerance::rel_abs(1e-5, 1e-4));
                }
            }
            // A strided `lhs` and a shared one give the same sums, and the shared one is untouched.
            let rhs = random([4, 1, 1, 70]);
            let strided = lhs.clone().swap_dims(2, 3);
            super::super::add_broadcast(strided.clone(), rhs.clone().swap_dims(2, 3))
                .to_data()
                .assert_approx_eq::<f32>(&(strided + rhs.clone().swap_dims(2, 3)).to_data(), Tolerance::absolute(1e-6));
            let before = lhs.to_data();
            let _ = super::super::add_broadcast(lhs.clone(), rhs);
            lhs.to_data().assert_eq(&before, true);
        }

        #[test]
        fn dropout_keeps_1_minus_p_scales_and_masks_the_gradient_alike() {
            let dropout = burn::nn::DropoutConfig::new(0.1).init();
            let run = || {
                let x = Tensor::<Ad, 2>::ones([64, 1000], &Default::default()).require_grad();
                let weights = Tensor::<Ad, 2>::from_inner(random([64, 1000]));
                let y = super::super::dropout(&dropout, x.clone());
                let grads = (y.clone() * weights.clone()).sum().backward();
                let y: Vec<f32> = y.into_data().to_vec().unwrap();
                let grad: Vec<f32> = x.grad(&grads).unwrap().into_data().to_vec().unwrap();
                let weights: Vec<f32> = weights.into_data().to_vec().unwrap();
                (y, grad, weights)
            };
            let (y, grad, weights) = run();
            let dropped = y.iter().filter(|&&v| v == 0.0).count() as f64 / y.len() as f64;
            assert!((dropped - 0.1).abs() < 0.005, "dropped {dropped}");
            assert!(y.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.9).abs() < 1e-6));
            for ((&y, &g), &w) in y.iter().zip(&grad).zip(&weights) {
                assert!((g - y * w).abs() < 1e-6, "gradient {g} for output {y} and weight {w}");
            }
            // (The mask's dependence on `Backend::seed` alone is left to the training tests: the
            // tests here draw from the same global stream in parallel.)
            // Without autodiff, dropout is the identity, as burn's.
            let x = random([3, 4]);
            super::super::dropout(&dropout, x.clone()).into_data().assert_eq(&x.into_data(), true);
        }

        /// `t` in a buffer of its own, laid out contiguously.
        fn contiguous_copy(t: Tensor<Flex, 2>) -> Tensor<Flex, 2> {
            Tensor::from_data(t.into_data(), &Default::default())
        }

        #[test]
        fn linear_matches_burn_with_gradients_on_strided_inputs() {
            let x = random([70, 24]);
            let weight = random([24, 33]);
            let bias = random([33]);
            let run = |ours: bool, transposed: bool, with_bias: bool| -> Vec<TensorData> {
                let x = Tensor::<Ad, 2>::from_inner(x.clone()).require_grad();
                // Transposed: the parameter is stored `[out, in]` and read through the strides
                // of its transposed view.
                let stored = if transposed { contiguous_copy(weight.clone().transpose()) } else { weight.clone() };
                let w = Tensor::<Ad, 2>::from_inner(stored).require_grad();
                let b = Tensor::<Ad, 1>::from_inner(bias.clone()).require_grad();
                let w_used = if transposed { w.clone().transpose() } else { w.clone() };
                let b_used = with_bias.then(|| b.clone());
                let y = if ours {
                    super::super::linear(x.clone(), w_used, b_used)
                } else {
                    let y = x.clone().matmul(w_used);
                    match b_used {
                        Some(b) => y + b.unsqueeze(),
                        None => y,
                    }
                };
                let grads = (y.clone() * y.clone()).sum().backward();
                let mut out =
                    vec![y.into_data(), x.grad(&grads).unwrap().into_data(), w.grad(&grads).unwrap().into_data()];
                if with_bias {
                    out.push(b.grad(&grads).unwrap().into_data());
                }
                out
            };
            for (transposed, with_bias) in [(false, true), (true, true), (false, false)] {
                for (ours, burn) in run(true, transposed, with_bias).iter().zip(&run(false, transposed, with_bias)) {
                    ours.assert_approx_eq::<f32>(burn, Tolerance::rel_abs(1e-4, 1e-3));
                }
            }
            let strided = |t: Tensor<Flex, 2>| contiguous_copy(t.transpose()).transpose();
            assert!(!strided(x.clone()).into_primitive().tensor().is_contiguous());
            super::super::linear(strided(x.clone()), strided(weight.clone()), Some(bias.clone()))
                .into_data()
                .assert_approx_eq::<f32>(
                    &(x.matmul(weight) + bias.unsqueeze()).into_data(),
                    Tolerance::rel_abs(1e-5, 1e-4),
                );
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
            grad(true).assert_approx_eq::<f32>(&grad(false), Tolerance::rel_abs(1e-5, 1e-5));
        }
    }
}
