//! `x W + b` on row-major slices, for the CPU encoder: a weight prepared once, in f32 (gemm's
//! AVX-512 / AVX2 / baseline kernels, picked at run time) or int8 ([`crate::quant`]), then
//! applied to any number of rows.

use crate::quant::PackedInt8;

/// A dense layer: the weight `[in, out]` in its precision, and the f32 bias.
#[derive(Debug, Clone)]
pub struct Linear {
    in_features: usize,
    out_features: usize,
    weight: Weight,
    bias: Option<Vec<f32>>,
}

#[derive(Debug, Clone)]
enum Weight {
    F32(Vec<f32>),
    Int8(PackedInt8),
}

/// Multiply-adds from which an f32 product runs on every core (burn-flex's own threshold).
const PARALLEL_OPS: usize = 192 * 192 * 192;

impl Linear {
    /// A layer of `weight` (row-major `[in_features, out_features]`) and `bias`, in f32.
    pub fn f32(weight: Vec<f32>, in_features: usize, out_features: usize, bias: Option<Vec<f32>>) -> Self {
        assert_eq!(weight.len(), in_features * out_features, "weight is not [{in_features}, {out_features}]");
        Self::with(Weight::F32(weight), in_features, out_features, bias)
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
        let (k, n) = (self.in_features, self.out_features);
        assert_eq!(x.len(), rows * k, "x is not [{rows}, {k}]");
        match &self.weight {
            Weight::Int8(packed) => {
                let mut out = vec![0.0; rows * n];
                packed.matmul(x, rows, self.bias.as_deref(), &mut out);
                out
            }
            Weight::F32(weight) => {
                // The output starts as the bias rows, and one product accumulates into it.
                let mut out = match &self.bias {
                    Some(bias) => bias.repeat(rows),
                    None => vec![0.0; rows * n],
                };
                if rows * n * k == 0 {
                    return out;
                }
                let parallelism =
                    if rows * n * k >= PARALLEL_OPS { gemm::Parallelism::Rayon(0) } else { gemm::Parallelism::None };
                // SAFETY: `out` is [rows, n], `x` [rows, k] and `weight` [k, n], all row-major
                // (checked above and in `new`), read and written at those strides.
                unsafe {
                    gemm::gemm(
                        rows,
                        n,
                        k,
                        out.as_mut_ptr(),
                        1,
                        n as isize,
                        true,
                        x.as_ptr(),
                        1,
                        k as isize,
                        weight.as_ptr(),
                        1,
                        n as isize,
                        1.0,
                        1.0,
                        false,
                        false,
                        false,
                        parallelism,
                    );
                }
                out
            }
        }
    }
}
