//! A whole run from a [`RunConfig`]: check every input before writing anything, then train
//! with progress, logs and `metrics.jsonl`, checkpoint every K steps and at the end, evaluate
//! periodically, and write the final model folder. The output folder:
//!
//! ```text
//! .lock            held while a run uses the folder (see `lock`)
//! config.toml      the resolved config (every default written out)
//! metrics.jsonl    one line per step, plus one per evaluation
//! checkpoints/     step-00000100/ … (the newest `checkpoint.keep`)
//! model/           the trained encoder: a sentence-transformers folder `Embedder` loads
//! ```

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::collective::{self, CollectiveConfig, PeerId};
use burn::module::AutodiffModule;
use burn::optim::AdamW;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::tensor::backend::AutodiffBackend;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use starbucks_data::fineweb::Source;
use starbucks_data::masking::{MaskingConfig, SmaeMasker};
use starbucks_model::{BertConfig, BertModel, Embedder, Pooling, SentenceConfig, Size, Tokenizer, settle};
use starbucks_model::{ExportOptions, export_sentence_transformers};
use starbucks_objectives::smae::{MlmHead, Smae};
use starbucks_objectives::{Mse2dConfig, Objective, SizeList};

use crate::checkpoint::{self, TrainState};
use crate::config::{DataFormat, Method, RunConfig, Task as TaskKind};
use crate::engine::{DataSource, Engine, Peer, StepReport, Task};
use crate::error::{Error, Result};
use crate::finetune::{Examples, FinetuneData, FinetuneTask};
use crate::lock::{self, LOCK_FILE};
use crate::optim::{LrSchedule, adamw};
use crate::pretrain::{PretrainData, PretrainModel, PretrainTask};

/// Evaluates a model at the given sizes (e.g. STS-B dev Spearman), one score per size.
pub type EvalFn<'a, B> = dyn FnMut(&Embedder<B>, &[Size]) -> std::result::Result<Vec<f64>, String> + 'a;

/// How to run, beside the config.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Overrides the config's `output`.
    pub output: Option<PathBuf>,
    /// Continue the run in the output folder (its config must be the same); start one when the
    /// folder is empty or missing.
    pub resume: bool,
    /// Draw a progress bar on stderr (when it is a terminal).
    pub progress: bool,
    /// Set it non-zero (a signal handler does) to end the run after the current step with a
    /// checkpoint: the run returns [`Error::Interrupted`], and `--resume` continues it exactly.
    pub stop: Arc<AtomicUsize>,
}

/// What a finished run did.
#[derive(Debug, Clone)]
pub struct Summary {
    pub output: PathBuf,
    pub model_dir: PathBuf,
    pub steps: usize,
    pub skipped: usize,
    /// The step the run resumed from (0 for a fresh run).
    pub resumed_from: usize,
    /// Mean loss of the first and the last 10 % of the steps this process ran.
    pub first_loss: Option<f64>,
    pub last_loss: Option<f64>,
    /// The final evaluation per size, when an evaluator was given.
    pub eval: Option<Vec<(Size, f64)>>,
    pub seconds: f64,
}

/// Settings every task shares, checked.
struct Common {
    config: RunConfig,
    output: PathBuf,
    bert: BertConfig,
    sentence: SentenceConfig,
    tokenizer: Tokenizer,
    sizes: SizeList,
    pooling: Pooling,
    progress: bool,
}

fn input<E: std::fmt::Display>(e: E) -> Error {
    Error::Input(e.to_string())
}

