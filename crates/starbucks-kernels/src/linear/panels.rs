//! `x W + b` in f32 for the CPU encoder, on a weight packed once into column panels.
//!
//! The gemm crate (which burn-flex and our training `linear` use) is built for large products:
//! it splits a product over threads only from millions of multiply-adds, so that a 12-token
//! text ran on one core of two. Here the weight is cut into panels of [`PANEL`] columns, each
//! stored contiguously as strips of [`STRIP`] columns (a strip's row `i` is 64 bytes, its row
//! `i + 1` right after), so that a panel streams in order from memory with no page or stride to
//! follow, and a block of a strip is one run that aliases no L1 set more than another (a
//! 64-float-wide block read in place aliased a quarter of them). One rayon task takes a
//! panel and a block of up to [`ROW_BLOCK`] rows (the blocks of a product even): every core
//! streams its own share of the weight however few the rows, and a large batch splits over
//! rows too. Inside a task the input is walked in blocks of [`K_BLOCK`] weight rows (AVX2:
//! [`AVX2_K_BLOCK`]), read by every register tile of rows in turn; the inputs are first
//! copied, once, tile by tile into one stream each, as the gemm crate packs its left-hand side.
//!
//! Each output is the bias plus its products added in input order, whatever the rows, tiles,
//! blocks or threads (a sum is kept in the output between input blocks, exactly): a text gets
//! the same bits alone or in any batch, and the AVX-512 and AVX2 kernels (fused multiply-adds)
//! give the same bits as each other; the scalar one rounds each product before adding it.
//!
//! A weight may also be packed in bf16 ([`Panels::pack_bf16`]): the same panels with each value
//! a [`Pair`] of consecutive weight rows, so that AVX-512 BF16's `vdpbf16ps` multiplies a
//! broadcast pair of inputs by 16 columns' pairs and adds both products into f32 sums. The
//! inputs are rounded to bf16 too (as PyTorch's bf16 autocast does); the sums, the bias and the
//! output stay f32. Half the bytes of f32 to stream, twice the products per instruction.

use rayon::prelude::*;

use crate::scratch::{self, Scratch};
#[cfg(target_arch = "x86_64")]
use crate::simd::prefetch_row;
use crate::simd::{Tier, bf16_supported};

/// Columns of one panel: four AVX-512 registers, or four AVX2 strips of two registers.
const PANEL: usize = 64;
/// Rows of one register tile. AVX-512: 6 rows × 4 vectors of sums, 4 weight vectors and a
/// broadcast fit its 32 registers. AVX2: 6 rows × 2 vectors, 2 weight vectors and a broadcast
/// fit its 16 (the classic 6 × 16 tile).
const TILE_ROWS: usize = 6;
/// Columns of a strip: one AVX-512 register, two AVX2 ones.
const STRIP: usize = 16;
/// Weight rows per input block: 64 rows of a panel are 16 KiB, half a typical L1.
const K_BLOCK: usize = 64;
/// AVX2's blocks are a strip's: 768 rows (48 KiB) outgrow L1, but L2 keeps up with two weight
/// loads per twelve multiply-adds, and each block ends with every tile storing its sums and the
/// next reloading them, so fewer, longer blocks measured faster than L1-sized ones (256 rows)
/// on MiniLM's 1536-input product (`docs/benchmarks.md`).
const AVX2_K_BLOCK: usize = 768;
/// Most rows per task (a multiple of [`TILE_ROWS`]): the block's inputs and sums stay in L2.
const ROW_BLOCK: usize = 192;

/// A row-major `[k, n]` weight packed into panels of [`PANEL`] columns, zero-padded on the
/// right of the last one: in f32, or in bf16 pairs of rows.
#[derive(Clone)]
pub(crate) struct Panels {
    k: usize,
    n: usize,
    values: Values,
}

#[derive(Clone)]
enum Values {
    F32(Vec<f32>),
    /// `k.div_ceil(2)` rows of pairs, the last one's second value 0 when `k` is odd.
    Bf16(Vec<Pair>),
}

/// Two bf16 values in one 32-bit word, the first in the low half: weight rows `2p` and
/// `2p + 1` of one column, or inputs `2p` and `2p + 1` of one row (`vdpbf16ps`'s operands).
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
#[repr(transparent)]
pub(crate) struct Pair(u32);

