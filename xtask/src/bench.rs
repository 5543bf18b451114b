//! `cargo xtask bench`: the side-by-side benchmark. Builds the `starbucks` CLI in release,
//! makes sure a Python environment with PyTorch, sentence-transformers and ONNX Runtime exists
//! outside the repository (installing it from PyPI the first time), then runs every workload on
//! every path alternately (round 1: each path in turn, round 2: again, …), each run a fresh
//! process that times `--iters` iterations after `--warmup` (a one-text workload: `--calls`
//! calls after a tenth as many). Training workloads run on two paths (ours and PyTorch, f32);
//! inference workloads (`forward-N`, `embed`, `one-LENGTH-N`) on seven: ours in f32, int8 and
//! bf16 (where the CPU has AVX-512 BF16), PyTorch eager f32 and bf16 autocast, ONNX Runtime f32
//! and dynamic int8 (an ONNX export of the same local weights, made in the bench environment).
//! The paths' order is reversed every other round, and a ratio between two paths is the median
//! of the rounds' ratios, each dividing runs made next to each other. Prints every iteration
//! (for a one-text workload, each run's p50 and p99; every call is in the raw lines), the
//! medians, the spread and the ratios (every round's beside) as Markdown, and writes
//! `report.md` and `results.jsonl` (every run's raw line, with its round) to `--output`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::flags::{Backend, BenchOptions};
use crate::stats::{by_round, every_round, median, quantile};
use crate::{cli, fetch};

/// What the reference environment is installed from (PyPI). torch's Linux wheel brings its
/// CUDA libraries with it (~5 GB): its `--no-deps` install does not import without them.
/// onnx and onnxscript export the model; onnxruntime runs and quantises it.
const REQUIREMENTS: &[&str] = &[
    "torch==2.15.0",
    "transformers==5.24.0",
    "sentence-transformers==6.2.0",
    "onnxruntime==1.32.0",
    "onnx==1.23.2",
    "onnxscript==0.7.2",
];

/// The paths of a training workload, then of an inference one; each a `side` name of the
/// JSON lines. Ours are `starbucks bench --precision P`, the others `bench.py --path P`.
const TRAIN_PATHS: &[&str] = &["burn-f32", "torch-f32"];
pub const INFERENCE_PATHS: &[&str] =
    &["burn-f32", "burn-int8", "burn-bf16", "torch-f32", "torch-bf16", "ort-f32", "ort-int8"];

/// Each of our precisions and the peer path of the same arithmetic it is compared with.
const SAME_PRECISION: [(&str, &str); 3] =
    [("burn-f32", "ort-f32"), ("burn-int8", "ort-int8"), ("burn-bf16", "torch-bf16")];

/// Whether this machine runs `path`: ours in bf16 needs AVX-512 BF16, with our kernels not held
/// below avx512 by `STARBUCKS_SIMD` (`starbucks` refuses it otherwise).
fn runs_here(path: &str) -> bool {
    if path != "burn-bf16" {
        return true;
    }
    #[cfg(target_arch = "x86_64")]
    let bf16 = std::arch::is_x86_feature_detected!("avx512bf16");
    #[cfg(not(target_arch = "x86_64"))]
    let bf16 = false;
    // The name is `starbucks_kernels::simd::TIER_VARIABLE`; this debug-built tool does not link
    // the kernels.
    bf16 && !std::env::var("STARBUCKS_SIMD").is_ok_and(|tier| tier != "avx512")
}

fn paths(workload: &str) -> &'static [&'static str] {
    if workload.starts_with("train-") { TRAIN_PATHS } else { INFERENCE_PATHS }
}

/// The path each one is measured against: PyTorch for training, ONNX Runtime f32 for inference.
fn reference(workload: &str) -> &'static str {
    if workload.starts_with("train-") { "torch-f32" } else { "ort-f32" }
}
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
    "one-short-1",
    "one-short-2",
    "one-short-3",
    "one-short-4",
    "one-short-5",
    "one-short-6",
    "one-medium-1",
    "one-medium-6",
    "one-long-1",
    "one-long-6",
];

/// A workload of one text per call: its report shows percentiles over calls.
fn one_text(workload: &str) -> bool {
    workload.starts_with("one-")
}

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

/// The runs of one workload on one path.
#[derive(Default)]
struct Runs {
    lines: Vec<Value>,
}

/// The timed iterations of one run (for one text per call, its calls).
fn run_times(line: &Value) -> Vec<f64> {
    line["times_ms"].as_array().into_iter().flatten().filter_map(Value::as_f64).collect()
}

impl Runs {
    /// Every timed iteration of every run, in the order they ran.
    fn times(&self) -> Vec<f64> {
        self.lines.iter().flat_map(run_times).collect()
    }

