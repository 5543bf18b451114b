//! The register tiles of the int8 product: the i32 sums of a few rows × blocks of 16 columns
//! over the whole input, in portable code, with AVX2 and with AVX-512 VNNI; the vector tiles
//! can also scale their sums into the output from their registers. The packing, the activation
//! quantisation and the task split are the parent's (`quant.rs`).

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

/// Checks a vector tile's slices against its shape before the unchecked loads.
fn check(x: &[u8], w: &[i8], groups: usize, rows: usize, blocks: usize, finish: &Finish) {
    assert!(x.len() >= rows * groups * GROUP && w.len() >= blocks * groups * GROUP * BLOCK);
    if let Finish::Write(scaling) = finish {
        assert!(scaling.weights.scales.len() == blocks * BLOCK && scaling.x_scales.len() == rows);
    }
}

/// [`scalar_tile`] with AVX2, one block (two registers of 8 columns) and up to 4 rows: per
/// group of 4 inputs, one broadcast of each row's 4 bytes, and per (row, register) one
/// `vpmaddubsw` (u8 × i8, pairs summed into i16, exact by the ranges' choice: weights of 7
/// bits) and one `vpmaddwd` by ones (pairs of those into i32), added to sums held in registers;
/// then the sums go back, or straight from the registers into the output as f32 (the same
/// operations as [`super::scale_block`], so the same bits).
///
/// # Safety
/// The CPU has AVX2; `x` holds `rows` rows and `w` one block (as `scalar_tile`); the weights
/// are within ±63; a `Finish::Write` covers one whole block of `rows` rows that no other thread
/// writes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub(super) unsafe fn avx2_tile(x: &[u8], w: &[i8], groups: usize, rows: usize, finish: Finish) {
    check(x, w, groups, rows, 1, &finish);
    let (x, w) = (x.as_ptr(), w.as_ptr());
    // SAFETY (each arm): the caller has checked AVX2; the reads stay inside `x` and `w`, and
    // the scaling inside its slices (checked above).
    match rows {
        4 => unsafe { avx2_tile_n::<4>(x, w, groups, finish) },
        3 => unsafe { avx2_tile_n::<3>(x, w, groups, finish) },
        2 => unsafe { avx2_tile_n::<2>(x, w, groups, finish) },
        1 => unsafe { avx2_tile_n::<1>(x, w, groups, finish) },
        _ => unreachable!("AVX2 tiles are 1 to 4 rows"),
    }
}

