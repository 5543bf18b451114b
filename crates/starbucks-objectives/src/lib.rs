//! The training objectives of starbucks-rs, on burn tensors of any `B: Backend`, differentiable:
//!
//! - [`losses`]: the base losses (MultipleNegativesRanking, CoSENT, retrieval cross-entropy)
//!   and the KL alignment term;
//! - [`SizeList`]: a checked list of (layers, dims) sizes, smallest first, the full model last;
//! - [`Objective`]: SRL, SRL with a deep corpus ([`srl_deep`]), 2DMSE and single-size training
//!   behind one interface, reading every size from one encoder pass ([`Embeddings`] holds each
//!   layer's pooled embeddings);
//! - [`smae`]: SMAE pre-training: the MLM head with first-d-columns slicing, the one-layer
//!   decoder, masked-position-only logits.
//!
//! Depends on `starbucks-model` only; must never depend on the data crate, the train loop or
//! evaluation.

pub mod losses;
mod objective;
mod sizes;
pub mod smae;

pub use objective::{
    Embeddings, LossOutput, Mse2dConfig, Mse2dDraw, Objective, SrlWeights, labels, mse2d, srl, srl_deep,
};
pub use sizes::{SizeList, SizeListError};
