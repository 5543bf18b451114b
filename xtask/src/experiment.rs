//! `cargo xtask experiment --preset minilm-nli`: the paper's comparison, rerun at small scale.
//! A preset is a file of `configs/experiments/` (`preset.rs`).
//! From one checkpoint, with the same data, steps, batch and seed, it trains
//!
//! - single-size fine-tuning at the full size (`single`);
//! - one model per size, trained on that size alone (`separate-NxD`; the full size is `single`);
//! - the 2DMSE baseline (`2dmse`);
//! - SRL (`srl`);
//! - SMAE on the preset's web text (`smae`), then SRL from it (`smae-srl`);
//!
//! evaluates each of them and the untouched checkpoint on STS-B test at every size (the full
//! layer × dim grid for the one-model methods) and on TREC DL 2020 (nDCG@10 per size), and
//! writes `results.md` with the tables, heat-maps and the cost of every stage (`results.rs`). Every stage is a
//! `starbucks` subcommand writing its own folder under the output; a stage whose folder is
//! complete is reused and an interrupted run resumes from its checkpoint, so the command can be
//! stopped and rerun. Delete a stage's folder to redo it.

mod preset;
mod results;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

pub use self::preset::Preset;
use self::results::{Timing, results};
use crate::flags::{Backend, ExperimentOptions};
use crate::{cli, fetch};

/// The preset `name` (`configs/experiments/<name>.toml`).
pub fn preset(name: &str) -> Result<Preset> {
    preset::load(name)
}

/// A training stage: `starbucks <task> --config … --set …` into `<output>/<run>`.
struct Train {
    task: &'static str,
    config: String,
    set: Vec<String>,
}

/// What a run's model is evaluated on: STS-B test and TREC DL 2020 at `sizes`, plus the grid.
struct Eval {
    model: PathBuf,
    sizes: String,
    grid: bool,
}

/// One stage folder under the output: trained (unless it is the untouched checkpoint), then
/// evaluated (unless it only feeds another run).
struct Run {
    name: String,
    train: Option<Train>,
    eval: Option<Eval>,
}

/// One row of the comparison: its runs, whose evaluations give its value at each size.
struct Method {
    label: &'static str,
    /// The evaluated runs: one, or one per size (separately trained).
    evals: Vec<String>,
    /// Every run it took (for the cost table).
    runs: Vec<String>,
}

/// Every run in the order they go (each evaluated right after it is trained, so a stopped
/// experiment has whole rows), and the methods compared, in the order of the tables.
fn plan(preset: &Preset, out: &Path) -> (Vec<Run>, Vec<Method>) {
    let sizes = preset.sizes();
    let every_size = |model: PathBuf| Eval { model, sizes: preset.sizes.clone(), grid: true };
    let finetune = |name: &str, model: &str, set: &[String]| {
        let mut all: Vec<String> = preset.finetune_set.iter().map(|s| s.to_string()).collect();
        all.extend([format!("model.path={model}"), format!("objective.sizes={}", preset.sizes)]);
        all.extend_from_slice(set);
        Run {
            name: name.into(),
            train: Some(Train { task: "finetune", config: preset.finetune.clone(), set: all }),
            eval: Some(every_size(out.join(name).join("model"))),
        }
    };
    let method = |name: &str| vec![format!("objective.method={name}")];
    let mut runs = vec![
        Run { name: "untouched".into(), train: None, eval: Some(every_size(preset.base.clone().into())) },
        finetune("srl", &preset.base, &method("srl")),
        finetune("2dmse", &preset.base, &method("2dmse")),
        finetune("single", &preset.base, &method("single")),
    ];
    // One model per size; the full size's is `single`.
    let separate: Vec<String> = sizes
        .iter()
        .enumerate()
        .map(|(i, s)| if i + 1 == sizes.len() { "single".into() } else { format!("separate-{}", s.replace(',', "x")) })
        .collect();
    for (size, name) in sizes.iter().zip(&separate).take(sizes.len() - 1) {
        let mut run =
            finetune(name, &preset.base, &[method("single"), vec![format!("objective.size={size}")]].concat());
        run.eval = Some(Eval { model: out.join(name).join("model"), sizes: size.clone(), grid: false });
        runs.push(run);
    }
    let mut smae: Vec<String> = preset.pretrain_set.iter().map(|s| s.to_string()).collect();
    smae.extend([format!("model.path={}", preset.base), format!("objective.sizes={}", preset.sizes)]);
    runs.push(Run {
        name: "smae".into(),
        train: Some(Train { task: "pretrain", config: preset.pretrain.clone(), set: smae }),
        eval: None,
    });
    let smae_model = out.join("smae").join("model").display().to_string();
    runs.push(finetune("smae-srl", &smae_model, &method("srl")));

    let one = |label, run: &str| Method { label, evals: vec![run.into()], runs: vec![run.into()] };
    let methods = vec![
        Method { label: "untouched", evals: vec!["untouched".into()], runs: vec![] },
        one("single size (full)", "single"),
        Method { label: "separately trained", evals: separate.clone(), runs: separate },
        one("2DMSE", "2dmse"),
        one("SRL", "srl"),
        Method { label: "SMAE → SRL", evals: vec!["smae-srl".into()], runs: vec!["smae".into(), "smae-srl".into()] },
    ];
    (runs, methods)
}