    /// Round by round, `stat` of `peer`'s run over `stat` of ours (above 1: ours is faster):
    /// the median ratio and every round's. A round either lacks has no ratio.
    fn speedup(&self, peer: &Runs, stat: fn(&[f64]) -> f64) -> (f64, Vec<f64>) {
        let peer: Vec<&Value> = peer.lines.iter().collect();
        by_round(&self.lines, &peer, |ours, theirs| Some(stat(&run_times(theirs)) / stat(&run_times(ours))))
    }

    /// The median over every timed iteration of every run.
    fn median_ms(&self) -> f64 {
        median(&self.times())
    }

    /// The `q` quantile (0..=1) over every timed iteration of every run.
    fn quantile_ms(&self, q: f64) -> f64 {
        quantile(&self.times(), q)
    }

    /// The largest distance of an iteration from the median, as a fraction of it.
    fn spread(&self) -> f64 {
        let median = self.median_ms();
        self.times().iter().map(|t| (t - median).abs() / median).fold(0.0, f64::max)
    }

    /// Every iteration, rounds separated by `/`; for one text per call, each run's p50 and p99.
    fn iterations(&self, one_text: bool) -> String {
        let round = |l: &Value| -> String {
            let times = run_times(l);
            if one_text {
                return format!("p50 {:.2}, p99 {:.2}", quantile(&times, 0.5), quantile(&times, 0.99));
            }
            times.iter().map(|t| format!("{t:.0}")).collect::<Vec<_>>().join(" ")
        };
        self.lines.iter().map(round).collect::<Vec<_>>().join(" / ")
    }

    fn peak_rss_mb(&self) -> f64 {
        self.lines.iter().filter_map(|l| l["peak_rss_mb"].as_f64()).fold(0.0, f64::max)
    }

    fn field(&self, name: &str) -> Option<u64> {
        self.lines.first().and_then(|l| l[name].as_u64())
    }

    /// STS-B test Spearman per size (`"6x384"` → value), from the first run that has it.
    fn spearman(&self) -> Option<&serde_json::Map<String, Value>> {
        self.lines.iter().find_map(|l| l["spearman"].as_object())
    }
}

type Results = BTreeMap<(String, String), Runs>;

fn p99(times: &[f64]) -> f64 {
    quantile(times, 0.99)
}

/// `ours`' speed-up over `peer` by `stat` of each round's run, as the report shows it.
fn speedup(ours: &Runs, peer: &Runs, stat: fn(&[f64]) -> f64) -> String {
    let (ratio, rounds) = ours.speedup(peer, stat);
    format!("{ratio:.2}× ({})", every_round(&rounds, 2))
}

