//! TEI's routes, with TEI's request and response shapes (its `router/src/http/types.rs`), each
//! embedding route also taking our `layers` and `size`: `POST /embed` (and `/`), `/embed_all`,
//! `/similarity`, `/tokenize`, `/decode`; `GET /info`, `/health` (and `/`), `/metrics`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use starbucks_model::{Pooling, Size};
use utoipa::ToSchema;

use super::{App, InFlight, JsonBody, json_response};
use crate::error::{ApiError, ErrorResponse};
use crate::input::{Inputs, Resolved, SizeFields, Texts, TruncationDirection, check_ids, refuse_prompt, token_ids};
use crate::queue::Output;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        // TEI serves its model's task at `/` (huggingface_hub's InferenceClient posts there).
        .route("/", post(embed).get(health))
        .route("/embed", post(embed))
        .route("/embed_all", post(embed_all))
        .route("/similarity", post(similarity))
        .route("/tokenize", post(tokenize))
        .route("/decode", post(decode))
        .route("/info", get(info))
        .route("/metrics", get(metrics))
}

/// Health checks need no API key.
pub fn health_routes() -> Router<Arc<App>> {
    Router::new().route("/health", get(health))
}

fn yes() -> bool {
    true
}

/// `POST /embed`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct EmbedRequest {
    pub inputs: Inputs,
    /// Unit-length vectors (after the cut to `dimensions`).
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub normalize: bool,
    /// Cut inputs longer than the server's input limit (default: the server's --auto-truncate);
    /// else they get a 413.
    #[serde(default)]
    pub truncate: Option<bool>,
    #[serde(default)]
    #[allow(dead_code, reason = "parsed to refuse `left`: only `right` is supported")]
    pub truncation_direction: TruncationDirection,
    /// Prompts are not supported: null only.
    #[serde(default)]
    #[schema(schema_with = null_only)]
    pub prompt_name: Option<String>,
    /// The first `dimensions` of the vector (default: all).
    #[schema(minimum = 1)]
    pub dimensions: Option<usize>,
    /// The first `layers` layers (default: all); only those run.
    #[schema(minimum = 1)]
    pub layers: Option<usize>,
    /// `"layers,dims"` or a paper size name (`"tall"`); agrees with `layers`/`dimensions` when
    /// both are given.
    #[schema(example = "2,128")]
    pub size: Option<String>,
}

/// TEI's `prompt_name` schema here: null only.
pub fn null_only() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    crate::input::schema(serde_json::json!({"type": "null", "description": "Prompts are not supported: null only"}))
}

impl EmbedRequest {
    pub fn resolve(self, full: Size) -> Result<Resolved, ApiError> {
        refuse_prompt("prompt_name", &self.prompt_name)?;
        let size = SizeFields { dimensions: self.dimensions, layers: self.layers, size: self.size }.resolve(full)?;
        Ok(Resolved { inputs: self.inputs.0, size, normalize: self.normalize, truncate: self.truncate })
    }
}

/// One vector per input.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!([[0.0, 1.0, 2.0]]))]
pub struct EmbedResponse(pub Vec<Vec<f32>>);

/// Sentence vectors at the request's size.
#[utoipa::path(post, path = "/embed", tag = "TEI", request_body = EmbedRequest,
    responses(
        (status = 200, description = "One vector per input", body = EmbedResponse, headers(
            ("x-compute-time" = String, description = "Milliseconds from arrival to answer"),
            ("x-compute-tokens" = String, description = "Tokens embedded"),
            ("x-tokenization-time" = String, description = "Milliseconds tokenising, per input"),
            ("x-queue-time" = String, description = "Milliseconds queued, per input"),
            ("x-inference-time" = String, description = "Milliseconds in the encoder, per input"),
        )),
        (status = 400, description = "No inputs", body = ErrorResponse),
        (status = 413, description = "Too many inputs, an input too long, or the body too large", body = ErrorResponse),
        (status = 422, description = "A field missing, of the wrong type or out of range", body = ErrorResponse),
        (status = 429, description = "Too many requests in flight", body = ErrorResponse),
    ))]
