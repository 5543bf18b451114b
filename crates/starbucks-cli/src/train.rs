//! `starbucks pretrain` and `starbucks finetune`: load the layered config, read the evaluation
//! data, run, and print what the run did. Input errors (config, paths, data, output folder in
//! use) exit with code 2 before anything is written. SIGINT or SIGTERM ends a run after its
//! current step with a checkpoint.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use burn::tensor::backend::AutodiffBackend;
use starbucks_model::{Embedder, Size};
use starbucks_train::config::{Task, env_overrides};
use starbucks_train::{Error, EvalFn, RunConfig, RunOptions};

use crate::args::TrainArgs;

/// STS-B dev Spearman at each size, for the evaluation during and after training.
fn stsb_evaluator<B: burn::tensor::backend::Backend>(path: &Path) -> Result<Box<EvalFn<'static, B>>, Error> {
    let pairs = starbucks_data::eval::read_stsb(path).map_err(|e| Error::Input(format!("key `eval.stsb`: {e}")))?;
    let datasets = vec![("stsb".to_string(), pairs)];
    Ok(Box::new(move |embedder: &Embedder<B>, sizes: &[Size]| {
        let scores = starbucks_eval::sts::evaluate(embedder, &datasets, sizes).map_err(|e| e.to_string())?;
        Ok(scores[0].per_size.iter().map(|(_, c)| c.spearman).collect())
    }))
}

/// SIGINT and SIGTERM set the returned flag to their number: the run stops after its current
/// step. A second signal ends the process at once, with the shell's code for that signal.
fn stop_on_signals() -> Result<Arc<AtomicUsize>, Error> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = Arc::new(AtomicUsize::new(0));
    let asked = Arc::new(AtomicBool::new(false));
    let failed = |e: std::io::Error| Error::Input(format!("cannot install the signal handlers: {e}"));
    for signal in [SIGINT, SIGTERM] {
        // Handlers run in the order registered: the shutdown sees `asked` as it was before.
        signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, asked.clone()).map_err(failed)?;
        signal_hook::flag::register(signal, asked.clone()).map_err(failed)?;
        signal_hook::flag::register_usize(signal, stop.clone(), signal as usize).map_err(failed)?;
    }
    Ok(stop)
}

fn signal_name(signal: usize) -> &'static str {
    match signal as i32 {
        signal_hook::consts::SIGINT => "SIGINT",
        signal_hook::consts::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

/// Runs `task` on the devices the config's `train.devices` names (`device_at` maps an index to
/// the backend's device, or says why there is none). `Ok(Some(signal))`: the run was stopped
/// by that signal, with a checkpoint, and said so.
pub fn run<B: AutodiffBackend>(
    task: Task,
    args: TrainArgs,
    device_at: impl Fn(usize) -> Result<B::Device, String>,
) -> Result<Option<i32>, Error> {
    let env: BTreeMap<String, String> = env_overrides();
    let config = RunConfig::load(&args.config, &env, &args.sets)?;
    if config.task != task {
        return Err(Error::Input(format!(
            "{}: key `task` is \"{}\": run it with `starbucks {}`",
            args.config.display(),
            config.task,
            config.task
        )));
    }
    let devices = config
        .train
        .devices
        .iter()
        .map(|&i| device_at(i).map_err(|e| Error::Input(format!("key `train.devices`: {e}"))))
        .collect::<Result<Vec<B::Device>, Error>>()?;
    let stop = stop_on_signals()?;
    let options = RunOptions { output: args.output, resume: args.resume, progress: !args.no_progress, stop };
    let result = match &config.eval.stsb {
        Some(path) => {
            let mut eval = stsb_evaluator::<B::InnerBackend>(path)?;
            starbucks_train::run::<B>(&config, &options, &devices, Some(eval.as_mut()))
        }
        None => starbucks_train::run::<B>(&config, &options, &devices, None),
    };
    let summary = match result {
        Err(e @ Error::Interrupted { .. }) => {
            let signal = options.stop.load(Ordering::Relaxed);
            eprintln!("{} received: {e}", signal_name(signal));
            return Ok(Some(signal as i32));
        }
        result => result?,
    };

    println!("{task} run in {}", summary.output.display());
    if summary.resumed_from > 0 {
        println!("  resumed from step {}", summary.resumed_from);
    }
    println!("  steps {} (skipped for NaN/Inf: {}), {:.0} s", summary.steps, summary.skipped, summary.seconds);
    if let (Some(first), Some(last)) = (summary.first_loss, summary.last_loss) {
        println!("  loss: first 10 % of steps {first:.4}, last 10 % {last:.4}");
    }
    println!("  model: {}", summary.model_dir.display());
    if let Some(scores) = &summary.eval {
        let path = config.eval.stsb.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        println!("  Spearman on {path}:");
        for (size, spearman) in scores {
            println!("    {size:<10} {spearman:.4}");
        }
        let mean = scores.iter().map(|(_, s)| s).sum::<f64>() / scores.len() as f64;
        println!("    {:<10} {mean:.4}", "average");
    }
    Ok(None)
}
