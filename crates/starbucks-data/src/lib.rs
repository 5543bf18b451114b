//! Training and evaluation data for starbucks-rs: FineWeb streaming and masking for SMAE
//! pre-training, NLI triplets and MS MARCO groups for SRL fine-tuning, STS pairs and retrieval
//! corpora for evaluation.
//!
//! Must never depend on burn, the model, the objectives or the train loop: it turns files and
//! streams into plain Rust batches of text and token ids, which the train loop puts on a device.
//!
//! Empty for now: its home in the workspace is laid down by the encoder issue; the data issue
//! fills it.
