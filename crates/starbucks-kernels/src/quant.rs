//! Int8 matrix products: `x W + b` with the weight quantised once per output column
//! (symmetric, to ±`weight_max`) and the activations quantised per row at run time
//! (asymmetric, to 0..=[`ACTIVATION_MAX`] around a zero point, so that a skewed row such as a
//! GELU output uses the whole range), products summed exactly in i32, then scaled back to f32.
//!
//! Three kernels, picked by [`Tier`]:
//! - AVX-512 VNNI: `vpdpbusd` multiplies 64 u8 × i8 pairs and adds each lane's 4 products into
//!   an i32, without saturating, so the weights keep 8 bits ([`WEIGHT_MAX_8BIT`]);
//! - AVX2: `vpmaddubsw` (32 products per instruction, summed in pairs into i16) then
//!   `vpmaddwd` by ones (the pairs into i32). `vpmaddubsw` saturates its i16 sums, so the weights
//!   keep 7 bits ([`WEIGHT_MAX_7BIT`]) and a pair of products cannot pass `i16::MAX` (ONNX
//!   Runtime's `reduce_range` makes the same choice for the same instruction); the activations
//!   keep all 8, which measured closer to f32 on STS-B than the other way round
//!   (docs/benchmarks.md);
//! - portable code, summing in i32.
//!
//! A weight is quantised for the tier it is packed on; the sums are exact, so every kernel that
//! can run a packed weight gives the same bits (a weight of 8 bits runs on AVX-512 or portable
//! code, never on AVX2's saturating pairs).

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::scratch::{self, Scratch};
use crate::simd::{Tier, simd};

mod tile;

use tile::{Sums, scalar_tile};
#[cfg(target_arch = "x86_64")]
use tile::{avx2_tile, avx512_tile};

/// The largest quantised activation (the zero point included).
pub const ACTIVATION_MAX: i32 = 255;
/// The largest weight magnitude for AVX2's kernel: `2 × ACTIVATION_MAX × WEIGHT_MAX_7BIT` must
/// stay within i16 for `vpmaddubsw`.
pub const WEIGHT_MAX_7BIT: i32 = 63;
const _: () = assert!(2 * ACTIVATION_MAX * WEIGHT_MAX_7BIT <= i16::MAX as i32);
/// The largest weight magnitude for the kernels that sum in i32 (AVX-512 VNNI, portable).
pub const WEIGHT_MAX_8BIT: i32 = 127;

/// Output columns per packed block: one 512-bit register (two 256-bit ones) of i32 sums.
const BLOCK: usize = 16;
/// Input rows per packed group: each i32 sum takes 4 products at a time.
const GROUP: usize = 4;
/// The largest register tile, rows × blocks (AVX-512's; AVX2 takes 4 × 1).
const TILE_ROWS: usize = 6;
const TILE_BLOCKS: usize = 4;
/// Rows and blocks of one rayon task: whole tiles of every kernel.
const TASK_ROWS: usize = 48;
const TASK_BLOCKS: usize = 4;

/// A weight `[in, out]` quantised per output column, packed for the kernels: for each block of
/// 16 columns, for each group of 4 input rows `4g..4g+4`, the 64 values `w[4g..4g+4][c]` of the
/// block's columns `c` in turn.
#[derive(Clone)]
pub struct PackedInt8 {
    in_features: usize,
    out_features: usize,
    /// Input rows in groups of 4: `in_features` rounded up to a multiple of 4.
    groups: usize,
    blocks: usize,
    weight_max: i32,
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
            .field("weight_max", &self.weight_max)
            .finish_non_exhaustive()
    }
}

impl PackedInt8 {
    /// Quantises `weight` (row-major `[in_features, out_features]`) per output column, to 8 bits
    /// where [`Tier::current`] sums without saturating (AVX-512 VNNI, portable code on a CPU
    /// without AVX2), else to 7.
    pub fn new(weight: &[f32], in_features: usize, out_features: usize) -> Self {
        let weight_max = match Tier::current() {
            Tier::Avx2 => WEIGHT_MAX_7BIT,
            Tier::Avx512 | Tier::Scalar => WEIGHT_MAX_8BIT,
        };
        Self::with_weight_max(weight, in_features, out_features, weight_max)
    }

