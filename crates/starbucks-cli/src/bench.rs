//! `starbucks bench`: one workload of the side-by-side benchmark, timed on the compiled backend,
//! printed as one JSON line. `cargo xtask bench` runs every workload here and in
//! `bench/reference/bench.py` (PyTorch) alternately and writes the comparison; the workloads and
//! their inputs are the same on both sides (the first rows of the shipped data files):
//!
//! - `train-srl`: an SRL fine-tuning step (the training engine's `step`: forward, SRL loss over
//!   the size list, MiniLM's by default, backward, clipping, AdamW) on 32 SNLI triplets
//!   (`--triplets`);
//! - `train-single`: the same batch, MNRL at the full size only;
//! - `train-smae`: an SMAE pre-training step on 8 FineWeb windows of ≤ 128 tokens;
//! - `train-mlm`: a plain MLM step on the same windows (full size, encoder masks, no decoder);
//! - `forward-N`: inference of the first N layers on 256 STS-B test sentences in one batch,
//!   mean-pooled (`Embedder::embed` at (N, hidden), tokenising included);
//! - `embed`: `Embedder::embed` of every STS-B test sentence at the full size (batch 32), and
//!   afterwards, untimed, the STS-B test Spearman at every size of the MiniLM list;
//! - `one-LENGTH-N`: interactive latency, one text per call: `Embedder::embed` of one text
//!   alone at (N, hidden), tokenising included, the i-th call the i-th text (what one request to
//!   `starbucks serve` at concurrency 1 costs without HTTP and queueing). LENGTH is `short`
//!   (STS-B test sentences as they are, 13 tokens on average), `medium` (FineWeb documents cut
//!   to 64 tokens) or `long` (cut to 128); every call's time is printed, `--iters` calls.
//!
//! `--precision` picks the embedder's arithmetic for the inference workloads (training is f32).
//! A benchmark, not a test: nothing here asserts a time.

use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Result, bail};
use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use starbucks_data::eval::read_stsb;
use starbucks_data::finetune::{read_triplets, triplet_texts};
use starbucks_data::fineweb::{Position, Source};
use starbucks_data::masking::{MaskingConfig, SmaeMasker};
use starbucks_model::{Embedder, Pooling, Size, bert::BertModel, config::BertConfig, tokenizer::Tokenizer};
use starbucks_objectives::smae::{MlmHead, Smae};
use starbucks_objectives::{Objective, SizeList};
use starbucks_train::checkpoint::TrainState;
use starbucks_train::engine::{DataSource, Engine, Micro, Task};
use starbucks_train::finetune::{FinetuneBatch, FinetuneTask};
use starbucks_train::pretrain::{MlmTask, PretrainModel, PretrainTask};
use starbucks_train::{Decay, LrSchedule, adamw};

use crate::args::BenchArgs;

const FORWARD_BATCH: usize = 256;
const SMAE_BATCH: usize = 8;
const SMAE_LEN: usize = 128;

/// A data source that yields the same micro-batch at every step.
struct Repeat<T>(T);

impl<T: Clone + Send> DataSource for Repeat<T> {
    type Batch = T;

    fn next_batch(&mut self, _rng: &mut ChaCha8Rng) -> starbucks_train::Result<T> {
        Ok(self.0.clone())
    }