fn report(results: &Results, workloads: &[String], options: &BenchOptions) -> String {
    let get = |w: &str, path: &str| results.get(&(w.to_string(), path.to_string()));
    let mut md = String::new();
    let _ = writeln!(
        md,
        "{} rounds × {} timed iterations (after {} warm-up) per workload and path, {} threads, the paths alternated in each round (their order reversed every other round); × reference: the reference path's time over this path's, the median of the rounds' ratios (every round's in brackets).\n",
        options.rounds, options.iters, options.warmup, options.threads
    );
    let _ = writeln!(
        md,
        "| workload | path | median ms | × reference | spread | every iteration, ms (rounds split by /) | tokens (computed) | peak RSS MB |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    for w in workloads {
        let base = get(w, reference(w));
        for path in paths(w) {
            let Some(r) = get(w, path) else { continue };
            let tokens = match (r.field("tokens"), r.field("padded_tokens")) {
                (Some(t), Some(p)) => format!("{t} ({p})"),
                _ => "–".into(),
            };
            // Above 1: faster than the reference path.
            let ratio = match base {
                Some(_) if *path == reference(w) => "1×".into(),
                Some(base) => speedup(r, base, median),
                None => "–".into(),
            };
            let _ = writeln!(
                md,
                "| {w} | {path} | {:.2} | {ratio} | ±{:.0} % | {} | {tokens} | {:.0} |",
                r.median_ms(),
                r.spread() * 100.0,
                r.iterations(one_text(w)),
                r.peak_rss_mb()
            );
        }
    }
    if let Some(f32) = get("embed", "burn-f32") {
        let texts = f32.field("items").unwrap_or(0) as f64;
        let _ = writeln!(
            md,
            "\n`embed`: texts/s and STS-B test Spearman by path (gap: the largest distance from ours in f32 over the sizes).\n"
        );
        let sizes: Vec<String> = f32.spearman().map(|m| m.keys().cloned().collect()).unwrap_or_default();
        let _ = writeln!(md, "| path | texts/s | {} | gap |", sizes.join(" | "));
        let _ = writeln!(md, "|---|---|{}---|", "---|".repeat(sizes.len()));
        for path in INFERENCE_PATHS {
            let Some(r) = get("embed", path) else { continue };
            let values: Vec<Option<f64>> =
                sizes.iter().map(|s| r.spearman().and_then(|m| m.get(s)).and_then(Value::as_f64)).collect();
            let gap = sizes
                .iter()
                .zip(&values)
                .filter_map(|(s, v)| Some((v.as_ref()? - f32.spearman()?.get(s)?.as_f64()?).abs()))
                .fold(0.0, f64::max);
            let cells: Vec<String> = values.iter().map(|v| v.map_or("–".into(), |v| format!("{v:.4}"))).collect();
            let _ = writeln!(md, "| {path} | {:.0} | {} | {gap:.4} |", texts / r.median_ms() * 1e3, cells.join(" | "));
        }
    }
    // Each of our paths against its peer of the same arithmetic at `w`, by each of `stats`.
    let same_precision = |w: &str, stats: &[fn(&[f64]) -> f64]| -> Vec<String> {
        SAME_PRECISION
            .iter()
            .map(|(ours, peer)| match (get(w, ours), get(w, peer)) {
                (Some(a), Some(b)) => stats.iter().map(|&stat| speedup(a, b, stat)).collect::<Vec<_>>().join(", "),
                _ => "–".into(),
            })
            .collect()
    };
    let latency: Vec<&String> = workloads.iter().filter(|w| one_text(w)).collect();
    if !latency.is_empty() {
        let _ = writeln!(
            md,
            "\nOne text per call: p50 / p99 ms over every call of every run, and ours against the peer of the \
             same arithmetic (its time over ours: above 1, ours is faster).\n"
        );
        let same: Vec<String> =
            SAME_PRECISION.iter().map(|(ours, peer)| format!("{ours} × {peer} (p50, p99)")).collect();
        let _ = writeln!(md, "| workload | {} | {} |", INFERENCE_PATHS.join(" | "), same.join(" | "));
        let _ = writeln!(md, "|---|{}{}", "---|".repeat(INFERENCE_PATHS.len()), "---|".repeat(same.len()));
        for w in latency {
            let cells: Vec<String> = INFERENCE_PATHS
                .iter()
                .map(|p| {
                    get(w, p).map_or("–".into(), |r| format!("{:.2} / {:.2}", r.median_ms(), r.quantile_ms(0.99)))
                })
                .collect();
            let same = same_precision(w, &[median, p99]);
            let _ = writeln!(md, "| {w} | {} | {} |", cells.join(" | "), same.join(" | "));
        }
    }
    let batches: Vec<&String> = workloads.iter().filter(|w| !one_text(w) && !w.starts_with("train-")).collect();
    if !batches.is_empty() {
        let _ = writeln!(
            md,
            "\nBatches: ours against the peer of the same arithmetic (its median time over ours: above 1, ours is \
             faster).\n"
        );
        let same: Vec<String> = SAME_PRECISION.iter().map(|(ours, peer)| format!("{ours} × {peer}")).collect();
        let _ = writeln!(md, "| workload | {} |", same.join(" | "));
        let _ = writeln!(md, "|---|{}", "---|".repeat(same.len()));
        for w in batches {
            let _ = writeln!(md, "| {w} | {} |", same_precision(w, &[median]).join(" | "));
        }
    }
    let ratio = |a: &str, b: &str, path: &str| match (get(a, path), get(b, path)) {
        (Some(x), Some(y)) => format!("{:.2}×", x.median_ms() / y.median_ms()),
        _ => "–".into(),
    };
    let _ = writeln!(md, "\n| ratio within one path | {} |", INFERENCE_PATHS.join(" | "));
    let _ = writeln!(md, "|---|{}", "---|".repeat(INFERENCE_PATHS.len()));
    let row = |label: &str, a: &str, b: &str| {
        let cells: Vec<String> = INFERENCE_PATHS.iter().map(|p| ratio(a, b, p)).collect();
        format!("| {label} | {} |\n", cells.join(" | "))
    };
    md.push_str(&row("SRL step / single-size step", "train-srl", "train-single"));
    md.push_str(&row("SMAE step / plain MLM step", "train-smae", "train-mlm"));
    md.push_str(&row("forward: 6 layers / 1 layer (early-exit speed-up)", "forward-6", "forward-1"));
    md.push_str(&row("one short text: 6 layers / 1 layer", "one-short-6", "one-short-1"));
    if let Some(p) = results.values().find_map(|r| r.lines.iter().find(|l| l["side"] == "torch-f32")) {
        let _ = writeln!(md, "\nPython side: {}", p["versions"]);
    }
    md
}

