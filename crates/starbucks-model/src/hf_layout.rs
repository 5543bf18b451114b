//! The PyTorch layout of HF weights and burn's: a `Linear`'s weight is `[out, in]` in the file
//! and `[in, out]` in burn. burn-store's adapters (`PyTorchToBurnAdapter` on load,
//! `BurnToPyTorchAdapter` on save) convert it by copying one element's bytes at a time, each
//! write a row apart: the largest cost of loading a model (`docs/benchmarks.md`, "Loading, the
//! copies"). [`Transposed`] wraps either adapter and transposes f32 weights in square blocks
//! instead, leaving everything else (other element types, the LayerNorm renames) to it.

use std::rc::Rc;

use burn::tensor::{DType, Shape, TensorData};
use burn_store::{ModuleAdapter, TensorSnapshot, TensorSnapshotError};

/// burn-store's own name for a `Linear` in a snapshot's container stack.
const LINEAR: &str = "Struct:Linear";
/// Side of the square blocks of the transpose: a block's source and destination (4 KiB each)
/// stay in L1 while the writes go down its columns.
const BLOCK: usize = 32;

/// A PyTorch-layout adapter `A` of burn-store whose `Linear` f32 weights are transposed here.
#[derive(Debug, Clone)]
pub(crate) struct Transposed<A>(pub A);

impl<A: ModuleAdapter + Clone + 'static> ModuleAdapter for Transposed<A> {
    fn adapt(&self, snapshot: &TensorSnapshot) -> TensorSnapshot {
        let linear_weight = snapshot.module_type().as_deref() == Some(LINEAR)
            && snapshot.path_stack.as_ref().and_then(|path| path.last()).is_some_and(|name| name == "weight")
            && snapshot.dtype == DType::F32
            && snapshot.shape.num_dims() == 2;
        if !linear_weight {
            return self.0.adapt(snapshot);
        }
        let (rows, cols) = (snapshot.shape[0], snapshot.shape[1]);
        let data = snapshot.clone_data_fn();
        TensorSnapshot::from_closure(
            Rc::new(move || transpose(data()?, rows, cols)),
            DType::F32,
            Shape::new([cols, rows]),
            snapshot.path_stack.clone().unwrap_or_default(),
            snapshot.container_stack.clone().unwrap_or_default(),
            snapshot.tensor_id.unwrap_or_default(),
        )
    }

    fn get_alternative_param_name(&self, param_name: &str, container_type: &str) -> Option<String> {
        self.0.get_alternative_param_name(param_name, container_type)
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(self.clone())
    }
}

/// `data` (`[rows, cols]` f32) as `[cols, rows]`.
fn transpose(data: TensorData, rows: usize, cols: usize) -> Result<TensorData, TensorSnapshotError> {
    let bad = |why: String| TensorSnapshotError::DataError(why);
    // The file's bytes are read in place when they are aligned for f32, else copied once.
    let copy;
    let values = match data.as_slice::<f32>() {
        Ok(values) => values,
        Err(_) => {
            copy = data.to_vec::<f32>().map_err(|e| bad(format!("{e:?}")))?;
            &copy
        }
    };
    if values.len() != rows * cols {
        return Err(bad(format!("{} values for a [{rows}, {cols}] weight", values.len())));
    }
    Ok(TensorData::new(transposed(values, rows, cols), [cols, rows]))
}

/// Row-major `[rows, cols]` `values` as row-major `[cols, rows]`, a block at a time.
fn transposed(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for r0 in (0..rows).step_by(BLOCK) {
        for c0 in (0..cols).step_by(BLOCK) {
            for r in r0..(r0 + BLOCK).min(rows) {
                for c in c0..(c0 + BLOCK).min(cols) {
                    out[c * rows + r] = values[r * cols + c];
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_transpose_every_shape_as_the_plain_loop() {
        for (rows, cols) in [(1, 1), (3, 5), (32, 32), (33, 70), (200, 7), (0, 4)] {
            let values: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
            let out = transposed(&values, rows, cols);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(out[c * rows + r], values[r * cols + c], "[{rows}, {cols}] at ({r}, {c})");
                }
            }
        }
    }
}
