//! The CPU speed layer of starbucks-rs: kernels for the burn-flex backend where burn-flex 0.21
//! has no fast op, and the kernels of the CPU inference path.
//!
//! Two kinds of kernel, one family a file:
//! - ops on burn tensors ([`gelu`], [`dropout`], [`linear`], [`add_broadcast`], [`contiguous`]):
//!   each takes the caller's `Tensor<B, D>` and runs our kernel when `B` is flex or autodiff over
//!   flex (with its own autodiff op for the backward pass), or hands the inputs back (`Err`) so
//!   that the caller runs burn's own op; [`f32_values`] reads a flex tensor out the same way;
//! - kernels on slices for inference ([`Linear`], [`quant`], [`attention`], [`norm`]): matrix
//!   products in f32, bf16 and int8, attention over sequences of different lengths without
//!   padding, LayerNorm, used by the model crate's CPU encoder. Their buffers come from
//!   [`scratch`], and go back to it with [`scratch::keep`].
//!
//! Vectorised loops are compiled for AVX-512, AVX2 + FMA and the baseline and picked at run time
//! (`simd.rs`); work is split over rayon's threads.
//!
//! This crate knows no model: it must never depend on the starbucks crates, and the model crate
//! depends on it only behind its `flex` feature.

mod activation;
mod add;
pub mod attention;
mod copy;
mod dispatch;
mod dropout;
mod linear;
pub mod norm;
pub mod quant;
mod rows;
pub mod scratch;
pub mod simd;

pub use activation::{
    erf_f32, exp_f32, gelu, gelu_f32, gelu_grad_f32, gelu_in_place, gelu_tanh_in_place, relu_in_place,
};
pub use add::add_broadcast;
pub use copy::{contiguous, f32_values};
pub use dropout::{dropout, splitmix64};
pub use linear::{Linear, LinearInputs, linear};

/// Elements per rayon task of an element-wise loop: large enough to amortise the task, small
/// enough to split a `[rows, 1536]` FFN activation over every core.
const CHUNK: usize = 16 * 1024;
