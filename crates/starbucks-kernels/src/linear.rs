//! `x W + b`, f32, bf16 and int8, in two forms:
//! - [`Linear`], for the CPU encoder: a weight prepared once, in f32 or bf16 (`panels.rs`) or
//!   int8 ([`crate::quant`]), then applied to any number of rows of a slice;
//! - [`linear`], burn's linear op on flex tensors (training): the output starts as the bias rows
//!   and one call of the gemm crate accumulates the product of the strided matrices into it,
//!   with its autodiff op. burn-flex zeroes a fresh buffer for every product, copies it once
//!   more to align it, then adds the bias in another pass.

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
use crate::quant::PackedInt8;
use crate::rows::par_rows;
use crate::simd::Tier;

mod panels;

/// A dense layer: the weight `[in, out]` in its precision, and the f32 bias.
#[derive(Clone)]
pub struct Linear {
    in_features: usize,
    out_features: usize,
    weight: Weight,
    bias: Option<Vec<f32>>,
}

/// Shapes and precision only: the weights are megabytes of numbers.
impl std::fmt::Debug for Linear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let precision = match &self.weight {
            Weight::Panels(panels) if panels.is_bf16() => "bf16",
            Weight::Panels(_) => "f32",
            Weight::Int8(_) => "int8",
        };
        f.debug_struct("Linear")
            .field("in_features", &self.in_features)
            .field("out_features", &self.out_features)
            .field("precision", &precision)
            .field("bias", &self.bias.is_some())
            .finish()
    }
}

#[derive(Clone)]
enum Weight {
    /// f32 or bf16.
    Panels(panels::Panels),
    Int8(PackedInt8),
}

/// Multiply-adds from which an f32 product runs on every core (burn-flex's own threshold).
const PARALLEL_OPS: usize = 192 * 192 * 192;

impl Linear {
    /// A layer of `weight` (row-major `[in_features, out_features]`) and `bias`, in f32.
    pub fn f32(weight: Vec<f32>, in_features: usize, out_features: usize, bias: Option<Vec<f32>>) -> Self {
        assert_eq!(weight.len(), in_features * out_features, "weight is not [{in_features}, {out_features}]");
        Self::with(
            Weight::Panels(panels::Panels::pack(&weight, in_features, out_features)),
            in_features,
            out_features,
            bias,
        )
    }

    /// The same layer with its weight rounded to bf16; its products round their inputs to bf16
    /// and sum in f32. Runs at speed where [`crate::simd::bf16_supported`], in portable code
    /// elsewhere.
    pub fn bf16(weight: &[f32], in_features: usize, out_features: usize, bias: Option<Vec<f32>>) -> Self {
        let panels = panels::Panels::pack_bf16(weight, in_features, out_features);
        Self::with(Weight::Panels(panels), in_features, out_features, bias)
    }

    /// The same layer with its weight quantised to int8 per output column.
    pub fn int8(weight: &[f32], in_features: usize, out_features: usize, bias: Option<Vec<f32>>) -> Self {
        Self::with(Weight::Int8(PackedInt8::new(weight, in_features, out_features)), in_features, out_features, bias)
    }

    fn with(weight: Weight, in_features: usize, out_features: usize, bias: Option<Vec<f32>>) -> Self {
        if let Some(bias) = &bias {
            assert_eq!(bias.len(), out_features, "{out_features} outputs but {} biases", bias.len());
        }
        Linear { in_features, out_features, weight, bias }
    }

    pub fn in_features(&self) -> usize {
        self.in_features
    }

    pub fn out_features(&self) -> usize {
        self.out_features
    }

    /// `x W + b` for `rows` rows of `x`, as a `[rows, out_features]` buffer from
    /// [`crate::scratch`] (give it back with [`crate::scratch::keep`] when done with it).
    pub fn forward(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let k = self.in_features;
        assert_eq!(x.len(), rows * k, "x is not [{rows}, {k}]");
        match &self.weight {
            Weight::Int8(packed) => packed.forward(x, rows, self.bias.as_deref()),
            Weight::Panels(panels) => panels.forward(Tier::current(), x, rows, self.bias.as_deref()),
        }
    }
}

/// Rows per rayon task of [`bias_rows`].
const BIAS_ROWS: usize = 64;

/// `rows` copies of `bias` (`n` values), or zeros: the start of an output that [`accumulate`]
/// adds a product into, so the bias costs no pass of its own. Written in parallel, into fresh
/// capacity (no zeroing first).
fn bias_rows(bias: Option<&[f32]>, rows: usize, n: usize) -> Vec<f32> {
    let Some(bias) = bias else { return vec![0.0; rows * n] };
    assert_eq!(bias.len(), n, "{n} outputs but {} biases", bias.len());
    let mut out = Vec::<f32>::with_capacity(rows * n);
    par_rows(&mut out.spare_capacity_mut()[..rows * n], n, BIAS_ROWS, |_, row| {
        row.iter_mut().zip(bias).for_each(|(value, &b)| {
            value.write(b);
        });
    });
    // SAFETY: `par_rows` wrote all rows × n values (rows copies of the n biases).
    unsafe { out.set_len(rows * n) };
    out
}

/// `out += x W` by gemm, for `[m, n, k]`: `out` row-major `[m, n]`, `x` `[m, k]` and `W` `[k, n]`
/// each given as a pointer and its (row, column) strides in elements. Runs on every core from
/// `PARALLEL_OPS` multiply-adds.
///
/// # Safety
/// Every element of the three matrices, at those strides, lies inside its allocation, and
/// `out` is written by no one else meanwhile.
unsafe fn accumulate(
    [m, n, k]: [usize; 3],
    out: *mut f32,
    (x, [x_row, x_col]): (*const f32, [isize; 2]),
    (w, [w_row, w_col]): (*const f32, [isize; 2]),
) {
    if m * n * k == 0 {
        return;
    }
    let parallelism = if m * n * k >= PARALLEL_OPS { gemm::Parallelism::Rayon(0) } else { gemm::Parallelism::None };
    // SAFETY: the caller's contract; gemm reads and writes at exactly these strides.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out,
            1,
            n as isize,
            true,
            x,
            x_col,
            x_row,
            w,
            w_col,
            w_row,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

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