pub async fn embed(
    State(app): State<Arc<App>>,
    JsonBody(request): JsonBody<EmbedRequest>,
) -> Result<Response, ApiError> {
    let _slot = InFlight::acquire(&app)?;
    let request = request.resolve(app.info.full)?;
    let embedded = app.embed(request, Output::Sentence, "inputs").await?;
    let vectors = embedded.vectors.into_iter().map(|mut v| v.swap_remove(0)).collect();
    let mut response = json_response(&EmbedResponse(vectors));
    embedded.timing.add_headers(&mut response, app.backend);
    Ok(response)
}

/// `POST /embed_all`: `layers`, `dimensions` and `size` are bounded by the encoder's layers and
/// hidden size (no pooling, no Dense module).
#[derive(Debug, Deserialize, ToSchema)]
pub struct EmbedAllRequest {
    pub inputs: Inputs,
    /// As `/embed`'s.
    #[serde(default)]
    pub truncate: Option<bool>,
    #[serde(default)]
    #[allow(dead_code, reason = "parsed to refuse `left`: only `right` is supported")]
    pub truncation_direction: TruncationDirection,
    #[serde(default)]
    #[schema(schema_with = null_only)]
    pub prompt_name: Option<String>,
    /// The first `dimensions` of each token's hidden state (default: all).
    #[schema(minimum = 1)]
    pub dimensions: Option<usize>,
    /// The hidden states after this layer (default: the last).
    #[schema(minimum = 1)]
    pub layers: Option<usize>,
    #[schema(example = "2,128")]
    pub size: Option<String>,
}

/// Per input, one vector per token.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!([[[0.0, 1.0, 2.0]]]))]
pub struct EmbedAllResponse(pub Vec<Vec<Vec<f32>>>);

/// Every token's hidden state at the request's layer, cut to its dims (not normalised).
#[utoipa::path(post, path = "/embed_all", tag = "TEI", request_body = EmbedAllRequest,
    responses(
        (status = 200, description = "Per input, one vector per token", body = EmbedAllResponse),
        (status = 400, description = "No inputs", body = ErrorResponse),
        (status = 413, description = "Too many inputs, an input too long, or the body too large", body = ErrorResponse),
        (status = 422, description = "A field missing, of the wrong type or out of range", body = ErrorResponse),
        (status = 429, description = "Too many requests in flight", body = ErrorResponse),
    ))]
pub async fn embed_all(
    State(app): State<Arc<App>>,
    JsonBody(request): JsonBody<EmbedAllRequest>,
) -> Result<Response, ApiError> {
    let _slot = InFlight::acquire(&app)?;
    refuse_prompt("prompt_name", &request.prompt_name)?;
    let hidden = Size::new(app.info.config.num_hidden_layers, app.info.config.hidden_size);
    let size =
        SizeFields { dimensions: request.dimensions, layers: request.layers, size: request.size }.resolve(hidden)?;
    let resolved = Resolved { inputs: request.inputs.0, size, normalize: false, truncate: request.truncate };
    let embedded = app.embed(resolved, Output::Tokens, "inputs").await?;
    let mut response = json_response(&EmbedAllResponse(embedded.vectors));
    embedded.timing.add_headers(&mut response, app.backend);
    Ok(response)
}

/// `inputs` of `POST /similarity`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SimilarityInput {
    /// The text the others are compared with.
    #[schema(example = "What is Deep Learning?")]
    pub source_sentence: String,
    /// The texts compared with `source_sentence`.
    #[schema(example = json!(["What is Machine Learning?"]), min_items = 1)]
    pub sentences: Vec<String>,
}

/// `parameters` of `POST /similarity`, as TEI's.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct SimilarityParameters {
    #[serde(default)]
    pub truncate: Option<bool>,
    #[serde(default)]
    #[allow(dead_code, reason = "parsed to refuse `left`: only `right` is supported")]
    pub truncation_direction: TruncationDirection,
    #[serde(default)]
    #[schema(schema_with = null_only)]
    pub prompt_name: Option<String>,
}