/// Refuses an output folder that holds something other than this run (or anything, without
/// `resume`).
fn check_output(config: &RunConfig, output: &Path, resume: bool) -> Result<()> {
    if output.exists() && !output.is_dir() {
        return Err(Error::Input(format!("{}: the output path is a file", output.display())));
    }
    starbucks_data::output::check_writable(output).map_err(Error::Input)?;
    let occupied = output.is_dir()
        && std::fs::read_dir(output).map_err(input)?.filter_map(|e| e.ok()).any(|e| e.file_name() != LOCK_FILE);
    if !occupied {
        return Ok(());
    }
    let saved = output.join("config.toml");
    if !resume {
        return Err(Error::Input(format!(
            "{}: the output folder holds another run; pass --resume to continue it, or choose another --output",
            output.display()
        )));
    }
    let text = std::fs::read_to_string(&saved)
        .map_err(|_| Error::Input(format!("{}: the output folder is not empty and holds no run", output.display())))?;
    let theirs: RunConfig =
        toml::from_str(&text).map_err(|e| Error::Input(format!("{}: not a run config: {e}", saved.display())))?;
    let mut ours = config.clone();
    ours.output = theirs.output.clone();
    if let Some(difference) = ours.first_difference(&theirs) {
        return Err(Error::Input(format!(
            "{}: the output folder holds a run with another config ({difference}); choose another --output",
            output.display()
        )));
    }
    Ok(())
}

fn common(config: &RunConfig, options: &RunOptions) -> Result<Common> {
    let output = options.output.clone().unwrap_or_else(|| config.output.clone());
    let dir = &config.model.path;
    let bert = BertConfig::from_file(dir.join("config.json")).map_err(input)?;
    let sentence = SentenceConfig::from_dir(dir, &bert).map_err(input)?;
    if sentence.dense.is_some() {
        return Err(Error::Input(format!(
            "{}: training a model with a Dense module is not supported; start from the plain encoder",
            dir.display()
        )));
    }
    let max_len = config.model.max_seq_length.unwrap_or(sentence.max_seq_length);
    if max_len > bert.max_position_embeddings {
        return Err(Error::Input(format!(
            "key `model.max_seq_length`: {max_len} exceeds the model's {} positions",
            bert.max_position_embeddings
        )));
    }
    if max_len < 3 {
        return Err(Error::Input(format!(
            "key `model.max_seq_length`: {max_len} leaves no room for a token between [CLS] and [SEP] (at least 3)"
        )));
    }
    let tokenizer_path = dir.join("tokenizer.json");
    let tokenizer = Tokenizer::from_file(&tokenizer_path, max_len).map_err(input)?;
    tokenizer.check_vocab(&bert, &tokenizer_path).map_err(input)?;
    let sizes =
        Size::parse_list(&config.objective.sizes).map_err(|e| Error::Input(format!("key `objective.sizes`: {e}")))?;
    let sizes = SizeList::new(sizes, &bert).map_err(|e| Error::Input(format!("key `objective.sizes`: {e}")))?;
    let pooling =
        config.model.pooling.unwrap_or(if config.data.format.is_retrieval() { Pooling::Cls } else { Pooling::Mean });
    lock::check_free(&output)?;
    check_output(config, &output, options.resume)?;
    let sentence = SentenceConfig { max_seq_length: max_len, pooling, ..sentence };
    Ok(Common { config: config.clone(), output, bert, sentence, tokenizer, sizes, pooling, progress: options.progress })
}

fn load_encoder<B: AutodiffBackend>(c: &Common, device: &B::Device) -> Result<BertModel<B>> {
    let path = c.config.model.path.join("model.safetensors");
    let (model, _) = BertModel::from_safetensors(&c.bert, &path, device).map_err(input)?;
    Ok(model)
}

fn objective(c: &Common) -> Result<Objective> {
    let retrieval = c.config.data.format.is_retrieval();
    Ok(match c.config.objective.method {
        Method::Srl => {
            let mut objective = Objective::srl(c.sizes.clone(), retrieval);
            if let (Objective::Srl { kl_weight, .. }, Some(w)) = (&mut objective, c.config.objective.kl_weight) {
                *kl_weight = w;
            }
            objective
        }
        Method::Mse2d => {
            let mut dims: Vec<usize> = c.sizes.sizes().iter().map(|s| s.dims).collect();
            dims.reverse();
            Objective::Mse2d(Mse2dConfig::new(dims))
        }
        Method::Single => {
            let size = match &c.config.objective.size {
                Some(text) => text.parse::<Size>().map_err(|e| Error::Input(format!("key `objective.size`: {e}")))?,
                None => c.sizes.full(),
            };
            size.check(&c.bert).map_err(|e| Error::Input(format!("key `objective.size`: {e}")))?;
            Objective::Single(size)
        }
        Method::Smae => unreachable!("the config check keeps SMAE to pre-training"),
    })
}

