//! `cargo xtask bench`: the side-by-side benchmark against PyTorch. Builds the `starbucks` CLI
//! in release, makes sure a Python environment with PyTorch and sentence-transformers exists
//! outside the repository (installing it from PyPI the first time), then runs every workload on
//! both sides alternately (burn, PyTorch, burn, PyTorch, …), each run a fresh process that times
//! `--iters` iterations after `--warmup`. Prints medians, ratios and peak resident memory as
//! Markdown, and writes `report.md` and `results.jsonl` (every run's raw line) to `--output`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::flags::{Backend, BenchOptions};
use crate::{cli, fetch};

/// What the reference environment is installed from (PyPI). torch's Linux wheel brings its
/// CUDA libraries with it (~5 GB): its `--no-deps` install does not import without them.
const REQUIREMENTS: &[&str] = &["torch==2.15.0", "transformers==5.24.0", "sentence-transformers==6.2.0"];
const SCRIPT: &str = "bench/reference/bench.py";

/// Every workload, in the order of the report.
pub const WORKLOADS: &[&str] = &[
    "train-srl",
    "train-single",
    "train-smae",
    "train-mlm",
    "forward-1",
    "forward-2",
    "forward-3",
    "forward-4",
    "forward-5",
    "forward-6",
    "embed",
];

fn default_venv() -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    home.join(".cache").join("starbucks-rs").join("bench-venv")
}

/// The python of the virtual environment `venv`, created and filled with `requirements` from
/// PyPI unless `import` (a Python import statement) already works there; `what` names it in
/// the messages.
pub fn ensure_venv(venv: &Path, requirements: &[&str], import: &str, what: &str) -> Result<PathBuf> {
    let python = venv.join("bin").join("python");
    let ready = |python: &Path| {
        python.exists() && Command::new(python).args(["-c", import]).output().is_ok_and(|o| o.status.success())
    };
    if ready(&python) {
        return Ok(python);
    }
    println!("installing {what} into {} ({}; ~5 GB, once)", venv.display(), requirements.join(" "));
    let status = Command::new("python3").arg("-m").arg("venv").arg(venv).status().context("cannot run python3")?;
    if !status.success() {
        bail!("`python3 -m venv {}` failed ({status}): install python3-venv", venv.display());
    }
    let status = Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
        .args(requirements)
        .status()
        .with_context(|| format!("cannot run pip in {}", venv.display()))?;
    if !status.success() || !ready(&python) {
        bail!("installing {} into {} failed", requirements.join(" "), venv.display());
    }
    Ok(python)
}

