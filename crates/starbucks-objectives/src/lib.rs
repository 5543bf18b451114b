//! The training objectives of starbucks-rs: SRL with KL alignment, SMAE, and the 2DMSE
//! baseline, on burn tensors of any `B: Backend`.
//!
//! Depends on `starbucks-model` only; must never depend on the data crate, the train loop or
//! evaluation.
//!
//! Empty for now: its home in the workspace is laid down by the encoder issue; the objectives
//! issue fills it.