fn finetune_task(c: &Common) -> Result<(FinetuneTask, FinetuneData)> {
    let d = &c.config.data;
    let path = Path::new(&d.path);
    let examples = match d.format {
        DataFormat::Triplets => Examples::Triplets(starbucks_data::finetune::read_triplets(path).map_err(input)?),
        DataFormat::NliPairs => Examples::Triplets(starbucks_data::finetune::triplets_from_pairs(
            &starbucks_data::finetune::read_nli_pairs(path).map_err(input)?,
        )),
        DataFormat::Tevatron | DataFormat::MsmarcoTriples => {
            let examples = if d.format == DataFormat::Tevatron {
                starbucks_data::finetune::read_tevatron(path)
            } else {
                starbucks_data::finetune::read_msmarco_triples(path)
            }
            .map_err(input)?;
            if let Some(e) = examples.iter().find(|e| e.negative_passages.is_empty()) {
                return Err(Error::Input(format!("{}: query {} has no negative passage", d.path, e.query_id)));
            }
            Examples::Retrieval { examples, negatives: d.negatives.unwrap_or(7) }
        }
        DataFormat::Fineweb => unreachable!("the config check keeps FineWeb to pre-training"),
    };
    if examples.is_empty() {
        return Err(Error::Input(format!("{}: no training examples", d.path)));
    }
    let tokenizer_path = c.config.model.path.join("tokenizer.json");
    let (tokenizer, query_tokenizer) = if d.format.is_retrieval() {
        (
            Tokenizer::from_file(&tokenizer_path, d.passage_max_len.unwrap_or(196)).map_err(input)?,
            Tokenizer::from_file(&tokenizer_path, d.query_max_len.unwrap_or(32)).map_err(input)?,
        )
    } else {
        (c.tokenizer.clone(), c.tokenizer.clone())
    };
    let t = &c.config.train;
    let task = FinetuneTask { tokenizer, query_tokenizer, objective: objective(c)?, pooling: c.pooling };
    Ok((task, FinetuneData::new(examples, t.batch_size, t.seed)))
}

fn pretrain_source(spec: &str) -> Result<Source> {
    if let Some(rest) = spec.strip_prefix("hf://datasets/") {
        let parts: Vec<&str> = rest.splitn(3, '/').collect();
        if parts.len() < 3 {
            return Err(Error::Input(format!("key `data.path`: {spec}: expected hf://datasets/<owner>/<name>/<path>")));
        }
        let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into());
        let repo = format!("{}/{}", parts[0], parts[1]);
        return Source::hf_dataset(&endpoint, &repo, parts[2], "main").map_err(input);
    }
    if spec.starts_with("http://") || spec.starts_with("https://") {
        return Ok(Source::urls(spec.split_whitespace()));
    }
    Source::local(spec).map_err(input)
}

fn pretrain_task(c: &Common) -> Result<(PretrainTask, PretrainData)> {
    let d = &c.config.data;
    let source = pretrain_source(&d.path)?;
    let defaults = MaskingConfig::default();
    let masking = MaskingConfig {
        max_len: d.max_len.unwrap_or(c.tokenizer.max_length()),
        encoder_ratio: d.encoder_ratio.unwrap_or(defaults.encoder_ratio),
        decoder_ratio: d.decoder_ratio.unwrap_or(defaults.decoder_ratio),
        ..defaults
    };
    // Named as the config spells them, before the tokenizer is read.
    masking.check().map_err(|message| Error::Input(message.replacen("`", "key `data.", 1)))?;
    if masking.max_len > c.bert.max_position_embeddings {
        return Err(Error::Input(format!(
            "key `data.max_len`: {} exceeds the model's {} positions",
            masking.max_len, c.bert.max_position_embeddings
        )));
    }
    let masker = SmaeMasker::from_file(&c.config.model.path.join("tokenizer.json"), masking).map_err(input)?;
    // The first document is read now, so a bad path or format is reported before any output.
    source.stream(Default::default()).next().transpose().map_err(input)?;
    let pad_id = c.tokenizer.inner().get_padding().map_or(0, |p| p.pad_id);
    let task = PretrainTask { sizes: c.sizes.clone(), pad_id };
    Ok((task, PretrainData::new(source, masker, c.config.train.batch_size)))
}

