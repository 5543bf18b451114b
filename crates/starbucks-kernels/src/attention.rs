//! Multi-head self-attention over sequences of different lengths, without padding: the rows of
//! every sequence lie one after another, and each sequence attends over its own rows only, so no
//! padded `[batch, heads, seq, seq]` score tensor is made and no padding key is scored.
//!
//! One rayon task per sequence, or per (sequence, head) when there are too few sequences to
//! keep every core busy, so that a single long text still runs on every core.
//! A task copies its head's keys transposed in whole chunks of [`LANES`] (`[head_dim, keys]`),
//! so that a query's scores against a chunk are a sum of whole rows (vectorised along the keys,
//! no horizontal sums); the keys past the last whole chunk (all of a short text's) are scored
//! by dot products on their rows, which costs no copy. Then per query: softmax and the weighted
//! sum of the values, in one pass over a row of scratch.

use rayon::prelude::*;

use crate::activation::exp_f32;
use crate::scratch;
use crate::simd::{LANES, lanes, simd};

/// The context of every query row, `[rows, hidden]` with each head's context in that head's
/// columns: `qkv` holds, per row, the query (already scaled by `1/√head_dim`), key and value
/// projections side by side (`[rows, 3 hidden]`, heads contiguous inside each), and sequence
/// `s` is rows `offsets[s]..offsets[s + 1]`.
///
/// The output, from [`crate::scratch`], is written once, by the tasks, and never zeroed
/// beforehand: a serial zeroing of a large batch's context kept the other cores idle
/// (`docs/benchmarks.md`).
pub fn attention(qkv: &[f32], offsets: &[usize], heads: usize, head_dim: usize) -> Vec<f32> {
    let hidden = heads * head_dim;
    let rows = offsets.last().copied().unwrap_or(0);
    assert_eq!(qkv.len(), rows * 3 * hidden, "qkv is not [{rows}, 3 × {hidden}]");
    assert!(offsets.first() == Some(&0) && offsets.windows(2).all(|w| w[0] <= w[1]), "offsets must rise from 0");
    let sequences = offsets.len() - 1;
    // Enough sequences keep every core busy one task each; fewer are split by head too.
    let heads_per_task = if sequences >= 4 * rayon::current_num_threads() { heads } else { 1 };
    let groups = heads / heads_per_task;
    let mut buffer = scratch::F32.take(rows * hidden);
    let out = SharedOut(buffer.as_mut_ptr());
    (0..sequences * groups).into_par_iter().for_each(|task| {
        let (s, group) = (task / groups, task % groups);
        let (start, len) = (offsets[s], offsets[s + 1] - offsets[s]);
        let qkv = &qkv[start * 3 * hidden..(start + len) * 3 * hidden];
        let chunked = len - len % LANES;
        let (mut keys, mut scores) = (vec![0f32; head_dim * chunked], vec![0f32; len]);
        for head in group * heads_per_task..(group + 1) * heads_per_task {
            let column = head * head_dim;
            for j in 0..chunked {
                for (d, &k) in qkv[j * 3 * hidden + hidden + column..][..head_dim].iter().enumerate() {
                    keys[d * chunked + j] = k;
                }
            }
            for i in 0..len {
                let q = &qkv[i * 3 * hidden + column..][..head_dim];
                // SAFETY: row start + i, this head's columns: inside the buffer's capacity, and
                // written by this task alone (tasks differ in sequence, so rows, or in head, so
                // columns); zeroed first, so the slice never sees uninitialised memory.
                let context = unsafe {
                    let at = out.at((start + i) * hidden + column);
                    at.write_bytes(0, head_dim);
                    std::slice::from_raw_parts_mut(at, head_dim)
                };
                attend_one(q, &keys, qkv, hidden, column, &mut scores, context);
            }
        }
    });
    // SAFETY: the tasks have written every row (each sequence's rows, offsets rising from 0 to
    // rows) in every head's columns.
    unsafe { buffer.set_len(rows * hidden) };
    buffer
}