    fn position(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    fn seek(&mut self, _position: &serde_json::Value) -> starbucks_train::Result<()> {
        Ok(())
    }
}

/// A training task fed one fixed micro-batch at every step.
struct Fixed<T>(T);

impl<B: AutodiffBackend, T: Task<B>> Task<B> for Fixed<T>
where
    <T::Data as DataSource>::Batch: Clone,
{
    type Model = T::Model;
    type Data = Repeat<<T::Data as DataSource>::Batch>;

    fn loss(
        &self,
        model: &T::Model,
        batch: <T::Data as DataSource>::Batch,
        rng: &mut ChaCha8Rng,
    ) -> starbucks_train::Result<Micro<B>> {
        self.0.loss(model, batch, rng)
    }

    fn encoder(model: &T::Model) -> &BertModel<B> {
        T::encoder(model)
    }
}

/// What one workload measured.
struct Measured {
    times_ms: Vec<f64>,
    items: usize,
    tokens: Option<usize>,
    padded_tokens: Option<usize>,
    /// STS-B test Spearman per size (`"layersxdims"`), for `embed`.
    spearman: Option<serde_json::Map<String, serde_json::Value>>,
}

fn timed(warmup: usize, iters: usize, mut step: impl FnMut() -> Result<()>) -> Result<Vec<f64>> {
    for _ in 0..warmup {
        step()?;
    }
    (0..iters.max(1))
        .map(|_| {
            let start = Instant::now();
            step()?;
            Ok(start.elapsed().as_secs_f64() * 1e3)
        })
        .collect()
}

fn peak_rss_mb() -> Option<f64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: getrusage only fills the struct it is given.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } == 0 {
            return Some(usage.ru_maxrss as f64 / 1024.0);
        }
    }
    None
}

/// `--sizes`, checked against the model.
fn size_list(args: &BenchArgs, config: &BertConfig) -> Result<SizeList> {
    Ok(SizeList::new(args.sizes(), config)?)
}

/// STS-B test: every first sentence, then every second one.
fn stsb_sentences(data: &Path) -> Result<Vec<String>> {
    let pairs = read_stsb(&data.join("stsb").join("sts-test.csv"))?;
    Ok(pairs.iter().map(|p| p.sentence1.clone()).chain(pairs.iter().map(|p| p.sentence2.clone())).collect())
}

/// The engine of a training run (AdamW wd 0.01, clipping 1.0) at a constant learning rate.
fn engine<B: AutodiffBackend, M: AutodiffModule<B>>(model: M, lr: f64, device: &B::Device) -> Engine<B, M> {
    let schedule = LrSchedule { peak: lr, warmup_steps: 0, total_steps: usize::MAX, decay: Decay::Linear };
    let state = TrainState { step: 0, skipped: 0, bad_in_row: 0, position: serde_json::Value::Null, seed: 42 };
    Engine::new(model, adamw(0.01).init(), schedule, state, device.clone())
}

fn train<B: AutodiffBackend, T: Task<B>>(
    args: &BenchArgs,
    model: T::Model,
    task: &T,
    data: T::Data,
    lr: f64,
    device: &B::Device,
) -> Result<Vec<f64>> {
    let data = Mutex::new(data);
    let mut engine = engine(model, lr, device);
    timed(args.warmup, args.iters, || Ok(engine.step(task, &data).map(|_| ())?))
}

fn finetune<B: AutodiffBackend>(
    args: &BenchArgs,
    config: &BertConfig,
    single: bool,
    device: &B::Device,
) -> Result<Measured> {
    let path = args.data.join("nli").join("snli-triplets.tsv.gz");
    let mut triplets = read_triplets(&path)?;
    let count = args.triplets as usize;
    if triplets.len() < count {
        bail!("--triplets {count}: {} holds {}", path.display(), triplets.len());
    }
    triplets.truncate(count);
    let tokenizer = Tokenizer::from_file(args.model.join("tokenizer.json"), 128)?;
    let objective =
        if single { Objective::Single(Size::full(config)) } else { Objective::srl(size_list(args, config)?, false) };
    let task =
        FinetuneTask { tokenizer: tokenizer.clone(), query_tokenizer: tokenizer, objective, pooling: Pooling::Mean };
    let texts = triplet_texts(&triplets);
    let (tokens, padded) = task.token_counts(&texts)?;
    let (model, _) = BertModel::<B>::from_safetensors(config, args.model.join("model.safetensors"), device)?;
    let batch = Repeat(FinetuneBatch::Triplets(triplets));
    let times_ms = train(args, model, &Fixed(task), batch, 5e-5, device)?;
    Ok(Measured { times_ms, items: 3 * count, tokens: Some(tokens), padded_tokens: Some(padded), spearman: None })
}

