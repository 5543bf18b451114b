//! The routes, one file per API family (TEI, OpenAI, SageMaker, the OpenAPI docs), and what
//! their handlers share: the app state, the JSON body extractor, inputs embedded through the
//! queue, and TEI's timing headers.

mod docs;
mod openai;
mod sagemaker;
mod tei;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use starbucks_model::{pooling::normalize_vector, tokenizer::Tokens};
use tokio::sync::oneshot;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::ApiError;
use crate::input::{Input, Resolved, check_ids, parse};
use crate::metrics::Metrics;
use crate::options::Options;
use crate::queue::{Job, Output, Queue};
use crate::worker::ModelInfo;

pub use openai::OpenAiRequest;
pub use tei::EmbedRequest;

/// What every handler reads.
pub struct App {
    pub queue: Arc<Queue>,
    pub metrics: Arc<Metrics>,
    pub healthy: Arc<AtomicBool>,
    pub info: Arc<ModelInfo>,
    pub options: Options,
    pub backend: &'static str,
    pub in_flight: AtomicUsize,
}

/// Every route: TEI's, OpenAI's, SageMaker's and the docs, behind the API key (but the health
/// checks and docs, as TEI), the metrics counter, the body limit and CORS.
pub fn router(app: Arc<App>) -> Router {
    let protected = tei::routes()
        .merge(openai::routes())
        .merge(sagemaker::invocations())
        .layer(middleware::from_fn_with_state(app.clone(), authenticate));
    let public = tei::health_routes().merge(sagemaker::ping());
    let router = Router::new()
        .merge(protected)
        .merge(public)
        .with_state(app.clone())
        .merge(docs::routes(&app))
        .fallback(|| async {
            ApiError::not_found(
                "no such route: see GET /docs or /api-doc/openapi.json (POST /embed, /embed_all, /similarity, \
                 /tokenize, /decode, /v1/embeddings, /embeddings, /invocations; GET /info, /health, /ping, /metrics)",
            )
        })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed("method not allowed on this route") })
        .layer(middleware::from_fn_with_state(app.clone(), observe))
        .layer(DefaultBodyLimit::max(app.options.payload_limit));
    match cors(&app.options.cors_allow_origin) {
        Some(layer) => router.layer(layer),
        None => router,
    }
}

/// `/metrics` alone, for `--prometheus-port`.
pub fn metrics_router(app: Arc<App>) -> Router {
    Router::new().route("/metrics", get(tei::metrics)).with_state(app)
}

/// TEI's CORS: GET and POST from the given origins (`*`: any); `None` without origins.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        // The CLI checked that each origin is a valid header value.
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION])
            .allow_origin(allow),
    )
}

/// The metric label of a request (`GET /` is TEI's health check, `POST /` its embed).
fn endpoint(method: &Method, path: &str) -> &'static str {
    match path {
        "/" if method == Method::GET => "health",
        "/" | "/embed" | "/invocations" => "embed",
        "/embed_all" => "embed_all",
        "/similarity" => "similarity",
        "/tokenize" => "tokenize",
        "/decode" => "decode",
        "/v1/embeddings" | "/embeddings" => "v1/embeddings",
        "/info" => "info",
        "/health" | "/ping" => "health",
        "/metrics" => "metrics",
        _ if path.starts_with("/docs") || path.starts_with("/api-doc") => "docs",
        _ => "other",
    }
}

/// Counts every response by endpoint and status, and logs one line per request at debug.
async fn observe(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    app.metrics.request(endpoint(&method, &path), status);
    tracing::debug!(%method, path, status, ms = start.elapsed().as_secs_f64() * 1e3, "request");
    response
}

/// With `--api-key`, the protected routes need `Authorization: Bearer <key>`.
async fn authenticate(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let Some(key) = &app.options.api_key else { return next.run(request).await };
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

/// A JSON body read within `--payload-limit` (else 413) and `--body-timeout` (else 408), and
/// parsed so that every error names its field (422).
pub struct JsonBody<T>(pub T);

impl<T: serde::de::DeserializeOwned> FromRequest<Arc<App>> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, app: &Arc<App>) -> Result<Self, ApiError> {
        let options = &app.options;
        let read = Bytes::from_request(request, app);
        let bytes = match tokio::time::timeout(options.body_timeout.0, read).await {
            Err(_) => {
                return Err(ApiError::timeout(format!(
                    "the body did not arrive within {} s, this server's --body-timeout",
                    options.body_timeout.0.as_secs_f64()
                )));
            }
            Ok(Err(rejection)) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(ApiError::too_large(format!(
                    "the body is larger than {} bytes, this server's limit",
                    options.payload_limit
                )));
            }
            Ok(Err(rejection)) => {
                return Err(ApiError::validation(format!("cannot read the body: {}", rejection.body_text())));
            }
            Ok(Ok(bytes)) => bytes,
        };
        parse(&bytes).map(JsonBody)
    }
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

/// Where an embedding request's time went, per input on average, as TEI's headers say it.
#[derive(Debug, Clone)]
pub struct Timing {
    arrived: Instant,
    characters: usize,
    tokens: usize,
    tokenization: Duration,
    queue: Duration,
    inference: Duration,
}