pub fn run(backend: Backend, options: BenchOptions) -> Result<()> {
    fetch::run("minilm")?;
    let root = fetch::workspace_root();
    let venv = options.venv.clone().unwrap_or_else(default_venv);
    let python = ensure_venv(
        &venv,
        REQUIREMENTS,
        "import torch, transformers, sentence_transformers, onnxruntime, onnx",
        "the PyTorch and ONNX Runtime peers",
    )?;
    let starbucks = cli::build(backend)?;
    let workloads: Vec<String> = match &options.workloads {
        Some(list) => list.clone(),
        None => WORKLOADS.iter().map(|w| w.to_string()).collect(),
    };
    let output = root.join(&options.output);
    std::fs::create_dir_all(&output).with_context(|| format!("cannot create {}", output.display()))?;
    let onnx_cache = output.join("onnx");
    let common = |w: &str| {
        let (warmup, iters) =
            if one_text(w) { (options.calls.div_ceil(10), options.calls) } else { (options.warmup, options.iters) };
        vec![
            "--workload".to_string(),
            w.to_string(),
            "--model".into(),
            fetch::MINILM_DIR.into(),
            "--warmup".into(),
            warmup.to_string(),
            "--iters".into(),
            iters.to_string(),
        ]
    };
    let mut results = Results::new();
    // Every run's line is appended as it arrives: a run cut short keeps what it measured.
    let raw_path = output.join("results.jsonl");
    let mut raw = std::fs::File::create(&raw_path).with_context(|| format!("cannot create {}", raw_path.display()))?;
    let wanted = |path: &str| options.paths.as_ref().is_none_or(|list| list.iter().any(|p| p == path));
    if workloads.iter().any(|w| !w.starts_with("train-")) && wanted("burn-bf16") && !runs_here("burn-bf16") {
        println!("burn-bf16 left out: this CPU has no AVX-512 BF16, or STARBUCKS_SIMD holds our kernels below it");
    }
    for w in &workloads {
        for round in 0..options.rounds {
            // Reversed every other round (A B C, C B A, ...), so that no path always runs
            // first, or always right after the same one: this VM's speed drifts within a minute.
            let mut order: Vec<&str> = paths(w).iter().copied().filter(|p| wanted(p) && runs_here(p)).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for path in order {
                let command = match path.strip_prefix("burn-") {
                    Some(precision) => {
                        let mut burn = Command::new(&starbucks);
                        burn.current_dir(&root)
                            .arg("bench")
                            .args(common(w))
                            .args(["--precision", precision])
                            .env("RAYON_NUM_THREADS", options.threads.to_string());
                        burn
                    }
                    None => {
                        let mut python = Command::new(&python);
                        python
                            .current_dir(&root)
                            .arg(SCRIPT)
                            .args(common(w))
                            .args(["--path", path, "--threads", &options.threads.to_string()])
                            .arg("--onnx-cache")
                            .arg(&onnx_cache);
                        python
                    }
                };
                let mut line = run_side(command, &format!("{path} {w}"))?;
                line["round"] = (round + 1).into();
                println!(
                    "{w:>13} round {} {path:>10}: {:>10.1} ms",
                    round + 1,
                    line["median_ms"].as_f64().unwrap_or(f64::NAN)
                );
                writeln!(raw, "{line}").with_context(|| format!("cannot write {}", raw_path.display()))?;
                results.entry((w.clone(), path.to_string())).or_default().lines.push(line);
            }
        }
    }
    let md = report(&results, &workloads, &options);
    println!("\n{md}");
    std::fs::write(output.join("report.md"), &md).context("cannot write report.md")?;
    println!("written: {}/report.md and results.jsonl", output.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(rounds: &[(u64, &[f64])]) -> Runs {
        let lines =
            rounds.iter().map(|(round, times)| serde_json::json!({"round": round, "times_ms": times})).collect();
        Runs { lines }
    }

    #[test]
    fn speedups_divide_runs_of_the_same_round() {
        // The peer's round 2 ran fast and ours slow: a ratio of the pooled medians would hide
        // that each round's runs were 2.0, 1.5 and 2.0 apart.
        let ours = runs(&[(1, &[10.0, 11.0, 9.0]), (2, &[20.0, 20.0, 20.0]), (3, &[5.0, 5.0, 5.0]), (4, &[1.0])]);
        let peer = runs(&[(1, &[20.0, 20.0, 20.0]), (2, &[30.0, 30.0, 30.0]), (3, &[10.0, 10.0, 10.0])]);
        let (ratio, rounds) = ours.speedup(&peer, median);
        // Round 4 has no peer run, so no ratio.
        assert_eq!(rounds, vec![2.0, 1.5, 2.0]);
        assert_eq!(ratio, 2.0);
        assert_ne!(ratio, peer.median_ms() / ours.median_ms());
        assert_eq!(speedup(&ours, &peer, median), "2.00× (2.00 / 1.50 / 2.00)");
    }
}
