//! Training and evaluation data for starbucks-rs, as plain Rust values (text, token ids):
//!
//! - [`fineweb`]: FineWeb documents streamed from Parquet / JSON Lines / JSON shards, local or
//!   over HTTP range requests (HF dataset paths too), resumable by [`fineweb::Position`],
//!   seeded shuffle, sharded by rank;
//! - [`masking`]: SMAE pre-training examples (window, whole-word masks, encoder ⊂ decoder);
//! - [`finetune`]: NLI triplets and pairs, MS MARCO (Tevatron JSONL, official triples), groups;
//! - [`eval`]: STS-B, SemEval STS, SICK, BEIR, TREC qrels and runs, id-text collections;
//! - [`hub`]: datasets by hub id (`hf://datasets/org/name[/config][@revision]`) into the
//!   HuggingFace cache; [`table`]: Parquet and JSON Lines rows read by column name;
//! - [`batching`]: padding to the batch's longest, seeded (length-grouped) batch orders;
//!
//! Every error names the file or URL and the line or row ([`DataError`]).
//!
//! Must never depend on burn, the model, the objectives or the train loop: the train loop puts
//! these values on a device.

pub mod batching;
mod contain;
mod error;
pub mod eval;
pub mod finetune;
pub mod fineweb;
pub mod http;
pub mod hub;
pub mod lines;
pub mod masking;
pub mod table;

pub use error::{DataError, Location, Result};
