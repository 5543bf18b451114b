//! `cargo xtask experiment --preset minilm-nli`: the paper's comparison, rerun at small scale.
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
//! writes `results.md` with the tables, heat-maps and the cost of every stage. Every stage is a
//! `starbucks` subcommand writing its own folder under the output; a stage whose folder is
//! complete is reused and an interrupted run resumes from its checkpoint, so the command can be
//! stopped and rerun. Delete a stage's folder to redo it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::flags::{Backend, ExperimentOptions};
use crate::{cli, fetch};

/// TREC DL 2020 re-ranking of BM25's top 100, from the shipped subset.
pub struct Retrieval {
    pub corpus: &'static str,
    pub queries: &'static str,
    pub qrels: &'static str,
    pub rerank: &'static str,
}

/// An experiment, as plain data: what every method starts from and the settings they share.
pub struct Preset {
    pub name: &'static str,
    /// The checkpoint every method starts from (and the "untouched" row).
    pub base: &'static str,
    /// The fine-tuning config every method's run is made from (`--set` overrides below).
    pub finetune: &'static str,
    /// Overrides for every fine-tuning run (steps, batch, …), on top of `finetune`.
    pub finetune_set: &'static [&'static str],
    /// The SMAE pre-training config, and its overrides.
    pub pretrain: &'static str,
    pub pretrain_set: &'static [&'static str],
    /// The size list (smallest first, the full model last).
    pub sizes: &'static str,
    pub grid_dims: &'static str,
    /// Tokens every model reads at evaluation (the fine-tuning configs' `model.max_seq_length`).
    pub max_seq_length: usize,
    pub stsb: &'static str,
    pub retrieval: Retrieval,
    /// How this scale differs from the paper's, for `results.md`.
    pub scale: &'static str,
}

const DL20: Retrieval = Retrieval {
    corpus: "data/msmarco-dl20/corpus.tsv.gz",
    queries: "data/msmarco-dl20/queries.dl20.tsv",
    qrels: "data/msmarco-dl20/qrels.dl20.in_corpus.txt",
    rerank: "data/msmarco-dl20/bm25.dl20.top100.trec",
};

pub const PRESETS: &[Preset] = &[
    Preset {
        name: "minilm-nli",
        base: fetch::MINILM_DIR,
        finetune: "configs/finetune-srl-nli-minilm-demo.toml",
        // One epoch of the 5,863 shipped SNLI triplets at batch 32.
        finetune_set: &["train.max_steps=184", "checkpoint.every=50"],
        pretrain: "configs/pretrain-smae-minilm-demo.toml",
        // Two passes over the 300 shipped FineWeb documents (a fresh random window each pass).
        pretrain_set: &["train.max_steps=75", "checkpoint.every=25"],
        sizes: "1,32 2,64 3,96 4,128 5,256 6,384",
        grid_dims: "32 64 96 128 256 384",
        max_seq_length: 128,
        stsb: "data/stsb/sts-test.csv",
        retrieval: DL20,
        scale: "all-MiniLM-L6-v2 (6 layers, 384 dims, already trained for sentence embeddings) instead of \
                bert-base-uncased (12 layers, 768); one epoch of the 5,863 shipped SNLI triplets (184 steps \
                of 32) instead of one epoch of AllNLI (557,850 triplets, 4,358 steps of 128); SMAE on 300 \
                FineWeb documents (75 steps of 8 windows of ≤ 128 tokens) instead of FineWeb sample-100BT \
                (one epoch at batch 512 × 512 tokens); f32 on a 2-core CPU",
    },
    Preset {
        name: "bert-base-nli",
        base: "assets/bert-base-uncased",
        finetune: "configs/finetune-srl-nli-bert-base.toml",
        finetune_set: &[],
        pretrain: "configs/pretrain-smae-bert-base.toml",
        pretrain_set: &[],
        sizes: "demi short tall grande venti trenta",
        grid_dims: "32 64 128 256 512 768",
        max_seq_length: 128,
        stsb: "data/stsb/sts-test.csv",
        retrieval: DL20,
        scale: "the paper's settings (bert-base-uncased, AllNLI, FineWeb sample-100BT); evaluated on STS-B \
                test and the shipped TREC DL 2020 subset only",
    },
];

pub fn preset(name: &str) -> Result<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name).with_context(|| {
        format!(
            "unknown preset '{name}'; the presets are {}",
            PRESETS.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
        )
    })
}

