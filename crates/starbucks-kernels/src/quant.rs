//! Int8 matrix products: `x W + b` with the weight quantised once per output column and the
//! activations quantised per row at run time (symmetric, to ±127), products summed exactly in
//! i32, then scaled back to f32.
//!
//! The values are int8, but they are multiplied as i16 pairs (`vpmaddwd`: two products summed
//! into each i32 lane), which AVX2 has on every x86-64 CPU of the last decade and which cannot
//! overflow. The u8 × i8 instruction (`vpmaddubsw`) does twice the products per instruction but
//! saturates its i16 sums, and needs a second instruction to widen them: on AVX2 the two ways
//! run at the same rate, and this one is exact. CPUs without AVX2 run the same integer sums in
//! scalar code, with the same result to the bit.

use rayon::prelude::*;

/// Output columns per packed block: one 256-bit register of i32 sums.
const BLOCK: usize = 8;
/// Rows and column blocks of one register tile of the AVX2 kernel (4 × 3 sums, 3 weights and a
/// broadcast: 16 registers).
const TILE_ROWS: usize = 4;
const TILE_BLOCKS: usize = 3;
/// Rows and columns of one rayon task.
const TASK_ROWS: usize = 64;
const TASK_BLOCKS: usize = 4 * TILE_BLOCKS;

/// A weight `[in, out]` quantised per output column, packed for the kernel: for each block of 8
/// columns, for each pair of input rows `(2p, 2p+1)`, the 16 values `w[2p][c], w[2p+1][c]` of
/// the block's columns `c` in turn.
#[derive(Debug, Clone)]
pub struct PackedInt8 {
    in_features: usize,
    out_features: usize,
    /// Input rows in pairs: `in_features` rounded up to even.
    pairs: usize,
    blocks: usize,
    values: Vec<i16>,
    /// Per output column: the weight is `values × scale`.
    scales: Vec<f32>,
}