fn pretrain<B: AutodiffBackend>(
    args: &BenchArgs,
    config: &BertConfig,
    smae: bool,
    device: &B::Device,
) -> Result<Measured> {
    let tokenizer_path = args.model.join("tokenizer.json");
    let tokenizer = Tokenizer::from_file(&tokenizer_path, SMAE_LEN)?;
    let masking = MaskingConfig { max_len: SMAE_LEN, ..MaskingConfig::default() };
    let masker = SmaeMasker::new(tokenizer.inner().clone(), masking, &tokenizer_path.display().to_string())?;
    let source = Source::local(&args.data.join("fineweb").join("fineweb-subset-300.json.gz").display().to_string())?;
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let mut examples = Vec::new();
    for doc in source.stream(Position::default()) {
        if let Some(example) = masker.example(&doc?.text, &mut rng)? {
            examples.push(example);
        }
        if examples.len() == SMAE_BATCH {
            break;
        }
    }
    let tokens: usize = examples.iter().map(|e| e.input_ids.len()).sum();
    let padded = SMAE_BATCH * examples.iter().map(|e| e.input_ids.len()).max().unwrap_or(0);
    let pad_id = tokenizer.pad_id();
    let (encoder, _) = BertModel::<B>::from_safetensors(config, args.model.join("model.safetensors"), device)?;
    let smae_modules = Smae::new(&encoder, MlmHead::new(config, device));
    let model = PretrainModel { encoder, smae: smae_modules };
    let batch = Repeat(examples);
    let times_ms = if smae {
        let task = PretrainTask { sizes: size_list(args, config)?, pad_id };
        train(args, model, &Fixed(task), batch, 1e-4, device)?
    } else {
        train(args, model, &Fixed(MlmTask { pad_id }), batch, 1e-4, device)?
    };
    Ok(Measured { times_ms, items: SMAE_BATCH, tokens: Some(tokens), padded_tokens: Some(padded), spearman: None })
}

fn forward<B: Backend>(args: &BenchArgs, config: &BertConfig, layers: usize, device: &B::Device) -> Result<Measured> {
    let mut sentences = stsb_sentences(&args.data)?;
    sentences.truncate(FORWARD_BATCH);
    let embedder = embedder::<B>(args, device)?.with_batch_size(FORWARD_BATCH).with_max_seq_length(128)?;
    let batch = embedder.tokenizer().encode(&sentences)?;
    let size = Size::new(layers, config.hidden_size);
    let times_ms = timed(args.warmup, args.iters, || Ok(embedder.embed(&sentences, size).map(|_| ())?))?;
    Ok(Measured {
        times_ms,
        items: FORWARD_BATCH,
        tokens: Some(batch.tokens()),
        padded_tokens: Some(batch.input_ids.len()),
        spearman: None,
    })
}

/// The model folder's embedder in the precision asked for.
fn embedder<B: Backend>(args: &BenchArgs, device: &B::Device) -> Result<Embedder<B>> {
    Ok(Embedder::<B>::from_pretrained(&args.model, device)?.with_precision(args.precision)?)
}

fn embed<B: Backend>(args: &BenchArgs, config: &BertConfig, device: &B::Device) -> Result<Measured> {
    let sentences = stsb_sentences(&args.data)?;
    let embedder = embedder::<B>(args, device)?.with_batch_size(32);
    let size = embedder.full_size();
    let times_ms = timed(args.warmup, args.iters, || Ok(embedder.embed(&sentences, size).map(|_| ())?))?;
    let pairs = read_stsb(&args.data.join("stsb").join("sts-test.csv"))?;
    let sizes: Vec<Size> = size_list(args, config)?.sizes().to_vec();
    let scores = starbucks_eval::sts::evaluate(&embedder, &[("sts-test".to_string(), pairs)], &sizes)?;
    let spearman = scores[0]
        .per_size
        .iter()
        .map(|(size, c)| {
            (format!("{}x{}", size.layers, size.dims), serde_json::json!((c.spearman * 1e6).round() / 1e6))
        })
        .collect();
    Ok(Measured { times_ms, items: sentences.len(), tokens: None, padded_tokens: None, spearman: Some(spearman) })
}

