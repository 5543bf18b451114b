//! Evaluation of 2D Matryoshka embeddings over the layer × dim grid:
//!
//! - [`metrics`]: Spearman (average ranks for ties) and Pearson; nDCG@k, MRR@k and recall@k
//!   with trec_eval's conventions (linear gain, ties broken by document id, `-c` averaging);
//! - [`sts`]: STS suites at every size of a list, or on the full layer × dim grid, from one
//!   encoder pass per batch;
//! - [`retrieval`]: exact inner-product (or cosine) search over a corpus embedded once, in
//!   chunks so memory stays bounded, or re-ranking of a given run; TREC run files per size;
//! - [`cross`]: a measure over query sizes × corpus sizes (a shallow query against a corpus
//!   embedded once at full depth), for STS ([`sts::evaluate_cross`]) and retrieval
//!   ([`retrieval::evaluate_cross`]);
//! - [`report`]: Markdown and JSON tables, SVG heat-maps of the grids, comparisons of models.
//!
//! Depends on `starbucks-model` (the encoder) and `starbucks-data` (the file formats); must
//! never depend on training code (objectives, the train loop).

pub mod cross;
pub mod metrics;
pub mod report;
pub mod retrieval;
pub mod sts;

use std::time::Instant;

use burn::tensor::backend::Backend;
use starbucks_model::{Embedder, Size};

/// Texts per second of embedding `texts` at each size on its own (early exit), after a warm-up.
pub fn throughput<B: Backend, S: AsRef<str>>(
    embedder: &Embedder<B>,
    texts: &[S],
    sizes: &[Size],
) -> starbucks_model::Result<Vec<(Size, f64)>> {
    if let Some(&first) = sizes.first() {
        embedder.embed(&texts[..texts.len().min(32)], first)?;
    }
    sizes
        .iter()
        .map(|&size| {
            let start = Instant::now();
            embedder.embed(texts, size)?;
            Ok((size, texts.len() as f64 / start.elapsed().as_secs_f64()))
        })
        .collect()
}
