//! `out += x W` in f32 for the CPU encoder, reading the row-major weight where it lies.
//!
//! The gemm crate (which burn-flex and our training `linear` use) is built for large products:
//! it splits a product over threads only from millions of multiply-adds, so that a 12-token
//! text ran on one core of two. Here the product is cut into column panels, one rayon task each,
//! so that every core streams its own share of the weight however few the rows; inside a panel
//! a register tile of up to [`TILE_ROWS`] rows × the panel's columns sums over the whole input,
//! one weight row of the panel and one broadcast `x` value per row at a time. Each output is the
//! bias plus its products added in input order, whatever the rows, tiles or threads: a text
//! gets the same bits alone or in any batch. On MiniLM's shapes it beat gemm up to 128 rows and
//! was level beyond (docs/benchmarks.md).

use rayon::prelude::*;

use crate::simd::Tier;

/// Rows of one register tile: 6 rows × 4 vectors of sums, 4 weight vectors and a broadcast fit
/// AVX-512's 32 registers; AVX2 (16 registers) takes 3 × 4.
const TILE_ROWS: usize = 6;
const AVX2_TILE_ROWS: usize = 3;
/// Weight rows ahead that the AVX-512 tile asks the cache for: the panel's rows lie `n` floats
/// apart, a stride the hardware prefetcher follows late (on Zen 4, 8 measured faster than none,
/// 16 or 32).
const PREFETCH: usize = 8;

/// `bias + x[m, k] · w[k, n]` (bias: `n` values or none) as a new row-major `[m, n]` buffer, with
/// the kernel of `tier`. The sums start from the bias in registers, so the output is written
/// once and never read. The AVX-512 and AVX2 kernels give the same bits (fused multiply-adds in
/// input order); the scalar one rounds each product before adding it.
pub(crate) fn forward(tier: Tier, [m, n, k]: [usize; 3], x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    assert!(x.len() == m * k && w.len() == k * n, "not [{m}, {k}] × [{k}, {n}]");
    assert!(bias.is_none_or(|b| b.len() == n), "{n} outputs but {} biases", bias.map_or(0, <[f32]>::len));
    let mut out = Vec::<f32>::with_capacity(m * n);
    if m * n > 0 {
        write(tier, [m, n, k], SharedOut(out.as_mut_ptr()), x, w, bias);
    }
    // SAFETY: `write` has written every one of the m × n values.
    unsafe { out.set_len(m * n) };
    out
}

/// [`forward`] into `out`, `m × n` floats of writable memory.
fn write(tier: Tier, [m, n, k]: [usize; 3], out: SharedOut, x: &[f32], w: &[f32], bias: Option<&[f32]>) {
    // One panel: four registers of columns.
    let panel = match tier {
        Tier::Avx512 => 64,
        Tier::Avx2 => 32,
        Tier::Scalar => 64,
    };
    (0..n.div_ceil(panel)).into_par_iter().for_each(|p| {
        let columns = p * panel..(p * panel + panel).min(n);
        for r0 in (0..m).step_by(TILE_ROWS) {
            let rows = TILE_ROWS.min(m - r0);
            let tile = Tile { k, n, x: &x[r0 * k..(r0 + rows) * k], w, bias, out, r0, columns: columns.clone() };
            // SAFETY: each task writes its own columns of `out`, which outlives the tasks.
            unsafe {
                match tier {
                    #[cfg(target_arch = "x86_64")]
                    Tier::Avx512 => tile.avx512(rows),
                    #[cfg(target_arch = "x86_64")]
                    Tier::Avx2 => {
                        for r in (0..rows).step_by(AVX2_TILE_ROWS) {
                            tile.avx2(r, AVX2_TILE_ROWS.min(rows - r));
                        }
                    }
                    _ => tile.scalar(rows),
                }
            }
        }
    });
}

/// The output pointer, shared by tasks that write disjoint columns of it.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: each task writes its own columns only (see `write`).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

/// Rows `r0..` of the output, at `columns`: `x` holds the tile's rows (`k` apart), `w` the whole
/// weight (`n` apart), `bias` all `n` biases.
struct Tile<'a> {
    k: usize,
    n: usize,
    x: &'a [f32],
    w: &'a [f32],
    bias: Option<&'a [f32]>,
    out: SharedOut,
    r0: usize,
    columns: std::ops::Range<usize>,
}