/// A training stage: `starbucks <task> --config … --set …` into `<output>/<run>`.
struct Train {
    task: &'static str,
    config: &'static str,
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

fn sizes(preset: &Preset) -> Vec<String> {
    preset.sizes.split_whitespace().map(str::to_string).collect()
}

/// Every run in the order they go (each evaluated right after it is trained, so a stopped
/// experiment has whole rows), and the methods compared, in the order of the tables.
fn plan(preset: &Preset, out: &Path) -> (Vec<Run>, Vec<Method>) {
    let sizes = sizes(preset);
    let every_size = |model: PathBuf| Eval { model, sizes: preset.sizes.into(), grid: true };
    let finetune = |name: &str, model: &str, set: &[String]| {
        let mut all: Vec<String> = preset.finetune_set.iter().map(|s| s.to_string()).collect();
        all.extend([format!("model.path={model}"), format!("objective.sizes={}", preset.sizes)]);
        all.extend_from_slice(set);
        Run {
            name: name.into(),
            train: Some(Train { task: "finetune", config: preset.finetune, set: all }),
            eval: Some(every_size(out.join(name).join("model"))),
        }
    };
    let method = |name: &str| vec![format!("objective.method={name}")];
    let mut runs = vec![
        Run { name: "untouched".into(), train: None, eval: Some(every_size(preset.base.into())) },
        finetune("srl", preset.base, &method("srl")),
        finetune("2dmse", preset.base, &method("2dmse")),
        finetune("single", preset.base, &method("single")),
    ];
    // One model per size; the full size's is `single`.
    let separate: Vec<String> = sizes
        .iter()
        .enumerate()
        .map(|(i, s)| if i + 1 == sizes.len() { "single".into() } else { format!("separate-{}", s.replace(',', "x")) })
        .collect();
    for (size, name) in sizes.iter().zip(&separate).take(sizes.len() - 1) {
        let mut run = finetune(name, preset.base, &[method("single"), vec![format!("objective.size={size}")]].concat());
        run.eval = Some(Eval { model: out.join(name).join("model"), sizes: size.clone(), grid: false });
        runs.push(run);
    }
    let mut smae: Vec<String> = preset.pretrain_set.iter().map(|s| s.to_string()).collect();
    smae.extend([format!("model.path={}", preset.base), format!("objective.sizes={}", preset.sizes)]);
    runs.push(Run {
        name: "smae".into(),
        train: Some(Train { task: "pretrain", config: preset.pretrain, set: smae }),
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
    writeln!(file, "{}", json!({"stage": stage, "seconds": started.elapsed().as_secs_f64()}))
        .with_context(|| format!("{}: cannot write", path.display()))
}

fn check_inputs(preset: &Preset) -> Result<()> {
    let root = fetch::workspace_root();
    let r = &preset.retrieval;
    for path in [preset.base, preset.finetune, preset.pretrain, preset.stsb, r.corpus, r.queries, r.qrels, r.rerank] {
        if !root.join(path).exists() {
            bail!("preset {}: {path} is missing", preset.name);
        }
    }
    Ok(())
}

fn train_args(train: &Train, dir: &Path) -> Vec<String> {
    let mut args = vec![train.task.to_string(), "--config".into(), train.config.into()];
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
    args.extend(["--stsb".into(), preset.stsb.into()]);
    if eval.grid {
        args.extend(["--grid".into(), "--grid-dims".into(), preset.grid_dims.into()]);
    }
    for (flag, value) in
        [("--corpus", r.corpus), ("--queries", r.queries), ("--qrels", r.qrels), ("--rerank", r.rerank)]
    {
        args.extend([flag.into(), value.into()]);
    }
    // Every model reads the same tokens: the fine-tuning length (the untouched folder says 256).
    args.extend(["--max-seq-length".into(), preset.max_seq_length.to_string()]);
    // The NLI models are trained for the cosine of their own (mean) pooling.
    args.extend(["--similarity", "cosine", "--no-throughput", "--output"].map(String::from));
    args.push(dir.display().to_string());
    args
}

pub fn run(backend: Backend, options: ExperimentOptions) -> Result<()> {
    let preset = preset(&options.preset)?;
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

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", path.display()))
}

/// A method's evaluation: the value of `row` at each size, and its grid when it has one.
struct Scores {
    per_size: Vec<f64>,
    grid: Option<Value>,
}

fn scores(out: &Path, method: &Method, row: &str) -> Result<Scores> {
    let mut per_size = Vec::new();
    let mut grid = None;
    for (i, run) in method.evals.iter().enumerate() {
        let path = out.join("eval").join(run).join("report.json");
        let report = &read_json(&path)?[0];
        let values = report["rows"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["name"] == row))
            .and_then(|r| r["values"].as_array())
            .with_context(|| format!("{}: no row '{row}'", path.display()))?;
        let value = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
        if method.evals.len() == 1 {
            per_size.extend(values.iter().map(value));
            grid = report.get("grid").filter(|g| !g.is_null()).cloned();
        } else {
            // One model per size: size i from the i-th, evaluated at its own size or at the whole
            // list (the full-size model is also a method of its own).
            let at = if values.len() == 1 { 0 } else { i };
            per_size.push(values.get(at).map(value).with_context(|| format!("{}: no size {}", path.display(), i + 1))?);
        }
    }
    Ok(Scores { per_size, grid })
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// A table: rows are methods, columns the sizes and their average.
fn table(out: &mut String, sizes: &[String], rows: &[(&str, Vec<f64>)]) {
    let _ = writeln!(
        out,
        "| method | {} | average |",
        sizes.iter().map(|s| format!("({s})")).collect::<Vec<_>>().join(" | ")
    );
    let _ = writeln!(out, "|---|{}", "---|".repeat(sizes.len() + 1));
    for (label, values) in rows {
        let cells: Vec<String> = values.iter().map(|v| format!("{v:.4}")).collect();
        let _ = writeln!(out, "| {label} | {} | {:.4} |", cells.join(" | "), mean(values));
    }
    out.push('\n');
}

/// Every line of a JSON Lines file, each error naming the file and line.
fn read_jsonl(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line).with_context(|| format!("{}:{}: not valid JSON", path.display(), i + 1))
        })
        .collect()
}

