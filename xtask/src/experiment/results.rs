//! `results.md` from the stages' files: each run's `report.json` (from `starbucks eval`),
//! `metrics.jsonl` (from training) and the experiment's own `timings.jsonl`.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Deserializer, Serialize};

use super::Method;
use super::preset::Preset;

/// The fields of a `starbucks eval` report (`starbucks_eval::report::Report`) this reads. xtask
/// builds without the workspace crates, so it reads them through these types.
#[derive(Deserialize)]
struct Report {
    rows: Vec<Row>,
    grid: Option<Grid>,
}

#[derive(Deserialize)]
struct Row {
    #[serde(deserialize_with = "nan_if_null")]
    values: Vec<f64>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    measure: String,
}

#[derive(Debug, Clone, Deserialize)]
struct Grid {
    layers: Vec<usize>,
    dims: Vec<usize>,
    values: Vec<Vec<Option<f64>>>,
}

/// JSON has no NaN: a report writes one as `null`.
fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<f64>, D::Error> {
    Ok(Vec::<Option<f64>>::deserialize(d)?.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect())
}

/// The keys of a training step's line of `metrics.jsonl` (`starbucks_train::run::metrics::StepLine`)
/// this reads; evaluation lines have no `tokens`.
#[derive(Deserialize)]
struct MetricsLine {
    step: usize,
    tokens: Option<f64>,
    tokens_per_s: Option<f64>,
}

/// A line of `timings.jsonl`: one invocation's wall clock of one stage.
#[derive(Serialize, Deserialize)]
pub struct Timing {
    pub stage: String,
    pub seconds: f64,
}

/// Every line of a JSON Lines file as `T`, each error naming the file and line.
fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    text.lines()
        .enumerate()
        .map(|(i, line)| serde_json::from_str(line).with_context(|| format!("{}:{}", path.display(), i + 1)))
        .collect()
}

fn read_report(path: &Path) -> Result<Report> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let reports: Vec<Report> =
        serde_json::from_str(&text).with_context(|| format!("{}: not a `starbucks eval` report", path.display()))?;
    reports.into_iter().next().with_context(|| format!("{}: no model in the report", path.display()))
}

/// A method's evaluation: the value of one row at each size, and its grid when it has one.
struct Scores {
    per_size: Vec<f64>,
    grid: Option<Grid>,
}

/// The row of `measure` on `source` (the path the experiment gave `starbucks eval`) of each of
/// `method`'s runs.
fn scores(out: &Path, method: &Method, source: &str, measure: &str) -> Result<Scores> {
    let mut per_size = Vec::new();
    let mut grid = None;
    for (i, run) in method.evals.iter().enumerate() {
        let path = out.join("eval").join(run).join("report.json");
        let report = read_report(&path)?;
        let Some(row) = report.rows.iter().find(|r| r.source.as_deref() == Some(source) && r.measure == measure) else {
            bail!(
                "{}: no {measure} row on {source} (a report of an older `starbucks eval`: delete it to redo)",
                path.display()
            );
        };
        if method.evals.len() == 1 {
            per_size.extend(&row.values);
            grid = report.grid.clone();
        } else {
            // One model per size: size i from the i-th, evaluated at its own size or at the whole
            // list (the full-size model is also a method of its own).
            let at = if row.values.len() == 1 { 0 } else { i };
            let value = row.values.get(at).with_context(|| format!("{}: no size {}", path.display(), i + 1))?;
            per_size.push(*value);
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

/// Seconds of training steps in a run's `metrics.jsonl` (tokens / tokens per second, summed
/// over the step lines: resumed runs count once), and its number of steps.
fn training_seconds(run: &Path) -> Result<(f64, usize)> {
    let mut by_step = BTreeMap::new();
    for line in read_jsonl::<MetricsLine>(&run.join("metrics.jsonl"))? {
        if let (Some(tokens), Some(rate)) = (line.tokens, line.tokens_per_s) {
            by_step.insert(line.step, tokens / rate.max(1e-9));
        }
    }
    Ok((by_step.values().sum(), by_step.len()))
}

/// Wall-clock seconds of each stage in `timings.jsonl`, summed over the invocations that ran it.
fn wall_clock(out: &Path) -> Result<BTreeMap<String, f64>> {
    let path = out.join("timings.jsonl");
    let mut by_stage = BTreeMap::new();
    if !path.exists() {
        return Ok(by_stage);
    }
    for timing in read_jsonl::<Timing>(&path)? {
        *by_stage.entry(timing.stage).or_insert(0.0) += timing.seconds;
    }
    Ok(by_stage)
}

/// A grid as a Markdown table (layers × dims), with its values.
fn grid_table(out: &mut String, grid: &Grid) {
    let dims: Vec<String> = grid.dims.iter().map(|d| d.to_string()).collect();
    let _ = writeln!(out, "| layers | {} |", dims.join(" | "));
    let _ = writeln!(out, "|---|{}", "---|".repeat(dims.len()));
    for (layer, values) in grid.layers.iter().zip(&grid.values) {
        let cells: Vec<String> = values.iter().map(|v| format!("{:.4}", v.unwrap_or(f64::NAN))).collect();
        let _ = writeln!(out, "| {layer} | {} |", cells.join(" | "));
    }
    out.push('\n');
}

pub fn results(preset: &Preset, out: &Path, methods: &[Method]) -> Result<String> {
    let sizes = preset.sizes();
    let mut md = format!("# Experiment `{}`\n\nScale: {}.\n\n", preset.name, preset.scale);
    let sts: Vec<(&str, Scores)> =
        methods.iter().map(|m| Ok((m.label, scores(out, m, &preset.stsb, "Spearman")?))).collect::<Result<_>>()?;
    let dl20: Vec<(&str, Scores)> = methods
        .iter()
        .map(|m| Ok((m.label, scores(out, m, &preset.retrieval.queries, "nDCG@10")?)))
        .collect::<Result<_>>()?;

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
    let mut listed = HashSet::new();
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
