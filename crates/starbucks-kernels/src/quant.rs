//! Int8 matrix products: `x W + b` with the weight quantised once per output column
//! (symmetric, to ±[`WEIGHT_MAX`]) and the activations quantised per row at run time
//! (asymmetric, to 0..=[`ACTIVATION_MAX`] around a zero point, so that a skewed row such as a
//! GELU output uses the whole range), products summed exactly in i32, then scaled back to f32.
//!
//! The kernel multiplies u8 activations by i8 weights with `vpmaddubsw` (32 products per
//! instruction, summed in pairs into i16) and widens the pairs into i32 with `vpmaddwd` by ones:
//! two multiply instructions per 32 products, where i16 × i16 (`vpmaddwd` alone) takes two per
//! 16 and an add besides. `vpmaddubsw` saturates its i16 sums, so the two ranges are chosen so that
//! a pair of products cannot pass `i16::MAX`: the weights keep 7 bits (ONNX Runtime's
//! `reduce_range` makes the same choice for the same instruction), the activations all 8, which
//! measured closer to f32 on STS-B than the other way round (docs/benchmarks.md). The sums are
//! exact, and CPUs without AVX2 run the same integer sums in scalar code, with the same result to
//! the bit.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::simd::simd;

mod tile;

use tile::{Sums, avx2_tile, scalar_tile};

/// The largest quantised activation (the zero point included) and the largest weight
/// magnitude: `2 × ACTIVATION_MAX × WEIGHT_MAX` must stay within i16 for `vpmaddubsw`.
pub const ACTIVATION_MAX: i32 = 255;
pub const WEIGHT_MAX: i32 = 63;
const _: () = assert!(2 * ACTIVATION_MAX * WEIGHT_MAX <= i16::MAX as i32);

/// Output columns per packed block: one 256-bit register of i32 sums.
const BLOCK: usize = 8;
/// Input rows per packed group: `vpmaddubsw` then `vpmaddwd` sum 4 products into each i32.
const GROUP: usize = 4;
/// Rows and column blocks of one register tile of the AVX2 kernel: 4 × 2 sums, 2 weights and a
/// broadcast fit AVX2's 16 registers with room to spare (4 × 3 spills).
const TILE_ROWS: usize = 4;
const TILE_BLOCKS: usize = 2;
/// Rows and columns of one rayon task.
const TASK_ROWS: usize = 64;
const TASK_BLOCKS: usize = 4 * TILE_BLOCKS;

/// A weight `[in, out]` quantised per output column, packed for the kernel: for each block of 8
/// columns, for each group of 4 input rows `4g..4g+4`, the 32 values `w[4g..4g+4][c]` of the
/// block's columns `c` in turn.
#[derive(Clone)]
pub struct PackedInt8 {
    in_features: usize,
    out_features: usize,
    /// Input rows in groups of 4: `in_features` rounded up to a multiple of 4.
    groups: usize,
    blocks: usize,
    values: Vec<i8>,
    /// Per output column: the weight is `values × scale`.
    scales: Vec<f32>,
    /// Per output column: the sum of its quantised values, for the activations' zero points.
    sums: Vec<i32>,
}

/// Shapes only: the values are megabytes of numbers.
impl std::fmt::Debug for PackedInt8 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedInt8")
            .field("in_features", &self.in_features)
            .field("out_features", &self.out_features)
            .finish_non_exhaustive()
    }
}

impl PackedInt8 {
    /// Quantises `weight` (row-major `[in_features, out_features]`) to ±`WEIGHT_MAX` per output
    /// column.
    pub fn new(weight: &[f32], in_features: usize, out_features: usize) -> Self {
        assert_eq!(weight.len(), in_features * out_features, "weight is not [{in_features}, {out_features}]");
        let scales: Vec<f32> = (0..out_features)
            .map(|c| {
                let max = (0..in_features).map(|k| weight[k * out_features + c].abs()).fold(0.0f32, f32::max);
                if max > 0.0 { max / WEIGHT_MAX as f32 } else { 1.0 }
            })
            .collect();
        let groups = in_features.div_ceil(GROUP);
        let blocks = out_features.div_ceil(BLOCK);
        let mut values = vec![0i8; blocks * groups * GROUP * BLOCK];
        let mut sums = vec![0i32; out_features];
        let limit = WEIGHT_MAX as f32;
        for k in 0..in_features {
            for c in 0..out_features {
                let q = (weight[k * out_features + c] / scales[c]).round().clamp(-limit, limit) as i8;
                values[index(groups, k, c)] = q;
                sums[c] += q as i32;
            }
        }
        PackedInt8 { in_features, out_features, groups, blocks, values, scales, sums }
    }

