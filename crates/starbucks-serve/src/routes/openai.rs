//! OpenAI's embeddings API: `POST /v1/embeddings` and TEI's alias `POST /embeddings`, errors in
//! TEI's OpenAI-style shape.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use starbucks_model::Size;
use utoipa::ToSchema;

use super::{App, InFlight, JsonBody, json_response};
use crate::error::{ApiError, OpenAiError, OpenAiErrorResponse};
use crate::input::{Inputs, Resolved, SizeFields};
use crate::queue::Output;

pub fn routes() -> Router<Arc<App>> {
    Router::new().route("/v1/embeddings", post(embeddings)).route("/embeddings", post(embeddings))
}

impl OpenAiRequest {
    /// The request checked against the model. OpenAI's embeddings are unit vectors and its
    /// body has no `truncate` (the server's --auto-truncate decides).
    pub fn resolve(self, full: Size) -> Result<(Resolved, EncodingFormat), ApiError> {
        let size = SizeFields { dimensions: self.dimensions, layers: self.layers, size: self.size }.resolve(full)?;
        Ok((Resolved { inputs: self.input.0, size, normalize: true, truncate: None }, self.encoding_format))
    }
}

/// How vectors come back: JSON numbers, or base64 of little-endian f32 bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    #[default]
    Float,
    Base64,
}

/// The body (`user` and other unknown fields are ignored, as TEI does).
#[derive(Debug, Deserialize, ToSchema)]
pub struct OpenAiRequest {
    pub input: Inputs,
    /// Any name: one model is served.
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub encoding_format: EncodingFormat,
    /// The first `dimensions` of the vector (default: all).
    #[schema(minimum = 1)]
    pub dimensions: Option<usize>,
    /// Ours: the first `layers` layers (default: all), e.g. through the client's `extra_body`.
    #[schema(minimum = 1)]
    pub layers: Option<usize>,
    /// Ours: `"layers,dims"` or a paper size name.
    #[schema(example = "2,128")]
    pub size: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Embedding {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiEmbedding {
    #[schema(example = "embedding")]
    pub object: &'static str,
    pub embedding: Embedding,
    pub index: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiUsage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiResponse {
    #[schema(example = "list")]
    pub object: &'static str,
    pub data: Vec<OpenAiEmbedding>,
    pub model: String,
    pub usage: OpenAiUsage,
}

/// Unit vectors at the request's size; over-long inputs follow the server's --auto-truncate.
#[utoipa::path(post, path = "/v1/embeddings", tag = "OpenAI", request_body = OpenAiRequest,
    responses(
        (status = 200, description = "One embedding per input", body = OpenAiResponse),
        (status = 400, description = "No inputs", body = OpenAiErrorResponse),
        (status = 413, description = "Too many inputs, an input too long, or the body too large", body = OpenAiErrorResponse),
        (status = 422, description = "A field missing, of the wrong type or out of range", body = OpenAiErrorResponse),
        (status = 429, description = "Too many requests in flight", body = OpenAiErrorResponse),
    ))]
pub async fn embeddings(
    State(app): State<Arc<App>>,
    request: Result<JsonBody<OpenAiRequest>, ApiError>,
) -> Result<Response, OpenAiError> {
    let JsonBody(request) = request?;
    let _slot = InFlight::acquire(&app)?;
    let (resolved, format) = request.resolve(app.info.full)?;
    let embedded = app.embed(resolved, Output::Sentence, "input").await?;
    let data = embedded.vectors.into_iter().enumerate().map(|(index, mut vectors)| {
        let vector = vectors.swap_remove(0);
        let embedding = match format {
            EncodingFormat::Float => Embedding::Float(vector),
            EncodingFormat::Base64 => {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                Embedding::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
            }
        };
        OpenAiEmbedding { object: "embedding", embedding, index }
    });
    let tokens = embedded.timing.tokens();
    let mut response = json_response(&OpenAiResponse {
        object: "list",
        data: data.collect(),
        model: app.info.name.clone(),
        usage: OpenAiUsage { prompt_tokens: tokens, total_tokens: tokens },
    });
    embedded.timing.add_headers(&mut response, app.backend);
    Ok(response)
}