/// Trains as `config` says. Every input is checked before anything is written; such errors are
/// [`Error::Input`]. `eval` scores a model at the size list (STS-B dev, say): run every
/// `eval.every` steps and at the end.
pub fn run<B: AutodiffBackend>(
    config: &RunConfig,
    options: &RunOptions,
    devices: &[B::Device],
    eval: Option<&mut EvalFn<'_, B::InnerBackend>>,
) -> Result<Summary> {
    let c = common(config, options)?;
    if devices.len() != config.train.devices.len() {
        return Err(Error::Input(format!(
            "key `train.devices` lists {} devices but {} were given",
            config.train.devices.len(),
            devices.len()
        )));
    }
    let device = &devices[0];
    match config.task {
        TaskKind::Finetune => {
            let (task, data) = finetune_task(&c)?;
            let per_step = config.train.grad_accum * devices.len();
            let total = match (config.train.max_steps, config.train.epochs) {
                (Some(steps), _) => steps,
                (None, Some(epochs)) => (data.batches_per_epoch() * epochs).div_ceil(per_step),
                (None, None) => unreachable!("checked with the config"),
            };
            let model = load_encoder::<B>(&c, device)?;
            drive(&c, options, task, data, model, total, devices, eval)
        }
        TaskKind::Pretrain => {
            let (task, data) = pretrain_task(&c)?;
            let encoder = load_encoder::<B>(&c, device)?;
            // Every parameter a run creates is drawn from its seed (burn's generator is global and
            // seeded from the clock otherwise), and drawn now: burn initialises lazily.
            B::seed(device, config.train.seed);
            let head = MlmHead::from_safetensors_or_new(&c.bert, &config.model.path.join("model.safetensors"), device)
                .map_err(input)?;
            settle(&head);
            let smae = Smae::new(&encoder, head);
            let total = config.train.max_steps.expect("checked with the config");
            drive(&c, options, task, data, PretrainModel { encoder, smae }, total, devices, eval)
        }
    }
}

/// Appends JSON lines to `metrics.jsonl`, flushed line by line.
struct Metrics {
    path: PathBuf,
    file: std::fs::File,
}

impl Metrics {
    /// Opens `path`, keeping only the lines of steps ≤ `step` (those after the checkpoint a
    /// resumed run continues from were never saved and will be redone).
    fn open(path: &Path, step: usize) -> Result<Self> {
        let kept: String = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter(|line| {
                serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| v["step"].as_u64())
                    .is_some_and(|s| s as usize <= step)
            })
            .map(|line| format!("{line}\n"))
            .collect();
        checkpoint::write_atomic(path, kept.as_bytes())?;
        let file = OpenOptions::new().append(true).open(path).map_err(|e| Error::io(path, e))?;
        Ok(Metrics { path: path.to_path_buf(), file })
    }

    fn write(&mut self, value: serde_json::Value) -> Result<()> {
        writeln!(self.file, "{value}").map_err(|e| Error::io(&self.path, e))
    }
}

fn step_metrics(report: &StepReport, skipped: usize, seconds: f64) -> serde_json::Value {
    let terms: serde_json::Map<String, serde_json::Value> =
        report.terms.iter().map(|(name, v)| (name.clone(), json!(v))).collect();
    json!({
        "step": report.step,
        "loss": report.loss,
        "terms": terms,
        "lr": report.lr,
        "grad_norm": report.grad_norm,
        "tokens": report.tokens,
        "tokens_per_s": report.tokens as f64 / seconds.max(1e-9),
        "applied": report.applied,
        "skipped": skipped,
    })
}

