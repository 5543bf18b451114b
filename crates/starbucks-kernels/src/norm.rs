//! LayerNorm of a residual sum, row by row: `x ← LayerNorm(x + residual)`, the closing step of
//! each BERT block, in one pass over the rows instead of an add and burn's several reductions.

use rayon::prelude::*;

use crate::simd::{lanes, simd};

/// Rows per rayon task.
const TASK_ROWS: usize = 32;

/// A LayerNorm's weight (`gamma`), bias (`beta`) and epsilon.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub eps: f32,
}

impl LayerNorm {
    /// `x ← LayerNorm(x + residual)` over rows of `gamma.len()` values (`residual`: same shape
    /// as `x`, or `None`).
    pub fn forward(&self, x: &mut [f32], residual: Option<&[f32]>) {
        let width = self.gamma.len();
        assert!(width > 0 && x.len().is_multiple_of(width), "rows of {width} values expected, found {}", x.len());
        if let Some(residual) = residual {
            assert_eq!(residual.len(), x.len(), "the residual differs in shape");
        }
        x.par_chunks_mut(width * TASK_ROWS).enumerate().for_each(|(task, rows)| {
            for (i, row) in rows.chunks_mut(width).enumerate() {
                if let Some(residual) = residual {
                    let start = (task * TASK_ROWS + i) * width;
                    add_row(row, &residual[start..start + width]);
                }
                normalize_row(row, &self.gamma, &self.beta, self.eps);
            }
        });
    }
}

simd!(add_row(row: &mut [f32], residual: &[f32]) {
    for (v, r) in row.iter_mut().zip(residual) {
        *v += r;
    }
});

simd!(normalize_row(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let n = row.len() as f32;
    let add = |a: f32, b: f32| a + b;
    let mean = lanes(row, 0.0, add, add) / n;
    let var = lanes(row, 0.0, |a, v| a + (v - mean) * (v - mean), add) / n;
    let inv = 1.0 / (var + eps).sqrt();
    for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
        *v = (*v - mean) * inv * g + b;
    }
});
