//! The server's counters and histograms, rendered in Prometheus' text format at `/metrics`.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use starbucks_model::Size;

const LATENCY_BOUNDS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
const BATCH_SIZE_BOUNDS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
const BATCH_TOKEN_BOUNDS: &[f64] = &[64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0];
/// `starbucks_texts_per_second` counts the texts embedded over this window.
const RATE_WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    /// Per bucket, not cumulative; one more for +Inf.
    counts: Vec<u64>,
    sum: f64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram { bounds, counts: vec![0; bounds.len() + 1], sum: 0.0 }
    }

    fn observe(&mut self, value: f64) {
        let bucket = self.bounds.iter().position(|&b| value <= b).unwrap_or(self.bounds.len());
        self.counts[bucket] += 1;
        self.sum += value;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, count) in self.counts.iter().enumerate() {
            cumulative += count;
            let le = self.bounds.get(i).map_or("+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}");
        }
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {cumulative}");
    }
}

#[derive(Debug)]
struct Inner {
    requests: BTreeMap<(&'static str, u16), u64>,
    latency: BTreeMap<Size, Histogram>,
    batch_size: Histogram,
    batch_tokens: Histogram,
    texts: u64,
    recent: VecDeque<(Instant, usize)>,
}

/// Everything `/metrics` reports; shared by the handlers and the encoder thread.
#[derive(Debug)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            inner: Mutex::new(Inner {
                requests: BTreeMap::new(),
                latency: BTreeMap::new(),
                batch_size: Histogram::new(BATCH_SIZE_BOUNDS),
                batch_tokens: Histogram::new(BATCH_TOKEN_BOUNDS),
                texts: 0,
                recent: VecDeque::new(),
            }),
        }
    }
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A request answered on `endpoint` with `status`.
    pub fn request(&self, endpoint: &'static str, status: u16) {
        *self.lock().requests.entry((endpoint, status)).or_default() += 1;
    }

    /// An embedding request at `size` took `took` from arrival to its last vector.
    pub fn latency(&self, size: Size, took: Duration) {
        let mut inner = self.lock();
        inner.latency.entry(size).or_insert_with(|| Histogram::new(LATENCY_BOUNDS)).observe(took.as_secs_f64());
    }

    /// A batch of `texts` texts and `padded_tokens` tokens went through the encoder.
    pub fn batch(&self, texts: usize, padded_tokens: usize) {
        let mut inner = self.lock();
        inner.batch_size.observe(texts as f64);
        inner.batch_tokens.observe(padded_tokens as f64);
        inner.texts += texts as u64;
        let now = Instant::now();
        inner.recent.push_back((now, texts));
        while inner.recent.front().is_some_and(|&(t, _)| now - t > RATE_WINDOW) {
            inner.recent.pop_front();
        }
    }

    /// The Prometheus text exposition of every metric; `queue_depth` and `in_flight` are read
    /// by the caller at scrape time.
    pub fn render(&self, queue_depth: usize, in_flight: usize) -> String {
        let inner = self.lock();
        let mut out = String::new();
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        head(&mut out, "starbucks_requests_total", "counter", "HTTP requests by endpoint and status code.");
        for ((endpoint, code), n) in &inner.requests {
            let _ = writeln!(out, "starbucks_requests_total{{endpoint=\"{endpoint}\",code=\"{code}\"}} {n}");
        }
        head(
            &mut out,
            "starbucks_errors_total",
            "counter",
            "Requests answered with a 4xx or 5xx, by endpoint and code.",
        );
        for ((endpoint, code), n) in inner.requests.iter().filter(|((_, code), _)| *code >= 400) {
            let _ = writeln!(out, "starbucks_errors_total{{endpoint=\"{endpoint}\",code=\"{code}\"}} {n}");
        }
        let name = "starbucks_request_duration_seconds";
        head(&mut out, name, "histogram", "Time from arrival to answer of embedding requests, by size (layers,dims).");
        for (size, histogram) in &inner.latency {
            histogram.render(&mut out, name, &format!("size=\"{},{}\"", size.layers, size.dims));
        }
        head(&mut out, "starbucks_batch_size", "histogram", "Texts per encoder batch.");
        inner.batch_size.render(&mut out, "starbucks_batch_size", "");
        head(&mut out, "starbucks_batch_tokens", "histogram", "Padded tokens (texts x longest) per encoder batch.");
        inner.batch_tokens.render(&mut out, "starbucks_batch_tokens", "");
        head(&mut out, "starbucks_queue_depth", "gauge", "Texts waiting for the encoder.");
        let _ = writeln!(out, "starbucks_queue_depth {queue_depth}");
        head(&mut out, "starbucks_requests_in_flight", "gauge", "Embedding requests being served.");
        let _ = writeln!(out, "starbucks_requests_in_flight {in_flight}");
        head(&mut out, "starbucks_texts_total", "counter", "Texts embedded.");
        let _ = writeln!(out, "starbucks_texts_total {}", inner.texts);
        let recent: usize = inner.recent.iter().filter(|(t, _)| t.elapsed() <= RATE_WINDOW).map(|(_, n)| n).sum();
        head(&mut out, "starbucks_texts_per_second", "gauge", "Texts embedded per second over the last 10 s.");
        let _ = writeln!(out, "starbucks_texts_per_second {}", recent as f64 / RATE_WINDOW.as_secs_f64());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_cumulative_buckets_and_labelled_counters() {
        let metrics = Metrics::default();
        metrics.request("embed", 200);
        metrics.request("embed", 200);
        metrics.latency(Size::new(2, 64), Duration::from_millis(20));
        metrics.latency(Size::new(2, 64), Duration::from_millis(300));
        metrics.request("v1/embeddings", 422);
        metrics.batch(3, 60);
        let text = metrics.render(5, 1);
        for line in [
            "starbucks_requests_total{endpoint=\"embed\",code=\"200\"} 2",
            "starbucks_errors_total{endpoint=\"v1/embeddings\",code=\"422\"} 1",
            "starbucks_request_duration_seconds_bucket{size=\"2,64\",le=\"0.025\"} 1",
            "starbucks_request_duration_seconds_bucket{size=\"2,64\",le=\"0.5\"} 2",
            "starbucks_request_duration_seconds_bucket{size=\"2,64\",le=\"+Inf\"} 2",
            "starbucks_request_duration_seconds_count{size=\"2,64\"} 2",
            "starbucks_batch_size_bucket{le=\"4\"} 1",
            "starbucks_batch_tokens_bucket{le=\"64\"} 1",
            "starbucks_queue_depth 5",
            "starbucks_texts_total 3",
            "starbucks_texts_per_second 0.3",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("errors_total{endpoint=\"embed\""), "a 200 is not an error");
    }
}