    pub fn in_features(&self) -> usize {
        self.in_features
    }

    pub fn out_features(&self) -> usize {
        self.out_features
    }

    /// The weight as the products see it (`values × scale`), row-major `[in, out]`: for tests
    /// and error bounds.
    pub fn dequantized(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.in_features * self.out_features];
        for k in 0..self.in_features {
            for c in 0..self.out_features {
                out[k * self.out_features + c] = self.values[index(self.groups, k, c)] as f32 * self.scales[c];
            }
        }
        out
    }

    /// `x W + bias` for row-major `x` `[rows, in_features]`, as a new `[rows, out_features]`
    /// buffer. It is not zeroed first: every value is written once.
    pub fn forward(&self, x: &[f32], rows: usize, bias: Option<&[f32]>) -> Vec<f32> {
        let mut out = Vec::with_capacity(rows * self.out_features);
        self.matmul_with(Kernel::detect(), x, rows, bias, &mut out.spare_capacity_mut()[..rows * self.out_features]);
        // SAFETY: `matmul_with` has written all `rows × out_features` values.
        unsafe { out.set_len(rows * self.out_features) };
        out
    }

    /// [`Self::forward`] into `out` `[rows, out_features]`.
    pub fn matmul(&self, x: &[f32], rows: usize, bias: Option<&[f32]>, out: &mut [f32]) {
        self.matmul_with(Kernel::detect(), x, rows, bias, uninit(out));
    }

    /// [`Self::matmul`] by the portable kernel, whatever the CPU has (the tests' reference).
    pub fn matmul_scalar(&self, x: &[f32], rows: usize, bias: Option<&[f32]>, out: &mut [f32]) {
        self.matmul_with(Kernel::Scalar, x, rows, bias, uninit(out));
    }

    /// Writes every value of `out`.
    fn matmul_with(&self, kernel: Kernel, x: &[f32], rows: usize, bias: Option<&[f32]>, out: &mut [MaybeUninit<f32>]) {
        let (k, n) = (self.in_features, self.out_features);
        assert_eq!(x.len(), rows * k, "x is not [{rows}, {k}]");
        assert_eq!(out.len(), rows * n, "out is not [{rows}, {n}]");
        if let Some(bias) = bias {
            assert_eq!(bias.len(), n, "{n} outputs but {} biases", bias.len());
        }
        if rows == 0 {
            return;
        }
        if k == 0 {
            out.chunks_mut(n.max(1)).for_each(|row| {
                row.iter_mut().enumerate().for_each(|(c, v)| {
                    v.write(bias.map_or(0.0, |b| b[c]));
                })
            });
            return;
        }
        let quantized = QuantizedRows::new(x, rows, k, self.groups * GROUP);
        let row_tasks = rows.div_ceil(TASK_ROWS);
        let block_tasks = self.blocks.div_ceil(TASK_BLOCKS);
        let out_ptr = SharedOut(out.as_mut_ptr().cast::<f32>());
        (0..row_tasks * block_tasks).into_par_iter().for_each(|task| {
            let (rt, bt) = (task / block_tasks, task % block_tasks);
            let rows_here = rt * TASK_ROWS..(rt * TASK_ROWS + TASK_ROWS).min(rows);
            let blocks_here = bt * TASK_BLOCKS..(bt * TASK_BLOCKS + TASK_BLOCKS).min(self.blocks);
            // SAFETY: tasks cover disjoint (row range × column range) rectangles of `out`, which
            // stays borrowed mutably until every task has finished.
            unsafe {
                match kernel {
                    Kernel::Avx2 => self.task_avx2(&quantized, rows_here, blocks_here, bias, out_ptr),
                    Kernel::Scalar => self.task(kernel, &quantized, rows_here, blocks_here, bias, out_ptr),
                }
            }
        });
    }

    /// [`Self::task`] compiled for AVX2, so that the tile kernels and the scaling inline into it.
    ///
    /// # Safety
    /// As [`Self::task`], and the CPU has AVX2.
    #[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx2"))]
    unsafe fn task_avx2(
        &self,
        x: &QuantizedRows,
        rows: std::ops::Range<usize>,
        blocks: std::ops::Range<usize>,
        bias: Option<&[f32]>,
        out: SharedOut,
    ) {
        // SAFETY: the caller's contract.
        unsafe { self.task(Kernel::Avx2, x, rows, blocks, bias, out) }
    }

    /// The sums of one task's rectangle, scaled and biased into `out`.
    ///
    /// # Safety
    /// `out` points at `[rows, out_features]` f32s that no other thread writes inside this
    /// task's rectangle.
    #[inline(always)]
    unsafe fn task(
        &self,
        kernel: Kernel,
        x: &QuantizedRows,
        rows: std::ops::Range<usize>,
        blocks: std::ops::Range<usize>,
        bias: Option<&[f32]>,
        out: SharedOut,
    ) {
        let n = self.out_features;
        let mut sums = [[[0i32; BLOCK]; TILE_BLOCKS]; TILE_ROWS];
        // Column blocks outside, rows inside: one slab of weights serves every row of the task.
        for b0 in blocks.clone().step_by(TILE_BLOCKS) {
            let tile_blocks = TILE_BLOCKS.min(blocks.end - b0);
            let columns = b0 * BLOCK..((b0 + tile_blocks) * BLOCK).min(n);
            let weights = Columns {
                scales: &self.scales[columns.clone()],
                sums: &self.sums[columns.clone()],
                bias: bias.map(|b| &b[columns.clone()]),
            };
            for r0 in rows.clone().step_by(TILE_ROWS) {
                let tile_rows = TILE_ROWS.min(rows.end - r0);
                let x_rows = &x.values[r0 * self.groups * GROUP..];
                let w = &self.values[b0 * self.groups * GROUP * BLOCK..];
                // SAFETY: the tile's rows r0.. and columns `columns` lie inside this task's
                // rectangle of `out`, whose rows are `n` apart.
                let tile_out = unsafe { out.0.add(r0 * n + columns.start) };
                let scaling = Scaling {
                    out: tile_out,
                    stride: n,
                    x_scales: &x.scales[r0..r0 + tile_rows],
                    zero_points: &x.zero_points[r0..r0 + tile_rows],
                    weights,
                };
                if matches!(kernel, Kernel::Avx2) && columns.len() == tile_blocks * BLOCK {
                    // SAFETY: `Kernel::detect` found AVX2; the slices hold the tile's rows and blocks, and
                    // `scaling` covers whole blocks of this task's rectangle.
                    unsafe { avx2_tile(x_rows, w, self.groups, tile_rows, tile_blocks, Finish::Write(&scaling)) };
                    continue;
                }
                match kernel {
                    // SAFETY: as above; the sums come back in `sums`.
                    Kernel::Avx2 => unsafe {
                        avx2_tile(x_rows, w, self.groups, tile_rows, tile_blocks, Finish::Sums(&mut sums))
                    },
                    Kernel::Scalar => scalar_tile(x_rows, w, self.groups, tile_rows, tile_blocks, &mut sums),
                }
                // SAFETY: as above.
                unsafe { scale_tile(&sums, tile_rows, &scaling) };
            }
        }
    }
}

