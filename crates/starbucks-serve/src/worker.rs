//! The encoder thread: loads and warms the model, then embeds batch after batch from the
//! queue, off the async runtime.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use burn::tensor::backend::Backend;
use starbucks_model::{BertConfig, Embedder, Pooling, Size, Tokenizer};

use crate::Error;
use crate::metrics::Metrics;
use crate::options::Options;
use crate::queue::Queue;

/// What the HTTP side knows of the model: enough to validate and tokenise a request.
#[derive(Debug)]
pub struct ModelInfo {
    pub name: String,
    pub dir: PathBuf,
    pub config: BertConfig,
    /// All layers, and the width of the pooled (and Dense) output.
    pub full: Size,
    pub trained_sizes: Vec<Size>,
    pub pooling: Pooling,
    /// Whether the folder's sentence-transformers modules normalise (requests decide here).
    pub folder_normalizes: bool,
    /// Truncates at the server's `max_input_length`.
    pub tokenizer: Tokenizer,
}

/// The running encoder thread and what it shares with the HTTP side.
pub struct Worker {
    pub queue: Arc<Queue>,
    pub metrics: Arc<Metrics>,
    /// False once the encoder thread has stopped (it only does so when the queue closes, or
    /// if the backend panicked outside a batch).
    pub healthy: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Closes the queue, lets the thread answer every waiting job, and joins it.
    pub fn stop(mut self) {
        self.queue.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Loads the model on a new thread and warms it with one full-size pass; returns once it is
/// ready to serve, or with the loading error.
pub fn start<B: Backend>(dir: &Path, options: &Options, device: B::Device) -> Result<(Worker, Arc<ModelInfo>), Error> {
    let (ready_tx, ready_rx) = mpsc::channel::<Result<ModelInfo, Error>>();
    let queue = Arc::new(Queue::default());
    let metrics = Arc::new(Metrics::default());
    let healthy = Arc::new(AtomicBool::new(true));
    let (dir_owned, options_owned) = (dir.to_path_buf(), options.clone());
    let (q, m, h) = (queue.clone(), metrics.clone(), healthy.clone());
    let thread = std::thread::Builder::new().name("starbucks-encoder".into()).spawn(move || {
        let embedder = match load::<B>(&dir_owned, &options_owned, &device) {
            Ok((embedder, info)) => {
                let _ = ready_tx.send(Ok(info));
                embedder
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
                return;
            }
        };
        encode_loop(&embedder, &q, &m, &options_owned);
        h.store(false, Ordering::SeqCst);
    })?;
    let info = match ready_rx.recv() {
        Ok(result) => result?,
        Err(_) => return Err(Error::Options("the encoder thread ended while loading the model".into())),
    };
    Ok((Worker { queue, metrics, healthy, thread: Some(thread) }, Arc::new(info)))
}

fn load<B: Backend>(dir: &Path, options: &Options, device: &B::Device) -> Result<(Embedder<B>, ModelInfo), Error> {
    let mut embedder = Embedder::<B>::from_pretrained(dir, device)?;
    let model_limit = embedder.sentence_config().max_seq_length;
    if let Some(n) = options.max_input_length {
        if n > model_limit {
            return Err(Error::Options(format!(
                "--max-input-length {n} is more than the model's limit of {model_limit} tokens"
            )));
        }
        embedder = embedder.with_max_seq_length(n)?;
    }
    let max_input_length = embedder.sentence_config().max_seq_length;
    if options.max_batch_tokens < max_input_length {
        return Err(Error::Options(format!(
            "--max-batch-tokens {} is less than the longest input ({max_input_length} tokens)",
            options.max_batch_tokens
        )));
    }
    let full = embedder.full_size();
    tracing::info!(model = %dir.display(), %full, "warming up");
    embedder.embed(&["Warming up the encoder before the port opens."], full)?;
    let name = options.served_model_name.clone().unwrap_or_else(|| {
        dir.canonicalize()
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| dir.display().to_string())
    });
    let info = ModelInfo {
        name,
        dir: dir.to_path_buf(),
        config: embedder.config().clone(),
        full,
        trained_sizes: embedder.config().starbucks_sizes.iter().map(|&[l, d]| Size::new(l, d)).collect(),
        pooling: embedder.sentence_config().pooling,
        folder_normalizes: embedder.sentence_config().normalize,
        tokenizer: embedder.tokenizer().clone(),
    };
    Ok((embedder, info))
}

fn encode_loop<B: Backend>(embedder: &Embedder<B>, queue: &Queue, metrics: &Metrics, options: &Options) {
    while let Some(batch) = queue.next_batch(options.max_batch_tokens, options.schedule) {
        let rows: Vec<_> = batch.iter().map(|job| &job.tokens).collect();
        let padded = embedder.tokenizer().pad(&rows);
        let sizes: Vec<Size> = batch.iter().map(|job| job.size).collect();
        let deepest = sizes.iter().map(|s| s.layers).max().unwrap_or(0);
        metrics.batch(padded.batch_size, padded.batch_size * padded.seq_len);
        let start = std::time::Instant::now();
        let mut replies: Vec<_> = batch.into_iter().map(|job| Some(job.reply)).collect();
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            embedder.embed_rows(&padded, &sizes, |row, vector| {
                if let Some(reply) = replies[row].take() {
                    let _ = reply.send(vector);
                }
            })
        }));
        // A failed batch drops its remaining replies: those requests get a 500, the server goes on.
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("batch failed: {e}"),
            Err(_) => tracing::error!("batch failed: the encoder panicked"),
        }
        tracing::trace!(
            texts = padded.batch_size,
            seq_len = padded.seq_len,
            deepest,
            ms = start.elapsed().as_secs_f64() * 1e3,
            "batch"
        );
    }
}
