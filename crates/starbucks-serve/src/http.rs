//! The HTTP side: routes, authentication, limits, and graceful shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::json;
use starbucks_model::{Pooling, normalize_vector};
use tokio::sync::oneshot;

use crate::Error;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::options::Options;
use crate::queue::{Job, Queue};
use crate::request::{EmbedRequest, EncodingFormat, OpenAiRequest, Resolved, parse};
use crate::worker::{ModelInfo, Worker};

struct App {
    queue: Arc<Queue>,
    metrics: Arc<Metrics>,
    healthy: Arc<std::sync::atomic::AtomicBool>,
    info: Arc<ModelInfo>,
    options: Options,
    backend: &'static str,
    in_flight: AtomicUsize,
}

/// One embedding request counted against `--max-concurrent-requests` while it lives.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn acquire(app: &'a App) -> Result<Self, ApiError> {
        let before = app.in_flight.fetch_add(1, Ordering::SeqCst);
        if before >= app.options.max_concurrent_requests {
            app.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::overloaded(format!(
                "{} requests are in flight, the --max-concurrent-requests limit",
                app.options.max_concurrent_requests
            )));
        }
        Ok(InFlight(&app.in_flight))
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves until SIGTERM or SIGINT, then stops accepting and returns once every accepted
/// request has been answered.
pub async fn run(worker: &Worker, info: Arc<ModelInfo>, options: Options, backend: &'static str) -> Result<(), Error> {
    let address = format!("{}:{}", options.host, options.port);
    let listener = tokio::net::TcpListener::bind(&address).await.map_err(|error| Error::Bind { address, error })?;
    let local = listener.local_addr()?;
    let payload_limit = options.payload_limit;
    let app = Arc::new(App {
        queue: worker.queue.clone(),
        metrics: worker.metrics.clone(),
        healthy: worker.healthy.clone(),
        info,
        options,
        backend,
        in_flight: AtomicUsize::new(0),
    });
    let router = Router::new()
        // TEI also serves its model's task at `/` (huggingface_hub's InferenceClient posts there).
        .route("/", post(embed))
        .route("/embed", post(embed))
        .route("/v1/embeddings", post(openai))
        .route("/info", get(info_route))
        .route("/health", get(health))
        .route("/metrics", get(metrics_route))
        .fallback(|| async { ApiError::not_found("no such route: the routes are POST / and /embed, POST /v1/embeddings, GET /info, GET /health, GET /metrics") })
        .method_not_allowed_fallback(|| async {
            ApiError { status: StatusCode::METHOD_NOT_ALLOWED, message: "method not allowed on this route".into(), error_type: "Validation" }
        })
        .layer(middleware::from_fn_with_state(app.clone(), authenticate))
        .layer(middleware::from_fn_with_state(app.clone(), observe))
        .layer(DefaultBodyLimit::max(payload_limit))
        .with_state(app.clone());
    tracing::info!("listening on http://{local}");
    axum::serve(listener, router).with_graceful_shutdown(stop_signal(app.clone())).await?;
    tracing::info!("stopped: every accepted request was answered");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn stop_signal(app: Arc<App>) {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
    tracing::info!(
        in_flight = app.in_flight.load(Ordering::SeqCst),
        "stopping: no new connections; finishing the accepted requests"
    );
}

/// The metric label of a path.
fn endpoint(path: &str) -> &'static str {
    match path {
        "/" | "/embed" => "embed",
        "/v1/embeddings" => "v1/embeddings",
        "/info" => "info",
        "/health" => "health",
        "/metrics" => "metrics",
        _ => "other",
    }
}

/// Counts every response by endpoint and status, and logs one line per request at debug.
async fn observe(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    app.metrics.request(endpoint(&path), status);
    tracing::debug!(%method, path, status, ms = start.elapsed().as_secs_f64() * 1e3, "request");
    response
}

/// With `--api-key`, every route but `/health` needs `Authorization: Bearer <key>`.
async fn authenticate(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let Some(key) = &app.options.api_key else { return next.run(request).await };
    if request.uri().path() == "/health" {
        return next.run(request).await;
    }
    let given = request.headers().get("authorization").and_then(|v| v.to_str().ok());
    match given.and_then(|v| v.strip_prefix("Bearer ")) {
        None => ApiError::unauthorized("this server needs an `Authorization: Bearer <key>` header").into_response(),
        Some(token) if !same(token.as_bytes(), key.as_bytes()) => {
            ApiError::unauthorized("the API key is wrong").into_response()
        }
        Some(_) => next.run(request).await,
    }
}

/// Compares in time that does not depend on where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The body, or the 413/422 that its reading failed with.
fn body(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(format!("the body is larger than {limit} bytes, this server's limit"))
        } else {
            ApiError::validation(format!("cannot read the body: {}", rejection.body_text()))
        }
    })
}