/// `POST /similarity`: TEI's body, and the size fields beside `inputs`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SimilarityRequest {
    #[serde(deserialize_with = "crate::input::object")]
    pub inputs: SimilarityInput,
    #[serde(default, deserialize_with = "crate::input::object_or_null")]
    pub parameters: Option<SimilarityParameters>,
    #[schema(minimum = 1)]
    pub dimensions: Option<usize>,
    #[schema(minimum = 1)]
    pub layers: Option<usize>,
    #[schema(example = "2,128")]
    pub size: Option<String>,
}

/// The cosine similarity of `source_sentence` with each of `sentences`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!([0.0, 1.0, 0.5]))]
pub struct SimilarityResponse(pub Vec<f32>);

/// Cosine similarities at the request's size.
#[utoipa::path(post, path = "/similarity", tag = "TEI", request_body = SimilarityRequest,
    responses(
        (status = 200, description = "One score per sentence", body = SimilarityResponse),
        (status = 400, description = "No sentences", body = ErrorResponse),
        (status = 413, description = "Too many sentences, one too long, or the body too large", body = ErrorResponse),
        (status = 422, description = "A field missing, of the wrong type or out of range", body = ErrorResponse),
        (status = 429, description = "Too many requests in flight", body = ErrorResponse),
    ))]
pub async fn similarity(
    State(app): State<Arc<App>>,
    JsonBody(request): JsonBody<SimilarityRequest>,
) -> Result<Response, ApiError> {
    let _slot = InFlight::acquire(&app)?;
    let SimilarityInput { source_sentence, sentences } = request.inputs;
    if sentences.is_empty() {
        return Err(ApiError::empty("field `inputs.sentences`: no sentences to compare"));
    }
    let parameters = request.parameters.unwrap_or_default();
    refuse_prompt("parameters.prompt_name", &parameters.prompt_name)?;
    let fields = SizeFields { dimensions: request.dimensions, layers: request.layers, size: request.size };
    let size = fields.resolve(app.info.full)?;
    let inputs = std::iter::once(source_sentence).chain(sentences).map(crate::input::Input::Text).collect();
    let resolved = Resolved { inputs, size, normalize: true, truncate: parameters.truncate };
    let embedded = app.embed(resolved, Output::Sentence, "inputs").await?;
    let mut vectors = embedded.vectors.into_iter().map(|mut v| v.swap_remove(0));
    let source = vectors.next().expect("the source sentence was embedded");
    let scores = vectors.map(|v| v.iter().zip(&source).map(|(a, b)| a * b).sum()).collect();
    let mut response = json_response(&SimilarityResponse(scores));
    embedded.timing.add_headers(&mut response, app.backend);
    Ok(response)
}

/// `POST /tokenize`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenizeRequest {
    pub inputs: Texts,
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub add_special_tokens: bool,
    #[serde(default)]
    #[schema(schema_with = null_only)]
    pub prompt_name: Option<String>,
}

/// One token of `/tokenize`: `start`/`stop` are byte offsets in the input (null for special
/// tokens).
#[derive(Debug, Serialize, ToSchema)]
pub struct SimpleToken {
    #[schema(example = 7592)]
    pub id: u32,
    #[schema(example = "hello")]
    pub text: String,
    pub special: bool,
    #[schema(example = 0)]
    pub start: Option<usize>,
    #[schema(example = 5)]
    pub stop: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenizeResponse(pub Vec<Vec<SimpleToken>>);

/// The tokens the encoder would see (cut at the input limit).
#[utoipa::path(post, path = "/tokenize", tag = "TEI", request_body = TokenizeRequest,
    responses(
        (status = 200, description = "Per input, its tokens", body = TokenizeResponse),
        (status = 400, description = "No inputs", body = ErrorResponse),
        (status = 413, description = "Too many inputs or the body too large", body = ErrorResponse),
        (status = 422, description = "A field missing or of the wrong type", body = ErrorResponse),
    ))]
