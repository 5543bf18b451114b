//! `starbucks serve`: an HTTP server for a 2D Matryoshka model where every request picks its
//! own size, layers as well as dims, and only the layers it asks for are run.
//!
//! TEI's routes (`/embed`, `/embed_all`, `/similarity`, `/tokenize`, `/decode`, `/info`,
//! `/health`, `/metrics`), OpenAI's `/v1/embeddings`, SageMaker's `/ping` and `/invocations`, and
//! an OpenAPI description of them all at `/api-doc/openapi.json`, rendered at `/docs`
//! (`routes/`, one file per API family). Our own accept loop (`listen.rs`) bounds how long a
//! client may take over its headers; the body extractor, over its body. Requests are tokenised
//! on arrival and queued as one job per input; one encoder thread takes batches under a padded-token budget and runs
//! them through [`starbucks_model::Embedder::embed_rows`], which answers each text as soon as
//! its layer is done and runs the deeper layers on the remaining texts only
//! (`docs/serving.md` has the measurements behind this design).
//!
//! This crate depends on `starbucks-model` only: never on data, training, objectives or
//! evaluation code, and it picks no backend (the caller's `B: Backend` does).

mod error;
mod input;
mod listen;
mod metrics;
mod options;
mod queue;
mod routes;
mod server;
mod worker;

pub use error::ApiError;
pub use input::{Input, Inputs, Resolved, parse as parse_body};
pub use options::Options;
pub use queue::{Job, Queue, Schedule};
pub use routes::{EmbedRequest, OpenAiRequest};

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
    options.check().map_err(Error::Options)?;
    let (worker, info) = worker::start::<B>(dir, &options, device)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.http_threads)
        .thread_name("starbucks-http")
        .enable_all()
        .build()?;
    let result = runtime.block_on(server::run(&worker, info, options, backend));
    // Every accepted request has been answered; the encoder thread drains and ends.
    worker.stop();
    result
}