/// The output pointer, shared by tasks that write disjoint parts of it.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: each task writes its own rows × head columns only (see `attention`).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The pointer `offset` floats on (a method, so that closures capture the whole wrapper).
    ///
    /// # Safety
    /// `offset` is inside the buffer.
    unsafe fn at(self, offset: usize) -> *mut f32 {
        // SAFETY: the caller's contract.
        unsafe { self.0.add(offset) }
    }
}

// One query against its sequence: `keys` is the head's keys of the whole chunks transposed
// (`[head_dim, chunked]`). Every reduction runs in 8 or 16 lanes and every update of the
// context in registers, so that each loop vectorises instead of waiting on the previous
// iteration's sum.
simd!(attend_one(q: &[f32], keys: &[f32], qkv: &[f32], hidden: usize, column: usize, scores: &mut [f32], context: &mut [f32]) {
    let (head_dim, len) = (q.len(), scores.len());
    let chunked = len - len % LANES;
    let value = |j: usize| &qkv[j * 3 * hidden + 2 * hidden + column..][..head_dim];
    let (whole, rest) = scores.split_at_mut(chunked);
    for (c, chunk) in whole.chunks_exact_mut(LANES).enumerate() {
        // 16 keys at a time, their scores summed in one register over the head's dims.
        let mut sum = [0f32; LANES];
        for (d, &qd) in q.iter().enumerate() {
            let k: &[f32; LANES] = keys[d * chunked + c * LANES..][..LANES].try_into().expect("LANES keys");
            for l in 0..LANES {
                sum[l] += qd * k[l];
            }
        }
        chunk.copy_from_slice(&sum);
    }
    for (j, score) in rest.iter_mut().enumerate() {
        *score = dot(q, &qkv[(chunked + j) * 3 * hidden + hidden + column..][..head_dim]);
    }
    let larger = |m: f32, s: f32| if s > m { s } else { m };
    let max = lanes(scores, f32::NEG_INFINITY, larger, larger);
    scores.iter_mut().for_each(|s| *s = exp_f32(*s - max));
    let add = |a: f32, b: f32| a + b;
    let inverse = 1.0 / lanes(scores, 0.0, add, add);
    for (c, chunk) in context.chunks_mut(LANES).enumerate() {
        let columns = c * LANES..c * LANES + chunk.len();
        if let Ok(chunk) = <&mut [f32; LANES]>::try_from(&mut *chunk) {
            // A whole chunk: four register accumulators, taking the keys in turn.
            let v = |j: usize| -> &[f32; LANES] { value(j)[columns.clone()].try_into().expect("LANES columns") };
            let mut sums = [[0f32; LANES]; 4];
            let quads = len / 4;
            for j in (0..quads).map(|q| 4 * q) {
                add_scaled(&mut sums[0], scores[j], v(j));
                add_scaled(&mut sums[1], scores[j + 1], v(j + 1));
                add_scaled(&mut sums[2], scores[j + 2], v(j + 2));
                add_scaled(&mut sums[3], scores[j + 3], v(j + 3));
            }
            for (j, &p) in scores.iter().enumerate().skip(4 * quads) {
                add_scaled(&mut sums[0], p, v(j));
            }
            for l in 0..LANES {
                chunk[l] = (sums[0][l] + sums[1][l] + (sums[2][l] + sums[3][l])) * inverse;
            }
        } else {
            for (l, c) in chunk.iter_mut().enumerate() {
                *c = scores.iter().enumerate().map(|(j, &p)| p * value(j)[columns.start + l]).sum::<f32>() * inverse;
            }
        }
    }
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

/// `sum += p v`, one register.
#[inline(always)]
fn add_scaled(sum: &mut [f32; LANES], p: f32, v: &[f32; LANES]) {
    for l in 0..LANES {
        sum[l] += p * v[l];
    }
}
