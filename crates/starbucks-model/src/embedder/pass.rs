//! `Pass`: a forward pass run one layer at a time, whose texts each stop at their own size.
//!
//! After each layer, the texts whose size ends there are pooled, cut to their dims and handed
//! back, and they leave the pass: the deeper layers run on the others alone, cut to their
//! longest text. A pass may take in another one that has reached the same layer
//! ([`Pass::join`]), so a server can start a new batch while an older one is half-way and merge
//! them, instead of making new texts wait for the older batch's last layers.
//!
//! On the CPU encoder (the flex backend) a pass holds its texts' real tokens only, one text
//! after another; elsewhere, padded burn tensors.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use super::Embedder;
use crate::bert::attention_bias;
use crate::error::Result;
use crate::host::values;
use crate::size::Size;
use crate::tokenizer::Batch;

/// The hidden states of the texts still running, after layer [`Pass::layer`].
#[derive(Debug)]
pub struct Pass<B: Backend> {
    hidden: Hidden<B>,
    lengths: Vec<usize>,
    sizes: Vec<Size>,
    /// The caller's label of each row, handed back with its vector.
    ids: Vec<u64>,
    layer: usize,
}

#[derive(Debug)]
enum Hidden<B: Backend> {
    /// `hidden` `[rows, seq, hidden]`, `mask` `[rows, seq]` (1.0 for tokens).
    Padded { hidden: Tensor<B, 3>, mask: Tensor<B, 2> },
    #[cfg(feature = "flex")]
    Rows(super::cpu::Rows),
}

impl<B: Backend> Pass<B> {
    /// The last layer run (0: the embeddings).
    pub fn layer(&self) -> usize {
        self.layer
    }

    pub fn rows(&self) -> usize {
        self.ids.len()
    }

    /// Tokens of the longest text still running: the pass is `rows() × longest()` wide.
    pub fn longest(&self) -> usize {
        self.lengths.iter().copied().max().unwrap_or(0)
    }

    /// Every text has had its vector.
    pub fn is_done(&self) -> bool {
        self.ids.is_empty()
    }

    /// Takes in `other`'s texts; both must have run the same layers. The shorter pass is
    /// padded to the longer's length (masked, so the vectors do not change).
    ///
    /// Panics when the layers differ.
    pub fn join(&mut self, other: Pass<B>) {
        assert_eq!(self.layer, other.layer, "passes join at the same layer");
        match (&mut self.hidden, other.hidden) {
            (Hidden::Padded { hidden, mask }, Hidden::Padded { hidden: other_hidden, mask: other_mask }) => {
                let seq = hidden.dims()[1].max(other_hidden.dims()[1]);
                *hidden = Tensor::cat(vec![pad_seq(hidden.clone(), seq), pad_seq(other_hidden, seq)], 0);
                *mask = Tensor::cat(vec![pad_seq(mask.clone(), seq), pad_seq(other_mask, seq)], 0);
            }
            #[cfg(feature = "flex")]
            (Hidden::Rows(rows), Hidden::Rows(other_rows)) => rows.append(other_rows),
            #[cfg(feature = "flex")]
            _ => unreachable!("the passes of one embedder hold the same kind of hidden states"),
        }
        self.lengths.extend(other.lengths);
        self.sizes.extend(other.sizes);
        self.ids.extend(other.ids);
    }
}

/// `x` `[rows, len, …]` padded with zeros along dim 1 to `seq`.
fn pad_seq<B: Backend, const D: usize>(x: Tensor<B, D>, seq: usize) -> Tensor<B, D> {
    let mut dims = x.dims();
    if dims[1] == seq {
        return x;
    }
    dims[1] = seq - dims[1];
    let zeros = Tensor::zeros(dims, &x.device());
    Tensor::cat(vec![x, zeros], 1)
}

impl<B: Backend> Embedder<B> {
    /// Starts a pass over `batch` (its embeddings, layer 0): row `i` runs to `sizes[i]` and is
    /// handed back under `ids[i]`.
    ///
    /// Panics unless there is one size and one id per row.
    pub fn start_pass(&self, batch: &Batch, sizes: &[Size], ids: Vec<u64>) -> Result<Pass<B>> {
        assert_eq!((sizes.len(), ids.len()), (batch.batch_size, batch.batch_size), "one size and id per row");
        for size in sizes {
            size.check_within(self.full_size())?;
        }
        let hidden = match self.cpu() {
            #[cfg(feature = "flex")]
            Some(cpu) => Hidden::Rows(cpu.start(batch)),
            _ => {
                let input = crate::bert::BertInput::<B>::from_batch(batch, self.device());
                let hidden = self.model().embeddings.forward(input.input_ids, input.token_type_ids);
                Hidden::Padded { hidden, mask: input.attention_mask }
            }
        };
        Ok(Pass { hidden, lengths: batch.lengths(), sizes: sizes.to_vec(), ids, layer: 0 })
    }