/// Where a tile's sums go as f32: `out` at the tile's first row and column, rows `stride` apart;
/// the tile's rows' activation scales and zero points, and its columns' weights.
struct Scaling<'a> {
    out: *mut f32,
    stride: usize,
    x_scales: &'a [f32],
    zero_points: &'a [i32],
    weights: Columns<'a>,
}

/// What a tile kernel does with its sums: hands them back, or scales them into the output.
enum Finish<'a, 's> {
    Sums(&'s mut Sums),
    Write(&'s Scaling<'a>),
}

/// [`scale_block`] for each row and block of a tile.
///
/// # Safety
/// `scaling.out` covers the tile's rows × columns and no other thread writes there.
unsafe fn scale_tile(sums: &Sums, rows: usize, scaling: &Scaling) {
    let width = scaling.weights.scales.len();
    for (i, row_sums) in sums.iter().enumerate().take(rows) {
        for (j, block_sums) in row_sums.iter().enumerate().take(width.div_ceil(BLOCK)) {
            let columns = j * BLOCK..(j * BLOCK + BLOCK).min(width);
            // SAFETY: row i, these columns, lie inside the tile (the caller's contract).
            let target = unsafe {
                std::slice::from_raw_parts_mut(
                    scaling.out.add(i * scaling.stride + columns.start).cast::<MaybeUninit<f32>>(),
                    columns.len(),
                )
            };
            let w = &scaling.weights;
            let block = Columns {
                scales: &w.scales[columns.clone()],
                sums: &w.sums[columns.clone()],
                bias: w.bias.map(|b| &b[columns]),
            };
            scale_block(target, block_sums, scaling.x_scales[i], scaling.zero_points[i], block);
        }
    }
}

/// One block's columns of the weight: scales, sums of quantised values, biases.
#[derive(Clone, Copy)]
struct Columns<'a> {
    scales: &'a [f32],
    sums: &'a [i32],
    bias: Option<&'a [f32]>,
}