fn embedder<B: AutodiffBackend>(
    c: &Common,
    model: BertModel<B::InnerBackend>,
    device: &B::Device,
) -> Embedder<B::InnerBackend> {
    Embedder::from_parts(model, c.bert.clone(), c.tokenizer.clone(), c.sentence.clone(), &device.clone())
}

fn evaluate<B: AutodiffBackend>(
    c: &Common,
    model: BertModel<B::InnerBackend>,
    device: &B::Device,
    eval: &mut EvalFn<'_, B::InnerBackend>,
) -> Result<Vec<(Size, f64)>> {
    let sizes = c.sizes.sizes();
    let scores = eval(&embedder::<B>(c, model, device), sizes).map_err(Error::Eval)?;
    Ok(sizes.iter().copied().zip(scores).collect())
}

fn eval_metrics(step: usize, scores: &[(Size, f64)]) -> serde_json::Value {
    let per_size: serde_json::Map<String, serde_json::Value> =
        scores.iter().map(|(size, v)| (format!("{},{}", size.layers, size.dims), json!(v))).collect();
    let mean = scores.iter().map(|(_, v)| v).sum::<f64>() / scores.len().max(1) as f64;
    json!({"step": step, "eval": {"spearman": per_size, "mean": mean}})
}

fn log_eval(step: usize, scores: &[(Size, f64)]) {
    let line: Vec<String> = scores.iter().map(|(s, v)| format!("{s} {v:.4}")).collect();
    tracing::info!(step, "eval spearman: {}", line.join(", "));
}

/// One engine per device, each with the model (a replica on its device), a fresh optimiser, and,
/// when resuming, the newest valid checkpoint: chosen once by rank 0, loaded by every replica.
fn engines<B: AutodiffBackend, M: AutodiffModule<B>>(
    c: &Common,
    options: &RunOptions,
    model: M,
    schedule: LrSchedule,
    fresh: TrainState,
    devices: &[B::Device],
) -> Result<Vec<Engine<B, M>>> {
    let t = &c.config.train;
    let checkpoints = c.output.join("checkpoints");
    settle(&model);
    let world = devices.len();
    let mut chosen: Option<(PathBuf, TrainState)> = None;
    devices
        .iter()
        .enumerate()
        .map(|(rank, device)| {
            let replica = if rank == 0 { model.clone() } else { model.clone().fork(device) };
            let optimizer: OptimizerAdaptor<AdamW, M, B> = adamw(t.weight_decay as f32).init();
            let (replica, optimizer) = match (&chosen, options.resume) {
                (Some((dir, _)), _) => checkpoint::load(dir, replica, optimizer, device)?,
                (None, true) if rank == 0 => {
                    let (replica, optimizer, found) = checkpoint::load_newest(&checkpoints, replica, optimizer, device);
                    chosen = found;
                    (replica, optimizer)
                }
                _ => (replica, optimizer),
            };
            let state = chosen.as_ref().map_or_else(|| fresh.clone(), |(_, state)| state.clone());
            let mut engine = Engine::new(replica, optimizer, schedule, state, device.clone());
            engine.max_grad_norm = t.max_grad_norm;
            engine.grad_accum = t.grad_accum;
            engine.max_bad_steps = t.max_bad_steps;
            engine.peer = (world > 1).then_some(Peer { rank, world });
            engine.stop = options.stop.clone();
            Ok(engine)
        })
        .collect()
}

/// Registers `engine`'s peer with burn's collective (a no-op on a single device).
fn register<B: AutodiffBackend, M: AutodiffModule<B>>(engine: &Engine<B, M>, device: &B::Device) -> Result<()> {
    let Some(peer) = engine.peer else { return Ok(()) };
    let config = CollectiveConfig::default().with_num_devices(peer.world);
    collective::register::<B::InnerBackend>(PeerId::from(peer.rank as u32), device.clone(), config)
        .map_err(|e| Error::Parallel(format!("registering peer {}: {e:?}", peer.rank)))
}

