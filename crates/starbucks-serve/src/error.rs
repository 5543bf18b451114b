//! Errors as HTTP responses: a status and TEI's JSON body `{"error": "...", "error_type": "..."}`,
//! or on the OpenAI route TEI's OpenAI-style body `{"message": "...", "code": 422, "type": "..."}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// TEI's kinds: `Validation`, `Empty`, `Overloaded`, `Unauthorized`, `Backend`, `Unhealthy`;
    /// and `NotFound`, `Timeout`.
    pub error_type: &'static str,
}

/// The body of every error but the OpenAI route's.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"error": "field `layers`: 7 layers is more than this model's 6 layers", "error_type": "Validation"}))]
pub struct ErrorResponse {
    pub error: String,
    pub error_type: String,
}

/// The body of an error on `/v1/embeddings` and `/embeddings`, as TEI writes it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"message": "field `input`: no inputs to embed", "code": 400, "type": "Empty"}))]
pub struct OpenAiErrorResponse {
    pub message: String,
    pub code: u16,
    #[serde(rename = "type")]
    pub error_type: String,
}

impl ApiError {
    fn new(status: StatusCode, error_type: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), error_type }
    }

    /// A field that is missing, of the wrong type, or out of range; or a body that is not JSON.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "Validation", message)
    }

    /// No inputs (TEI answers 400 here, not 422).
    pub fn empty(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Empty", message)
    }

    /// A body, a batch or an input larger than the limits.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "Validation", message)
    }

    /// The body did not arrive within `--body-timeout`.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(StatusCode::REQUEST_TIMEOUT, "Timeout", message)
    }

    pub fn overloaded(message: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "Overloaded", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "Validation", message)
    }

    /// The encoder failed or stopped: the server's fault, not the request's.
    pub fn backend(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Backend", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "Unhealthy", message)
    }

    fn respond(status: StatusCode, body: impl Serialize) -> Response {
        let body = serde_json::to_string(&body).expect("an error body serialises");
        let mut response = (status, [("content-type", "application/json")], body).into_response();
        if status == StatusCode::REQUEST_TIMEOUT {
            // The rest of a late body is not worth waiting for: hyper closes after this response.
            response.headers_mut().insert("connection", axum::http::HeaderValue::from_static("close"));
        }
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorResponse { error: self.message, error_type: self.error_type.into() };
        ApiError::respond(self.status, body)
    }
}

/// An [`ApiError`] answered in the OpenAI route's shape.
#[derive(Debug)]
pub struct OpenAiError(pub ApiError);

impl From<ApiError> for OpenAiError {
    fn from(error: ApiError) -> Self {
        OpenAiError(error)
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let ApiError { status, message, error_type } = self.0;
        ApiError::respond(status, OpenAiErrorResponse { message, code: status.as_u16(), error_type: error_type.into() })
    }
}