/// `target[c] = (sums[c] - zero_point · Σ_k w[k][c]) · x_scale · w_scale[c] + bias[c]` for one
/// block of columns.
#[inline(always)]
fn scale_block(target: &mut [MaybeUninit<f32>], sums: &[i32; BLOCK], x_scale: f32, zero_point: i32, w: Columns) {
    let value = |c: usize, bias: f32| (sums[c] - zero_point * w.sums[c]) as f32 * (x_scale * w.scales[c]) + bias;
    if let Ok(target) = <&mut [MaybeUninit<f32>; BLOCK]>::try_from(&mut *target) {
        // A whole block: a fixed-size loop, which vectorises.
        let bias = w.bias.and_then(|b| <&[f32; BLOCK]>::try_from(b).ok()).copied().unwrap_or([0.0; BLOCK]);
        for c in 0..BLOCK {
            target[c].write(value(c, bias[c]));
        }
        return;
    }
    for (c, v) in target.iter_mut().enumerate() {
        v.write(value(c, w.bias.map_or(0.0, |b| b[c])));
    }
}

#[derive(Clone, Copy)]
enum Kernel {
    Avx2,
    Scalar,
}

impl Kernel {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            return Kernel::Avx2;
        }
        Kernel::Scalar
    }
}

/// Where weight `[k][c]` sits in the packed values.
fn index(groups: usize, k: usize, c: usize) -> usize {
    (((c / BLOCK) * groups + k / GROUP) * BLOCK + c % BLOCK) * GROUP + k % GROUP
}

/// `out` as memory to write: every f32 is a valid `MaybeUninit<f32>`.
fn uninit(out: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: same layout; the kernels only write initialised values into it.
    unsafe { &mut *(out as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

/// The output pointer, shared by tasks that write disjoint parts of it.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: every task writes its own rectangle only (see `matmul_with`).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

/// Activations quantised per row to 0..=`ACTIVATION_MAX` (each row padded to the weight's
/// groups of 4 with its zero point, which adds nothing): `x ≈ (q - zero_point) × scale`.
struct QuantizedRows {
    values: Vec<u8>,
    scales: Vec<f32>,
    zero_points: Vec<i32>,
}

impl QuantizedRows {
    fn new(x: &[f32], rows: usize, k: usize, width: usize) -> Self {
        let mut values = vec![0u8; rows * width];
        let levels = ACTIVATION_MAX as f32;
        let mut scales = vec![0f32; rows];
        let mut zero_points = vec![0i32; rows];
        values
            .par_chunks_mut(width)
            .zip(scales.par_iter_mut().zip(zero_points.par_iter_mut()))
            .zip(x.par_chunks(k))
            .for_each(|((q, (scale, zero_point)), row)| {
                // The range holds 0, so that 0 (padding, ReLU) is exact.
                let (min, max) = range(row);
                let span = max - min;
                *scale = if span > 0.0 && span.is_finite() { span / levels } else { 1.0 };
                *zero_point = (-min / *scale).round_ties_even().clamp(0.0, levels) as i32;
                quantize_row(q, row, 1.0 / *scale, *zero_point as f32);
                q[k..].fill(*zero_point as u8);
            });
        QuantizedRows { values, scales, zero_points }
    }
}

// The smallest and largest value of `row`, and 0. NaNs are passed over. Comparisons, not
// `f32::min`/`max`: those order NaN in a way that keeps the loop from vectorising.
simd!(range(row: &[f32]) -> (f32, f32) {
    let (mut lo, mut hi) = ([0f32; 8], [0f32; 8]);
    let chunks = row.chunks_exact(8);
    let tail = chunks.remainder();
    for chunk in chunks {
        for l in 0..8 {
            lo[l] = if chunk[l] < lo[l] { chunk[l] } else { lo[l] };
            hi[l] = if chunk[l] > hi[l] { chunk[l] } else { hi[l] };
        }
    }
    let lo = lo.iter().chain(tail).fold(0f32, |a, &b| if b < a { b } else { a });
    let hi = hi.iter().chain(tail).fold(0f32, |a, &b| if b > a { b } else { a });
    (lo, hi)
});

simd!(quantize_row(q: &mut [u8], row: &[f32], inverse: f32, zero_point: f32) {
    for (q, &v) in q.iter_mut().zip(row) {
        // Ties to even: one instruction (`vroundps`), where `round` (ties away) is a libm call.
        // `max` first: it turns NaN into 0, so the value is a whole number in the u8 range and
        // the unchecked conversion (one `vcvttps2dq`; the saturating `as` does not vectorise) is
        // exact.
        #[allow(clippy::manual_clamp)] // `clamp` keeps NaN
        let v = ((v * inverse).round_ties_even() + zero_point).max(0.0).min(ACTIVATION_MAX as f32);
        // SAFETY: `v` is finite and within i32's range (above).
        *q = unsafe { v.to_int_unchecked::<i32>() } as u8;
    }
});
