//! The training of starbucks-rs: SMAE pre-training and SRL / 2DMSE / single-size fine-tuning,
//! from a TOML config to a trained model folder.
//!
//! - [`config`]: the run's settings, layered (file, `STARBUCKS_…` environment, `--set`), checked;
//! - [`engine`]: one optimiser step over gradient-accumulated micro-batches of a [`Task`] from a
//!   [`DataSource`], averaged over data-parallel peers with burn's collective all-reduce
//!   (AdamW with PyTorch's eps, warm-up + linear/cosine decay, global-norm clipping, NaN/Inf
//!   steps skipped and counted, randomness derived from (seed, step));
//! - [`finetune`] and [`pretrain`]: the two tasks (NLI triplets / retrieval groups; SMAE on
//!   streamed documents);
//! - [`checkpoint`]: atomic checkpoints with a hash manifest, resumption from the newest valid;
//! - [`lock`]: one run per output folder;
//! - [`run`]: a whole run with progress, logs, `metrics.jsonl` (typed in [`run::metrics`]), periodic evaluation through a
//!   caller's function, and the final model folder.
//!
//! Depends on the model, objectives and data crates; must never depend on evaluation or the CLI
//! (the caller passes its evaluator in), and never picks a concrete backend.

pub mod checkpoint;
pub mod config;
pub mod engine;
mod error;
pub mod finetune;
pub mod lock;
mod optim;
pub mod pretrain;
pub mod run;

pub use config::RunConfig;
pub use engine::{DataSource, Engine, Micro, Peer, StepReport, Task};
pub use error::{Error, Result};
pub use optim::{Decay, LrSchedule, StepGradients, adamw, clip_global_norm};
pub use run::metrics::MetricsLine;
pub use run::{EvalFn, RunOptions, Summary, run};