    /// As [`Self::new`], to ±`weight_max` (at most [`WEIGHT_MAX_8BIT`]).
    pub fn with_weight_max(weight: &[f32], in_features: usize, out_features: usize, weight_max: i32) -> Self {
        assert_eq!(weight.len(), in_features * out_features, "weight is not [{in_features}, {out_features}]");
        assert!((1..=WEIGHT_MAX_8BIT).contains(&weight_max), "weights are quantised to ±1..=127, not ±{weight_max}");
        // Each column's largest magnitude, the rows read in order (a column at a time strides
        // through the whole weight, a cache line per value).
        let mut max = vec![0.0f32; out_features];
        for row in weight.chunks_exact(out_features.max(1)) {
            max.iter_mut().zip(row).for_each(|(max, w)| *max = max.max(w.abs()));
        }
        let scales: Vec<f32> = max.iter().map(|&max| if max > 0.0 { max / weight_max as f32 } else { 1.0 }).collect();
        let groups = in_features.div_ceil(GROUP);
        let blocks = out_features.div_ceil(BLOCK);
        let mut values = vec![0i8; blocks * groups * GROUP * BLOCK];
        let mut sums = vec![0i32; out_features];
        let limit = weight_max as f32;
        for k in 0..in_features {
            for c in 0..out_features {
                let q = (weight[k * out_features + c] / scales[c]).round().clamp(-limit, limit) as i8;
                values[index(groups, k, c)] = q;
                sums[c] += q as i32;
            }
        }
        PackedInt8 { in_features, out_features, groups, blocks, weight_max, values, scales, sums }
    }