    /// Runs the pass's next layer; then every text whose size ends at it goes to `done(id,
    /// vector)` (pooled, cut to its dims, not normalised: [`crate::pooling::normalize_vector`]) and
    /// leaves the pass.
    pub fn step(&self, pass: &mut Pass<B>, mut done: impl FnMut(u64, Vec<f32>)) {
        if pass.is_done() {
            return;
        }
        let layer = pass.layer + 1;
        pass.layer = layer;
        let (finished, rest): (Vec<usize>, Vec<usize>) =
            (0..pass.ids.len()).partition(|&i| pass.sizes[i].layers == layer);
        let keep = |v: &[usize]| rest.iter().map(|&i| v[i]).collect::<Vec<_>>();
        let pooled = match &mut pass.hidden {
            Hidden::Padded { hidden, mask } => {
                *hidden = self.model().encoder.layer[layer - 1].forward(hidden.clone(), attention_bias(mask.clone()));
                if finished.is_empty() {
                    return;
                }
                let pick = |rows: &[usize]| {
                    let rows: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
                    let n = rows.len();
                    Tensor::<B, 1, Int>::from_data(TensorData::new(rows, [n]), self.device())
                };
                let pooled = if rest.is_empty() {
                    self.pool(hidden.clone(), mask.clone())
                } else {
                    let rows = pick(&finished);
                    self.pool(hidden.clone().select(0, rows.clone()), mask.clone().select(0, rows))
                };
                if !rest.is_empty() {
                    let seq = keep(&pass.lengths).into_iter().max().unwrap_or(0);
                    let rows = pick(&rest);
                    *hidden = hidden.clone().select(0, rows.clone()).narrow(1, 0, seq);
                    *mask = mask.clone().select(0, rows).narrow(1, 0, seq);
                }
                pooled
            }
            #[cfg(feature = "flex")]
            Hidden::Rows(rows) => {
                self.cpu().expect("a pass of rows comes from the CPU encoder").layer(rows, layer);
                if finished.is_empty() {
                    return;
                }
                let done_rows = if rest.is_empty() { rows.clone() } else { rows.select(&finished) };
                let pooled = self.pooled_rows(&done_rows);
                if !rest.is_empty() {
                    *rows = rows.select(&rest);
                }
                pooled
            }
        };
        let width = pooled.dims()[1];
        let values: Vec<f32> = values(pooled);
        for (row, &i) in values.chunks(width).zip(&finished) {
            done(pass.ids[i], row[..pass.sizes[i].dims].to_vec());
        }
        pass.lengths = keep(&pass.lengths);
        pass.sizes = rest.iter().map(|&i| pass.sizes[i]).collect();
        pass.ids = rest.iter().map(|&i| pass.ids[i]).collect();
    }

    /// Embeds each row of `batch` at its own size in one [`Pass`]: `done(row, vector)` as
    /// soon as the row's layer is done, the deeper layers on the remaining rows only.
    pub fn embed_rows(&self, batch: &Batch, sizes: &[Size], mut done: impl FnMut(usize, Vec<f32>)) -> Result<()> {
        let mut pass = self.start_pass(batch, sizes, (0..batch.batch_size as u64).collect())?;
        while !pass.is_done() {
            self.step(&mut pass, |id, vector| done(id as usize, vector));
        }
        Ok(())
    }

    /// Every real token's hidden state after `layers` layers (TEI's `embed_all`), text by
    /// text: `result[text][token]` is `hidden_size` wide, before pooling and any Dense module.
    pub fn token_vectors(&self, batch: &Batch, layers: usize) -> Result<Vec<Vec<Vec<f32>>>> {
        let deepest = self.config().num_hidden_layers;
        Size::new(layers, 1).check_within(Size::new(deepest, 1))?;
        let lengths = batch.lengths();
        match self.cpu() {
            #[cfg(feature = "flex")]
            Some(cpu) => {
                let mut rows = cpu.start(batch);
                for layer in 1..=layers {
                    cpu.layer(&mut rows, layer);
                }
                Ok((0..rows.texts()).map(|i| rows.tokens(i).map(<[f32]>::to_vec).collect()).collect())
            }
            _ => {
                let input = crate::bert::BertInput::<B>::from_batch(batch, self.device());
                let mut hidden = self.model().embeddings.forward(input.input_ids, input.token_type_ids);
                let bias = attention_bias(input.attention_mask);
                for layer in &self.model().encoder.layer[..layers] {
                    hidden = layer.forward(hidden, bias.clone());
                }
                let [_, seq, width] = hidden.dims();
                let values = values(hidden);
                let texts = values.chunks(seq * width).zip(lengths);
                Ok(texts.map(|(text, n)| text.chunks(width).take(n).map(<[f32]>::to_vec).collect()).collect())
            }
        }
    }
}
