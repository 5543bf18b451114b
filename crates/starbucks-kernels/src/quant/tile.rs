//! The register tiles of the int8 product: the i32 sums of up to 4 rows × 2 blocks of 8
//! columns over the whole input, in portable code and with AVX2; the AVX2 tile can also scale
//! its sums into the output from its registers. The packing, the activation quantisation and
//! the task split are the parent's (`quant.rs`).

#[cfg(not(target_arch = "x86_64"))]
use super::scale_tile;
use super::{BLOCK, Finish, GROUP, TILE_BLOCKS, TILE_ROWS};

pub(super) type Sums = [[[i32; BLOCK]; TILE_BLOCKS]; TILE_ROWS];

/// The i32 sums of a tile of `rows` × `blocks` blocks: `x` starts at the tile's first row (rows
/// `4 groups` bytes apart), `w` at its first block (blocks `4 groups BLOCK` bytes apart).
pub(super) fn scalar_tile(x: &[u8], w: &[i8], groups: usize, rows: usize, blocks: usize, sums: &mut Sums) {
    let (row, block) = (groups * GROUP, groups * GROUP * BLOCK);
    for (r, row_sums) in sums.iter_mut().enumerate().take(rows) {
        let x = &x[r * row..(r + 1) * row];
        for (b, block_sums) in row_sums.iter_mut().enumerate().take(blocks) {
            let w = &w[b * block..(b + 1) * block];
            *block_sums = [0; BLOCK];
            for (g, x) in x.chunks_exact(GROUP).enumerate() {
                let w = &w[g * GROUP * BLOCK..(g + 1) * GROUP * BLOCK];
                for (lane, sum) in block_sums.iter_mut().enumerate() {
                    let w = &w[lane * GROUP..(lane + 1) * GROUP];
                    *sum += (0..GROUP).map(|j| x[j] as i32 * w[j] as i32).sum::<i32>();
                }
            }
        }
    }
}

/// [`scalar_tile`] with AVX2: per group of 4 inputs, one broadcast of each row's 4 bytes, and per
/// (row, block) one `vpmaddubsw` (u8 × i8, pairs summed into i16, exact by the ranges' choice)
/// and one `vpmaddwd` by ones (pairs of those into i32), added to sums held in registers; then
/// the sums go back, or straight from the registers into the output as f32 (the same
/// operations as [`scale_block`], so the same bits).
///
/// # Safety
/// The CPU has AVX2; `x` holds `rows` rows and `w` holds `blocks` blocks (as `scalar_tile`); a
/// `Finish::Write` covers `blocks` whole blocks of `rows` rows that no other thread writes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub(super) unsafe fn avx2_tile(x: &[u8], w: &[i8], groups: usize, rows: usize, blocks: usize, finish: Finish) {
    assert!(x.len() >= rows * groups * GROUP && w.len() >= blocks * groups * GROUP * BLOCK);
    if let Finish::Write(scaling) = &finish {
        assert!(scaling.weights.scales.len() == blocks * BLOCK && scaling.x_scales.len() == rows);
    }
    macro_rules! tile {
        ($rows:literal, $blocks:literal) => {
            // SAFETY: the caller has checked AVX2; the reads stay inside `x` and `w`, and the
            // scaling inside its slices (asserted above).
            unsafe { avx2_tile_n::<$rows, $blocks>(x.as_ptr(), w.as_ptr(), groups, finish) }
        };
    }
    match (rows, blocks) {
        (4, 2) => tile!(4, 2),
        (4, 1) => tile!(4, 1),
        (3, 2) => tile!(3, 2),
        (3, 1) => tile!(3, 1),
        (2, 2) => tile!(2, 2),
        (2, 1) => tile!(2, 1),
        (1, 2) => tile!(1, 2),
        (1, 1) => tile!(1, 1),
        _ => unreachable!("tiles are at most {TILE_ROWS} rows and {TILE_BLOCKS} blocks"),
    }
}