/// Seconds of training steps in a run's `metrics.jsonl` (tokens / tokens per second, summed
/// over the step lines: resumed runs count once), and its number of steps.
fn training_seconds(run: &Path) -> Result<(f64, usize)> {
    let mut by_step = std::collections::BTreeMap::new();
    for value in read_jsonl(&run.join("metrics.jsonl"))? {
        if let (Some(step), Some(tokens), Some(rate)) =
            (value["step"].as_u64(), value["tokens"].as_f64(), value["tokens_per_s"].as_f64())
            && value.get("loss").is_some()
        {
            by_step.insert(step, tokens / rate.max(1e-9));
        }
    }
    Ok((by_step.values().sum(), by_step.len()))
}

/// Wall-clock seconds of each stage in `timings.jsonl`, summed over the invocations that ran it.
fn wall_clock(out: &Path) -> Result<std::collections::BTreeMap<String, f64>> {
    let path = out.join("timings.jsonl");
    let mut by_stage = std::collections::BTreeMap::new();
    if !path.exists() {
        return Ok(by_stage);
    }
    for (i, value) in read_jsonl(&path)?.into_iter().enumerate() {
        let (Some(stage), Some(seconds)) = (value["stage"].as_str(), value["seconds"].as_f64()) else {
            bail!("{}:{}: expected {{\"stage\", \"seconds\"}}", path.display(), i + 1);
        };
        *by_stage.entry(stage.to_string()).or_insert(0.0) += seconds;
    }
    Ok(by_stage)
}

/// A grid as a Markdown table (layers × dims), with its values.
fn grid_table(out: &mut String, grid: &Value) {
    let dims: Vec<String> = grid["dims"].as_array().into_iter().flatten().map(|d| d.to_string()).collect();
    let _ = writeln!(out, "| layers | {} |", dims.join(" | "));
    let _ = writeln!(out, "|---|{}", "---|".repeat(dims.len()));
    let layers = grid["layers"].as_array().into_iter().flatten();
    for (layer, values) in layers.zip(grid["values"].as_array().into_iter().flatten()) {
        let cells: Vec<String> =
            values.as_array().into_iter().flatten().map(|v| format!("{:.4}", v.as_f64().unwrap_or(f64::NAN))).collect();
        let _ = writeln!(out, "| {layer} | {} |", cells.join(" | "));
    }
    out.push('\n');
}