    /// The largest quantised weight magnitude: 127 or 63.
    pub fn weight_max(&self) -> i32 {
        self.weight_max
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

    /// `x W + bias` for row-major `x` `[rows, in_features]`, as a `[rows, out_features]` buffer
    /// from [`crate::scratch`]. It is not zeroed first: every value is written once.
    pub fn forward(&self, x: &[f32], rows: usize, bias: Option<&[f32]>) -> Vec<f32> {
        let mut out = scratch::F32.take(rows * self.out_features);
        self.matmul_with(self.kernel(), x, rows, bias, &mut out.spare_capacity_mut()[..rows * self.out_features]);
        // SAFETY: `matmul_with` has written all `rows × out_features` values.
        unsafe { out.set_len(rows * self.out_features) };
        out
    }

    /// [`Self::forward`] into `out` `[rows, out_features]`.
    pub fn matmul(&self, x: &[f32], rows: usize, bias: Option<&[f32]>, out: &mut [f32]) {
        self.matmul_with(self.kernel(), x, rows, bias, uninit(out));
    }

    /// The widest kernel of [`Tier::current`] that runs this weight exactly.
    fn kernel(&self) -> Kernel {
        match Tier::current() {
            #[cfg(target_arch = "x86_64")]
            Tier::Avx512 => Kernel::Avx512,
            #[cfg(target_arch = "x86_64")]
            Tier::Avx2 if self.weight_max <= WEIGHT_MAX_7BIT => Kernel::Avx2,
            _ => Kernel::Scalar,
        }
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
            // stays borrowed mutably until every task has finished; the kernel is one the CPU has.
            unsafe {
                match kernel {
                    #[cfg(target_arch = "x86_64")]
                    Kernel::Avx512 => self.task_avx512(&quantized, rows_here, blocks_here, bias, out_ptr),
                    #[cfg(target_arch = "x86_64")]
                    Kernel::Avx2 => self.task_avx2(&quantized, rows_here, blocks_here, bias, out_ptr),
                    Kernel::Scalar => self.task(kernel, &quantized, rows_here, blocks_here, bias, out_ptr),
                }
            }
        });
        QUANTIZED.keep(quantized.values);
    }

    /// [`Self::task`] compiled for AVX2, so that the tile kernels and the scaling inline into it.
    ///
    /// # Safety
    /// As [`Self::task`], and the CPU has AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
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

    /// [`Self::task`] compiled for AVX-512 VNNI.
    ///
    /// # Safety
    /// As [`Self::task`], and the CPU has AVX-512 F, BW and VNNI.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn task_avx512(
        &self,
        x: &QuantizedRows,
        rows: std::ops::Range<usize>,
        blocks: std::ops::Range<usize>,
        bias: Option<&[f32]>,
        out: SharedOut,
    ) {
        // SAFETY: the caller's contract.
        unsafe { self.task(Kernel::Avx512, x, rows, blocks, bias, out) }
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
        let (tile_rows, tile_blocks) = kernel.tile();
        let mut sums = [[[0i32; BLOCK]; TILE_BLOCKS]; TILE_ROWS];
        // Column blocks outside, rows inside: one slab of weights serves every row of the task.
        for b0 in blocks.clone().step_by(tile_blocks) {
            let blocks_here = tile_blocks.min(blocks.end - b0);
            let columns = b0 * BLOCK..((b0 + blocks_here) * BLOCK).min(n);
            let weights = Columns {
                scales: &self.scales[columns.clone()],
                sums: &self.sums[columns.clone()],
                bias: bias.map(|b| &b[columns.clone()]),
            };
            let whole_blocks = columns.len() == blocks_here * BLOCK;
            for r0 in rows.clone().step_by(tile_rows) {
                let rows_here = tile_rows.min(rows.end - r0);
                let x_rows = &x.values[r0 * self.groups * GROUP..];
                let w = &self.values[b0 * self.groups * GROUP * BLOCK..];
                // SAFETY: the tile's rows r0.. and columns `columns` lie inside this task's
                // rectangle of `out`, whose rows are `n` apart.
                let tile_out = unsafe { out.0.add(r0 * n + columns.start) };
                let scaling = Scaling {
                    out: tile_out,
                    stride: n,
                    x_scales: &x.scales[r0..r0 + rows_here],
                    zero_points: &x.zero_points[r0..r0 + rows_here],
                    weights,
                };
                // A vector tile scales whole blocks from its registers; a last, partial block
                // goes through `sums`.
                // SAFETY (each arm): the kernel is one the CPU has (`Self::kernel`); the slices
                // hold the tile's rows and blocks, and `scaling` covers whole blocks of this
                // task's rectangle.
                match kernel {
                    #[cfg(target_arch = "x86_64")]
                    Kernel::Avx512 if whole_blocks => unsafe {
                        avx512_tile(x_rows, w, self.groups, rows_here, blocks_here, Finish::Write(&scaling))
                    },
                    #[cfg(target_arch = "x86_64")]
                    Kernel::Avx512 => unsafe {
                        avx512_tile(x_rows, w, self.groups, rows_here, blocks_here, Finish::Sums(&mut sums));
                        scale_tile(&sums, rows_here, &scaling);
                    },
                    #[cfg(target_arch = "x86_64")]
                    Kernel::Avx2 if whole_blocks => unsafe {
                        avx2_tile(x_rows, w, self.groups, rows_here, Finish::Write(&scaling))
                    },
                    #[cfg(target_arch = "x86_64")]
                    Kernel::Avx2 => unsafe {
                        avx2_tile(x_rows, w, self.groups, rows_here, Finish::Sums(&mut sums));
                        scale_tile(&sums, rows_here, &scaling);
                    },
                    Kernel::Scalar => {
                        scalar_tile(x_rows, w, self.groups, rows_here, blocks_here, &mut sums);
                        unsafe { scale_tile(&sums, rows_here, &scaling) };
                    }
                }
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
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Scalar,
}

impl Kernel {
    /// Rows × blocks of one register tile.
    fn tile(self) -> (usize, usize) {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => (TILE_ROWS, TILE_BLOCKS),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => (4, 1),
            Kernel::Scalar => (TILE_ROWS, TILE_BLOCKS),
        }
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

/// The quantised activations' buffers, kept between products.
static QUANTIZED: Scratch<u8> = Scratch::new();

/// Activations quantised per row to 0..=`ACTIVATION_MAX` (each row padded to the weight's
/// groups of 4 with its zero point, which adds nothing): `x ≈ (q - zero_point) × scale`.
struct QuantizedRows {
    values: Vec<u8>,
    scales: Vec<f32>,
    zero_points: Vec<i32>,
}

impl QuantizedRows {
    fn new(x: &[f32], rows: usize, k: usize, width: usize) -> Self {
        // Each row's values are zeroed by its own task (in cache, just before it is written)
        // rather than the whole buffer at once: a serial zeroing kept the other cores idle.
        assert_eq!(x.len(), rows * k, "x is not [{rows}, {k}]");
        let mut values = QUANTIZED.take(rows * width);
        let levels = ACTIVATION_MAX as f32;
        let mut scales = vec![0f32; rows];
        let mut zero_points = vec![0i32; rows];
        values.spare_capacity_mut()[..rows * width]
            .par_chunks_mut(width)
            .zip(scales.par_iter_mut().zip(zero_points.par_iter_mut()))
            .zip(x.par_chunks(k))
            .for_each(|((q, (scale, zero_point)), row)| {
                q.fill(std::mem::MaybeUninit::new(0));
                // SAFETY: every value of `q` was just written.
                let q = unsafe { &mut *(q as *mut [std::mem::MaybeUninit<u8>] as *mut [u8]) };
                // The range holds 0, so that 0 (padding, ReLU) is exact.
                let (min, max) = range(row);
                let span = max - min;
                *scale = if span > 0.0 && span.is_finite() { span / levels } else { 1.0 };
                *zero_point = (-min / *scale).round_ties_even().clamp(0.0, levels) as i32;
                quantize_row(q, row, 1.0 / *scale, *zero_point as f32);
                q[k..].fill(*zero_point as u8);
            });
        // SAFETY: the tasks wrote every row (`x` has `rows` rows of `k`).
        unsafe { values.set_len(rows * width) };
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