impl Pair {
    fn new(first: f32, second: f32) -> Self {
        Pair(bf16_bits(first) as u32 | (bf16_bits(second) as u32) << 16)
    }

    /// Both values as f32 (exact: a bf16 is the high half of an f32).
    fn values(self) -> (f32, f32) {
        (f32::from_bits(self.0 << 16), f32::from_bits(self.0 & 0xffff_0000))
    }
}

/// `v` rounded to the nearest bf16, ties to even (as `vcvtne2ps2bf16`); a NaN stays a NaN.
fn bf16_bits(v: f32) -> u16 {
    let bits = v.to_bits();
    if v.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    (bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}

impl Panels {
    pub(crate) fn pack(w: &[f32], k: usize, n: usize) -> Self {
        assert_eq!(w.len(), k * n, "weight is not [{k}, {n}]");
        let panels = n.div_ceil(PANEL);
        let mut packed = vec![0.0; panels * k * PANEL];
        for i in 0..k {
            for (c, &v) in w[i * n..(i + 1) * n].iter().enumerate() {
                packed[(c / PANEL) * k * PANEL + at(k, i, c % PANEL)] = v;
            }
        }
        Panels { k, n, values: Values::F32(packed) }
    }

    /// The weight rounded to bf16, rows in pairs (see [`Pair`]).
    pub(crate) fn pack_bf16(w: &[f32], k: usize, n: usize) -> Self {
        assert_eq!(w.len(), k * n, "weight is not [{k}, {n}]");
        let (panels, pairs) = (n.div_ceil(PANEL), k.div_ceil(2));
        let mut packed = vec![Pair::default(); panels * pairs * PANEL];
        for p in 0..pairs {
            let first = &w[2 * p * n..][..n];
            let second = (2 * p + 1 < k).then(|| &w[(2 * p + 1) * n..][..n]);
            for (c, &v) in first.iter().enumerate() {
                packed[(c / PANEL) * pairs * PANEL + at(pairs, p, c % PANEL)] =
                    Pair::new(v, second.map_or(0.0, |s| s[c]));
            }
        }
        Panels { k, n, values: Values::Bf16(packed) }
    }

    /// Whether the weight is held in bf16.
    pub(crate) fn is_bf16(&self) -> bool {
        matches!(self.values, Values::Bf16(_))
    }

    /// `bias + x[m, k] · W` (bias: `n` values or none) as a row-major `[m, n]` buffer from
    /// [`crate::scratch`], with the kernel of `tier`. The first input block's sums start from
    /// the bias in registers, so the output is never zeroed or read before it is written.
    pub(crate) fn forward(&self, tier: Tier, x: &[f32], m: usize, bias: Option<&[f32]>) -> Vec<f32> {
        let (k, n) = (self.k, self.n);
        assert_eq!(x.len(), m * k, "x is not [{m}, {k}]");
        assert!(bias.is_none_or(|b| b.len() == n), "{n} outputs but {} biases", bias.map_or(0, <[f32]>::len));
        match &self.values {
            Values::F32(packed) => {
                let inputs = pack_inputs(x, m, k);
                let out = product(tier, packed, &inputs, k, n, m, bias);
                f32::scratch().keep(inputs);
                out
            }
            Values::Bf16(packed) => {
                let pairs = k.div_ceil(2);
                let rows = input_pairs(x, m, k);
                let inputs = pack_inputs(&rows, m, pairs);
                Pair::scratch().keep(rows);
                let out = product(tier, packed, &inputs, pairs, n, m, bias);
                Pair::scratch().keep(inputs);
                out
            }
        }
    }
}

/// `bias + x · W` over `depth` packed weight rows (f32 values or bf16 pairs): one task per panel
/// and row block, each walking its inputs in blocks read by every register tile in turn.
fn product<T: Element>(
    tier: Tier,
    packed: &[T],
    inputs: &[T],
    depth: usize,
    n: usize,
    m: usize,
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let mut out = scratch::F32.take(m * n);
    let out_ptr = SharedOut(out.as_mut_ptr());
    let panels = n.div_ceil(PANEL);
    let row_block = row_block(m);
    let (strip_width, k_block) = T::blocking(tier);
    (0..panels * m.div_ceil(row_block)).into_par_iter().for_each(|t| {
        let (p, b) = (t % panels, t / panels);
        let columns = p * PANEL..(p * PANEL + PANEL).min(n);
        let rows = b * row_block..(b * row_block + row_block).min(m);
        let panel = &packed[p * depth * PANEL..(p + 1) * depth * PANEL];
        let bias = bias.map(|b| &b[columns.clone()]);
        for k0 in (0..depth.max(1)).step_by(k_block) {
            let block = k0..(k0 + k_block).min(depth);
            for strip in (0..columns.len()).step_by(strip_width) {
                for r0 in rows.clone().step_by(TILE_ROWS) {
                    let tile = Tile {
                        k: depth,
                        n,
                        x: &inputs[(r0 * depth + block.start * TILE_ROWS)..][..block.len() * TILE_ROWS],
                        panel,
                        bias,
                        out: out_ptr,
                        r0,
                        rows: TILE_ROWS.min(rows.end - r0),
                        columns: columns.clone(),
                        inputs: block.clone(),
                    };
                    // SAFETY: this task alone writes these rows × columns of `out`, whose
                    // capacity is m × n.
                    unsafe { T::run(&tile, tier, strip) };
                }
            }
        }
    });
    // SAFETY: the tasks have written every one of the m × n values (every panel of every row
    // block, the first input block from the bias even where the depth is 0).
    unsafe { out.set_len(m * n) };
    out
}

/// What a panel holds, and the register tiles that multiply it.
trait Element: Copy + Default + Send + Sync + 'static {
    /// Where packed inputs of this kind are kept between products.
    fn scratch() -> &'static Scratch<Self>;

    /// Columns per strip walked over all of a block's rows before the next, and packed rows
    /// per input block.
    fn blocking(tier: Tier) -> (usize, usize);

    /// Runs `tile` (panel columns `strip..` for a kernel that walks strips) with the kernel of
    /// `tier`.
    ///
    /// # Safety
    /// The tile's rows × columns are inside the output, no other thread touches them meanwhile,
    /// and unless `inputs` starts at 0 they hold the sums of the earlier input blocks.
    unsafe fn run(tile: &Tile<Self>, tier: Tier, strip: usize);
}

