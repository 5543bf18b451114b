//! The 2D Matryoshka BERT encoder of starbucks-rs.
//!
//! One BERT encoder whose sentence embedding can be cut to the first *n* layers and the first
//! *d* dimensions (a [`Size`]). It loads HuggingFace BERT folders (`config.json`,
//! `model.safetensors`, `tokenizer.json`) or hub ids fetched into the HuggingFace cache
//! ([`resolve_model`], through `starbucks-hub`), runs on any burn backend (`B: Backend`), and
//! offers [`Embedder`] as the entry point for programs that embed text.
//!
//! The root holds what such a program needs: [`Embedder`] and its options ([`Size`],
//! [`Pooling`], [`Precision`]), [`Error`], and export to a sentence-transformers folder
//! ([`export_sentence_transformers`]). The encoder's parts, for the training crates and the
//! server, are under named modules: [`bert`] (one struct per HF module, every layer's hidden
//! states from one pass: [`bert::BertModel::forward`]), [`config`] (`config.json`),
//! [`tokenizer`], [`pooling`], [`weights`] (HF safetensors in and out),
//! [`sentence_transformers`] (its folder files and Dense module), [`ops`] (the encoder's ops
//! with a CPU kernel), [`embedder::Pass`] (layer-by-layer passes the server batches with) and
//! [`keys`] (the wording of an error that names a key).
//!
//! The `flex` feature (on by default) is the CPU path, decided when the crate is compiled:
//! with it, when the caller's backend is burn-flex, the CPU speed layer of `starbucks-kernels`
//! runs the encoder's GELU, dropout, linear, broadcast add and one copy (training included,
//! [`ops`]), and [`Embedder`] runs inference on the CPU encoder (real tokens only, fused
//! blocks), in f32, int8 or bf16 ([`Precision`]). Without it (a GPU-only build:
//! `default-features = false`) every backend, flex included, runs burn's own ops, and
//! [`Embedder::with_precision`] refuses int8 and bf16 with an error that names the feature. The
//! f32 results of the two paths agree to float rounding.
//!
//! This crate must never depend on training code (objectives, data, the train loop,
//! evaluation) nor pick a concrete backend: users embed it in their own programs. Of the other
//! starbucks crates it uses only `starbucks-hub` (and `starbucks-kernels` with `flex`).
//!
//! ```no_run
//! use burn::backend::Flex;
//! use starbucks_model::{Embedder, Size};
//!
//! let device = Default::default();
//! let embedder = Embedder::<Flex>::from_pretrained("assets/all-MiniLM-L6-v2", &device)?;
//! let vectors = embedder.embed(&["A man is playing a guitar."], Size::new(2, 64))?;
//! assert_eq!(vectors[0].len(), 64);
//! # Ok::<(), starbucks_model::Error>(())
//! ```

pub mod bert;
pub mod config;
pub mod embedder;
mod error;
mod export;
mod hf_layout;
mod host;
pub mod keys;
pub mod ops;
pub mod pooling;
mod precision;
pub mod sentence_transformers;
mod size;
pub mod tokenizer;
pub mod weights;

pub use embedder::Embedder;
pub use error::{Error, Result};
pub use export::{ExportOptions, export_sentence_transformers};
pub use pooling::Pooling;
pub use precision::Precision;
pub use size::{Axis, Size};
/// Hub ids for models: a folder at the path wins, else `org/name[@revision]` is fetched into the
/// HuggingFace cache (`HF_ENDPOINT`, `HF_TOKEN`, `HF_HUB_CACHE`, `HF_HUB_OFFLINE` honoured).
pub use starbucks_hub::resolve_model;
/// The CPU kernels' instruction-set tiers, and the variable that holds a process to a lower one
/// (`STARBUCKS_SIMD`, checked by [`simd::Tier::cap`]).
#[cfg(feature = "flex")]
pub use starbucks_kernels::simd;