impl Timing {
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// TEI's `x-compute-*`, `x-total-time`, `x-tokenization-time`, `x-queue-time` and
    /// `x-inference-time` (milliseconds) on `response`.
    pub fn add_headers(&self, response: &mut Response, backend: &'static str) {
        let total = self.arrived.elapsed();
        let headers = response.headers_mut();
        let ms = |d: Duration| HeaderValue::from(d.as_millis() as u64);
        for (name, value) in [
            ("x-compute-type", HeaderValue::from_static(backend)),
            ("x-compute-time", ms(total)),
            ("x-compute-characters", HeaderValue::from(self.characters)),
            ("x-compute-tokens", HeaderValue::from(self.tokens)),
            ("x-total-time", ms(total)),
            ("x-tokenization-time", ms(self.tokenization)),
            ("x-queue-time", ms(self.queue)),
            ("x-inference-time", ms(self.inference)),
        ] {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
}

/// What a request's inputs became: per input, one vector ([`Output::Sentence`]) or one per
/// token ([`Output::Tokens`]); and where the time went.
pub struct Embedded {
    pub vectors: Vec<Vec<Vec<f32>>>,
    pub timing: Timing,
}

impl App {
    /// A batch of `n` inputs within 1 (else a 400 saying `nothing`) and `--max-client-batch-size`
    /// (else a 413).
    fn check_batch(&self, n: usize, field: &str, nothing: &str) -> Result<(), ApiError> {
        let limit = self.options.max_client_batch_size;
        if n == 0 {
            return Err(ApiError::empty(format!("field `{field}`: {nothing}")));
        }
        if n > limit {
            return Err(ApiError::too_large(format!(
                "field `{field}`: {n} inputs, more than this server's --max-client-batch-size {limit}"
            )));
        }
        Ok(())
    }

    /// `input` as tokens: a text tokenised, or ids checked against the vocabulary; cut at the
    /// input limit when `truncate`, else a 413.
    fn tokens(&self, input: &Input, i: usize, field: &str, truncate: bool) -> Result<Tokens, ApiError> {
        let tokenizer = &self.info.tokenizer;
        let limit = tokenizer.max_length();
        let mut tokens = match input {
            Input::Text(text) => tokenizer
                .encode_one(text)
                .map_err(|e| ApiError::validation(format!("field `{field}`: input {i}: {e}")))?,
            Input::Ids(ids) => {
                check_ids(ids, self.info.config.vocab_size)
                    .map_err(|e| ApiError::validation(format!("field `{field}`: input {i}: {e}")))?;
                let n = ids.len().min(limit);
                Tokens {
                    ids: ids[..n].iter().map(|&id| i64::from(id)).collect(),
                    type_ids: vec![0; n],
                    truncated: ids.len() > limit,
                }
            }
        };
        if tokens.truncated && !truncate {
            return Err(ApiError::too_large(format!(
                "field `{field}`: input {i} is longer than {limit} tokens, this server's input limit (send \
                 `truncate: true`, or start the server with --auto-truncate, to cut it)"
            )));
        }
        tokens.truncated = false;
        Ok(tokens)
    }

    /// Embeds `request`'s inputs through the queue: `output` says whether as sentence vectors
    /// (normalised when asked) or as every token's vector. `field` names the inputs in errors.
    async fn embed(&self, request: Resolved, output: Output, field: &str) -> Result<Embedded, ApiError> {
        let arrived = Instant::now();
        let inputs = &request.inputs;
        self.check_batch(inputs.len(), field, "no inputs to embed")?;
        let truncate = request.truncate.unwrap_or(self.options.auto_truncate);
        let (mut jobs, mut receivers) = (Vec::with_capacity(inputs.len()), Vec::with_capacity(inputs.len()));
        let mut timing = Timing {
            arrived,
            characters: 0,
            tokens: 0,
            tokenization: Duration::ZERO,
            queue: Duration::ZERO,
            inference: Duration::ZERO,
        };
        for (i, input) in inputs.iter().enumerate() {
            let tokens = self.tokens(input, i, field, truncate)?;
            timing.characters += match input {
                Input::Text(text) => text.chars().count(),
                Input::Ids(ids) => ids.len(),
            };
            timing.tokens += tokens.len();
            let (reply, receiver) = oneshot::channel();
            jobs.push(Job { tokens, size: request.size, output, reply });
            receivers.push(receiver);
        }
        timing.tokenization = arrived.elapsed() / inputs.len() as u32;
        self.queue.push(jobs).map_err(|_| ApiError::unavailable("the server is stopping"))?;
        let queued = Instant::now();
        let mut vectors = Vec::with_capacity(receivers.len());
        for receiver in receivers {
            let answer = receiver.await.map_err(|_| ApiError::backend("the encoder failed on this batch"))?;
            let mut answered = answer.vectors;
            if output == Output::Sentence && request.normalize {
                answered.iter_mut().for_each(|v| normalize_vector(v));
            }
            timing.queue += answer.started.saturating_duration_since(queued);
            timing.inference += answer.started.elapsed();
            vectors.push(answered);
        }
        let n = inputs.len() as u32;
        (timing.queue, timing.inference) = (timing.queue / n, timing.inference / n);
        self.metrics.latency(request.size, arrived.elapsed());
        Ok(Embedded { vectors, timing })
    }
}

/// `value` as a JSON 200.
pub fn json_response(value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => (StatusCode::OK, [("content-type", "application/json")], bytes).into_response(),
        Err(e) => ApiError::backend(format!("cannot write the response: {e}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_labelled_by_route_family() {
        for (method, path, label) in [
            (Method::GET, "/", "health"),
            (Method::POST, "/", "embed"),
            (Method::POST, "/invocations", "embed"),
            (Method::GET, "/ping", "health"),
            (Method::POST, "/embeddings", "v1/embeddings"),
            (Method::GET, "/docs/index.css", "docs"),
            (Method::GET, "/nowhere", "other"),
        ] {
            assert_eq!(endpoint(&method, path), label, "{method} {path}");
        }
    }
}
