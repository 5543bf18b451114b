//! The encoder thread: loads and warms the model, then embeds batch after batch from the
//! queue, off the async runtime.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

use burn::tensor::backend::Backend;
use starbucks_model::{Embedder, Pooling, Size, config::BertConfig, embedder::Pass, tokenizer::Tokenizer};
use tokio::sync::oneshot;

use crate::Error;
use crate::metrics::Metrics;
use crate::options::Options;
use crate::queue::{Answer, Job, Output, Queue};

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
    /// False once the encoder thread has stopped: when the queue closes at shutdown (a failed
    /// or panicking batch is caught and answered with 500s; the thread goes on).
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
    let mut embedder = Embedder::<B>::from_pretrained(dir, device)?.with_precision(options.precision)?;
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
    tracing::info!(model = %dir.display(), %full, precision = %options.precision, "warming up");
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

/// The replies of the texts in flight, by the id their row carries through the pass, with
/// when their pass started.
#[derive(Default)]
struct Replies {
    next_id: u64,
    waiting: HashMap<u64, (oneshot::Sender<Answer>, Instant)>,
}

impl Replies {
    fn send(&mut self, id: u64, vector: Vec<f32>) {
        if let Some((reply, started)) = self.waiting.remove(&id) {
            let _ = reply.send(Answer { vectors: vec![vector], started });
        }
    }
}

/// Starts a pass over the sentence jobs of `jobs`, their replies waiting in `replies`, after
/// answering the token jobs among them in passes of their own; `None` when all were token jobs.
fn start_pass<B: Backend>(
    embedder: &Embedder<B>,
    jobs: Vec<Job>,
    replies: &mut Replies,
    metrics: &Metrics,
) -> Result<Option<Pass<B>>, starbucks_model::Error> {
    let started = Instant::now();
    let (sentences, tokens): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(|job| job.output == Output::Sentence);
    if !tokens.is_empty() {
        embed_tokens(embedder, tokens, metrics, started)?;
    }
    if sentences.is_empty() {
        return Ok(None);
    }
    let rows: Vec<_> = sentences.iter().map(|job| &job.tokens).collect();
    let padded = embedder.tokenizer().pad(&rows);
    let sizes: Vec<Size> = sentences.iter().map(|job| job.size).collect();
    metrics.batch(padded.batch_size, padded.batch_size * padded.seq_len);
    tracing::trace!(texts = padded.batch_size, seq_len = padded.seq_len, "batch");
    let ids: Vec<u64> = (replies.next_id..replies.next_id + sentences.len() as u64).collect();
    replies.next_id += sentences.len() as u64;
    for (id, job) in ids.iter().zip(sentences) {
        replies.waiting.insert(*id, (job.reply, started));
    }
    embedder.start_pass(&padded, &sizes, ids).map(Some)
}

/// Answers token jobs (TEI's `embed_all`, rare beside sentence jobs) in one pass per depth.
fn embed_tokens<B: Backend>(
    embedder: &Embedder<B>,
    mut jobs: Vec<Job>,
    metrics: &Metrics,
    started: Instant,
) -> Result<(), starbucks_model::Error> {
    jobs.sort_by_key(|job| job.size.layers);
    while let Some(layers) = jobs.first().map(|job| job.size.layers) {
        let depth = jobs.iter().take_while(|job| job.size.layers == layers).count();
        let group: Vec<Job> = jobs.drain(..depth).collect();
        let padded = embedder.tokenizer().pad(&group.iter().map(|job| &job.tokens).collect::<Vec<_>>());
        metrics.batch(padded.batch_size, padded.batch_size * padded.seq_len);
        let texts = embedder.token_vectors(&padded, layers)?;
        for (job, tokens) in group.into_iter().zip(texts) {
            let vectors = tokens.into_iter().map(|mut token| {
                token.truncate(job.size.dims);
                token
            });
            let _ = job.reply.send(Answer { vectors: vectors.collect(), started });
        }
    }
    Ok(())
}

/// Runs batches until the queue closes. A pass steps one layer at a time; before each step that
/// the schedule allows ([`Schedule::joins_at`](crate::queue::Schedule::joins_at)), the jobs
/// waiting (as many as fit beside the running pass in the budget) start a pass of their own,
/// catch up to the running one, and join it; later arrivals wait for the running pass to end.
fn encode_loop<B: Backend>(embedder: &Embedder<B>, queue: &Queue, metrics: &Metrics, options: &Options) {
    let budget = options.max_batch_tokens;
    let mut replies = Replies::default();
    let mut running: Option<Pass<B>> = None;
    loop {
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| -> Result<bool, starbucks_model::Error> {
            let mut pass = match running.take() {
                Some(pass) => pass,
                None => match queue.next_batch(budget, options.schedule) {
                    Some(jobs) => match start_pass(embedder, jobs, &mut replies, metrics)? {
                        Some(pass) => pass,
                        None => return Ok(true),
                    },
                    None => return Ok(false),
                },
            };
            if options.schedule.joins_at(pass.layer(), embedder.full_size().layers)
                && let Some(jobs) = queue.try_batch(budget, options.schedule, (pass.rows(), pass.longest()))
                && let Some(mut newcomer) = start_pass(embedder, jobs, &mut replies, metrics)?
            {
                while newcomer.layer() < pass.layer() && !newcomer.is_done() {
                    embedder.step(&mut newcomer, |id, vector| replies.send(id, vector));
                }
                if !newcomer.is_done() {
                    pass.join(newcomer);
                }
            }
            embedder.step(&mut pass, |id, vector| replies.send(id, vector));
            if !pass.is_done() {
                running = Some(pass);
            }
            Ok(true)
        }));
        let failure = match outcome {
            Ok(Ok(true)) => continue,
            Ok(Ok(false)) => return,
            Ok(Err(e)) => e.to_string(),
            Err(_) => "the encoder panicked".to_string(),
        };
        // A failed pass drops its waiting replies: those requests get a 500, the server goes on.
        tracing::error!("batch failed: {failure}");
        running = None;
        replies.waiting.clear();
    }
}
