//! SageMaker's container contract, as TEI serves it: `GET /ping` for health and
//! `POST /invocations` for the model's task (here: TEI's `/embed`).

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use super::App;
use super::tei::{embed, health};

pub fn ping() -> Router<Arc<App>> {
    Router::new().route("/ping", get(health))
}

pub fn invocations() -> Router<Arc<App>> {
    Router::new().route("/invocations", post(embed))
}
