//! Multi-head self-attention over sequences of different lengths, without padding: the rows of
//! every sequence lie one after another, and each sequence attends over its own rows only, so no
//! padded `[batch, heads, seq, seq]` score tensor is made.
//!
//! One rayon task per sequence, or per (sequence, head) when there are too few sequences to
//! keep every core busy, so that a single long text still runs on every core. A task first lays
//! out its heads, reading the sequence's rows once, in order: each head's keys transposed
//! (`[head_dim, keys]`, in whole chunks of [`LANES`] keys), so that a query's scores against a
//! chunk are one register summed over the head's dims, with no horizontal sums; its queries in
//! tiles of [`QUERIES`], scored together as a matrix product's register tile, so that each
//! chunk of keys is read once for all of them; its values, each row read once for a tile's
//! context. Keys past a sequence's end, in its last chunk, are scored and dropped before the
//! softmax. Most sentences are shorter than one chunk: scoring them key by key, a dot product
//! and a horizontal sum each, took most of attention's time (`docs/benchmarks.md`).

use rayon::prelude::*;

use crate::activation::exp_f32;
use crate::scratch;
use crate::simd::{LANES, lanes, simd};

/// Queries per register tile: 6 rows × 2 AVX2 registers of sums, 2 of keys or values and a
/// broadcast fit AVX2's 16 registers (as the products' tiles).
const QUERIES: usize = 6;

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
    // Each of rayon's jobs keeps one `Work` for the tasks it runs: allocating and zeroing a
    // task's buffers cost as much as its arithmetic.
    (0..sequences * groups).into_par_iter().for_each_init(Work::default, |work, task| {
        let (s, group) = (task / groups, task % groups);
        let (start, len) = (offsets[s], offsets[s + 1] - offsets[s]);
        let width = heads_per_task * head_dim;
        let first = group * width;
        work.load(&qkv[start * 3 * hidden..(start + len) * 3 * hidden], [hidden, heads_per_task, head_dim], first);
        for head in 0..heads_per_task {
            attend_head(work, head);
        }
        for (i, row) in work.context.chunks_exact(width).enumerate() {
            // SAFETY: row start + i, this group's columns: inside the buffer's capacity, and
            // written by this task alone (tasks differ in sequence, so rows, or in group, so
            // columns).
            unsafe { out.at((start + i) * hidden + first).copy_from_nonoverlapping(row.as_ptr(), width) };
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

/// One task's sequence and heads, laid out for the tiles, and its buffers, kept from task to
/// task. The padding (keys past the sequence, queries past it in the last tile) holds whatever
/// an earlier task left: no query of the padding is read, and the padding keys' scores are
/// computed with their chunk's and dropped before the softmax sums.
#[derive(Default)]
pub(crate) struct Work {
    len: usize,
    /// `len` rounded up to whole chunks of [`LANES`] keys.
    padded: usize,
    heads: usize,
    head_dim: usize,
    /// Each head's keys transposed, `[heads][head_dim, padded]`.
    keys: Vec<f32>,
    /// Each head's queries in tiles, `[heads][tiles][head_dim][QUERIES]`: a tile's broadcasts
    /// read one stream at fixed offsets, as the products' packed inputs.
    queries: Vec<f32>,
    /// Each head's values, `[heads][len, head_dim]`.
    values: Vec<f32>,
    /// A tile's scores, `[QUERIES, padded]`.
    scores: Vec<f32>,
    /// A tile's probabilities, transposed and normalised: `[len][QUERIES]`.
    probabilities: Vec<f32>,
    /// The context, `[len, heads × head_dim]`: the task's columns of its rows of the output.
    context: Vec<f32>,
}

impl Work {
    /// Lays out `heads` heads of `head_dim` at columns `first..` of a sequence's `qkv` rows
    /// (`[len, 3 hidden]`), reading the rows in order: the product that wrote them has left
    /// most in L3 or memory, and read a head at a time, 128 bytes of every 4.6 KB row, the
    /// loads missed most.
    fn load(&mut self, qkv: &[f32], [hidden, heads, head_dim]: [usize; 3], first: usize) {
        let len = qkv.len() / (3 * hidden);
        let (padded, tiles) = (len.next_multiple_of(LANES), len.div_ceil(QUERIES));
        (self.len, self.padded, self.heads, self.head_dim) = (len, padded, heads, head_dim);
        self.keys.resize(heads * head_dim * padded, 0.0);
        self.queries.resize(heads * tiles * head_dim * QUERIES, 0.0);
        self.values.resize(heads * len * head_dim, 0.0);
        self.scores.resize(QUERIES * padded, 0.0);
        self.probabilities.resize(len * QUERIES, 0.0);
        self.context.resize(len * heads * head_dim, 0.0);
        for (i, row) in qkv.chunks_exact(3 * hidden).enumerate() {
            let part = |p: usize| row[p * hidden + first..].chunks_exact(head_dim);
            for (h, ((q, k), v)) in part(0).zip(part(1)).zip(part(2)).take(heads).enumerate() {
                let tile = (h * tiles + i / QUERIES) * head_dim * QUERIES;
                let queries = self.queries[tile + i % QUERIES..].iter_mut().step_by(QUERIES);
                queries.zip(q).for_each(|(slot, &value)| *slot = value);
                let keys = self.keys[h * head_dim * padded + i..].iter_mut().step_by(padded);
                keys.zip(k).for_each(|(slot, &value)| *slot = value);
                self.values[(h * len + i) * head_dim..][..head_dim].copy_from_slice(v);
            }
        }
    }
}

// Head `head` of the task's into its columns of `work.context`. Each tile of queries is a
// const-generic call, so that its sums stay in registers.
simd!(attend_head(work: &mut Work, head: usize) {
    for i0 in (0..work.len).step_by(QUERIES) {
        match (work.len - i0).min(QUERIES) {
            6 => attend::<6>(work, head, i0),
            5 => attend::<5>(work, head, i0),
            4 => attend::<4>(work, head, i0),
            3 => attend::<3>(work, head, i0),
            2 => attend::<2>(work, head, i0),
            1 => attend::<1>(work, head, i0),
            _ => unreachable!("tiles are 1 to {QUERIES} queries"),
        }
    }
});

/// Scores, softmax and context of the `R` queries from `i0` of `head`.
#[inline(always)]
fn attend<const R: usize>(work: &mut Work, head: usize, i0: usize) {
    let (len, padded, head_dim) = (work.len, work.padded, work.head_dim);
    let tiles = len.div_ceil(QUERIES);
    let queries = &work.queries[(head * tiles + i0 / QUERIES) * head_dim * QUERIES..][..head_dim * QUERIES];
    let keys = &work.keys[head * head_dim * padded..][..head_dim * padded];
    // Scores: each chunk of keys against every query of the tile, summed over the dims.
    let (queries, _) = queries.as_chunks::<QUERIES>();
    for c in (0..padded).step_by(LANES) {
        let sums = tile_sums::<R>(queries, keys, padded, c);
        for (r, sum) in sums.iter().enumerate() {
            work.scores[r * padded + c..][..LANES].copy_from_slice(sum);
        }
    }
    // Softmax over the real keys, each query's probabilities then in its column.
    for r in 0..R {
        let row = &mut work.scores[r * padded..][..padded];
        let larger = |m: f32, s: f32| if s > m { s } else { m };
        let max = lanes(&row[..len], f32::NEG_INFINITY, larger, larger);
        row.iter_mut().for_each(|s| *s = exp_f32(*s - max));
        row[len..].fill(0.0);
        let add = |a: f32, b: f32| a + b;
        let inverse = 1.0 / lanes(row, 0.0, add, add);
        for (j, &p) in row[..len].iter().enumerate() {
            work.probabilities[j * QUERIES + r] = p * inverse;
        }
    }
    // Context: each value row read once for every query of the tile.
    let values = &work.values[head * len * head_dim..][..len * head_dim];
    let (probabilities, _) = work.probabilities.as_chunks::<QUERIES>();
    let context = |r: usize, d: usize| (i0 + r) * work.heads * head_dim + head * head_dim + d;
    let whole = head_dim - head_dim % LANES;
    for d0 in (0..whole).step_by(LANES) {
        let sums = tile_sums::<R>(probabilities, values, head_dim, d0);
        for (r, sum) in sums.iter().enumerate() {
            work.context[context(r, d0)..][..LANES].copy_from_slice(sum);
        }
    }
    for d in whole..head_dim {
        for r in 0..R {
            let terms = probabilities.iter().zip(values.chunks_exact(head_dim));
            let sum = terms.fold(0f32, |sum, (p, value)| p[r].mul_add(value[d], sum));
            work.context[context(r, d)] = sum;
        }
    }
}

/// A register tile's sums: for each of its `R` rows, `Σ_t a[t][r] · b[t][at..at + LANES]` over
/// the rows `t` of `a` and of `b` (`width` apart). Scores: `a` the tile's queries by dim, `b`
/// the transposed keys; context: `a` the probabilities by key, `b` the values.
#[inline(always)]
fn tile_sums<const R: usize>(a: &[[f32; QUERIES]], b: &[f32], width: usize, at: usize) -> [[f32; LANES]; R] {
    let mut sums = [[0f32; LANES]; R];
    for (a, row) in a.iter().zip(b.chunks_exact(width)) {
        let chunk: &[f32; LANES] = row[at..][..LANES].try_into().expect("LANES values");
        for r in 0..R {
            add_scaled(&mut sums[r], a[r], chunk);
        }
    }
    sums
}

/// `sum += p v`, one register (fused multiply-adds where the tier has them).
#[inline(always)]
fn add_scaled(sum: &mut [f32; LANES], p: f32, v: &[f32; LANES]) {
    for l in 0..LANES {
        sum[l] = p.mul_add(v[l], sum[l]);
    }
}
