//! The 2D Matryoshka BERT encoder of starbucks-rs.
//!
//! One BERT encoder whose sentence embedding can be cut to the first *n* layers and the first
//! *d* dimensions (a [`Size`]). It loads HuggingFace BERT folders (`config.json`,
//! `model.safetensors`, `tokenizer.json`) or hub ids fetched into the HuggingFace cache
//! ([`resolve_model`], through `starbucks-hub`), runs on any burn backend (`B: Backend`), returns every
//! layer's hidden states from one pass ([`BertModel::forward`]), and offers [`Embedder`] as the
//! entry point for programs that embed text.
//!
//! With the `flex` feature the CPU speed layer of `starbucks-kernels` joins in when the
//! caller's backend is burn-flex: the encoder's GELU, dropout, linear, broadcast add and one
//! copy run its kernels (training included, `ops.rs`), and [`Embedder`] runs inference on the
//! CPU encoder (`cpu.rs`: real tokens only, fused blocks), in f32 or int8 ([`Precision`]).
//! Every other backend runs burn's own ops; the f32 results agree to float rounding.
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

mod bert;
mod config;
#[cfg(feature = "flex")]
mod cpu;
mod embedder;
mod error;
mod export;
mod ops;
mod pass;
mod pooling;
mod precision;
mod sentence_transformers;
mod size;
mod tokenizer;
mod weights;

pub use bert::{
    BertAttention, BertEmbeddings, BertEncoder, BertInput, BertIntermediate, BertLayer, BertModel, BertOutput,
    BertSelfAttention, BertSelfOutput, attention_bias, dense, settle,
};
pub use config::{BertConfig, HiddenAct};
pub use embedder::Embedder;
pub use error::{Error, Result};
pub use export::{ExportOptions, export_sentence_transformers};
pub use ops::gelu;
pub use pass::Pass;
pub use pooling::{Pooling, normalize, normalize_vector, pool};
pub use precision::Precision;
pub use sentence_transformers::{Dense, DenseConfig, SentenceConfig};
pub use size::Size;
/// Hub ids for models: a folder at the path wins, else `org/name[@revision]` is fetched into the
/// HuggingFace cache (`HF_ENDPOINT`, `HF_TOKEN`, `HF_HUB_CACHE`, `HF_HUB_OFFLINE` honoured).
pub use starbucks_hub::resolve_model;
pub use tokenizer::{Batch, Tokenizer, Tokens};
pub use weights::{
    HF_TO_BURN, LoadReport, expected_weights, load_module, read_safetensors_header, save_hf_safetensors,
};