/// Runs the `starbucks` binary; a failure names the stage.
fn starbucks(binary: &Path, stage: &str, args: &[String]) -> Result<()> {
    println!("\n== {stage}: starbucks {}", args.join(" "));
    let status = Command::new(binary)
        .args(args)
        .current_dir(fetch::workspace_root())
        .status()
        .with_context(|| format!("{}: cannot start", binary.display()))?;
    if !status.success() {
        bail!("stage {stage} failed ({status}); its error is above. Rerun the command to resume from here");
    }
    Ok(())
}

/// Runs `work` and appends its wall-clock seconds to `timings.jsonl` (a stage resumed over
/// several invocations has several lines).
fn timed(out: &Path, stage: &str, work: impl FnOnce() -> Result<()>) -> Result<()> {
    use std::io::Write;
    let started = Instant::now();
    work()?;
    let path = out.join("timings.jsonl");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("{}: cannot open", path.display()))?;
    let timing = Timing { stage: stage.to_string(), seconds: started.elapsed().as_secs_f64() };
    writeln!(file, "{}", serde_json::to_string(&timing).expect("a timing serialises"))
        .with_context(|| format!("{}: cannot write", path.display()))
}

fn check_inputs(preset: &Preset) -> Result<()> {
    let root = fetch::workspace_root();
    for path in preset.inputs() {
        if !root.join(path).exists() {
            bail!("preset {}: {path} is missing", preset.name);
        }
    }
    Ok(())
}

fn train_args(train: &Train, dir: &Path) -> Vec<String> {
    let mut args = vec![train.task.to_string(), "--config".into(), train.config.clone()];
    args.extend(["--output".into(), dir.display().to_string(), "--resume".into()]);
    for set in &train.set {
        args.extend(["--set".into(), set.clone()]);
    }
    args
}

fn eval_args(preset: &Preset, run: &Run, eval: &Eval, dir: &Path) -> Vec<String> {
    let r = &preset.retrieval;
    let mut args: Vec<String> = vec!["eval".into(), "--model".into(), eval.model.display().to_string()];
    args.extend(["--name".into(), run.name.clone(), "--sizes".into(), eval.sizes.clone()]);
    args.extend(["--stsb".into(), preset.stsb.clone()]);
    if eval.grid {
        args.extend(["--grid".into(), "--grid-dims".into(), preset.grid_dims.clone()]);
    }
    for (flag, value) in
        [("--corpus", &r.corpus), ("--queries", &r.queries), ("--qrels", &r.qrels), ("--rerank", &r.rerank)]
    {
        args.extend([flag.into(), value.clone()]);
    }
    // Every model reads the same tokens: the fine-tuning length (the untouched folder says 256).
    args.extend(["--max-seq-length".into(), preset.max_seq_length.to_string()]);
    // The NLI models are trained for the cosine of their own (mean) pooling.
    args.extend(["--similarity", "cosine", "--no-throughput", "--output"].map(String::from));
    args.push(dir.display().to_string());
    args
}

