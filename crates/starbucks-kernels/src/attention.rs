//! Multi-head self-attention over sequences of different lengths, without padding: the rows of
//! every sequence lie one after another, and each sequence attends over its own rows only, so no
//! padded `[batch, heads, seq, seq]` score tensor is made and no padding key is scored.
//! Per (sequence, head, query): the scores against every key, softmax, and the weighted sum of
//! the values, in one pass over a row of scratch.

use rayon::prelude::*;

use crate::activation::exp_f32;
use crate::simd::simd;

/// The context of every query row: `qkv` holds, per row, the query (already scaled by
/// `1/√head_dim`), key and value projections side by side (`[rows, 3 hidden]`, heads
/// contiguous inside each), sequence `s` is rows `offsets[s]..offsets[s + 1]`, and `out`
/// (`[rows, hidden]`) gets each head's context in that head's columns.
pub fn attention(qkv: &[f32], offsets: &[usize], heads: usize, head_dim: usize, out: &mut [f32]) {
    let hidden = heads * head_dim;
    let rows = offsets.last().copied().unwrap_or(0);
    assert_eq!(qkv.len(), rows * 3 * hidden, "qkv is not [{rows}, 3 × {hidden}]");
    assert_eq!(out.len(), rows * hidden, "out is not [{rows}, {hidden}]");
    assert!(offsets.first() == Some(&0) && offsets.windows(2).all(|w| w[0] <= w[1]), "offsets must rise from 0");
    // Each sequence's rows of `out`, split off in turn, so that sequences run in parallel.
    let mut parts = Vec::with_capacity(offsets.len().saturating_sub(1));
    let mut rest = out;
    for w in offsets.windows(2) {
        let (part, tail) = rest.split_at_mut((w[1] - w[0]) * hidden);
        parts.push((w[0], w[1] - w[0], part));
        rest = tail;
    }
    parts.into_par_iter().for_each(|(start, len, out)| {
        let qkv = &qkv[start * 3 * hidden..(start + len) * 3 * hidden];
        let mut scores = vec![0f32; len];
        for head in 0..heads {
            for i in 0..len {
                let q = &qkv[i * 3 * hidden + head * head_dim..][..head_dim];
                let context = &mut out[i * hidden + head * head_dim..][..head_dim];
                attend_one(q, qkv, hidden, head * head_dim, &mut scores, context);
            }
        }
    });
}

simd!(attend_one(q: &[f32], qkv: &[f32], hidden: usize, column: usize, scores: &mut [f32], context: &mut [f32]) {
    let head_dim = q.len();
    let key = |j: usize| &qkv[j * 3 * hidden + hidden + column..][..head_dim];
    let value = |j: usize| &qkv[j * 3 * hidden + 2 * hidden + column..][..head_dim];
    let mut max = f32::NEG_INFINITY;
    for (j, score) in scores.iter_mut().enumerate() {
        *score = dot(q, key(j));
        max = max.max(*score);
    }
    let mut total = 0.0;
    for score in scores.iter_mut() {
        *score = exp_f32(*score - max);
        total += *score;
    }
    context.iter_mut().for_each(|c| *c = 0.0);
    for (j, &p) in scores.iter().enumerate() {
        for (c, v) in context.iter_mut().zip(value(j)) {
            *c += p * v;
        }
    }
    let inverse = 1.0 / total;
    context.iter_mut().for_each(|c| *c *= inverse);
});

/// `a · b`, summed in 8 lanes so that the loop vectorises.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8.remainder().iter().zip(b8.remainder()).map(|(x, y)| x * y).sum();
    for (a, b) in a8.zip(b8) {
        for l in 0..8 {
            lanes[l] += a[l] * b[l];
        }
    }
    lanes.iter().sum::<f32>() + tail
}
