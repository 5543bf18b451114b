//! The server's settings, one field per `starbucks serve` flag.

use std::time::Duration;

use starbucks_model::Precision;

use crate::queue::Schedule;

/// Limits and addresses; TEI's flag names and defaults where TEI has the same flag.
#[derive(Debug, Clone)]
pub struct Options {
    pub host: String,
    /// 0 picks a free port (the log line `listening on …` says which).
    pub port: u16,
    /// Most padded tokens (texts × longest text) in one encoder batch.
    pub max_batch_tokens: usize,
    /// Most texts in one request.
    pub max_client_batch_size: usize,
    /// Most requests in flight at once; beyond, 429.
    pub max_concurrent_requests: usize,
    /// Most tokens of one input, special tokens included (default: the model's
    /// `max_seq_length`); longer inputs are cut when the request's `truncate` (default:
    /// `auto_truncate`) says so, else 413.
    pub max_input_length: Option<usize>,
    /// Whether over-long inputs are cut when a request does not say (TEI 1.9's default: on).
    pub auto_truncate: bool,
    /// When set, every endpoint but `/health` needs `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// The `model` name in `/info` and OpenAI responses (default: the folder's name).
    pub served_model_name: Option<String>,
    /// Most bytes of one request body; beyond, 413.
    pub payload_limit: usize,
    /// How batches are cut from the queue (`docs/serving.md` measures both).
    pub schedule: Schedule,
    /// Threads for HTTP and tokenisation; the encoder has its own thread (and its backend's).
    pub http_threads: usize,
    /// The encoder's arithmetic (int8: the CPU backend only).
    pub precision: Precision,
    /// Origins a browser may call from (`*`: any); none: no CORS headers.
    pub cors_allow_origin: Vec<String>,
    /// A second port that serves `/metrics` alone, as TEI's `--prometheus-port`.
    pub prometheus_port: Option<u16>,
    /// A connection that has not sent a request's headers within this is closed.
    pub header_timeout: Duration,
    /// A request whose body has not arrived within this (after its headers) gets 408.
    pub body_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            host: "127.0.0.1".into(),
            port: 8080,
            max_batch_tokens: 4096,
            max_client_batch_size: 32,
            max_concurrent_requests: 512,
            max_input_length: None,
            auto_truncate: true,
            api_key: None,
            served_model_name: None,
            payload_limit: 2_000_000,
            schedule: Schedule::default(),
            http_threads: 1,
            precision: Precision::F32,
            cors_allow_origin: Vec::new(),
            prometheus_port: None,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
        }
    }
}

impl Options {
    /// What the types do not say: the origins are header values, the two ports differ.
    pub fn check(&self) -> Result<(), String> {
        for origin in &self.cors_allow_origin {
            if origin != "*" && axum::http::HeaderValue::from_str(origin).is_err() {
                return Err(format!("--cors-allow-origin {origin:?} is not a valid origin"));
            }
        }
        if self.prometheus_port.is_some_and(|port| port != 0 && port == self.port) {
            return Err(format!("--prometheus-port {} is also --port", self.port));
        }
        Ok(())
    }
}