pub async fn tokenize(
    State(app): State<Arc<App>>,
    JsonBody(request): JsonBody<TokenizeRequest>,
) -> Result<Response, ApiError> {
    refuse_prompt("prompt_name", &request.prompt_name)?;
    app.check_batch(request.inputs.0.len(), "inputs", "nothing to do")?;
    let tokenizer = app.info.tokenizer.inner();
    let mut out = Vec::with_capacity(request.inputs.0.len());
    for (i, text) in request.inputs.0.iter().enumerate() {
        let encoding = tokenizer
            .encode(text.as_str(), request.add_special_tokens)
            .map_err(|e| ApiError::validation(format!("field `inputs`: input {i}: {e}")))?;
        let tokens = encoding.get_ids().iter().zip(encoding.get_offsets()).zip(encoding.get_special_tokens_mask());
        let tokens = tokens.zip(encoding.get_tokens()).map(|(((&id, &(start, stop)), &special), token)| {
            if special == 1 {
                SimpleToken { id, text: token.clone(), special: true, start: None, stop: None }
            } else {
                let text = String::from_utf8_lossy(text.as_bytes().get(start..stop).unwrap_or_default()).into_owned();
                SimpleToken { id, text, special: false, start: Some(start), stop: Some(stop) }
            }
        });
        out.push(tokens.collect());
    }
    Ok(json_response(&TokenizeResponse(out)))
}

/// `ids` of `POST /decode`: one list of token ids, or a list of them.
#[derive(Debug)]
pub struct DecodeIds(pub Vec<Vec<u32>>);

impl<'de> Deserialize<'de> for DecodeIds {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        use serde_json::Value;
        match Value::deserialize(deserializer)? {
            Value::Array(items) if items.iter().all(Value::is_array) && !items.is_empty() => items
                .iter()
                .enumerate()
                .map(|(i, list)| token_ids(list.as_array().expect("checked")).map_err(|e| format!("list {i}: {e}")))
                .collect::<Result<_, _>>()
                .map(DecodeIds)
                .map_err(D::Error::custom),
            Value::Array(items) => token_ids(&items).map(|ids| DecodeIds(vec![ids])).map_err(D::Error::custom),
            _ => Err(D::Error::custom("expected a list of token ids or a list of such lists")),
        }
    }
}

impl utoipa::PartialSchema for DecodeIds {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let ids = serde_json::json!({"type": "array", "items": {"type": "integer", "minimum": 0}, "example": [101, 7592, 102]});
        crate::input::schema(serde_json::json!({"oneOf": [ids, {"type": "array", "items": ids}]}))
    }
}

impl ToSchema for DecodeIds {}

/// `POST /decode`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct DecodeRequest {
    pub ids: DecodeIds,
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub skip_special_tokens: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!(["hello"]))]
pub struct DecodeResponse(pub Vec<String>);

/// Token ids back to text.
#[utoipa::path(post, path = "/decode", tag = "TEI", request_body = DecodeRequest,
    responses(
        (status = 200, description = "One text per list of ids", body = DecodeResponse),
        (status = 400, description = "No lists of ids", body = ErrorResponse),
        (status = 413, description = "Too many lists or the body too large", body = ErrorResponse),
        (status = 422, description = "A field missing or of the wrong type, or an id not in the vocabulary", body = ErrorResponse),
    ))]
pub async fn decode(
    State(app): State<Arc<App>>,
    JsonBody(request): JsonBody<DecodeRequest>,
) -> Result<Response, ApiError> {
    app.check_batch(request.ids.0.len(), "ids", "nothing to do")?;
    let tokenizer = app.info.tokenizer.inner();
    let vocab = tokenizer.get_vocab_size(true);
    let mut texts = Vec::with_capacity(request.ids.0.len());
    for (i, ids) in request.ids.0.iter().enumerate() {
        check_ids(ids, vocab).map_err(|e| ApiError::validation(format!("field `ids`: list {i}: {e}")))?;
        let text = tokenizer
            .decode(ids, request.skip_special_tokens)
            .map_err(|e| ApiError::validation(format!("field `ids`: list {i}: {e}")))?;
        texts.push(text);
    }
    Ok(json_response(&DecodeResponse(texts)))
}