/// The texts of a `one-LENGTH-N` workload and the tokens each is cut to.
fn one_texts(data: &Path, length: &str) -> Result<(Vec<String>, usize)> {
    let fineweb = |cut: usize| -> Result<(Vec<String>, usize)> {
        let path = data.join("fineweb").join("fineweb-subset-300.json.gz");
        let source = Source::local(&path.display().to_string())?;
        let mut texts = Vec::new();
        for doc in source.stream(Position::default()) {
            let text = doc?.text;
            if !text.trim().is_empty() {
                texts.push(text);
            }
        }
        Ok((texts, cut))
    };
    match length {
        "short" => Ok((stsb_sentences(data)?, 128)),
        "medium" => fineweb(64),
        "long" => fineweb(128),
        _ => bail!("unknown text length '{length}' in one-LENGTH-N: expected short, medium or long"),
    }
}

fn one<B: Backend>(args: &BenchArgs, length: &str, layers: usize, device: &B::Device) -> Result<Measured> {
    let (texts, cut) = one_texts(&args.data, length)?;
    let embedder = embedder::<B>(args, device)?.with_max_seq_length(cut)?;
    let size = Size::new(layers, embedder.full_size().dims);
    let mut next = texts.iter().cycle();
    let times_ms = timed(args.warmup, args.iters, || {
        let text = next.next().expect("a cycle of a non-empty list");
        Ok(embedder.embed(&[text], size).map(|_| ())?)
    })?;
    Ok(Measured { times_ms, items: 1, tokens: None, padded_tokens: None, spearman: None })
}

pub fn run<B: AutodiffBackend>(mut args: BenchArgs, device: &B::Device) -> Result<()> {
    // The workloads read the folder's files themselves.
    args.model = starbucks_model::resolve_model(&args.model)?;
    let config = BertConfig::from_file(args.model.join("config.json"))?;
    let w = args.workload.as_str();
    let measured = match w {
        "train-srl" => finetune::<B>(&args, &config, false, device)?,
        "train-single" => finetune::<B>(&args, &config, true, device)?,
        "train-smae" => pretrain::<B>(&args, &config, true, device)?,
        "train-mlm" => pretrain::<B>(&args, &config, false, device)?,
        "embed" => embed::<B::InnerBackend>(&args, &config, device)?,
        _ => {
            let workloads = "train-srl, train-single, train-smae, train-mlm, embed, forward-N or one-LENGTH-N";
            let layers = |n: &str| n.parse::<usize>().ok().filter(|n| (1..=config.num_hidden_layers).contains(n));
            if let Some(n) = w.strip_prefix("forward-").and_then(layers) {
                forward::<B::InnerBackend>(&args, &config, n, device)?
            } else if let Some((length, n)) = w.strip_prefix("one-").and_then(|rest| rest.rsplit_once('-')) {
                let Some(n) = layers(n) else {
                    bail!("workload '{w}': N must be a layer count in 1..={}", config.num_hidden_layers)
                };
                one::<B::InnerBackend>(&args, length, n, device)?
            } else {
                bail!("unknown workload '{w}': expected {workloads} (N in 1..={})", config.num_hidden_layers)
            }
        }
    };
    let mut sorted = measured.times_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let line = json!({
        "side": format!("burn-{}", args.precision),
        "workload": w,
        "backend": crate::backend::NAME,
        // The instruction-set tier of our CPU kernels (`STARBUCKS_SIMD` may hold it lower).
        "simd": (crate::backend::NAME == "flex").then(|| starbucks_model::simd::Tier::widest().name()),
        "times_ms": measured.times_ms,
        "median_ms": sorted[sorted.len() / 2],
        "items": measured.items,
        "tokens": measured.tokens,
        "padded_tokens": measured.padded_tokens,
        "threads": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "peak_rss_mb": peak_rss_mb(),
        "spearman": measured.spearman,
        "versions": { "starbucks": env!("CARGO_PKG_VERSION"), "burn": "0.21.0" },
    });
    println!("{line}");
    Ok(())
}
