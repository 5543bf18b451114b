//! The slice kernels of the CPU encoder against plain f64 references, on odd shapes and lengths.

use starbucks_kernels::Linear;
use starbucks_kernels::attention::attention;
use starbucks_kernels::norm::LayerNorm;
use starbucks_kernels::quant::{ACTIVATION_MAX, PackedInt8, WEIGHT_MAX_7BIT, WEIGHT_MAX_8BIT};
use starbucks_kernels::simd::{Tier, with_tier};

/// Every tier this CPU runs, the widest first (each kernel's default).
fn tiers() -> Vec<Tier> {
    Tier::ALL.into_iter().rev().filter(|t| t.supported()).collect()
}

/// `n` values in [-scale, scale) from a fixed-seed generator.
fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            state = starbucks_kernels::splitmix64(state);
            ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// `x W + b` in f64.
fn reference(x: &[f32], w: &[f32], b: Option<&[f32]>, rows: usize, k: usize, n: usize) -> Vec<f64> {
    let mut out = vec![0.0; rows * n];
    for r in 0..rows {
        for c in 0..n {
            let sum: f64 = (0..k).map(|i| x[r * k + i] as f64 * w[i * n + c] as f64).sum();
            out[r * n + c] = sum + b.map_or(0.0, |b| b[c] as f64);
        }
    }
    out
}

/// Odd shapes: rows that are not a multiple of any tile (3, 4 or 6 rows) nor of a 64- or
/// 192-row task, an odd input width (a half-filled last group, a partial last block of 64
/// inputs), outputs that fill no whole block, strip or panel.
/// As (rows, inputs, outputs); 197 and 451 rows make two and three row blocks, a partial tile
/// last; a product of no inputs is its bias.
const SHAPES: [(usize, usize, usize); 10] = [
    (1, 1, 1),
    (2, 0, 5),
    (3, 37, 19),
    (13, 64, 8),
    (70, 129, 100),
    (5, 384, 1152),
    (130, 17, 200),
    (11, 40, 67),
    (197, 70, 72),
    (451, 33, 70),
];

#[test]
fn f32_linear_matches_the_f64_product_at_every_tier() {
    for (i, &(rows, k, n)) in SHAPES.iter().enumerate() {
        let (x, w, b) = (values(rows * k, i as u64, 2.0), values(k * n, 100 + i as u64, 0.5), values(n, 7, 1.0));
        for bias in [Some(b.clone()), None] {
            let linear = Linear::f32(w.clone(), k, n, bias.clone());
            let mut fused = None;
            for tier in tiers() {
                let got = with_tier(tier, || linear.forward(&x, rows));
                // The vector tiers add the same fused products in the same order.
                if tier >= Tier::Avx2 {
                    let first = fused.get_or_insert_with(|| got.clone());
                    assert_eq!(&got, first, "{tier}, [{rows}, {k}] × [{k}, {n}]: the vector tiers differ");
                }
                let want = reference(&x, &w, bias.as_deref(), rows, k, n);
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (*g as f64 - w).abs() <= 1e-5 * (k as f64).sqrt() * 2.0,
                        "{tier}, [{rows}, {k}] × [{k}, {n}]: {g} vs {w}"
                    );
                }
            }
        }
    }
}

/// `v` rounded to the nearest bf16 (ties to even), as an f32.
fn bf16(v: f32) -> f32 {
    let bits = v.to_bits();
    f32::from_bits(bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) & 0xffff_0000)
}