impl Element for f32 {
    fn scratch() -> &'static Scratch<f32> {
        &scratch::F32
    }

    fn blocking(tier: Tier) -> (usize, usize) {
        // AVX2 walks a panel in strips, each over all the rows before the next, so its blocks
        // are a strip's rows (see `AVX2_K_BLOCK`).
        match tier {
            Tier::Avx2 => (STRIP, AVX2_K_BLOCK),
            _ => (PANEL, K_BLOCK),
        }
    }

    unsafe fn run(tile: &Tile<f32>, tier: Tier, strip: usize) {
        // SAFETY: the caller's contract; `Tier::current` only names tiers the CPU runs.
        unsafe {
            match tier {
                #[cfg(target_arch = "x86_64")]
                Tier::Avx512 => tile.avx512(),
                #[cfg(target_arch = "x86_64")]
                Tier::Avx2 => tile.avx2(strip),
                _ => tile.scalar(),
            }
        }
    }
}

/// Packed bf16 inputs, kept between products.
static PAIRS: Scratch<Pair> = Scratch::new();

impl Element for Pair {
    fn scratch() -> &'static Scratch<Pair> {
        &PAIRS
    }

    fn blocking(_: Tier) -> (usize, usize) {
        // 64 rows of pairs: 16 KiB of a panel, as f32's blocks.
        (PANEL, K_BLOCK)
    }

    unsafe fn run(tile: &Tile<Pair>, tier: Tier, _: usize) {
        // SAFETY: the caller's contract; the CPU has AVX-512 BF16 (`bf16_supported`).
        unsafe {
            match tier {
                #[cfg(target_arch = "x86_64")]
                Tier::Avx512 if bf16_supported() => tile.avx512_bf16(),
                _ => tile.scalar_bf16(),
            }
        }
    }
}

