//! Row helpers the kernels share: a loop over the rows of a buffer in parallel, and the
//! storage offset of a row of a strided tensor.

use rayon::prelude::*;

/// Calls `op(r, row)` for every row `r` (a run of `width` values) of `values`, `per_task` rows
/// to a rayon task.
pub(crate) fn par_rows<T: Send>(values: &mut [T], width: usize, per_task: usize, op: impl Fn(usize, &mut [T]) + Sync) {
    if width == 0 {
        return;
    }
    values.par_chunks_mut(width * per_task).enumerate().for_each(|(task, rows)| {
        for (i, row) in rows.chunks_mut(width).enumerate() {
            op(task * per_task + i, row);
        }
    });
}

/// The storage offset of row `r` of a tensor starting at `start`, with `dims` and per-dim
/// element `steps`: `r` as a multi-index over every dim but the last.
pub(crate) fn row_offset(mut r: usize, start: usize, dims: &[usize], steps: &[usize]) -> usize {
    let mut offset = start;
    for (&dim, &step) in dims[..dims.len() - 1].iter().zip(steps).rev() {
        offset += (r % dim) * step;
        r /= dim;
    }
    offset
}