/// A peer other than rank 0: steps in lockstep (the all-reduce inside each step is the
/// barrier); rank 0 logs, checkpoints and evaluates for all.
fn follow<B: AutodiffBackend, T: Task<B>>(
    mut engine: Engine<B, T::Model>,
    task: &T,
    data: &Mutex<T::Data>,
    total_steps: usize,
    device: &B::Device,
) -> Result<()> {
    register(&engine, device)?;
    while engine.state.step < total_steps {
        if engine.step(task, data)?.stop {
            break;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn drive<B: AutodiffBackend, T: Task<B>>(
    c: &Common,
    options: &RunOptions,
    task: T,
    data: T::Data,
    model: T::Model,
    total_steps: usize,
    devices: &[B::Device],
    eval: Option<&mut EvalFn<'_, B::InnerBackend>>,
) -> Result<Summary>
where
    T::Model: AutodiffModule<B>,
    <T::Model as AutodiffModule<B>>::InnerModule: Clone,
{
    let t = &c.config.train;
    let out = &c.output;
    let _lock = lock::lock(out)?;
    // Checked again under the lock: a run that held the folder meanwhile may have filled it.
    check_output(&c.config, out, options.resume)?;
    checkpoint::write_atomic(&out.join("config.toml"), c.config.to_toml().as_bytes())?;

    let schedule = LrSchedule {
        peak: t.lr,
        warmup_steps: (total_steps as f64 * t.warmup_ratio).ceil() as usize,
        total_steps,
        decay: t.decay,
    };
    let fresh = TrainState { step: 0, skipped: 0, bad_in_row: 0, position: data.position(), seed: t.seed };
    let mut engines = engines(c, options, model, schedule, fresh, devices)?;
    let mut data = data;
    if engines[0].state.step > 0 {
        data.seek(&engines[0].state.position)?;
    }
    let data = Mutex::new(data);
    let leader = engines.remove(0);
    if engines.is_empty() {
        return lead(c, leader, &task, &data, total_steps, &devices[0], eval);
    }

    collective::reset_collective::<B::InnerBackend>();
    tracing::info!(
        "data-parallel over {} peers: global batch {}",
        devices.len(),
        t.batch_size * t.grad_accum * devices.len()
    );
    std::thread::scope(|scope| {
        let (task, data) = (&task, &data);
        let followers: Vec<_> = engines
            .into_iter()
            .zip(&devices[1..])
            .map(|(engine, device)| {
                scope.spawn(move || {
                    let result = follow(engine, task, data, total_steps, device);
                    if result.is_err() {
                        // Wake the peers waiting in an all-reduce: they fail too, and the run ends.
                        collective::reset_collective::<B::InnerBackend>();
                    }
                    result
                })
            })
            .collect();
        let led = lead(c, leader, task, data, total_steps, &devices[0], eval);
        if led.is_err() {
            collective::reset_collective::<B::InnerBackend>();
        }
        let mut first_error = None;
        for follower in followers {
            match follower.join() {
                Ok(Err(e)) if !matches!(e, Error::Parallel(_)) => {
                    first_error.get_or_insert(e);
                }
                Ok(_) => {}
                Err(_) => {
                    first_error.get_or_insert(Error::Parallel("a peer panicked".into()));
                }
            }
        }
        match (led, first_error) {
            (Ok(summary), None) => Ok(summary),
            (Err(e), _) if !matches!(e, Error::Parallel(_)) => Err(e),
            (_, Some(e)) => Err(e),
            (Err(e), None) => Err(e),
        }
    })
}

/// Rank 0 (or the only device): steps, logs, `metrics.jsonl`, checkpoints, evaluation, and the
/// final model folder.
fn lead<B: AutodiffBackend, T: Task<B>>(
    c: &Common,
    mut engine: Engine<B, T::Model>,
    task: &T,
    data: &Mutex<T::Data>,
    total_steps: usize,
    device: &B::Device,
    mut eval: Option<&mut EvalFn<'_, B::InnerBackend>>,
) -> Result<Summary>
where
    <T::Model as AutodiffModule<B>>::InnerModule: Clone,
{
    register(&engine, device)?;
    let started = Instant::now();
    let t = &c.config.train;
    let out = &c.output;
    let checkpoints = out.join("checkpoints");
    let resumed_from = engine.state.step;
    let mut metrics = Metrics::open(&out.join("metrics.jsonl"), resumed_from)?;

    tracing::info!(
        task = %c.config.task,
        steps = total_steps,
        from = resumed_from,
        warmup = engine.schedule.warmup_steps,
        "training {} sizes {}; precision f32 (burn 0.21 has no automatic mixed precision)",
        c.config.model.path.display(),
        c.sizes.sizes().iter().map(|s| s.to_string()).collect::<Vec<_>>().join(" ")
    );
    let bar = if c.progress { ProgressBar::new(total_steps as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} step {pos}/{len} [{bar:30}] {msg} {elapsed_precise} (eta {eta})")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_position(resumed_from as u64);
    bar.reset_eta();

    let save = |engine: &Engine<B, T::Model>| {
        checkpoint::save(&checkpoints, &engine.model, &engine.optimizer, &engine.state, c.config.checkpoint.keep)
    };
    let mut losses = Vec::new();
    let (mut tokens, mut timed) = (0usize, 0f64);
    let eval_every = c.config.eval.every;
    while engine.state.step < total_steps {
        let step_started = Instant::now();
        let report = match engine.step(task, data) {
            Ok(report) => report,
            Err(e @ Error::Diverged(_)) => {
                // The model is the last applied one: keep it before giving up.
                save(&engine)?;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let seconds = step_started.elapsed().as_secs_f64();
        tokens += report.tokens;
        timed += seconds;
        losses.push(report.loss);
        metrics.write(step_metrics(&report, engine.state.skipped, seconds))?;
        bar.set_position(report.step as u64);
        bar.set_message(format!("loss {:.4} | {:.0} tok/s", report.loss, tokens as f64 / timed));
        if report.step % t.log_every == 0 || report.step == total_steps {
            tracing::info!(
                step = report.step,
                loss = format!("{:.4}", report.loss),
                lr = format!("{:.3e}", report.lr),
                grad_norm = format!("{:.3}", report.grad_norm),
                tokens_per_s = format!("{:.0}", tokens as f64 / timed),
                skipped = engine.state.skipped,
            );
        }
        if report.step % c.config.checkpoint.every == 0 || report.step == total_steps || report.stop {
            let dir = save(&engine)?;
            tracing::info!("checkpoint {}", dir.display());
            if report.stop {
                bar.finish_and_clear();
                return Err(Error::Interrupted { step: report.step, checkpoint: dir });
            }
        }
        if let Some(eval) = eval.as_deref_mut()
            && eval_every > 0
            && report.step % eval_every == 0
            && report.step < total_steps
        {
            let scores = evaluate::<B>(c, T::encoder(&engine.model).valid(), device, eval)?;
            log_eval(report.step, &scores);
            metrics.write(eval_metrics(report.step, &scores))?;
        }
    }
    bar.finish_and_clear();

    let final_model = T::encoder(&engine.model).valid();
    let model_dir = out.join("model");
    if !model_dir.exists() {
        let options = ExportOptions {
            size: Size::full(&c.bert),
            normalize: false,
            sentence_transformers: true,
            trained_sizes: c.sizes.sizes().to_vec(),
        };
        export_sentence_transformers(
            &embedder::<B>(c, final_model.clone(), device),
            &c.config.model.path,
            &model_dir,
            &options,
        )?;
        tracing::info!("model written to {}", model_dir.display());
    }
    let scores = match eval {
        Some(eval) => {
            let scores = evaluate::<B>(c, final_model, device, eval)?;
            log_eval(engine.state.step, &scores);
            if engine.state.step > resumed_from {
                metrics.write(eval_metrics(engine.state.step, &scores))?;
            }
            Some(scores)
        }
        None => None,
    };
    let tenth = (losses.len() / 10).max(1);
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    Ok(Summary {
        output: out.clone(),
        model_dir,
        steps: engine.state.step,
        skipped: engine.state.skipped,
        resumed_from,
        first_loss: mean(&losses[..tenth.min(losses.len())]),
        last_loss: mean(&losses[losses.len().saturating_sub(tenth)..]),
        eval: scores,
        seconds: started.elapsed().as_secs_f64(),
    })
}