/// `x` `[m, k]` as rows of bf16 [`Pair`]s `[m, k.div_ceil(2)]`, an odd row's last pair
/// completed by 0.
fn input_pairs(x: &[f32], m: usize, k: usize) -> Vec<Pair> {
    let pairs = k.div_ceil(2);
    let mut out = PAIRS.take(m * pairs);
    if pairs > 0 {
        out.spare_capacity_mut()[..m * pairs].par_chunks_mut(pairs).zip(x.par_chunks(k)).for_each(|(out, row)| {
            let (whole, last) = row.as_chunks::<2>();
            for (pair, &[a, b]) in out.iter_mut().zip(whole) {
                pair.write(Pair::new(a, b));
            }
            if let [a] = last {
                out[pairs - 1].write(Pair::new(*a, 0.0));
            }
        });
    }
    // SAFETY: each of the m rows wrote its `pairs` pairs (the whole ones, then an odd last).
    unsafe { out.set_len(m * pairs) };
    out
}

/// Rows per task for a product of `m` rows: at most [`ROW_BLOCK`], the blocks as even as whole
/// tiles allow. Fixed blocks of 192 left a short last one (450 rows: 192, 192, 66), so a
/// product's tasks differed threefold and one core finished its share while the other still
/// ran a long task: batches of 32 sentences (250–1,900 rows) lost about a tenth of a core.
fn row_block(m: usize) -> usize {
    let blocks = m.div_ceil(ROW_BLOCK).max(1);
    m.div_ceil(blocks).next_multiple_of(TILE_ROWS).max(TILE_ROWS)
}

/// `x` (`[m, k]`, row-major) as consecutive tiles of [`TILE_ROWS`] rows, each `[k][TILE_ROWS]`
/// (the rows past `m` zero): a tile's broadcasts then read one stream in order, at fixed
/// offsets, instead of a row each. Copied once per product, in parallel over tiles, and read by
/// every panel. Each value is written once, by its tile's task: zeroing the buffer first was a
/// serial pass over a large batch's inputs while the other cores waited.
fn pack_inputs<T: Element>(x: &[T], m: usize, k: usize) -> Vec<T> {
    let len = m.div_ceil(TILE_ROWS) * TILE_ROWS * k;
    let mut packed = T::scratch().take(len);
    if k > 0 {
        packed.spare_capacity_mut()[..len].par_chunks_mut(TILE_ROWS * k).enumerate().for_each(|(t, tile)| {
            let present = TILE_ROWS.min(m - t * TILE_ROWS);
            let rows = &x[t * TILE_ROWS * k..][..present * k];
            // Input by input, the tile's rows in turn, so that the writes run in order: a row at
            // a time wrote every sixth value and went over the tile six times, and a tile of
            // 1,536 inputs outgrows L1 (`docs/benchmarks.md`, "Packing the inputs in order").
            // Every tile but a product's last is whole, and takes a loop without the test for
            // absent rows or the index arithmetic, which measured 2.5 times as fast.
            if present == TILE_ROWS {
                let rows: [&[T]; TILE_ROWS] = std::array::from_fn(|r| &rows[r * k..][..k]);
                for (i, values) in tile.chunks_exact_mut(TILE_ROWS).enumerate() {
                    for (value, row) in values.iter_mut().zip(rows) {
                        value.write(row[i]);
                    }
                }
            } else {
                for (i, values) in tile.chunks_exact_mut(TILE_ROWS).enumerate() {
                    for (r, value) in values.iter_mut().enumerate() {
                        value.write(if r < present { rows[r * k + i] } else { T::default() });
                    }
                }
            }
        });
    }
    // SAFETY: every tile wrote all of its k × TILE_ROWS values (zeros past row m).
    unsafe { packed.set_len(len) };
    packed
}

/// Where a panel holds its row `i`, column `c` (`c` < [`PANEL`]): in strip `c / STRIP`.
fn at(k: usize, i: usize, c: usize) -> usize {
    (c / STRIP) * k * STRIP + i * STRIP + c % STRIP
}

/// The output pointer, shared by tasks that write disjoint rows × columns of it.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: each task writes its own rows × columns only (see `Panels::forward`).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

/// `self.kernel::<R>(args)` with `R` the tile's rows (1 to [`TILE_ROWS`]) as a constant, so
/// that each height of tile keeps its sums in registers.
macro_rules! by_rows {
    ($tile:ident . $kernel:ident ( $($arg:expr),* )) => {
        match $tile.rows {
            6 => $tile.$kernel::<6>($($arg),*),
            5 => $tile.$kernel::<5>($($arg),*),
            4 => $tile.$kernel::<4>($($arg),*),
            3 => $tile.$kernel::<3>($($arg),*),
            2 => $tile.$kernel::<2>($($arg),*),
            1 => $tile.$kernel::<1>($($arg),*),
            _ => unreachable!("tiles are 1 to {TILE_ROWS} rows"),
        }
    };
}