#[test]
fn bf16_linear_is_the_product_of_the_rounded_values_at_every_tier() {
    for (i, &(rows, k, n)) in SHAPES.iter().enumerate() {
        let (x, w, b) = (values(rows * k, 40 + i as u64, 2.0), values(k * n, 400 + i as u64, 0.5), values(n, 11, 1.0));
        let (x16, w16): (Vec<f32>, Vec<f32>) =
            (x.iter().map(|&v| bf16(v)).collect(), w.iter().map(|&v| bf16(v)).collect());
        for bias in [Some(b.clone()), None] {
            let linear = Linear::bf16(&w, k, n, bias.clone());
            let exact = reference(&x16, &w16, bias.as_deref(), rows, k, n);
            let f32_product = reference(&x, &w, bias.as_deref(), rows, k, n);
            let mut first: Option<Vec<f32>> = None;
            // The AVX2 tier runs the portable tile: bf16 products need AVX-512 BF16.
            for tier in tiers() {
                let got = with_tier(tier, || linear.forward(&x, rows));
                // The products of two bf16 are exact in f32, and every tile adds them in the
                // same order (a pair's second, then its first, as `vdpbf16ps`).
                match &first {
                    None => first = Some(got.clone()),
                    Some(want) => assert_eq!(&got, want, "{tier}, [{rows}, {k}] × [{k}, {n}]: the tiers differ"),
                }
                for (j, (g, e)) in got.iter().zip(&exact).enumerate() {
                    // f32 sums of the rounded values' exact products...
                    let g = *g as f64;
                    assert!(
                        (g - e).abs() <= 1e-5 * (k as f64).sqrt() * 2.0,
                        "{tier}, [{rows}, {k}] × [{k}, {n}]: {g} vs {e}"
                    );
                    // ... each value within half a bf16 step (2^-9 of it) of the f32 one.
                    let (r, c) = (j / n, j % n);
                    let bound: f64 = (0..k).map(|i| (x[r * k + i] * w[i * n + c]).abs() as f64 * 2.0 / 512.0).sum();
                    assert!(
                        (g - f32_product[j]).abs() <= bound + 1e-5,
                        "{tier}, [{rows}, {k}] × [{k}, {n}]: {g} vs f32 {}",
                        f32_product[j]
                    );
                }
            }
        }
    }
}

/// `packed` run at every tier this CPU has, which must all give the same bits; the result.
fn int8_at_every_tier(packed: &PackedInt8, x: &[f32], rows: usize, bias: Option<&[f32]>) -> Vec<f32> {
    let (k, n) = (packed.in_features(), packed.out_features());
    let mut first: Option<Vec<f32>> = None;
    for tier in tiers() {
        let mut out = vec![f32::NAN; rows * n];
        with_tier(tier, || packed.matmul(x, rows, bias, &mut out));
        match &first {
            None => first = Some(out),
            Some(want) => assert_eq!(&out, want, "{tier}, [{rows}, {k}] × [{k}, {n}]: the tiers differ"),
        }
    }
    first.expect("the scalar tier runs everywhere")
}

