//! The encoder's ops that have a faster kernel on burn-flex: GELU, dropout, linear, the
//! attention mask's broadcast add and one copy. Each is burn's own op on every backend; with the
//! `flex` feature, when the backend is flex (with or without autodiff), it runs the kernel of
//! `starbucks-kernels` instead. `docs/benchmarks.md` says what each kernel saves.

use burn::nn::Dropout;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// GELU with the exact (erf) form, `0.5 x (1 + erf(x / √2))`, as BERT's `"gelu"`.
pub fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let x = match starbucks_kernels::gelu(x) {
        Ok(y) => return y,
        Err(x) => x,
    };
    burn::tensor::activation::gelu(x)
}

/// `x` laid out contiguously, for a view (a transpose, a narrow) that is about to be reshaped:
/// burn-flex copies such a view one element at a time. Other backends get `x` back unchanged
/// (their `reshape` copies when it must). No-op in the backward pass.
pub fn contiguous<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let x = match starbucks_kernels::contiguous(x) {
        Ok(y) => return y,
        Err(x) => x,
    };
    x
}

/// `lhs + rhs`, `rhs` broadcast to `lhs`'s shape (same rank, each dim equal or 1), as the
/// attention scores `[batch, heads, seq_q, seq]` plus the padding bias `[batch, 1, 1, seq]`.
pub fn add_broadcast<B: Backend, const D: usize>(lhs: Tensor<B, D>, rhs: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let (lhs, rhs) = match starbucks_kernels::add_broadcast(lhs, rhs) {
        Ok(sum) => return sum,
        Err(pair) => pair,
    };
    lhs + rhs
}

/// `dropout.forward(x)`. On autodiff over flex the keep mask is a counter-based hash of a seed
/// drawn from the backend's random stream (so `Backend::seed` still makes runs repeatable), and
/// the backward pass rehashes it instead of storing it.
pub fn dropout<B: Backend, const D: usize>(dropout: &Dropout, x: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let x = match starbucks_kernels::dropout(x, dropout.prob) {
        Ok(y) => return y,
        Err(x) => x,
    };
    dropout.forward(x)
}

/// `x @ weight + bias` for rows `x` `[rows, in]` and `weight` `[in, out]` (burn's `Linear`
/// layout). On flex the output starts as the bias rows and one product accumulates into it.
pub fn linear<B: Backend>(x: Tensor<B, 2>, weight: Tensor<B, 2>, bias: Option<Tensor<B, 1>>) -> Tensor<B, 2> {
    #[cfg(feature = "flex")]
    let (x, weight, bias) = match starbucks_kernels::linear(x, weight, bias) {
        Ok(y) => return y,
        Err(inputs) => inputs,
    };
    let y = x.matmul(weight);
    match bias {
        Some(bias) => y + bias.unsqueeze(),
        None => y,
    }
}
