//! A whole run from a [`RunConfig`]: check every input before writing anything, then train
//! with progress, logs and `metrics.jsonl`, checkpoint every K steps and at the end, evaluate
//! periodically, and write the final model folder. The output folder:
//!
//! ```text
//! .lock            held while a run uses the folder (see `lock`)
//! config.toml      the resolved config (every default written out)
//! metrics.jsonl    one line per step, plus one per evaluation (see `metrics`)
//! checkpoints/     step-00000100/ … (the newest `checkpoint.keep`)
//! model/           the trained encoder: a sentence-transformers folder `Embedder` loads
//! ```
//!
//! `setup` reads and checks the inputs, `parallel` runs the data-parallel peers, and this file
//! holds the leader's loop.

pub mod metrics;
mod parallel;
mod setup;

use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use indicatif::{ProgressBar, ProgressStyle};
use starbucks_model::{
    Embedder, Size,
    bert::{BertModel, settle},
};
use starbucks_model::{ExportOptions, export_sentence_transformers};
use starbucks_objectives::smae::{MlmHead, Smae};

use self::metrics::{EvalLine, Metrics, MetricsLine, StepLine};
use self::setup::{Common, input};
use crate::checkpoint::{self, TrainState};
use crate::config::{RunConfig, Task as TaskKind};
use crate::engine::{DataSource, Engine, Task};
use crate::error::{Error, Result};
use crate::lock;
use crate::optim::LrSchedule;
use crate::pretrain::PretrainModel;

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

/// Trains as `config` says. Every input is checked before anything is written; such errors are
/// [`Error::Input`]. `eval` scores a model at the size list (STS-B dev, say): run every
/// `eval.every` steps and at the end.
pub fn run<B: AutodiffBackend>(
    config: &RunConfig,
    options: &RunOptions,
    devices: &[B::Device],
    eval: Option<&mut EvalFn<'_, B::InnerBackend>>,
) -> Result<Summary> {
    let c = setup::common(config, options)?;
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
            let (task, data) = setup::finetune_task(&c)?;
            let per_step = config.train.grad_accum * devices.len();
            let total = match (config.train.max_steps, config.train.epochs) {
                (Some(steps), _) => steps,
                (None, Some(epochs)) => (data.batches_per_epoch() * epochs).div_ceil(per_step),
                (None, None) => unreachable!("checked with the config"),
            };
            let model = setup::load_encoder::<B>(&c, device)?;
            drive(&c, options, task, data, model, total, devices, eval)
        }
        TaskKind::Pretrain => {
            let (task, data) = setup::pretrain_task(&c)?;
            let encoder = setup::load_encoder::<B>(&c, device)?;
            // Every parameter a run creates is drawn from its seed (burn's generator is global and
            // seeded from the clock otherwise), and drawn now: burn initialises lazily.
            B::seed(device, config.train.seed);
            let head = MlmHead::from_safetensors_or_new(&c.bert, &c.model_dir.join("model.safetensors"), device)
                .map_err(input)?;
            settle(&head);
            let smae = Smae::new(&encoder, head);
            let total = config.train.max_steps.expect("checked with the config");
            drive(&c, options, task, data, PretrainModel { encoder, smae }, total, devices, eval)
        }
    }
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
    setup::check_output(&c.config, c.folder_max_seq_length, out, options.resume)?;
    checkpoint::write_atomic(&out.join("config.toml"), c.config.to_toml().as_bytes())?;

    let schedule = LrSchedule {
        peak: t.lr,
        warmup_steps: (total_steps as f64 * t.warmup_ratio).ceil() as usize,
        total_steps,
        decay: t.decay,
    };
    let fresh = TrainState { step: 0, skipped: 0, bad_in_row: 0, position: data.position(), seed: t.seed };
    let mut engines = parallel::engines(c, options, model, schedule, fresh, devices)?;
    let mut data = data;
    if engines[0].state.step > 0 {
        data.seek(&engines[0].state.position)?;
    }
    let data = Mutex::new(data);
    let leader = engines.remove(0);
    if engines.is_empty() {
        return lead(c, leader, &task, &data, total_steps, &devices[0], eval);
    }
    tracing::info!(
        "data-parallel over {} peers: global batch {}",
        devices.len(),
        t.batch_size * t.grad_accum * devices.len()
    );
    parallel::in_lockstep(engines, &task, &data, total_steps, devices, || {
        lead(c, leader, &task, &data, total_steps, &devices[0], eval)
    })
}