#[test]
fn int8_tiers_agree_to_the_bit_and_stay_within_the_quantisation_bound() {
    for (i, &(rows, k, n)) in SHAPES.iter().enumerate() {
        let (x, w, b) = (values(rows * k, 20 + i as u64, 3.0), values(k * n, 200 + i as u64, 0.2), values(n, 9, 1.0));
        // Weights of 7 bits run on every kernel; weights of 8 bits on those that sum in i32
        // (AVX2 hands them to the portable kernel).
        for weight_max in [WEIGHT_MAX_7BIT, WEIGHT_MAX_8BIT] {
            let packed = PackedInt8::with_weight_max(&w, k, n, weight_max);
            let fast = int8_at_every_tier(&packed, &x, rows, Some(&b));
            // Each product's error is at most |x| Δw + |w| Δx + Δx Δw, Δ half a quantisation
            // step (x: an ACTIVATION_MAXth of its row's range with 0, w: a weight_maxth of its
            // column's largest value), plus f32 rounding of the scaled sum.
            let want = reference(&x, &w, Some(&b), rows, k, n);
            for r in 0..rows {
                let x_row = &x[r * k..(r + 1) * k];
                let (lo, hi) = x_row.iter().fold((0f32, 0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
                let dx = (hi - lo) as f64 / ACTIVATION_MAX as f64 / 2.0;
                for c in 0..n {
                    let w_col: Vec<f64> = (0..k).map(|i| w[i * n + c] as f64).collect();
                    let dw = w_col.iter().fold(0f64, |m, v| m.max(v.abs())) / weight_max as f64 / 2.0;
                    let bound: f64 =
                        x_row.iter().zip(&w_col).map(|(&x, w)| (x as f64).abs() * dw + w.abs() * dx + dx * dw).sum();
                    let err = (fast[r * n + c] as f64 - want[r * n + c]).abs();
                    assert!(
                        err <= bound * 1.001 + 1e-5,
                        "±{weight_max}, [{rows}, {k}] × [{k}, {n}] at ({r}, {c}): error {err} > {bound}"
                    );
                }
            }
        }
        // Through `Linear` the same numbers come out, packed for the widest tier.
        let packed = PackedInt8::new(&w, k, n);
        let mut direct = vec![0.0; rows * n];
        packed.matmul(&x, rows, Some(&b), &mut direct);
        assert_eq!(Linear::int8(&w, k, n, Some(b)).forward(&x, rows), direct);
    }
}

#[test]
fn int8_weights_have_8_bits_where_the_widest_kernel_sums_in_i32() {
    let w = values(64, 1, 1.0);
    let want = if Tier::widest() == Tier::Avx2 { WEIGHT_MAX_7BIT } else { WEIGHT_MAX_8BIT };
    assert_eq!(PackedInt8::new(&w, 8, 8).weight_max(), want);
    for tier in tiers() {
        let packed = with_tier(tier, || PackedInt8::new(&w, 8, 8));
        assert_eq!(packed.weight_max(), if tier == Tier::Avx2 { WEIGHT_MAX_7BIT } else { WEIGHT_MAX_8BIT }, "{tier}");
    }
}

#[test]
fn int8_products_at_the_ends_of_both_ranges_do_not_saturate() {
    // Every activation at its row's minimum or maximum (quantised to 0 or ACTIVATION_MAX) and
    // every weight at its column's largest magnitude (±weight_max): the largest sums the
    // kernels can see. The portable kernel sums in i32, so any saturation shows as a difference.
    let (rows, k, n) = (9, 64, 40);
    let sign = |v: f32| if v < 0.0 { -1.0 } else { 1.0 };
    let x: Vec<f32> = values(rows * k, 31, 1.0).into_iter().map(sign).collect();
    let w: Vec<f32> = values(k * n, 32, 1.0).into_iter().map(|v| sign(v) * 0.5).collect();
    for weight_max in [WEIGHT_MAX_7BIT, WEIGHT_MAX_8BIT] {
        let fast = int8_at_every_tier(&PackedInt8::with_weight_max(&w, k, n, weight_max), &x, rows, None);
        // The products themselves: x · w with x ≈ ±1 (a 255th of the range off) and w = ±0.5
        // exactly.
        let want = reference(&x, &w, None, rows, k, n);
        for (g, w) in fast.iter().zip(&want) {
            assert!((*g as f64 - w).abs() <= k as f64 * 0.5 * (2.0 / ACTIVATION_MAX as f64), "{g} vs {w}");
        }
    }
}

#[test]
fn int8_dequantized_weight_is_within_half_a_step() {
    let (k, n) = (37, 19);
    let w = values(k * n, 5, 0.3);
    let packed = PackedInt8::new(&w, k, n);
    let back = packed.dequantized();
    for c in 0..n {
        let step = (0..k).map(|i| w[i * n + c].abs()).fold(0f32, f32::max) / packed.weight_max() as f32;
        for i in 0..k {
            assert!((back[i * n + c] - w[i * n + c]).abs() <= step / 2.0 * 1.0001, "({i}, {c})");
        }
    }
}

#[test]
fn zero_rows_and_all_zero_inputs_are_exact() {
    let (k, n) = (16, 9);
    let w = values(k * n, 3, 1.0);
    let b = values(n, 4, 1.0);
    let packed = PackedInt8::new(&w, k, n);
    let mut out = vec![0.0; 2 * n];
    packed.matmul(&vec![0.0; 2 * k], 2, Some(&b), &mut out);
    assert_eq!(out, [b.clone(), b].concat());
    packed.matmul(&[], 0, None, &mut []);
}

/// Attention of each sequence alone, in f64, with a softmax over its own keys.
fn attention_reference(qkv: &[f32], offsets: &[usize], heads: usize, head_dim: usize) -> Vec<f64> {
    let hidden = heads * head_dim;
    let mut out = vec![0.0; offsets.last().unwrap() * hidden];
    for w in offsets.windows(2) {
        for h in 0..heads {
            for i in w[0]..w[1] {
                let at =
                    |row: usize, part: usize, d: usize| qkv[row * 3 * hidden + part * hidden + h * head_dim + d] as f64;
                let scores: Vec<f64> =
                    (w[0]..w[1]).map(|j| (0..head_dim).map(|d| at(i, 0, d) * at(j, 1, d)).sum()).collect();
                let max = scores.iter().cloned().fold(f64::MIN, f64::max);
                let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = exps.iter().sum();
                for d in 0..head_dim {
                    let c: f64 = (w[0]..w[1]).zip(&exps).map(|(j, e)| e * at(j, 2, d)).sum();
                    out[i * hidden + h * head_dim + d] = c / total;
                }
            }
        }
    }
    out
}

#[test]
fn attention_matches_the_per_sequence_reference_on_odd_lengths() {
    // Head widths of whole 16-lane chunks and not; lengths of whole chunks of keys and not,
    // after longer and shorter ones (a task's buffers are kept for the next); enough sequences
    // for a task each, and too few (a task per head).
    let batches: [&[usize]; 2] = [&[1, 7, 33, 2, 0, 90, 16, 128], &[5, 40]];
    for ((heads, head_dim), lengths) in
        [(12, 32), (3, 7), (1, 1), (2, 24)].into_iter().flat_map(|h| batches.map(|b| (h, b)))
    {
        let mut offsets = vec![0];
        for len in lengths {
            offsets.push(offsets.last().unwrap() + len);
        }
        let rows = *offsets.last().unwrap();
        let hidden = heads * head_dim;
        let qkv = values(rows * 3 * hidden, heads as u64, 2.0);
        let want = attention_reference(&qkv, &offsets, heads, head_dim);
        for tier in tiers() {
            let out = with_tier(tier, || attention(&qkv, &offsets, heads, head_dim));
            assert_eq!(out.len(), rows * hidden);
            for (g, w) in out.iter().zip(&want) {
                assert!((*g as f64 - w).abs() < 1e-5, "{tier}, heads {heads} × {head_dim}: {g} vs {w}");
            }
        }
    }
}

#[test]
fn layer_norm_of_the_residual_sum_matches_the_reference() {
    for width in [1, 7, 384] {
        let rows = 67;
        let (start, residual) = (values(rows * width, 1, 3.0), values(rows * width, 2, 1.0));
        let norm = LayerNorm { gamma: values(width, 3, 1.0), beta: values(width, 4, 1.0), eps: 1e-12 };
        let sums: Vec<f64> = start.iter().zip(&residual).map(|(a, b)| *a as f64 + *b as f64).collect();
        for tier in tiers() {
            let mut x = start.clone();
            with_tier(tier, || norm.forward(&mut x, Some(&residual)));
            check_layer_norm(&norm, &sums, &x, width, tier);
        }
    }
}

fn check_layer_norm(norm: &LayerNorm, sums: &[f64], x: &[f32], width: usize, tier: Tier) {
    for (r, row) in sums.chunks(width).enumerate() {
        let mean = row.iter().sum::<f64>() / width as f64;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / width as f64;
        for (c, v) in row.iter().enumerate() {
            let want = (v - mean) / (var + 1e-12).sqrt() * norm.gamma[c] as f64 + norm.beta[c] as f64;
            let got = x[r * width + c] as f64;
            assert!(
                (got - want).abs() < 1e-4 * want.abs().max(1.0),
                "{tier}, width {width} ({r}, {c}): {got} vs {want}"
            );
        }
    }
}

#[test]
fn activations_in_place_match_their_formulas() {
    let xs: Vec<f32> = (-800..=800).map(|i| i as f32 / 40.0).collect();
    for tier in tiers() {
        let (mut tanh, mut erf, mut relu) = (xs.clone(), xs.clone(), xs.clone());
        with_tier(tier, || {
            starbucks_kernels::gelu_tanh_in_place(&mut tanh);
            starbucks_kernels::gelu_in_place(&mut erf);
            starbucks_kernels::relu_in_place(&mut relu);
        });
        for (i, &x) in xs.iter().enumerate() {
            let x64 = x as f64;
            let want =
                0.5 * x64 * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x64 + 0.044715 * x64.powi(3))).tanh());
            assert!(
                (tanh[i] as f64 - want).abs() < 1e-5 * want.abs().max(1.0),
                "gelu_new({x}) = {} vs {want}",
                tanh[i]
            );
            assert_eq!(erf[i], starbucks_kernels::gelu_f32(x));
            assert_eq!(relu[i], x.max(0.0));
        }
    }
}