/// Output rows `r0..r0 + rows` at `columns` (one panel's), summed over weight rows `inputs`:
/// `x` holds the rows' inputs as `[inputs][TILE_ROWS]` (see [`pack_inputs`]), `panel` is the
/// packed panel, `bias` its columns' biases. The sums start from the bias at the first input
/// block and from the output after it.
struct Tile<'a, T> {
    k: usize,
    n: usize,
    x: &'a [T],
    panel: &'a [T],
    bias: Option<&'a [f32]>,
    out: SharedOut,
    r0: usize,
    rows: usize,
    columns: std::ops::Range<usize>,
    inputs: std::ops::Range<usize>,
}

impl<T> Tile<'_, T> {
    /// Where output row `r0 + r` at panel column `c` lies.
    fn out_at(&self, r: usize, c: usize) -> *mut f32 {
        self.out.0.wrapping_add((self.r0 + r) * self.n + self.columns.start + c)
    }

    /// The sum an output starts from: its bias at the first input block, after it the sum of
    /// the earlier blocks.
    ///
    /// # Safety
    /// As [`Element::run`].
    unsafe fn start(&self, r: usize, c: usize) -> f32 {
        match self.inputs.start {
            0 => self.bias.map_or(0.0, |b| b[c]),
            // SAFETY: written by the earlier input blocks (the caller's contract).
            _ => unsafe { self.out_at(r, c).read() },
        }
    }

    /// One mask per vector of 16 columns: all set but in a last, partial panel.
    #[cfg(target_arch = "x86_64")]
    fn avx512_masks(&self) -> [std::arch::x86_64::__mmask16; 4] {
        std::array::from_fn(|j| {
            let have = self.columns.len().saturating_sub(16 * j).min(16);
            ((1u32 << have) - 1) as std::arch::x86_64::__mmask16
        })
    }

    /// The sums an AVX-512 tile of `R` rows starts from (see [`Self::start`]), in registers.
    ///
    /// # Safety
    /// As [`Element::run`], and the CPU has AVX-512F.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn avx512_start<const R: usize>(
        &self,
        masks: [std::arch::x86_64::__mmask16; 4],
    ) -> [[std::arch::x86_64::__m512; 4]; R] {
        use std::arch::x86_64::*;
        // Plain loops, not closures: a closure does not inherit the target feature, and the
        // sums would pass through the stack.
        let mut acc = [[_mm512_setzero_ps(); 4]; R];
        for (r, sums) in acc.iter_mut().enumerate() {
            for (j, sum) in sums.iter_mut().enumerate() {
                // SAFETY: the masked columns of the tile's rows are inside the output and, past
                // the first input block, written (the caller's contract); the masked biases are
                // inside `bias`.
                unsafe {
                    match (self.inputs.start, self.bias) {
                        (0, Some(b)) => *sum = _mm512_maskz_loadu_ps(masks[j], b.as_ptr().wrapping_add(16 * j)),
                        (0, None) => {}
                        _ => *sum = _mm512_maskz_loadu_ps(masks[j], self.out_at(r, 16 * j)),
                    }
                }
            }
        }
        acc
    }

    /// Stores an AVX-512 tile's sums into the output.
    ///
    /// # Safety
    /// As [`Self::avx512_start`].
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn avx512_store<const R: usize>(
        &self,
        acc: &[[std::arch::x86_64::__m512; 4]; R],
        masks: [std::arch::x86_64::__mmask16; 4],
    ) {
        use std::arch::x86_64::*;
        for (r, sums) in acc.iter().enumerate() {
            for (j, &sum) in sums.iter().enumerate() {
                // SAFETY: as the loads of `avx512_start`.
                unsafe { _mm512_mask_storeu_ps(self.out_at(r, 16 * j), masks[j], sum) };
            }
        }
    }
}

