//! `starbucks serve`: an HTTP server for a 2D Matryoshka model where every request picks its
//! own size, layers as well as dims, and only the layers it asks for are run.
//!
//! TEI-compatible `POST /embed`, OpenAI-compatible `POST /v1/embeddings`, `GET /info`,
//! `GET /health` and `GET /metrics` (Prometheus). Requests are tokenised on arrival and queued
//! as one job per text; one encoder thread takes batches under a padded-token budget and runs
//! them through [`starbucks_model::Embedder::embed_rows`], which answers each text as soon as
//! its layer is done and runs the deeper layers on the remaining texts only
//! (`docs/serving.md` has the measurements behind this design).
//!
//! This crate depends on `starbucks-model` only: never on data, training, objectives or
//! evaluation code, and it picks no backend (the caller's `B: Backend` does).

mod error;
mod http;
mod metrics;
mod options;
mod queue;
mod request;
mod worker;

pub use error::ApiError;
pub use options::Options;
pub use queue::{Job, Queue, Schedule};
pub use request::{EmbedRequest, OpenAiRequest, Resolved, parse as parse_body};

use std::path::Path;

use burn::tensor::backend::Backend;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Model(#[from] starbucks_model::Error),
    #[error("{0}")]
    Options(String),
    #[error("cannot listen on {address}: {error}")]
    Bind { address: String, error: std::io::Error },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Loads the model in `dir`, warms it, opens the port, and serves until SIGTERM or SIGINT;
/// then stops accepting, answers every accepted request, and returns. `backend` names the
/// backend in `/info`.
pub fn serve<B: Backend>(dir: &Path, options: Options, backend: &'static str, device: B::Device) -> Result<(), Error> {
    let (worker, info) = worker::start::<B>(dir, &options, device)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.http_threads)
        .thread_name("starbucks-http")
        .enable_all()
        .build()?;
    let result = runtime.block_on(http::run(&worker, info, options, backend));
    // Every accepted request has been answered; the encoder thread drains and ends.
    worker.stop();
    result
}
