//! `x W + b` on row-major slices: for the CPU encoder a weight prepared once, in f32
//! (`panels.rs`) or int8 ([`crate::quant`]), then applied to any number of rows; for burn's
//! linear op ([`crate::linear`]) the gemm crate's product of strided matrices ([`accumulate`]).

use crate::copy::par_rows;
use crate::quant::PackedInt8;
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
        let precision = match self.weight {
            Weight::F32(_) => "f32",
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
    F32(panels::Panels),
    Int8(PackedInt8),
}

/// Multiply-adds from which an f32 product runs on every core (burn-flex's own threshold).
const PARALLEL_OPS: usize = 192 * 192 * 192;

impl Linear {
    /// A layer of `weight` (row-major `[in_features, out_features]`) and `bias`, in f32.
    pub fn f32(weight: Vec<f32>, in_features: usize, out_features: usize, bias: Option<Vec<f32>>) -> Self {
        assert_eq!(weight.len(), in_features * out_features, "weight is not [{in_features}, {out_features}]");
        Self::with(
            Weight::F32(panels::Panels::pack(&weight, in_features, out_features)),
            in_features,
            out_features,
            bias,
        )
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

    /// `x W + b` for `rows` rows of `x`, as a new `[rows, out_features]` buffer.
    pub fn forward(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let k = self.in_features;
        assert_eq!(x.len(), rows * k, "x is not [{rows}, {k}]");
        match &self.weight {
            Weight::Int8(packed) => packed.forward(x, rows, self.bias.as_deref()),
            Weight::F32(panels) => panels.forward(Tier::current(), x, rows, self.bias.as_deref()),
        }
    }
}

/// Rows per rayon task of [`bias_rows`].
const BIAS_ROWS: usize = 64;

/// `rows` copies of `bias` (`n` values), or zeros: the start of an output that [`accumulate`]
/// adds a product into, so the bias costs no pass of its own. Written in parallel, into fresh
/// capacity (no zeroing first).
pub(crate) fn bias_rows(bias: Option<&[f32]>, rows: usize, n: usize) -> Vec<f32> {
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
pub(crate) unsafe fn accumulate(
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
