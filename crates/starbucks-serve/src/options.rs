//! The server's settings, one field per `starbucks serve` flag.

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
    /// Most tokens of one text, special tokens included (default: the model's
    /// `max_seq_length`); longer texts are cut when the request says `truncate`, else 413.
    pub max_input_length: Option<usize>,
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
            api_key: None,
            served_model_name: None,
            payload_limit: 2_000_000,
            schedule: Schedule::default(),
            http_threads: 1,
            precision: Precision::F32,
        }
    }
}
