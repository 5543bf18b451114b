//! The server's settings, one field per `starbucks serve` flag: declared once, here, with
//! their flag names, help and defaults (`clap` reads this struct; the CLI flattens it).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use starbucks_model::Precision;

use crate::queue::Schedule;

/// Limits and addresses; TEI's flag names and defaults where TEI has the same flag.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    #[arg(long, default_value_t = Options::default().host)]
    pub host: String,
    /// 0 picks a free port (logged as `listening on …`).
    #[arg(long, default_value_t = Options::default().port)]
    pub port: u16,
    /// Most padded tokens (texts × longest text) in one encoder batch.
    #[arg(long, default_value_t = Options::default().max_batch_tokens)]
    pub max_batch_tokens: usize,
    /// Most texts in one request (more: 413).
    #[arg(long, default_value_t = Options::default().max_client_batch_size)]
    pub max_client_batch_size: usize,
    /// Most requests in flight (more: 429).
    #[arg(long, default_value_t = Options::default().max_concurrent_requests)]
    pub max_concurrent_requests: usize,
    /// Most tokens of one input, special tokens included (default: the model's
    /// max_seq_length); longer inputs are cut when the request's `truncate` (default:
    /// --auto-truncate) says so, else 413.
    #[arg(long)]
    pub max_input_length: Option<usize>,
    /// Cut over-long inputs when a request does not say (`--auto-truncate false`: refuse them
    /// with 413). On by default, as TEI 1.9.
    #[arg(long, default_value_t = Options::default().auto_truncate, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub auto_truncate: bool,
    /// Require `Authorization: Bearer KEY` on every route but /health.
    #[arg(long)]
    pub api_key: Option<String>,
    /// The model name reported by /info and OpenAI responses (default: the folder's name).
    #[arg(long)]
    pub served_model_name: Option<String>,
    /// Most bytes of one request body (more: 413).
    #[arg(long, default_value_t = Options::default().payload_limit)]
    pub payload_limit: usize,
    /// How batches are cut from the queue (docs/serving.md measures each).
    #[arg(long, value_enum, default_value_t = Options::default().schedule)]
    pub schedule: Schedule,
    /// Threads for HTTP and tokenisation (the encoder has its own, and its backend's).
    #[arg(long, default_value_t = Options::default().http_threads)]
    pub http_threads: usize,
    /// The encoder's arithmetic: f32, or int8 (the CPU backend only).
    #[arg(long, default_value_t = Options::default().precision)]
    pub precision: Precision,
    /// An origin browsers may call from (repeatable, or comma-separated; `*`: any). Without
    /// it, no CORS headers are sent.
    #[arg(long, value_delimiter = ',')]
    pub cors_allow_origin: Vec<String>,
    /// Also serve /metrics alone on this port (as TEI's --prometheus-port; no API key).
    #[arg(long)]
    pub prometheus_port: Option<u16>,
    /// Seconds a client has to send a request's headers before its connection is closed.
    #[arg(long, default_value_t = Options::default().header_timeout)]
    pub header_timeout: Seconds,
    /// Seconds a client has to send a request's body (after its headers) before a 408.
    #[arg(long, default_value_t = Options::default().body_timeout)]
    pub body_timeout: Seconds,
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
            header_timeout: Seconds(Duration::from_secs(10)),
            body_timeout: Seconds(Duration::from_secs(30)),
        }
    }
}

impl Options {
    /// What the types do not say: counts and timeouts above 0, the origins header values, the
    /// two ports different.
    pub fn check(&self) -> Result<(), String> {
        for (flag, value) in [
            ("--max-batch-tokens", self.max_batch_tokens),
            ("--max-client-batch-size", self.max_client_batch_size),
            ("--max-concurrent-requests", self.max_concurrent_requests),
            ("--payload-limit", self.payload_limit),
            ("--http-threads", self.http_threads),
        ] {
            if value == 0 {
                return Err(format!("{flag} must be at least 1"));
            }
        }
        for (flag, timeout) in [("--header-timeout", self.header_timeout), ("--body-timeout", self.body_timeout)] {
            if timeout.0.is_zero() {
                return Err(format!("{flag} {timeout}: give a number of seconds above 0"));
            }
        }
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

/// A time limit, written as seconds (`2.5`) on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub Duration);

impl FromStr for Seconds {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.trim()
            .parse::<f64>()
            .ok()
            .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
            .map(Seconds)
            .ok_or_else(|| format!("'{text}' is not a number of seconds"))
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.as_secs_f64())
    }
}