impl Tile<'_> {
    /// # Safety
    /// These rows × columns are inside the output, and no other thread touches them meanwhile.
    unsafe fn scalar(&self, rows: usize) {
        for r in 0..rows {
            let x = &self.x[r * self.k..(r + 1) * self.k];
            let out = self.out.0.wrapping_add((self.r0 + r) * self.n + self.columns.start);
            for c in 0..self.columns.len() {
                let b = self.bias.map_or(0.0, |b| b[self.columns.start + c]);
                // SAFETY: row r0 + r at these columns is inside `out` (the caller's contract).
                unsafe { out.add(c).write(b) };
            }
            // SAFETY: as above, now written.
            let out = unsafe { std::slice::from_raw_parts_mut(out, self.columns.len()) };
            for (i, &xv) in x.iter().enumerate() {
                let w = &self.w[i * self.n + self.columns.start..][..self.columns.len()];
                out.iter_mut().zip(w).for_each(|(o, w)| *o += xv * w);
            }
        }
    }

    /// # Safety
    /// As [`Self::scalar`], and the CPU has AVX-512F.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn avx512(&self, rows: usize) {
        // SAFETY: the caller's contract; `rows` is at most TILE_ROWS.
        unsafe {
            match rows {
                6 => self.avx512_n::<6>(),
                5 => self.avx512_n::<5>(),
                4 => self.avx512_n::<4>(),
                3 => self.avx512_n::<3>(),
                2 => self.avx512_n::<2>(),
                1 => self.avx512_n::<1>(),
                _ => unreachable!("tiles are 1 to {TILE_ROWS} rows"),
            }
        }
    }

    /// # Safety
    /// As [`Self::avx512`].
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn avx512_n<const R: usize>(&self) {
        use std::arch::x86_64::*;
        let (k, n, start) = (self.k, self.n, self.columns.start);
        // One mask per vector of 16 columns: all set but in a last, partial panel.
        let masks: [__mmask16; 4] = std::array::from_fn(|j| {
            let have = self.columns.len().saturating_sub(16 * j).min(16);
            ((1u32 << have) - 1) as __mmask16
        });
        // SAFETY: the masked columns are inside the biases.
        let bias: [__m512; 4] = std::array::from_fn(|j| match self.bias {
            Some(b) => unsafe { _mm512_maskz_loadu_ps(masks[j], b.as_ptr().add(start + 16 * j)) },
            None => _mm512_setzero_ps(),
        });
        let mut acc = [bias; R];
        let (x, w) = (self.x.as_ptr(), self.w.as_ptr());
        for i in 0..k {
            // SAFETY: weight row i at the masked columns is inside `w`, x's rows are inside `x`.
            unsafe {
                let row = w.add(i * n + start);
                if i + PREFETCH < k {
                    let ahead = row.add(PREFETCH * n) as *const i8;
                    for j in 0..4 {
                        _mm_prefetch::<_MM_HINT_T0>(ahead.add(64 * j));
                    }
                }
                let weights: [__m512; 4] = std::array::from_fn(|j| _mm512_maskz_loadu_ps(masks[j], row.add(16 * j)));
                for (r, sums) in acc.iter_mut().enumerate() {
                    let xv = _mm512_set1_ps(*x.add(r * k + i));
                    for (sum, &weight) in sums.iter_mut().zip(&weights) {
                        *sum = _mm512_fmadd_ps(xv, weight, *sum);
                    }
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (j, &sum) in row.iter().enumerate() {
                // SAFETY: as the loads above.
                unsafe { _mm512_mask_storeu_ps(self.out.0.add((self.r0 + r) * n + start + 16 * j), masks[j], sum) };
            }
        }
    }

    /// Rows `r..r + rows` of the tile.
    ///
    /// # Safety
    /// As [`Self::scalar`], and the CPU has AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2(&self, r: usize, rows: usize) {
        let tile = Tile { x: &self.x[r * self.k..], r0: self.r0 + r, columns: self.columns.clone(), ..*self };
        // SAFETY: the caller's contract; `rows` is at most AVX2_TILE_ROWS.
        unsafe {
            match rows {
                3 => tile.avx2_n::<3>(),
                2 => tile.avx2_n::<2>(),
                1 => tile.avx2_n::<1>(),
                _ => unreachable!("AVX2 tiles are 1 to {AVX2_TILE_ROWS} rows"),
            }
        }
    }

    /// # Safety
    /// As [`Self::avx2`].
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2_n<const R: usize>(&self) {
        use std::arch::x86_64::*;
        let (k, n, start) = (self.k, self.n, self.columns.start);
        let masks: [__m256i; 4] = std::array::from_fn(|j| {
            let have = self.columns.len().saturating_sub(8 * j).min(8) as i32;
            _mm256_setr_epi32(
                -((have > 0) as i32),
                -((have > 1) as i32),
                -((have > 2) as i32),
                -((have > 3) as i32),
                -((have > 4) as i32),
                -((have > 5) as i32),
                -((have > 6) as i32),
                -((have > 7) as i32),
            )
        });
        // SAFETY: the masked columns are inside the biases.
        let bias: [__m256; 4] = std::array::from_fn(|j| match self.bias {
            Some(b) => unsafe { _mm256_maskload_ps(b.as_ptr().add(start + 8 * j), masks[j]) },
            None => _mm256_setzero_ps(),
        });
        let mut acc = [bias; R];
        let (x, w) = (self.x.as_ptr(), self.w.as_ptr());
        for i in 0..k {
            // SAFETY: weight row i at the masked columns is inside `w`, x's rows are inside `x`.
            unsafe {
                let row = w.add(i * n + start);
                if i + PREFETCH < k {
                    let ahead = row.add(PREFETCH * n) as *const i8;
                    _mm_prefetch::<_MM_HINT_T0>(ahead);
                    _mm_prefetch::<_MM_HINT_T0>(ahead.add(64));
                }
                let weights: [__m256; 4] = std::array::from_fn(|j| _mm256_maskload_ps(row.add(8 * j), masks[j]));
                for (r, sums) in acc.iter_mut().enumerate() {
                    let xv = _mm256_set1_ps(*x.add(r * k + i));
                    for (sum, &weight) in sums.iter_mut().zip(&weights) {
                        *sum = _mm256_fmadd_ps(xv, weight, *sum);
                    }
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (j, &sum) in row.iter().enumerate() {
                // SAFETY: as the loads above.
                unsafe { _mm256_maskstore_ps(self.out.0.add((self.r0 + r) * n + start + 8 * j), masks[j], sum) };
            }
        }
    }
}