fn results(preset: &Preset, out: &Path, methods: &[Method]) -> Result<String> {
    let sizes = sizes(preset);
    let mut md = format!("# Experiment `{}`\n\nScale: {}.\n\n", preset.name, preset.scale);
    // `starbucks eval` names its rows after the data files.
    let stem = |path: &str| {
        let name = Path::new(path).file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        name.trim_end_matches(".gz").trim_end_matches(".csv").to_string()
    };
    let sts_row = format!("{} Spearman", stem(preset.stsb));
    let dl20_row = format!("{} nDCG@10", stem(preset.retrieval.queries));
    let sts: Vec<(&str, Scores)> =
        methods.iter().map(|m| Ok((m.label, scores(out, m, &sts_row)?))).collect::<Result<_>>()?;
    let dl20: Vec<(&str, Scores)> =
        methods.iter().map(|m| Ok((m.label, scores(out, m, &dl20_row)?))).collect::<Result<_>>()?;

    md.push_str("## STS-B test, Spearman at every size\n\n");
    table(&mut md, &sizes, &sts.iter().map(|(l, s)| (*l, s.per_size.clone())).collect::<Vec<_>>());
    md.push_str("## TREC DL 2020, nDCG@10 at every size (re-ranking BM25's top 100, mean pooling, cosine)\n\n");
    table(&mut md, &sizes, &dl20.iter().map(|(l, s)| (*l, s.per_size.clone())).collect::<Vec<_>>());

    md.push_str("## Checks (the issue's criteria)\n\n");
    let find = |label: &str| sts.iter().find(|(l, _)| *l == label).map(|(_, s)| &s.per_size);
    if let (Some(srl), Some(mse), Some(untouched)) = (find("SRL"), find("2DMSE"), find("untouched")) {
        let verdict = |ok: bool| if ok { "holds" } else { "does not hold" };
        for (other, value) in [("2DMSE", mean(mse)), ("the untouched checkpoint", mean(untouched))] {
            let _ =
                writeln!(md, "- SRL average {:.4} above {other} {value:.4}: {}", mean(srl), verdict(mean(srl) > value));
        }
        let gain = srl[0] - untouched[0];
        let _ = writeln!(
            md,
            "- smallest size ({}): SRL {:.4} vs untouched {:.4}, {gain:+.4} (≥ +0.05: {})\n",
            sizes[0],
            srl[0],
            untouched[0],
            verdict(gain >= 0.05)
        );
    }

    md.push_str("## The layer × dim grid, STS-B test Spearman\n\n");
    for (label, s) in &sts {
        let Some(grid) = &s.grid else { continue };
        let method = methods.iter().find(|m| m.label == *label).expect("the same list");
        let run = &method.evals[0];
        let _ = writeln!(md, "### {label}\n\n![{label}](eval/{run}/grid-{run}.svg)\n");
        grid_table(&mut md, grid);
    }

    md.push_str(
        "## Cost\n\nTraining: the seconds of the training steps (from each run's `metrics.jsonl`); stage: the \
                 wall clock of the whole `starbucks` command (loading, checkpoints, the end-of-run STS-B dev \
                 evaluation), summed over the invocations that ran it.\n\n",
    );
    let clock = wall_clock(out)?;
    md.push_str("| stage | steps | training (s) | stage wall clock (s) |\n|---|---|---|---|\n");
    let mut total = 0.0;
    // `single` is its own method and the full size of the separately trained one: one line.
    let mut listed = std::collections::HashSet::new();
    for method in methods {
        for run in &method.runs {
            if !listed.insert(run) {
                continue;
            }
            let (seconds, steps) = training_seconds(&out.join(run))?;
            let wall = clock.get(run).copied();
            total += wall.unwrap_or(0.0);
            let wall = wall.map_or("reused".to_string(), |w| format!("{w:.0}"));
            let _ = writeln!(md, "| `{run}` | {steps} | {seconds:.0} | {wall} |");
        }
    }
    let eval: f64 = clock.iter().filter(|(k, _)| k.starts_with("eval-")).map(|(_, v)| v).sum();
    let _ = writeln!(md, "| evaluation (all models) | | | {eval:.0} |");
    let _ = writeln!(md, "| **all stages** | | | {:.0} |", total + eval);
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minilm() -> &'static Preset {
        preset("minilm-nli").unwrap()
    }

    #[test]
    fn every_method_trains_from_the_same_checkpoint_and_settings() {
        let out = Path::new("/x");
        let (runs, methods) = plan(minilm(), out);
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
                {"name": "sts-test Spearman", "values": vec![sts; sizes]},
                {"name": "queries.dl20.tsv nDCG@10", "values": vec![ndcg; sizes]},
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
        let (runs, methods) = plan(minilm(), out);
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
        let md = results(minilm(), out, &methods).unwrap();
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