/// The vectors of `request`'s texts in order, and the tokens they had.
async fn embed_texts(app: &App, request: Resolved, field: &str) -> Result<(Vec<Vec<f32>>, usize), ApiError> {
    let options = &app.options;
    if request.texts.is_empty() {
        return Err(ApiError::empty(format!("field `{field}`: no texts to embed")));
    }
    if request.texts.len() > options.max_client_batch_size {
        return Err(ApiError::too_large(format!(
            "field `{field}`: {} texts, more than this server's --max-client-batch-size {}",
            request.texts.len(),
            options.max_client_batch_size
        )));
    }
    let tokenizer = &app.info.tokenizer;
    let mut jobs = Vec::with_capacity(request.texts.len());
    let mut receivers = Vec::with_capacity(request.texts.len());
    let mut tokens = 0;
    let queued = Instant::now();
    for (i, text) in request.texts.iter().enumerate() {
        let encoded =
            tokenizer.encode_one(text).map_err(|e| ApiError::validation(format!("field `{field}`: text {i}: {e}")))?;
        if encoded.truncated && !request.truncate {
            return Err(ApiError::too_large(format!(
                "field `{field}`: text {i} is longer than {} tokens, this server's input limit (send `truncate: true` to cut it)",
                tokenizer.max_length()
            )));
        }
        tokens += encoded.len();
        let (reply, receiver) = oneshot::channel();
        jobs.push(Job { tokens: encoded, size: request.size, reply, queued });
        receivers.push(receiver);
    }
    app.queue.push(jobs).map_err(|_| ApiError::unavailable("the server is stopping"))?;
    let mut vectors = Vec::with_capacity(receivers.len());
    for receiver in receivers {
        let mut vector = receiver.await.map_err(|_| ApiError::backend("the encoder failed on this batch"))?;
        if request.normalize {
            normalize_vector(&mut vector);
        }
        vectors.push(vector);
    }
    app.metrics.latency(request.size, queued.elapsed());
    Ok((vectors, tokens))
}

fn json_response(value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => (StatusCode::OK, [("content-type", "application/json")], bytes).into_response(),
        Err(e) => ApiError::backend(format!("cannot write the response: {e}")).into_response(),
    }
}

/// TEI's `POST /embed`: a list of float lists.
async fn embed(State(app): State<Arc<App>>, raw: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let _slot = InFlight::acquire(&app)?;
    let raw = body(raw, app.options.payload_limit)?;
    let request = parse::<EmbedRequest>(&raw)?.resolve(app.info.full)?;
    let (vectors, _) = embed_texts(&app, request, "inputs").await?;
    Ok(json_response(&vectors))
}

/// OpenAI's `POST /v1/embeddings`.
async fn openai(State(app): State<Arc<App>>, raw: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let _slot = InFlight::acquire(&app)?;
    let raw = body(raw, app.options.payload_limit)?;
    let (request, format) = parse::<OpenAiRequest>(&raw)?.resolve(app.info.full)?;
    let (vectors, tokens) = embed_texts(&app, request, "input").await?;
    let data: Vec<_> = vectors
        .into_iter()
        .enumerate()
        .map(|(index, vector)| {
            let embedding = match format {
                EncodingFormat::Float => json!(vector),
                EncodingFormat::Base64 => {
                    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                    json!(base64::engine::general_purpose::STANDARD.encode(bytes))
                }
            };
            json!({ "object": "embedding", "index": index, "embedding": embedding })
        })
        .collect();
    Ok(json_response(&json!({
        "object": "list",
        "data": data,
        "model": app.info.name,
        "usage": { "prompt_tokens": tokens, "total_tokens": tokens },
    })))
}

async fn info_route(State(app): State<Arc<App>>) -> Response {
    let info = &app.info;
    let options = &app.options;
    json_response(&json!({
        "model_id": info.name,
        "model_dir": info.dir.display().to_string(),
        "model_type": "bert",
        "num_hidden_layers": info.config.num_hidden_layers,
        "hidden_size": info.config.hidden_size,
        "max_size": [info.full.layers, info.full.dims],
        "trained_sizes": info.trained_sizes.iter().map(|s| [s.layers, s.dims]).collect::<Vec<_>>(),
        "pooling": match info.pooling { Pooling::Mean => "mean", Pooling::Cls => "cls" },
        "folder_normalizes": info.folder_normalizes,
        "max_input_length": info.tokenizer.max_length(),
        "max_batch_tokens": options.max_batch_tokens,
        "max_client_batch_size": options.max_client_batch_size,
        "max_concurrent_requests": options.max_concurrent_requests,
        "payload_limit": options.payload_limit,
        "backend": app.backend,
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

/// 200 while the encoder thread runs (the port only opens once the model is loaded and warm).
async fn health(State(app): State<Arc<App>>) -> Response {
    if app.healthy.load(Ordering::SeqCst) {
        json_response(&json!({ "status": "ok" }))
    } else {
        ApiError::unavailable("the encoder thread has stopped").into_response()
    }
}

async fn metrics_route(State(app): State<Arc<App>>) -> Response {
    let text = app.metrics.render(app.queue.depth(), app.in_flight.load(Ordering::SeqCst));
    (StatusCode::OK, [("content-type", "text/plain; version=0.0.4")], text).into_response()
}