impl Tile<'_, Pair> {
    /// The tile in portable code: each pair's second product added first, then its first, as
    /// `vdpbf16ps` adds them (each product of two bf16 is exact in f32).
    ///
    /// # Safety
    /// As [`Element::run`].
    unsafe fn scalar_bf16(&self) {
        for r in 0..self.rows {
            for c in 0..self.columns.len() {
                // SAFETY: the caller's contract.
                let mut sum = unsafe { self.start(r, c) };
                for (p, x) in self.inputs.clone().zip(self.x.iter().skip(r).step_by(TILE_ROWS)) {
                    let ((x0, x1), (w0, w1)) = (x.values(), self.panel[at(self.k, p, c)].values());
                    sum += x1 * w1;
                    sum += x0 * w0;
                }
                // SAFETY: inside the output (the caller's contract).
                unsafe { self.out_at(r, c).write(sum) };
            }
        }
    }

    /// # Safety
    /// As [`Element::run`], and the CPU has AVX-512F and AVX-512 BF16.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn avx512_bf16(&self) {
        // SAFETY: the caller's contract.
        unsafe { by_rows!(self.avx512_bf16_n()) }
    }

    /// The f32 tile of [`Tile::avx512_n`] with `vdpbf16ps`: per packed row, one broadcast pair
    /// of inputs per row of the tile times the four strips' pairs, both products added into
    /// each column's f32 sum.
    ///
    /// # Safety
    /// As [`Self::avx512_bf16`].
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn avx512_bf16_n<const R: usize>(&self) {
        use std::arch::x86_64::*;
        let masks = self.avx512_masks();
        // SAFETY: the caller's contract.
        let mut acc = unsafe { self.avx512_start::<R>(masks) };
        let (x, w, k, k0) = (self.x.as_ptr(), self.panel.as_ptr(), self.k, self.inputs.start);
        for p in self.inputs.clone() {
            // SAFETY: packed row p of the panel's four strips is inside it; `x` holds pair p of
            // R rows. A `Pair` is a u32, and 16 of them are one register of 32 bf16.
            unsafe {
                let row = w.add(p * STRIP);
                let mut weights = [_mm512_setzero_si512(); 4];
                for (j, weight) in weights.iter_mut().enumerate() {
                    *weight = _mm512_loadu_si512(row.add(j * k * STRIP).cast());
                }
                let weights: [__m512bh; 4] = std::mem::transmute(weights);
                for (r, sums) in acc.iter_mut().enumerate() {
                    let pair: __m512bh =
                        std::mem::transmute(_mm512_set1_epi32((*x.add((p - k0) * TILE_ROWS + r)).0 as i32));
                    for (sum, &weight) in sums.iter_mut().zip(&weights) {
                        *sum = _mm512_dpbf16_ps(*sum, pair, weight);
                    }
                }
            }
        }
        // SAFETY: the caller's contract.
        unsafe { self.avx512_store(&acc, masks) };
    }
}

