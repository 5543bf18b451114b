//! The OpenAPI 3 description of every route, generated from the request and response types
//! (utoipa), with this model's bounds written in; served at `/api-doc/openapi.json` and
//! rendered by Swagger UI (vendored in the binary) at `/docs`.

use std::sync::Arc;

use axum::Router;
use serde_json::{Value, json};
use starbucks_model::Size;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use super::{App, openai, tei};
use crate::error::{ErrorResponse, OpenAiErrorResponse};

#[derive(OpenApi)]
#[openapi(
    info(title = "starbucks serve", description = "TEI- and OpenAI-compatible embeddings where each request picks its size: \
        `layers` (only those run) and `dimensions`."),
    paths(tei::embed, tei::embed_all, tei::similarity, tei::tokenize, tei::decode, tei::info, tei::health,
        tei::metrics, openai::embeddings),
    components(schemas(ErrorResponse, OpenAiErrorResponse)),
    tags((name = "TEI", description = "text-embeddings-inference's routes"),
        (name = "OpenAI", description = "OpenAI's embeddings API"),
        (name = "SageMaker", description = "SageMaker's container routes, as TEI serves them")),
)]
struct ApiDoc;

/// The same operation under another path (TEI's aliases), with its own operation id.
const ALIASES: &[(&str, &str, &str, &str)] = &[
    ("/", "post", "/embed", "TEI"),
    ("/", "get", "/health", "TEI"),
    ("/embeddings", "post", "/v1/embeddings", "OpenAI"),
    ("/invocations", "post", "/embed", "SageMaker"),
    ("/ping", "get", "/health", "SageMaker"),
];

/// The spec for `app`'s model: the size fields bounded by its layers and dims (`/embed_all` by
/// its hidden size), batches by `--max-client-batch-size`, token ids by its vocabulary.
pub fn openapi(app: &App) -> Value {
    let mut spec = serde_json::to_value(ApiDoc::openapi()).expect("the spec serialises");
    spec["info"]["version"] = json!(env!("CARGO_PKG_VERSION"));
    for &(alias, method, original, tag) in ALIASES {
        let mut operation = spec["paths"][original][method].clone();
        let name = alias.trim_matches('/').replace('/', "_");
        operation["operationId"] = json!(format!("{}_{method}", if name.is_empty() { "root" } else { &name }));
        operation["tags"] = json!([tag]);
        spec["paths"][alias][method] = operation;
    }
    let (info, options) = (&app.info, &app.options);
    let schemas = &mut spec["components"]["schemas"];
    for (schema, layers, dims) in [
        ("EmbedRequest", info.full.layers, info.full.dims),
        ("SimilarityRequest", info.full.layers, info.full.dims),
        ("OpenAiRequest", info.full.layers, info.full.dims),
        ("EmbedAllRequest", info.config.num_hidden_layers, info.config.hidden_size),
    ] {
        let properties = &mut schemas[schema]["properties"];
        properties["layers"]["maximum"] = json!(layers);
        properties["dimensions"]["maximum"] = json!(dims);
        properties["size"]["pattern"] = json!(size_pattern());
    }
    bound_inputs(&mut spec, info.config.vocab_size - 1, options.max_client_batch_size);
    spec
}

/// What `Size::from_str` reads: `layers,dims` (both from 1) or a paper name, spaces around.
fn size_pattern() -> String {
    let names: Vec<&str> = Size::NAMED.iter().map(|(name, _)| *name).collect();
    format!(r"^\s*(0*[1-9][0-9]*\s*,\s*0*[1-9][0-9]*|{})\s*$", names.join("|"))
}

/// Every list of token ids gets `maximum` on its ids, and every batch `maxItems`.
fn bound_inputs(value: &mut Value, max_id: usize, max_batch: usize) {
    match value {
        Value::Object(map) => {
            let is_ids = map.get("type") == Some(&json!("array"))
                && map.get("items").and_then(|i| i.get("type")) == Some(&json!("integer"));
            if is_ids {
                map["items"]["maximum"] = json!(max_id);
            }
            let is_batch = map.get("description").and_then(Value::as_str).is_some_and(|d| d.starts_with("A batch"));
            if is_batch {
                map.insert("maxItems".into(), json!(max_batch));
            }
            map.values_mut().for_each(|v| bound_inputs(v, max_id, max_batch));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| bound_inputs(v, max_id, max_batch)),
        _ => {}
    }
}

/// `/docs` (Swagger UI) and `/api-doc/openapi.json`.
pub fn routes(app: &Arc<App>) -> Router {
    SwaggerUi::new("/docs").external_url_unchecked("/api-doc/openapi.json", openapi(app)).into()
}