/// One run of one side: a process that prints one JSON line last.
fn run_side(mut command: Command, what: &str) -> Result<Value> {
    let output = command.output().with_context(|| format!("cannot start {what}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("{what} failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    let line = stdout.lines().last().with_context(|| format!("{what} printed nothing"))?;
    serde_json::from_str(line).with_context(|| format!("{what} printed `{line}`, not a JSON line"))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The runs of one workload on one side.
#[derive(Default)]
struct Runs {
    lines: Vec<Value>,
}

impl Runs {
    /// The median over every timed iteration of every run.
    fn median_ms(&self) -> f64 {
        median(
            self.lines
                .iter()
                .flat_map(|l| l["times_ms"].as_array().into_iter().flatten().filter_map(Value::as_f64))
                .collect(),
        )
    }

    /// The per-run medians, for the spread between rounds.
    fn run_medians(&self) -> Vec<f64> {
        self.lines.iter().filter_map(|l| l["median_ms"].as_f64()).collect()
    }

    fn peak_rss_mb(&self) -> f64 {
        self.lines.iter().filter_map(|l| l["peak_rss_mb"].as_f64()).fold(0.0, f64::max)
    }

    fn field(&self, name: &str) -> Option<u64> {
        self.lines.first().and_then(|l| l[name].as_u64())
    }
}

fn spread(values: &[f64]) -> String {
    let (lo, hi) = values.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    if values.len() > 1 { format!("{lo:.0}–{hi:.0}") } else { format!("{lo:.0}") }
}

fn report(results: &BTreeMap<(String, &'static str), Runs>, workloads: &[String], options: &BenchOptions) -> String {
    let get = |w: &str, side: &'static str| results.get(&(w.to_string(), side));
    let mut md = String::new();
    let _ = writeln!(
        md,
        "{} rounds × {} timed iterations (after {} warm-up) per workload and side, {} threads, alternated burn/PyTorch.\n",
        options.rounds, options.iters, options.warmup, options.threads
    );
    let _ = writeln!(
        md,
        "| workload | burn ms (median) | PyTorch ms (median) | burn / PyTorch | burn runs | PyTorch runs | tokens (computed) burn / PyTorch | peak RSS MB burn / PyTorch |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    for w in workloads {
        let (Some(b), Some(p)) = (get(w, "burn"), get(w, "pytorch")) else { continue };
        let tokens = |r: &Runs| match (r.field("tokens"), r.field("padded_tokens")) {
            (Some(t), Some(p)) => format!("{t} ({p})"),
            _ => "–".into(),
        };
        let _ = writeln!(
            md,
            "| {w} | {:.1} | {:.1} | **{:.2}×** | {} | {} | {} / {} | {:.0} / {:.0} |",
            b.median_ms(),
            p.median_ms(),
            b.median_ms() / p.median_ms(),
            spread(&b.run_medians()),
            spread(&p.run_medians()),
            tokens(b),
            tokens(p),
            b.peak_rss_mb(),
            p.peak_rss_mb(),
        );
    }
    let ratio = |a: &str, b: &str, side: &'static str| match (get(a, side), get(b, side)) {
        (Some(x), Some(y)) => format!("{:.2}×", x.median_ms() / y.median_ms()),
        _ => "–".into(),
    };
    let _ = writeln!(md, "\n| ratio within one side | burn | PyTorch |\n|---|---|---|");
    let _ = writeln!(
        md,
        "| SRL step / single-size step | {} | {} |",
        ratio("train-srl", "train-single", "burn"),
        ratio("train-srl", "train-single", "pytorch")
    );
    let _ = writeln!(
        md,
        "| SMAE step / plain MLM step | {} | {} |",
        ratio("train-smae", "train-mlm", "burn"),
        ratio("train-smae", "train-mlm", "pytorch")
    );
    let _ = writeln!(
        md,
        "| forward: 6 layers / 1 layer (early-exit speed-up) | {} | {} |",
        ratio("forward-6", "forward-1", "burn"),
        ratio("forward-6", "forward-1", "pytorch")
    );
    if let (Some(b), Some(p)) = (get("embed", "burn"), get("embed", "pytorch")) {
        let texts = b.field("items").unwrap_or(0) as f64;
        let _ = writeln!(
            md,
            "| embedding throughput, texts/s (`Embedder::embed` / sentence-transformers `encode`) | {:.0} | {:.0} |",
            texts / b.median_ms() * 1e3,
            texts / p.median_ms() * 1e3
        );
    }
    if let Some(p) = results.values().find_map(|r| r.lines.iter().find(|l| l["side"] == "pytorch")) {
        let _ = writeln!(md, "\nPyTorch side: {}", p["versions"]);
    }
    md
}

pub fn run(backend: Backend, options: BenchOptions) -> Result<()> {
    fetch::run("minilm")?;
    let root = fetch::workspace_root();
    let venv = options.venv.clone().unwrap_or_else(default_venv);
    let python =
        ensure_venv(&venv, REQUIREMENTS, "import torch, transformers, sentence_transformers", "the PyTorch reference")?;
    let starbucks = cli::build(backend)?;
    let workloads: Vec<String> = match &options.workloads {
        Some(list) => list.clone(),
        None => WORKLOADS.iter().map(|w| w.to_string()).collect(),
    };
    let output = root.join(&options.output);
    std::fs::create_dir_all(&output).with_context(|| format!("cannot create {}", output.display()))?;
    let common = |w: &str| {
        vec![
            "--workload".to_string(),
            w.to_string(),
            "--model".into(),
            fetch::MINILM_DIR.into(),
            "--warmup".into(),
            options.warmup.to_string(),
            "--iters".into(),
            options.iters.to_string(),
        ]
    };
    let mut results: BTreeMap<(String, &'static str), Runs> = BTreeMap::new();
    let mut raw = String::new();
    for w in &workloads {
        for round in 0..options.rounds {
            let mut burn = Command::new(&starbucks);
            burn.current_dir(&root).arg("bench").args(common(w)).env("RAYON_NUM_THREADS", options.threads.to_string());
            let mut torch = Command::new(&python);
            torch.current_dir(&root).arg(SCRIPT).args(common(w)).args(["--threads", &options.threads.to_string()]);
            for (side, command) in [("burn", burn), ("pytorch", torch)] {
                let line = run_side(command, &format!("{side} {w}"))?;
                println!(
                    "{w:>13} round {} {side:>8}: {:>10.1} ms",
                    round + 1,
                    line["median_ms"].as_f64().unwrap_or(f64::NAN)
                );
                let _ = writeln!(raw, "{line}");
                results.entry((w.clone(), side)).or_default().lines.push(line);
            }
        }
    }
    let md = report(&results, &workloads, &options);
    println!("\n{md}");
    std::fs::write(output.join("report.md"), &md).context("cannot write report.md")?;
    std::fs::write(output.join("results.jsonl"), raw).context("cannot write results.jsonl")?;
    println!("written: {}/report.md and results.jsonl", output.display());
    Ok(())
}