/// `model_type` of `/info`, as TEI's for an embedding model.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelType {
    pub embedding: EmbeddingModel,
}

/// TEI's name: the OpenAI route's `Embedding` is another schema.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmbeddingModel {
    #[schema(example = "mean")]
    pub pooling: &'static str,
}

/// `GET /info`: TEI's fields, then ours (sizes, backend, limits).
#[derive(Debug, Serialize, ToSchema)]
pub struct Info {
    pub model_id: String,
    pub model_sha: Option<String>,
    #[schema(example = "float32")]
    pub model_dtype: String,
    pub model_type: ModelType,
    pub max_concurrent_requests: usize,
    pub max_input_length: usize,
    pub max_batch_tokens: usize,
    pub max_batch_requests: Option<usize>,
    pub max_client_batch_size: usize,
    pub auto_truncate: bool,
    pub tokenization_workers: usize,
    pub version: &'static str,
    pub model_dir: String,
    pub num_hidden_layers: usize,
    pub hidden_size: usize,
    /// `[layers, dims]` of the full model.
    pub max_size: [usize; 2],
    /// The `[layers, dims]` sizes the model was trained at (`starbucks_sizes` in config.json).
    pub trained_sizes: Vec<[usize; 2]>,
    #[schema(example = "mean")]
    pub pooling: &'static str,
    /// Whether the folder's sentence-transformers modules normalise (requests decide here).
    pub folder_normalizes: bool,
    pub payload_limit: usize,
    #[schema(example = "flex")]
    pub backend: &'static str,
}

/// The served model and the server's limits.
#[utoipa::path(get, path = "/info", tag = "TEI", responses((status = 200, description = "The served model", body = Info)))]
pub async fn info(State(app): State<Arc<App>>) -> Response {
    let (info, options) = (&app.info, &app.options);
    let pooling = match info.pooling {
        Pooling::Mean => "mean",
        Pooling::Cls => "cls",
    };
    json_response(&Info {
        model_id: info.name.clone(),
        model_sha: None,
        model_dtype: match options.precision {
            starbucks_model::Precision::F32 => "float32".into(),
            starbucks_model::Precision::Bf16 => "bfloat16".into(),
            other => other.to_string(),
        },
        model_type: ModelType { embedding: EmbeddingModel { pooling } },
        max_concurrent_requests: options.max_concurrent_requests,
        max_input_length: info.tokenizer.max_length(),
        max_batch_tokens: options.max_batch_tokens,
        max_batch_requests: None,
        max_client_batch_size: options.max_client_batch_size,
        auto_truncate: options.auto_truncate,
        tokenization_workers: options.http_threads,
        version: env!("CARGO_PKG_VERSION"),
        model_dir: info.dir.display().to_string(),
        num_hidden_layers: info.config.num_hidden_layers,
        hidden_size: info.config.hidden_size,
        max_size: [info.full.layers, info.full.dims],
        trained_sizes: info.trained_sizes.iter().map(|s| [s.layers, s.dims]).collect(),
        pooling,
        folder_normalizes: info.folder_normalizes,
        payload_limit: options.payload_limit,
        backend: app.backend,
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// 200 while the encoder thread runs (the port only opens once the model is loaded and warm).
#[utoipa::path(get, path = "/health", tag = "TEI",
    responses(
        (status = 200, description = "Serving", body = Health),
        (status = 503, description = "The encoder has stopped", body = ErrorResponse),
    ))]
pub async fn health(State(app): State<Arc<App>>) -> Response {
    if app.healthy.load(Ordering::SeqCst) {
        json_response(&Health { status: "ok" })
    } else {
        ApiError::unavailable("the encoder thread has stopped").into_response()
    }
}

/// Prometheus' text format.
#[utoipa::path(get, path = "/metrics", tag = "TEI",
    responses((status = 200, description = "Counters, gauges and histograms", body = String, content_type = "text/plain")))]
pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    let text = app.metrics.render(app.queue.depth(), app.in_flight.load(Ordering::SeqCst));
    (StatusCode::OK, [("content-type", "text/plain; version=0.0.4")], text).into_response()
}
