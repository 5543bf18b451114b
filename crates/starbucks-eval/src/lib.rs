//! Evaluation of 2D Matryoshka embeddings over the layer × dim grid: STS (Spearman, Pearson)
//! and retrieval (MRR@10, nDCG@10, recall), with Markdown, JSON and heat-map reports.
//!
//! Depends on `starbucks-model` only; must never depend on training code (objectives, data
//! loading for training, the train loop).
//!
//! Empty for now: its home in the workspace is laid down by the encoder issue; the evaluation
//! issue fills it.
