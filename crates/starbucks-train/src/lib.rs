//! The train loop of starbucks-rs: SMAE pre-training and SRL / 2DMSE fine-tuning, checkpoints,
//! resumption, metrics.
//!
//! Depends on the model, objectives and data crates; must never depend on evaluation or the CLI,
//! and never picks a concrete backend (`B: AutodiffBackend` throughout).
//!
//! Empty for now: its home in the workspace is laid down by the encoder issue; the training
//! issue fills it.