pub fn run(backend: Backend, options: ExperimentOptions) -> Result<()> {
    let preset = &preset(&options.preset)?;
    if preset.base == fetch::MINILM_DIR {
        fetch::run("minilm")?;
    }
    check_inputs(preset)?;
    let out = options.output.unwrap_or_else(|| PathBuf::from(format!("runs/experiment-{}", preset.name)));
    let out = if out.is_absolute() { out } else { fetch::workspace_root().join(out) };
    std::fs::create_dir_all(&out).with_context(|| format!("{}: cannot create", out.display()))?;
    let binary = cli::build(backend)?;
    let (runs, methods) = plan(preset, &out);

    for run in &runs {
        let dir = out.join(&run.name);
        if let Some(train) = &run.train {
            if dir.join("model").join("config.json").exists() {
                println!("== {}: trained, reused ({})", run.name, dir.display());
            } else {
                timed(&out, &run.name, || starbucks(&binary, &run.name, &train_args(train, &dir)))?;
            }
        }
        if let Some(eval) = &run.eval {
            let dir = out.join("eval").join(&run.name);
            let stage = format!("eval-{}", run.name);
            if dir.join("report.json").exists() {
                println!("== {stage}: evaluated, reused ({})", dir.display());
            } else {
                timed(&out, &stage, || starbucks(&binary, &stage, &eval_args(preset, run, eval, &dir)))?;
            }
        }
    }

    let results = results(preset, &out, &methods)?;
    let path = out.join("results.md");
    std::fs::write(&path, &results).with_context(|| format!("{}: cannot write", path.display()))?;
    println!("\n{results}\nwritten to {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn minilm() -> Preset {
        preset("minilm-nli").unwrap()
    }

    #[test]
    fn every_method_trains_from_the_same_checkpoint_and_settings() {
        let out = Path::new("/x");
        let (runs, methods) = plan(&minilm(), out);
        let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "untouched",
                "srl",
                "2dmse",
                "single",
                "separate-1x32",
                "separate-2x64",
                "separate-3x96",
                "separate-4x128",
                "separate-5x256",
                "smae",
                "smae-srl"
            ]
        );
        for run in &runs {
            let Some(train) = &run.train else { continue };
            let has = |key: &str| train.set.iter().any(|s| s == key);
            if train.task == "finetune" {
                assert!(has("train.max_steps=184"), "{}", run.name);
                assert!(has(&format!("objective.sizes={}", minilm().sizes)), "{}", run.name);
                let model = if run.name == "smae-srl" { "/x/smae/model" } else { fetch::MINILM_DIR };
                assert!(has(&format!("model.path={model}")), "{}: {:?}", run.name, train.set);
            }
        }
        let separate = runs.iter().find(|r| r.name == "separate-3x96").unwrap();
        assert!(separate.train.as_ref().unwrap().set.iter().any(|s| s == "objective.size=3,96"));
        let eval = separate.eval.as_ref().unwrap();
        assert_eq!((eval.sizes.as_str(), eval.grid), ("3,96", false));
        assert!(runs.iter().find(|r| r.name == "smae").unwrap().eval.is_none());
        // The separately trained row reads each size from its own model, the full size from `single`.
        let row = methods.iter().find(|m| m.label == "separately trained").unwrap();
        assert_eq!(row.evals.first().unwrap(), "separate-1x32");
        assert_eq!(row.evals.last().unwrap(), "single");
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// An eval report as `starbucks eval` writes it, with STS value `sts` and nDCG `ndcg` at
    /// every one of `sizes`.
    fn report(run: &str, sizes: usize, sts: f64, ndcg: f64, grid: bool) -> String {
        let grid = if grid {
            json!({"metric": "STS", "layers": [1, 2], "dims": [32, 64], "values": [[sts, sts], [sts, sts]]})
        } else {
            Value::Null
        };
        json!([{
            "model": run,
            "sizes": [],
            "rows": [
                {"name": "sts-test Spearman", "values": vec![sts; sizes],
                 "source": "data/stsb/sts-test.csv", "measure": "Spearman"},
                {"name": "queries.dl20 nDCG@10", "values": vec![ndcg; sizes],
                 "source": "data/msmarco-dl20/queries.dl20.tsv", "measure": "nDCG@10"},
            ],
            "throughput": [],
            "grid": grid,
        }])
        .to_string()
    }

    #[test]
    fn results_tabulate_every_method_at_every_size_with_its_cost() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        let (runs, methods) = plan(&minilm(), out);
        for (i, run) in runs.iter().enumerate() {
            if let Some(eval) = &run.eval {
                let sizes = eval.sizes.split_whitespace().count();
                // A separately trained model scores 0.1 × its number of layers.
                let sts = if run.name.starts_with("separate-") { 0.1 * (i - 3) as f64 } else { 0.5 + 0.01 * i as f64 };
                write(
                    &out.join("eval").join(&run.name).join("report.json"),
                    &report(&run.name, sizes, sts, 0.3, eval.grid),
                );
            }
            if run.train.is_some() {
                let steps = "{\"step\":1,\"loss\":2.0,\"tokens\":100,\"tokens_per_s\":50.0}\n\
                             {\"step\":2,\"loss\":1.0,\"tokens\":100,\"tokens_per_s\":25.0}\n\
                             {\"step\":2,\"eval\":{}}\n";
                write(&out.join(&run.name).join("metrics.jsonl"), steps);
            }
        }
        write(
            &out.join("timings.jsonl"),
            "{\"stage\":\"srl\",\"seconds\":10}\n{\"stage\":\"srl\",\"seconds\":5}\n{\"stage\":\"eval-srl\",\"seconds\":3}\n",
        );
        let md = results(&minilm(), out, &methods).unwrap();
        assert!(md.contains("| untouched | 0.5000 | 0.5000 | 0.5000 | 0.5000 | 0.5000 | 0.5000 | 0.5000 |"), "{md}");
        // Sizes 1..5 from separate-NxD (0.1 … 0.5), the full size from `single` (run 3).
        assert!(
            md.contains("| separately trained | 0.1000 | 0.2000 | 0.3000 | 0.4000 | 0.5000 | 0.5300 | 0.3383 |"),
            "{md}"
        );
        assert!(md.contains("| SRL | 0.5100 |"), "{md}");
        assert!(md.contains("SRL average 0.5100 above 2DMSE 0.5200: does not hold"), "{md}");
        assert!(md.contains("(≥ +0.05: does not hold)"), "{md}");
        assert!(md.contains("| 2DMSE | 0.3000 | 0.3000 |"), "{md}");
        assert!(md.contains("![SRL](eval/srl/grid-srl.svg)"), "{md}");
        assert!(!md.contains("![separately trained]"), "{md}");
        // Steps from metrics.jsonl (2 + 4 s), wall clock summed over invocations; reused stages say so.
        assert!(md.contains("| `srl` | 2 | 6 | 15 |"), "{md}");
        assert!(md.contains("| `2dmse` | 2 | 6 | reused |"), "{md}");
        assert!(md.contains("| `smae` | 2 | 6 | reused |"), "{md}");
        assert_eq!(md.matches("| `single` |").count(), 1, "{md}");
        assert!(md.contains("| evaluation (all models) | | | 3 |"), "{md}");
    }
}