impl Tile<'_, f32> {
    /// # Safety
    /// As [`Element::run`].
    unsafe fn scalar(&self) {
        for r in 0..self.rows {
            for c in 0..self.columns.len() {
                // SAFETY: the caller's contract.
                let mut sum = unsafe { self.start(r, c) };
                for (i, x) in self.inputs.clone().zip(self.x.iter().skip(r).step_by(TILE_ROWS)) {
                    sum += x * self.panel[at(self.k, i, c)];
                }
                // SAFETY: inside the output (the caller's contract).
                unsafe { self.out_at(r, c).write(sum) };
            }
        }
    }

    /// # Safety
    /// As [`Element::run`], and the CPU has AVX-512F.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn avx512(&self) {
        // SAFETY: the caller's contract.
        unsafe { by_rows!(self.avx512_n()) }
    }

    /// # Safety
    /// As [`Self::avx512`].
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn avx512_n<const R: usize>(&self) {
        use std::arch::x86_64::*;
        let masks = self.avx512_masks();
        // SAFETY: the caller's contract.
        let mut acc = unsafe { self.avx512_start::<R>(masks) };
        let (x, w, k, k0) = (self.x.as_ptr(), self.panel.as_ptr(), self.k, self.inputs.start);
        for i in self.inputs.clone() {
            // SAFETY: row i of the panel's four strips is inside it; `x` holds input i of R rows.
            unsafe {
                let row = w.add(i * STRIP);
                let weights = [
                    _mm512_loadu_ps(row),
                    _mm512_loadu_ps(row.add(k * STRIP)),
                    _mm512_loadu_ps(row.add(2 * k * STRIP)),
                    _mm512_loadu_ps(row.add(3 * k * STRIP)),
                ];
                for (r, sums) in acc.iter_mut().enumerate() {
                    let xv = _mm512_set1_ps(*x.add((i - k0) * TILE_ROWS + r));
                    for (sum, &weight) in sums.iter_mut().zip(&weights) {
                        *sum = _mm512_fmadd_ps(xv, weight, *sum);
                    }
                }
            }
        }
        // SAFETY: the caller's contract.
        unsafe { self.avx512_store(&acc, masks) };
    }

    /// Panel columns `strip..strip + STRIP` of the tile (`strip` a multiple of [`STRIP`]).
    ///
    /// # Safety
    /// As [`Element::run`], and the CPU has AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2(&self, strip: usize) {
        // SAFETY: the caller's contract.
        unsafe { by_rows!(self.avx2_n(strip)) }
    }

    /// # Safety
    /// As [`Self::avx2`].
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2_n<const R: usize>(&self, strip: usize) {
        use std::arch::x86_64::*;
        let masks: [__m256i; 2] = std::array::from_fn(|j| {
            let have = self.columns.len().saturating_sub(strip + 8 * j).min(8) as i32;
            let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            _mm256_cmpgt_epi32(_mm256_set1_epi32(have), lane)
        });
        // A masked store costs AVX2 many cycles (on Zen 3 it was a fifth of the kernel's time):
        // full strips, all but a partial last one, load and store whole vectors.
        let full = self.columns.len() >= strip + STRIP;
        if self.inputs.start == 0 {
            // The first block starts from the bias and only stores its sums (later blocks load
            // the output first).
            for r in 0..R {
                prefetch_row(self.out_at(r, strip), STRIP);
            }
        }
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        for (r, sums) in acc.iter_mut().enumerate() {
            for (j, sum) in sums.iter_mut().enumerate() {
                let at = match (self.inputs.start, self.bias) {
                    (0, Some(b)) => b.as_ptr().wrapping_add(strip + 8 * j),
                    (0, None) => continue,
                    _ => self.out_at(r, strip + 8 * j),
                };
                // SAFETY: as in `avx512_n`.
                *sum = unsafe { if full { _mm256_loadu_ps(at) } else { _mm256_maskload_ps(at, masks[j]) } };
            }
        }
        let (x, w, k, k0) = (self.x.as_ptr(), self.panel.as_ptr(), self.k, self.inputs.start);
        for i in self.inputs.clone() {
            // SAFETY: as in `avx512_n`; the strip lies inside the panel's row.
            unsafe {
                let row = w.add(strip * k + i * STRIP);
                let weights = [_mm256_loadu_ps(row), _mm256_loadu_ps(row.add(8))];
                for (r, sums) in acc.iter_mut().enumerate() {
                    let xv = _mm256_set1_ps(*x.add((i - k0) * TILE_ROWS + r));
                    for (sum, &weight) in sums.iter_mut().zip(&weights) {
                        *sum = _mm256_fmadd_ps(xv, weight, *sum);
                    }
                }
            }
        }
        for (r, sums) in acc.iter().enumerate() {
            for (j, &sum) in sums.iter().enumerate() {
                let at = self.out_at(r, strip + 8 * j);
                // SAFETY: as the loads above.
                unsafe { if full { _mm256_storeu_ps(at, sum) } else { _mm256_maskstore_ps(at, masks[j], sum) } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_blocks_are_whole_tiles_at_most_row_block_and_even() {
        assert_eq!(row_block(0), TILE_ROWS);
        for m in 1..2_000 {
            let block = row_block(m);
            assert!(block.is_multiple_of(TILE_ROWS) && block <= ROW_BLOCK, "{m} rows: blocks of {block}");
            assert_eq!(m.div_ceil(block), m.div_ceil(ROW_BLOCK), "{m} rows: no more tasks than fixed blocks");
            let last = m - (m.div_ceil(block) - 1) * block;
            assert!(block - last < TILE_ROWS * m.div_ceil(block), "{m} rows: blocks of {block}, the last {last}");
        }
        assert_eq!(row_block(450), 150);
    }
}