impl PackedInt8 {
    /// Quantises `weight` (row-major `[in_features, out_features]`) to ±127 per output column.
    pub fn new(weight: &[f32], in_features: usize, out_features: usize) -> Self {
        assert_eq!(weight.len(), in_features * out_features, "weight is not [{in_features}, {out_features}]");
        let scales: Vec<f32> = (0..out_features)
            .map(|c| {
                let max = (0..in_features).map(|k| weight[k * out_features + c].abs()).fold(0.0f32, f32::max);
                if max > 0.0 { max / 127.0 } else { 1.0 }
            })
            .collect();
        let pairs = in_features.div_ceil(2);
        let blocks = out_features.div_ceil(BLOCK);
        let mut values = vec![0i16; blocks * pairs * 2 * BLOCK];
        for k in 0..in_features {
            for c in 0..out_features {
                let q = (weight[k * out_features + c] / scales[c]).round().clamp(-127.0, 127.0) as i16;
                let (block, lane) = (c / BLOCK, c % BLOCK);
                values[((block * pairs + k / 2) * BLOCK + lane) * 2 + k % 2] = q;
            }
        }
        PackedInt8 { in_features, out_features, pairs, blocks, values, scales }
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
                let (block, lane) = (c / BLOCK, c % BLOCK);
                let q = self.values[((block * self.pairs + k / 2) * BLOCK + lane) * 2 + k % 2];
                out[k * self.out_features + c] = q as f32 * self.scales[c];
            }
        }
        out
    }

    /// `x W + bias` for row-major `x` `[rows, in_features]`, into `out` `[rows, out_features]`.
    pub fn matmul(&self, x: &[f32], rows: usize, bias: Option<&[f32]>, out: &mut [f32]) {
        let kernel = if avx2() { Kernel::Avx2 } else { Kernel::Scalar };
        self.matmul_with(kernel, x, rows, bias, out);
    }

    /// [`Self::matmul`] by the portable kernel, whatever the CPU has (the tests' reference).
    pub fn matmul_scalar(&self, x: &[f32], rows: usize, bias: Option<&[f32]>, out: &mut [f32]) {
        self.matmul_with(Kernel::Scalar, x, rows, bias, out);
    }

    fn matmul_with(&self, kernel: Kernel, x: &[f32], rows: usize, bias: Option<&[f32]>, out: &mut [f32]) {
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
            out.chunks_mut(n.max(1))
                .for_each(|row| row.iter_mut().enumerate().for_each(|(c, v)| *v = bias.map_or(0.0, |b| b[c])));
            return;
        }
        let quantized = QuantizedRows::new(x, rows, k, self.pairs);
        let row_tasks = rows.div_ceil(TASK_ROWS);
        let block_tasks = self.blocks.div_ceil(TASK_BLOCKS);
        let out_ptr = SharedOut(out.as_mut_ptr());
        (0..row_tasks * block_tasks).into_par_iter().for_each(|task| {
            let (rt, bt) = (task / block_tasks, task % block_tasks);
            let rows_here = rt * TASK_ROWS..(rt * TASK_ROWS + TASK_ROWS).min(rows);
            let blocks_here = bt * TASK_BLOCKS..(bt * TASK_BLOCKS + TASK_BLOCKS).min(self.blocks);
            // SAFETY: tasks cover disjoint (row range × column range) rectangles of `out`, which
            // stays borrowed mutably until every task has finished.
            unsafe { self.task(kernel, &quantized, rows_here, blocks_here, bias, out_ptr) };
        });
    }

    /// The sums of one task's rectangle, scaled and biased into `out`.
    ///
    /// # Safety
    /// `out` points at `[rows, out_features]` f32s that no other thread writes inside this
    /// task's rectangle.
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
        for r0 in rows.clone().step_by(TILE_ROWS) {
            let tile_rows = TILE_ROWS.min(rows.end - r0);
            for b0 in blocks.clone().step_by(TILE_BLOCKS) {
                let tile_blocks = TILE_BLOCKS.min(blocks.end - b0);
                let x_rows = &x.values[r0 * 2 * self.pairs..];
                let w = &self.values[b0 * self.pairs * 2 * BLOCK..];
                match kernel {
                    // SAFETY: `avx2()` was true; the slices hold the tile's rows and blocks.
                    Kernel::Avx2 => unsafe { avx2_tile(x_rows, w, self.pairs, tile_rows, tile_blocks, &mut sums) },
                    Kernel::Scalar => scalar_tile(x_rows, w, self.pairs, tile_rows, tile_blocks, &mut sums),
                }
                for (i, row_sums) in sums.iter().enumerate().take(tile_rows) {
                    let r = r0 + i;
                    let x_scale = x.scales[r];
                    for (j, block_sums) in row_sums.iter().enumerate().take(tile_blocks) {
                        let c0 = (b0 + j) * BLOCK;
                        for (lane, &sum) in block_sums.iter().enumerate().take(n.saturating_sub(c0)) {
                            let c = c0 + lane;
                            let value = sum as f32 * (x_scale * self.scales[c]) + bias.map_or(0.0, |b| b[c]);
                            // SAFETY: (r, c) is inside this task's rectangle of `out`.
                            unsafe { *out.0.add(r * n + c) = value };
                        }
                    }
                }
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Kernel {
    Avx2,
    Scalar,
}

fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The output pointer, shared by tasks that write disjoint parts of it.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: every task writes its own rectangle only (see `matmul_with`).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

/// Activations quantised per row to ±127 (as i16, each row padded to an even length with 0).
struct QuantizedRows {
    values: Vec<i16>,
    scales: Vec<f32>,
}

impl QuantizedRows {
    fn new(x: &[f32], rows: usize, k: usize, pairs: usize) -> Self {
        let width = 2 * pairs;
        let mut values = vec![0i16; rows * width];
        let mut scales = vec![0f32; rows];
        values.par_chunks_mut(width).zip(scales.par_iter_mut()).zip(x.par_chunks(k.max(1))).for_each(
            |((q, scale), row)| {
                let max = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                *scale = if max > 0.0 && max.is_finite() { max / 127.0 } else { 1.0 };
                let inverse = 1.0 / *scale;
                for (q, &v) in q.iter_mut().zip(row) {
                    *q = (v * inverse).round().clamp(-127.0, 127.0) as i16;
                }
            },
        );
        QuantizedRows { values, scales }
    }
}

type Sums = [[[i32; BLOCK]; TILE_BLOCKS]; TILE_ROWS];

/// The i32 sums of a tile of `rows` × `blocks` blocks: `x` starts at the tile's first row (rows
/// `2 pairs` i16s apart), `w` at its first block (blocks `2 pairs BLOCK` i16s apart).
fn scalar_tile(x: &[i16], w: &[i16], pairs: usize, rows: usize, blocks: usize, sums: &mut Sums) {
    for (r, row_sums) in sums.iter_mut().enumerate().take(rows) {
        let x = &x[r * 2 * pairs..(r + 1) * 2 * pairs];
        for (b, block_sums) in row_sums.iter_mut().enumerate().take(blocks) {
            let w = &w[b * pairs * 2 * BLOCK..(b + 1) * pairs * 2 * BLOCK];
            *block_sums = [0; BLOCK];
            for (p, pair) in x.chunks_exact(2).enumerate() {
                let w = &w[p * 2 * BLOCK..(p + 1) * 2 * BLOCK];
                for (lane, sum) in block_sums.iter_mut().enumerate() {
                    *sum += pair[0] as i32 * w[2 * lane] as i32 + pair[1] as i32 * w[2 * lane + 1] as i32;
                }
            }
        }
    }
}

/// [`scalar_tile`] with AVX2: per input pair, one broadcast of each row's pair and one
/// `vpmaddwd` per (row, block) into i32 sums held in registers.
///
/// # Safety
/// The CPU has AVX2; `x` holds `rows` rows and `w` holds `blocks` blocks (as `scalar_tile`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn avx2_tile(x: &[i16], w: &[i16], pairs: usize, rows: usize, blocks: usize, sums: &mut Sums) {
    assert!(x.len() >= rows * 2 * pairs && w.len() >= blocks * pairs * 2 * BLOCK);
    macro_rules! tile {
        ($rows:literal, $blocks:literal) => {
            // SAFETY: the caller has checked AVX2; the reads stay inside `x` and `w` (asserted above).
            unsafe { avx2_tile_n::<$rows, $blocks>(x.as_ptr(), w.as_ptr(), pairs, sums) }
        };
    }
    match (rows, blocks) {
        (4, 3) => tile!(4, 3),
        (4, 2) => tile!(4, 2),
        (4, 1) => tile!(4, 1),
        (3, 3) => tile!(3, 3),
        (3, 2) => tile!(3, 2),
        (3, 1) => tile!(3, 1),
        (2, 3) => tile!(2, 3),
        (2, 2) => tile!(2, 2),
        (2, 1) => tile!(2, 1),
        (1, 3) => tile!(1, 3),
        (1, 2) => tile!(1, 2),
        (1, 1) => tile!(1, 1),
        _ => unreachable!("tiles are at most {TILE_ROWS} rows and {TILE_BLOCKS} blocks"),
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn avx2_tile(x: &[i16], w: &[i16], pairs: usize, rows: usize, blocks: usize, sums: &mut Sums) {
    scalar_tile(x, w, pairs, rows, blocks, sums)
}

/// # Safety
/// AVX2; `x` points at `R` rows of `2 pairs` i16s, `w` at `NB` blocks of `2 pairs BLOCK` i16s.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn avx2_tile_n<const R: usize, const NB: usize>(x: *const i16, w: *const i16, pairs: usize, sums: &mut Sums) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_si256(); NB]; R];
    for p in 0..pairs {
        let mut weights = [_mm256_setzero_si256(); NB];
        for (b, weight) in weights.iter_mut().enumerate() {
            // SAFETY: block b's pair p is inside `w` (the caller's contract).
            *weight = unsafe { _mm256_loadu_si256(w.add((b * pairs + p) * 2 * BLOCK) as *const __m256i) };
        }
        for (r, row_acc) in acc.iter_mut().enumerate() {
            // SAFETY: row r's pair p (two i16s read as one i32) is inside `x`.
            let pair = unsafe { (x.add(r * 2 * pairs + 2 * p) as *const i32).read_unaligned() };
            let pair = _mm256_set1_epi32(pair);
            for (sum, &weight) in row_acc.iter_mut().zip(&weights) {
                *sum = _mm256_add_epi32(*sum, _mm256_madd_epi16(pair, weight));
            }
        }
    }
    for (row_acc, row_sums) in acc.iter().zip(sums.iter_mut()) {
        for (sum, block_sums) in row_acc.iter().zip(row_sums.iter_mut()) {
            // SAFETY: `block_sums` is 8 i32s, one register.
            unsafe { _mm256_storeu_si256(block_sums.as_mut_ptr() as *mut __m256i, *sum) };
        }
    }
}