#[cfg(not(target_arch = "x86_64"))]
pub(super) unsafe fn avx2_tile(x: &[u8], w: &[i8], groups: usize, rows: usize, blocks: usize, finish: Finish) {
    let mut sums = [[[0i32; BLOCK]; TILE_BLOCKS]; TILE_ROWS];
    match finish {
        Finish::Sums(sums) => scalar_tile(x, w, groups, rows, blocks, sums),
        Finish::Write(scaling) => {
            scalar_tile(x, w, groups, rows, blocks, &mut sums);
            // SAFETY: the caller's contract.
            unsafe { scale_tile(&sums, rows, scaling) }
        }
    }
}

/// # Safety
/// AVX2; `x` points at `R` rows of `4 groups` bytes, `w` at `NB` blocks of `4 groups BLOCK`
/// bytes; a `Finish::Write` holds `R` rows and `NB` whole blocks.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn avx2_tile_n<const R: usize, const NB: usize>(x: *const u8, w: *const i8, groups: usize, finish: Finish) {
    use std::arch::x86_64::*;
    let ones = _mm256_set1_epi16(1);
    let mut acc = [[_mm256_setzero_si256(); NB]; R];
    for g in 0..groups {
        let mut weights = [_mm256_setzero_si256(); NB];
        for (b, weight) in weights.iter_mut().enumerate() {
            // SAFETY: block b's group g is inside `w` (the caller's contract).
            *weight = unsafe { _mm256_loadu_si256(w.add((b * groups + g) * GROUP * BLOCK) as *const __m256i) };
        }
        for (r, row_acc) in acc.iter_mut().enumerate() {
            // SAFETY: row r's group g (four bytes read as one i32) is inside `x`.
            let group = unsafe { (x.add((r * groups + g) * GROUP) as *const i32).read_unaligned() };
            let group = _mm256_set1_epi32(group);
            for (sum, &weight) in row_acc.iter_mut().zip(&weights) {
                let pairs = _mm256_maddubs_epi16(group, weight);
                *sum = _mm256_add_epi32(*sum, _mm256_madd_epi16(pairs, ones));
            }
        }
    }
    match finish {
        Finish::Sums(sums) => {
            for (row_acc, row_sums) in acc.iter().zip(sums.iter_mut()) {
                for (sum, block_sums) in row_acc.iter().zip(row_sums.iter_mut()) {
                    // SAFETY: `block_sums` is 8 i32s, one register.
                    unsafe { _mm256_storeu_si256(block_sums.as_mut_ptr() as *mut __m256i, *sum) };
                }
            }
        }
        Finish::Write(s) => {
            let w = &s.weights;
            for (r, row_acc) in acc.iter().enumerate() {
                let zero_point = _mm256_set1_epi32(s.zero_points[r]);
                let x_scale = _mm256_set1_ps(s.x_scales[r]);
                for (b, &sum) in row_acc.iter().enumerate() {
                    let c = b * BLOCK;
                    // SAFETY: columns c..c + 8 are inside the weights' slices (asserted by
                    // `avx2_tile`) and inside row r of the output (the caller's contract).
                    unsafe {
                        let w_sums = _mm256_loadu_si256(w.sums.as_ptr().add(c) as *const __m256i);
                        let w_scales = _mm256_loadu_ps(w.scales.as_ptr().add(c));
                        let bias = w.bias.map_or(_mm256_setzero_ps(), |b| _mm256_loadu_ps(b.as_ptr().add(c)));
                        let sum = _mm256_sub_epi32(sum, _mm256_mullo_epi32(zero_point, w_sums));
                        // Multiply, then add, as `scale_block` does: no fused multiply-add.
                        let scaled = _mm256_mul_ps(_mm256_cvtepi32_ps(sum), _mm256_mul_ps(x_scale, w_scales));
                        _mm256_storeu_ps(s.out.add(r * s.stride + c), _mm256_add_ps(scaled, bias));
                    }
                }
            }
        }
    }
}