/// # Safety
/// AVX2; `x` points at `R` rows of `4 groups` bytes, `w` at one block of `4 groups BLOCK`
/// bytes; a `Finish::Write` holds `R` rows and one whole block.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn avx2_tile_n<const R: usize>(x: *const u8, w: *const i8, groups: usize, finish: Finish) {
    use std::arch::x86_64::*;
    let ones = _mm256_set1_epi16(1);
    if let Finish::Write(s) = &finish {
        for r in 0..R {
            crate::simd::prefetch_row(s.out.wrapping_add(r * s.stride), BLOCK);
        }
    }
    let mut acc = [[_mm256_setzero_si256(); 2]; R];
    for g in 0..groups {
        // SAFETY: group g of the block (64 bytes) is inside `w` (the caller's contract).
        let weights: [__m256i; 2] =
            std::array::from_fn(|h| unsafe { _mm256_loadu_si256(w.add(g * GROUP * BLOCK + 32 * h) as *const __m256i) });
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
                for (h, sum) in row_acc.iter().enumerate() {
                    // SAFETY: 8 i32s of the block's 16, one register.
                    unsafe { _mm256_storeu_si256(row_sums[0][8 * h..].as_mut_ptr() as *mut __m256i, *sum) };
                }
            }
        }
        Finish::Write(s) => {
            let w = &s.weights;
            for (r, row_acc) in acc.iter().enumerate() {
                let zero_point = _mm256_set1_epi32(s.zero_points[r]);
                let x_scale = _mm256_set1_ps(s.x_scales[r]);
                for (h, &sum) in row_acc.iter().enumerate() {
                    let c = 8 * h;
                    // SAFETY: columns c..c + 8 are inside the weights' slices (checked by
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

/// [`scalar_tile`] with AVX-512 VNNI, up to 6 rows × 4 blocks: per group of 4 inputs, one
/// broadcast of each row's 4 bytes and per (row, block) one `vpdpbusd`, which multiplies 64 u8 ×
/// i8 pairs and adds each lane's 4 products into its i32 sum, without saturating (so the
/// weights may keep 8 bits). 24 sums, 4 weights and a broadcast fit the 32 registers. The sums
/// go back, or are scaled into the output as [`avx2_tile`] does.
///
/// # Safety
/// The CPU has AVX-512 F, BW and VNNI; `x` holds `rows` rows and `w` `blocks` blocks (as
/// `scalar_tile`); a `Finish::Write` covers `blocks` whole blocks of `rows` rows that no other
/// thread writes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
pub(super) unsafe fn avx512_tile(x: &[u8], w: &[i8], groups: usize, rows: usize, blocks: usize, finish: Finish) {
    check(x, w, groups, rows, blocks, &finish);
    let (x, w) = (x.as_ptr(), w.as_ptr());
    macro_rules! tile {
        ($($rows:literal),*) => {
            match (rows, blocks) {
                // SAFETY (each arm): the caller has checked the CPU; the reads stay inside `x`
                // and `w`, and the scaling inside its slices (checked above).
                $(
                    ($rows, 4) => unsafe { avx512_tile_n::<$rows, 4>(x, w, groups, finish) },
                    ($rows, 3) => unsafe { avx512_tile_n::<$rows, 3>(x, w, groups, finish) },
                    ($rows, 2) => unsafe { avx512_tile_n::<$rows, 2>(x, w, groups, finish) },
                    ($rows, 1) => unsafe { avx512_tile_n::<$rows, 1>(x, w, groups, finish) },
                )*
                _ => unreachable!("AVX-512 tiles are 1 to {TILE_ROWS} rows and 1 to {TILE_BLOCKS} blocks"),
            }
        };
    }
    tile!(6, 5, 4, 3, 2, 1)
}

/// # Safety
/// As [`avx512_tile`], `R` rows and `NB` blocks.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn avx512_tile_n<const R: usize, const NB: usize>(x: *const u8, w: *const i8, groups: usize, finish: Finish) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_si512(); NB]; R];
    for g in 0..groups {
        // SAFETY: group g of block b (64 bytes) is inside `w` (the caller's contract).
        let weights: [__m512i; NB] = std::array::from_fn(|b| unsafe {
            _mm512_loadu_si512(w.add((b * groups + g) * GROUP * BLOCK) as *const __m512i)
        });
        for (r, row_acc) in acc.iter_mut().enumerate() {
            // SAFETY: row r's group g (four bytes read as one i32) is inside `x`.
            let group = unsafe { (x.add((r * groups + g) * GROUP) as *const i32).read_unaligned() };
            let group = _mm512_set1_epi32(group);
            for (sum, &weight) in row_acc.iter_mut().zip(&weights) {
                *sum = _mm512_dpbusd_epi32(*sum, group, weight);
            }
        }
    }
    match finish {
        Finish::Sums(sums) => {
            for (row_acc, row_sums) in acc.iter().zip(sums.iter_mut()) {
                for (sum, block_sums) in row_acc.iter().zip(row_sums.iter_mut()) {
                    // SAFETY: `block_sums` is 16 i32s, one register.
                    unsafe { _mm512_storeu_si512(block_sums.as_mut_ptr() as *mut __m512i, *sum) };
                }
            }
        }
        Finish::Write(s) => {
            let w = &s.weights;
            for (r, row_acc) in acc.iter().enumerate() {
                let zero_point = _mm512_set1_epi32(s.zero_points[r]);
                let x_scale = _mm512_set1_ps(s.x_scales[r]);
                for (b, &sum) in row_acc.iter().enumerate() {
                    let c = b * BLOCK;
                    // SAFETY: columns c..c + 16 are inside the weights' slices (checked by
                    // `avx512_tile`) and inside row r of the output (the caller's contract).
                    unsafe {
                        let w_sums = _mm512_loadu_si512(w.sums.as_ptr().add(c) as *const __m512i);
                        let w_scales = _mm512_loadu_ps(w.scales.as_ptr().add(c));
                        let bias = w.bias.map_or(_mm512_setzero_ps(), |b| _mm512_loadu_ps(b.as_ptr().add(c)));
                        let sum = _mm512_sub_epi32(sum, _mm512_mullo_epi32(zero_point, w_sums));
                        let scaled = _mm512_mul_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(x_scale, w_scales));
                        _mm512_storeu_ps(s.out.add(r * s.stride + c), _mm512_add_ps(scaled, bias));
                    }
                }
            }
        }
    }
}
