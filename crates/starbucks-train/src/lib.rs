//! The train engine of starbucks-rs: the optimiser as the reference runs configure it (AdamW,
//! β 0.9/0.999, eps 1e-8, decoupled weight decay), linear warm-up then linear or cosine decay,
//! global-norm gradient clipping with a finite check (a NaN/Inf step is skipped, not applied),
//! and [`TripletTrainer`], one SRL / 2DMSE / single-size step on NLI triplets from one encoder
//! pass. The pretrain and finetune loops, checkpoints and resumption are built on these by the
//! training issue.
//!
//! Depends on the model, objectives and data crates; must never depend on evaluation or the CLI,
//! and never picks a concrete backend (`B: AutodiffBackend` throughout).

mod optim;
mod step;

pub use optim::{Decay, LrSchedule, StepGradients, adamw, clip_global_norm};
pub use step::{StepReport, TripletTrainer};