fn evaluate<B: AutodiffBackend>(
    c: &Common,
    step: usize,
    model: BertModel<B::InnerBackend>,
    device: &B::Device,
    eval: &mut EvalFn<'_, B::InnerBackend>,
) -> Result<Vec<(Size, f64)>> {
    let sizes = c.sizes.sizes();
    let scores = eval(&c.embedder::<B>(model, device), sizes).map_err(Error::Eval)?;
    let line: Vec<String> = sizes.iter().zip(&scores).map(|(s, v)| format!("{s} {v:.4}")).collect();
    tracing::info!(step, "eval spearman: {}", line.join(", "));
    Ok(sizes.iter().copied().zip(scores).collect())
}

fn progress_bar(c: &Common, total_steps: usize, position: usize) -> ProgressBar {
    let bar = if c.progress { ProgressBar::new(total_steps as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} step {pos}/{len} [{bar:30}] {msg} {elapsed_precise} (eta {eta})")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_position(position as u64);
    bar.reset_eta();
    bar
}

/// Rank 0 (or the only device): steps, logs, `metrics.jsonl`, checkpoints and evaluation;
/// then [`finish`].
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
    parallel::register(&engine, device)?;
    let started = Instant::now();
    let t = &c.config.train;
    let checkpoints = c.output.join("checkpoints");
    let resumed_from = engine.state.step;
    let mut metrics = Metrics::open(&c.output.join("metrics.jsonl"), resumed_from)?;

    tracing::info!(
        task = %c.config.task,
        steps = total_steps,
        from = resumed_from,
        warmup = engine.schedule.warmup_steps,
        "training {} sizes {}; precision f32 (no automatic mixed precision in burn)",
        c.config.model.path.display(),
        c.sizes.sizes().iter().map(|s| s.to_string()).collect::<Vec<_>>().join(" ")
    );
    let bar = progress_bar(c, total_steps, resumed_from);
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
        metrics.write(&MetricsLine::Step(StepLine::new(&report, engine.state.skipped, seconds)))?;
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
            let scores = evaluate::<B>(c, report.step, T::encoder(&engine.model).valid(), device, eval)?;
            metrics.write(&MetricsLine::Eval(EvalLine::new(report.step, &scores)))?;
        }
    }
    bar.finish_and_clear();

    let final_model = T::encoder(&engine.model).valid();
    let model_dir = finish::<B>(c, final_model.clone(), device)?;
    let scores = match eval {
        Some(eval) => {
            let scores = evaluate::<B>(c, engine.state.step, final_model, device, eval)?;
            if engine.state.step > resumed_from {
                metrics.write(&MetricsLine::Eval(EvalLine::new(engine.state.step, &scores)))?;
            }
            Some(scores)
        }
        None => None,
    };
    let tenth = (losses.len() / 10).max(1);
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    Ok(Summary {
        output: c.output.clone(),
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

/// Writes the trained encoder as a sentence-transformers folder (`model/`), unless a resumed run
/// that had finished wrote it already.
fn finish<B: AutodiffBackend>(c: &Common, model: BertModel<B::InnerBackend>, device: &B::Device) -> Result<PathBuf> {
    let model_dir = c.output.join("model");
    if !model_dir.exists() {
        let options = ExportOptions {
            size: Size::full(&c.bert),
            normalize: false,
            sentence_transformers: true,
            trained_sizes: c.sizes.sizes().to_vec(),
        };
        export_sentence_transformers(&c.embedder::<B>(model, device), &c.model_dir, &model_dir, &options)?;
        tracing::info!("model written to {}", model_dir.display());
    }
    Ok(model_dir)
}
