//! `SizeList`: the sizes a model is trained for, checked once.

use starbucks_model::{Size, config::BertConfig};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeListError {
    #[error("the size list is empty")]
    Empty,
    #[error("the size list must be ordered by layers, then dims: {0} comes after {1}")]
    Unsorted(Size, Size),
    #[error("size {0} appears twice in the size list")]
    Duplicate(Size),
    #[error("size {size} does not fit the model ({layers} layers, {dims} dims)")]
    TooLarge { size: Size, layers: usize, dims: usize },
    #[error("the last size {last} must be the full model ({layers} layers, {dims} dims)")]
    NotFull { last: Size, layers: usize, dims: usize },
}

/// Distinct sizes ordered by layers, then dims; the last is the full model. The paper's lists
/// grow in both (one-to-one pairs); a list may also cross them (`6,32` beside `1,384`, as the
/// size-list experiment does): the losses read any (layer, dim) cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeList(Vec<Size>);

impl SizeList {
    pub fn new(sizes: Vec<Size>, config: &BertConfig) -> Result<Self, SizeListError> {
        let (layers, dims) = (config.num_hidden_layers, config.hidden_size);
        let Some(&last) = sizes.last() else { return Err(SizeListError::Empty) };
        for (i, &size) in sizes.iter().enumerate() {
            if size.outside(Size::new(layers, dims)).is_some() {
                return Err(SizeListError::TooLarge { size, layers, dims });
            }
            if sizes[..i].contains(&size) {
                return Err(SizeListError::Duplicate(size));
            }
            if i > 0 && (size.layers, size.dims) < (sizes[i - 1].layers, sizes[i - 1].dims) {
                return Err(SizeListError::Unsorted(size, sizes[i - 1]));
            }
        }
        if last != Size::full(config) {
            return Err(SizeListError::NotFull { last, layers, dims });
        }
        Ok(SizeList(sizes))
    }

    pub fn sizes(&self) -> &[Size] {
        &self.0
    }

    /// The full model's size (the last).
    pub fn full(&self) -> Size {
        *self.0.last().expect("non-empty")
    }
}
