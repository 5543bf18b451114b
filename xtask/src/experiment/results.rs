//! `results.md` from the record (`record.rs`): each run's `report.json` (from `starbucks eval`),
//! `metrics.jsonl` (from training) and the experiment's own `timings.jsonl`.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Deserializer};

use super::preset::Preset;
use super::record::Timing;
use super::{Method, Plan};
use crate::stats::median;

/// The fields of a `starbucks eval` report (`starbucks_eval::report::Report`) this reads. xtask
/// builds without the workspace crates, so it reads them through these types.
#[derive(Deserialize)]
struct Report {
    rows: Vec<Row>,
    grid: Option<Grid>,
    #[serde(default)]
    cross: Vec<CrossGrid>,
}

/// A query size × corpus size grid (`starbucks_eval::cross::CrossGrid`).
#[derive(Debug, Clone, Deserialize)]
struct CrossGrid {
    metric: String,
    queries: Vec<SizeJson>,
    corpus: Vec<SizeJson>,
    values: Vec<Vec<Option<f64>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
struct SizeJson {
    layers: usize,
    dims: usize,
}

impl CrossGrid {
    /// The value at (query, corpus), none where either is not in the grid or the value is null.
    fn get(&self, query: (usize, usize), corpus: (usize, usize)) -> Option<f64> {
        let at = |sizes: &[SizeJson], (layers, dims)| sizes.iter().position(|s| *s == SizeJson { layers, dims });
        self.values[at(&self.queries, query)?][at(&self.corpus, corpus)?]
    }
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

/// One seed of a method: the value of one row at each size, and its grid when it has one.
struct Scores {
    per_size: Vec<f64>,
    grid: Option<Grid>,
}

/// The row of `measure` on `source` (the path the experiment gave `starbucks eval`) of one
/// seed's runs: one run at every size, or one run per size.
fn scores(record: &Path, runs: &[String], source: &str, measure: &str) -> Result<Scores> {
    let mut per_size = Vec::new();
    let mut grid = None;
    for (i, run) in runs.iter().enumerate() {
        let path = record.join("eval").join(run).join("report.json");
        let report = read_report(&path)?;
        let Some(row) = report.rows.iter().find(|r| r.source.as_deref() == Some(source) && r.measure == measure) else {
            bail!(
                "{}: no {measure} row on {source} (a report of an older `starbucks eval`: delete it to redo)",
                path.display()
            );
        };
        if runs.len() == 1 {
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

/// A method's scores, one per seed it was trained with.
struct Seeds<'a> {
    label: &'a str,
    seeds: Vec<Scores>,
}

impl Seeds<'_> {
    /// The value at size `i` of each seed.
    fn at(&self, i: usize) -> Vec<f64> {
        self.seeds.iter().map(|s| s.per_size[i]).collect()
    }

    /// The average over the sizes of each seed.
    fn averages(&self) -> Vec<f64> {
        self.seeds.iter().map(|s| mean(&s.per_size)).collect()
    }
}

/// Every method's scores, `score` reading one seed's runs.
fn method_scores<'a>(methods: &'a [Method], score: impl Fn(&[String]) -> Result<Scores>) -> Result<Vec<Seeds<'a>>> {
    methods
        .iter()
        .map(|m| {
            let seeds = m.seeds.iter().map(|runs| score(runs)).collect::<Result<_>>()?;
            Ok(Seeds { label: m.label, seeds })
        })
        .collect()
}

/// One seed's STS: the plain average over the preset's benchmarks (STS-B alone when it names no
/// other), with its grid (which `starbucks eval` averages over the same benchmarks).
fn sts_scores(record: &Path, preset: &Preset, runs: &[String]) -> Result<Scores> {
    let each: Vec<Scores> = preset
        .sts_benchmarks()
        .iter()
        .map(|(_, source)| scores(record, runs, source, "Spearman"))
        .collect::<Result<_>>()?;
    let per_size =
        (0..each[0].per_size.len()).map(|i| mean(&each.iter().map(|s| s.per_size[i]).collect::<Vec<_>>())).collect();
    Ok(Scores { per_size, grid: each[0].grid.clone() })
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// One value per seed as a cell: the value, or the mean with every seed's value.
fn cell(values: &[f64]) -> String {
    match values {
        [one] => format!("{one:.4}"),
        _ => {
            let each: Vec<String> = values.iter().map(|v| format!("{v:.4}")).collect();
            format!("{:.4} ({})", mean(values), each.join(", "))
        }
    }
}

/// A table: rows are methods, columns the sizes and their average.
fn table(out: &mut String, sizes: &[String], rows: &[Seeds]) {
    let _ = writeln!(
        out,
        "| method | {} | average |",
        sizes.iter().map(|s| format!("({s})")).collect::<Vec<_>>().join(" | ")
    );
    let _ = writeln!(out, "|---|{}", "---|".repeat(sizes.len() + 1));
    for row in rows {
        let cells: Vec<String> = (0..sizes.len()).map(|i| cell(&row.at(i))).collect();
        let _ = writeln!(out, "| {} | {} | {} |", row.label, cells.join(" | "), cell(&row.averages()));
    }
    out.push('\n');
}

/// Where `a`'s values (one per seed) stand against `b`'s: apart when their ranges do not overlap.
fn standing(a: &[f64], b: &[f64]) -> &'static str {
    let range = |v: &[f64]| v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    let ((a_lo, a_hi), (b_lo, b_hi)) = (range(a), range(b));
    if a_lo > b_hi {
        "above"
    } else if a_hi < b_lo {
        "below"
    } else {
        "within the spread"
    }
}

/// The paper's ordering, pair by pair: Starbucks (SMAE → SRL) ≥ SRL ≥ separately trained ≥
/// 2DMSE; its headline claim is the Starbucks–separate pair.
const ORDER: [(&str, &str); 6] = [
    ("SMAE → SRL", "SRL"),
    ("SMAE → SRL", "separately trained"),
    ("SRL", "separately trained"),
    ("separately trained", "2DMSE"),
    ("SRL", "2DMSE"),
    ("SRL", "untouched"),
];

/// One line per pair of `ORDER`: the averages and where they stand, then the sizes by standing.
fn checks(out: &mut String, sizes: &[String], rows: &[Seeds]) {
    let seeds = rows.iter().map(|r| r.seeds.len()).max().unwrap_or(1);
    let _ = writeln!(
        out,
        "A method is above (below) another where its range over the {seeds} seed(s) lies wholly above \
         (below) the other's; otherwise the two are within the spread.\n"
    );
    for (a, b) in ORDER {
        let (Some(a_row), Some(b_row)) = (rows.iter().find(|r| r.label == a), rows.iter().find(|r| r.label == b))
        else {
            continue;
        };
        let (a_avg, b_avg) = (a_row.averages(), b_row.averages());
        let mut by_standing: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (i, size) in sizes.iter().enumerate() {
            by_standing.entry(standing(&a_row.at(i), &b_row.at(i))).or_default().push(format!("({size})"));
        }
        let at: Vec<String> = by_standing.iter().map(|(s, sizes)| format!("{s} at {}", sizes.join(" "))).collect();
        let _ = writeln!(
            out,
            "- {a} vs {b}, average {} vs {}: **{}**; by size: {}",
            cell(&a_avg),
            cell(&b_avg),
            standing(&a_avg, &b_avg),
            at.join("; ")
        );
    }
    out.push('\n');
}

/// Seconds of each training step in a run's `metrics.jsonl` (tokens / tokens per second; a
/// step written again after a resume counts once), by step.
fn step_seconds(run: &Path) -> Result<BTreeMap<usize, f64>> {
    let mut by_step = BTreeMap::new();
    for line in read_jsonl::<MetricsLine>(&run.join("metrics.jsonl"))? {
        if let (Some(tokens), Some(rate)) = (line.tokens, line.tokens_per_s) {
            by_step.insert(line.step, tokens / rate.max(1e-9));
        }
    }
    Ok(by_step)
}

/// Each stage's invocations in `timings.jsonl`: wall clock summed, peak memory the largest.
fn stage_timings(record: &Path) -> Result<BTreeMap<String, (f64, Option<u64>)>> {
    let path = record.join("timings.jsonl");
    let mut by_stage: BTreeMap<String, (f64, Option<u64>)> = BTreeMap::new();
    if !path.exists() {
        return Ok(by_stage);
    }
    for timing in read_jsonl::<Timing>(&path)? {
        let entry = by_stage.entry(timing.stage).or_insert((0.0, None));
        entry.0 += timing.seconds;
        entry.1 = entry.1.max(timing.peak_rss_kib);
    }
    Ok(by_stage)
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("–".to_string(), |k| format!("{:.0}", k as f64 / 1024.0))
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

/// The grid's cells averaged over the seeds.
fn mean_grid(grids: &[&Grid]) -> Grid {
    let mut grid = grids[0].clone();
    for (i, row) in grid.values.iter_mut().enumerate() {
        for (j, value) in row.iter_mut().enumerate() {
            let each: Vec<f64> = grids.iter().map(|g| g.values[i][j].unwrap_or(f64::NAN)).collect();
            *value = Some(mean(&each));
        }
    }
    grid
}

/// The sizes of a list the preset's loading checked.
fn parse_sizes(list: &str) -> Vec<(usize, usize)> {
    super::preset::pairs(list).expect("checked when the preset was loaded")
}

/// A grid's mean over every cell, and over the cells not in `trained`.
fn grid_means(grid: &Grid, trained: &[(usize, usize)]) -> (f64, f64) {
    let (mut all, mut others) = (Vec::new(), Vec::new());
    for (layer, row) in grid.layers.iter().zip(&grid.values) {
        for (dims, value) in grid.dims.iter().zip(row) {
            let value = value.unwrap_or(f64::NAN);
            all.push(value);
            if !trained.contains(&(*layer, *dims)) {
                others.push(value);
            }
        }
    }
    (mean(&all), mean(&others))
}

/// SRL on each size list against the preset's own, over the whole grid.
fn size_lists(md: &mut String, preset: &Preset, record: &Path, plan: &Plan, srl: &Seeds, measure: &str) -> Result<()> {
    if plan.lists.is_empty() {
        return Ok(());
    }
    let sizes = preset.sizes();
    let _ = writeln!(
        md,
        "## Size lists: SRL trained on other lists, {measure} over the whole layer × dim grid\n\n\
         The preset's list is {}; each other list is trained with the first seed. \"Not trained\" \
         averages the grid's cells outside the run's own list.\n",
        sizes.iter().map(|s| format!("({s})")).collect::<Vec<_>>().join(" ")
    );
    let _ = writeln!(
        md,
        "| list | sizes trained | preset sizes average | grid average | not trained average | ({}) | ({}) |",
        sizes[0],
        sizes[sizes.len() - 1]
    );
    md.push_str("|---|---|---|---|---|---|---|\n");
    let row = |md: &mut String, label: &str, list: &str, scores: &Scores| {
        let grid = scores.grid.as_ref().expect("SRL runs are evaluated on the grid");
        let (all, others) = grid_means(grid, &parse_sizes(list));
        let (first, last) = (scores.per_size[0], scores.per_size[scores.per_size.len() - 1]);
        let _ = writeln!(
            md,
            "| {label} | {} | {:.4} | {all:.4} | {others:.4} | {first:.4} | {last:.4} |",
            parse_sizes(list).len(),
            mean(&scores.per_size)
        );
    };
    for (i, seed) in srl.seeds.iter().enumerate() {
        row(md, &format!("the preset's (SRL, seed {})", i + 1), &preset.sizes, seed);
    }
    let mut grids = Vec::new();
    for list in &plan.lists {
        let scores = sts_scores(record, preset, std::slice::from_ref(&list.run))?;
        row(md, &format!("`{}`: {}", list.name, list.sizes), &list.sizes, &scores);
        grids.push((list, scores));
    }
    md.push('\n');
    for (list, scores) in grids {
        let run = &list.run;
        let _ = writeln!(md, "### `{}`\n\n![{}](eval/{run}/grid-{run}.svg)\n", list.name, list.name);
        grid_table(md, scores.grid.as_ref().expect("evaluated on the grid"));
    }
    Ok(())
}

/// Seconds per step (median over the steps after the first) and peak memory of each short run.
fn cost(md: &mut String, record: &Path, plan: &Plan, timings: &BTreeMap<String, (f64, Option<u64>)>) -> Result<()> {
    let Some(first) = plan.costs.first() else { return Ok(()) };
    let rounds = plan.costs.iter().map(|c| c.round).max().unwrap_or(1);
    let steps = step_seconds(&record.join(&first.run))?.len();
    let _ = writeln!(
        md,
        "## Cost of a step and peak memory, by batch size\n\n\
         {steps} steps per run; seconds per step: the median over the steps after the first; peak \
         memory: the process's peak resident set (it includes the model, the optimiser state and \
         the end-of-run STS-B dev evaluation). The runs were alternated (every method at a batch \
         size, then the next size), {rounds} round(s); each round's value is shown, and the ratio \
         is against single-size training in the same round.\n"
    );
    md.push_str("| method | batch | s/step (each round) | × single (each round) | peak MiB (each round) |\n");
    md.push_str("|---|---|---|---|---|\n");
    let per_step = |run: &str| -> Result<f64> {
        let seconds: Vec<f64> = step_seconds(&record.join(run))?.into_values().skip(1).collect();
        Ok(median(&seconds))
    };
    let mut keys: Vec<(usize, &str)> = Vec::new();
    for c in &plan.costs {
        if !keys.contains(&(c.batch, c.method.as_str())) {
            keys.push((c.batch, &c.method));
        }
    }
    keys.sort_by_key(|(batch, _)| *batch);
    for (batch, method) in keys {
        let (mut secs, mut ratios, mut peaks) = (Vec::new(), Vec::new(), Vec::new());
        for round in 1..=rounds {
            let find = |m: &str| plan.costs.iter().find(|c| c.batch == batch && c.round == round && c.method == m);
            let Some(run) = find(method) else { continue };
            let s = per_step(&run.run)?;
            secs.push(format!("{s:.3}"));
            if let Some(single) = find("single") {
                ratios.push(format!("{:.2}", s / per_step(&single.run)?));
            }
            peaks.push(mib(timings.get(&run.run).and_then(|t| t.1)));
        }
        let _ = writeln!(
            md,
            "| {method} | {batch} | {} | {} | {} |",
            secs.join(" / "),
            ratios.join(" / "),
            peaks.join(" / ")
        );
    }
    md.push('\n');
    Ok(())
}

/// The query × corpus grids: per measure, each method's score with the queries and the corpus
/// at the same size ("both") and with the corpus at the full size ("corpus deep"), per query
/// size; then SRL-deep's "corpus deep" against SRL's "both" at every depth below the full one,
/// and the two full sizes.
fn cross(md: &mut String, preset: &Preset, record: &Path, methods: &[Method], sts: &str) -> Result<()> {
    let Some(cross) = &preset.cross else { return Ok(()) };
    let queries = parse_sizes(&cross.query_sizes);
    let corpus = parse_sizes(&cross.corpus_sizes);
    let Some(&full) = parse_sizes(&preset.sizes).last() else { return Ok(()) };
    let _ = writeln!(
        md,
        "## Shallow queries against a deep corpus\n\n\
         Each query size (n, d) scored against the corpus at the same size (\"both\") and against \
         the corpus at the full size {full:?} cut to d dims (\"corpus deep\"), as an index built once \
         at full depth is searched by a cheap query; STS: each pair's first sentence at the query \
         size, the second at the corpus size. Grids: `starbucks eval --query-sizes {} \
         --corpus-sizes {}`.\n",
        cross.query_sizes, cross.corpus_sizes
    );
    // (label, the metric's suffix in the report): the STS grid first, then the retrieval one.
    let sts = format!("{sts}, Spearman");
    let mut measures = vec![(sts.as_str(), " Spearman")];
    if preset.retrieval.is_some() {
        measures.push(("TREC DL 2020, nDCG@10", " nDCG@10"));
    }
    for (label, suffix) in measures {
        // Per method, per seed: the first grid of that measure.
        let mut grids: Vec<(&str, Vec<CrossGrid>)> = Vec::new();
        for m in methods.iter().filter(|m| m.seeds.iter().all(|runs| runs.len() == 1)) {
            let mut seeds = Vec::new();
            for runs in &m.seeds {
                let path = record.join("eval").join(&runs[0]).join("report.json");
                let found = read_report(&path)?.cross.into_iter().find(|g| g.metric.ends_with(suffix));
                seeds.push(found.with_context(|| format!("{}: no query × corpus grid of{suffix}", path.display()))?);
            }
            grids.push((m.label, seeds));
        }
        let value =
            |seeds: &[CrossGrid], q, c| -> Vec<f64> { seeds.iter().map(|g| g.get(q, c).unwrap_or(f64::NAN)).collect() };
        let _ = writeln!(md, "### {label}\n");
        let heads: Vec<String> = grids.iter().map(|(l, _)| format!("{l}: both | {l}: corpus deep")).collect();
        let _ = writeln!(md, "| query size | {} |", heads.join(" | "));
        let _ = writeln!(md, "|---|{}", "---|".repeat(2 * grids.len()));
        for &q in queries.iter().filter(|q| corpus.contains(q)) {
            let cells: Vec<String> = grids
                .iter()
                .flat_map(|(_, seeds)| [cell(&value(seeds, q, q)), cell(&value(seeds, q, (full.0, full.1)))])
                .collect();
            let _ = writeln!(md, "| ({}, {}) | {} |", q.0, q.1, cells.join(" | "));
        }
        md.push('\n');
        let find = |name: &str| grids.iter().find(|(l, _)| *l == name).map(|(_, g)| g.as_slice());
        if let (Some(srl), Some(deep)) = (find("SRL"), find("SRL-deep")) {
            let mut lines = Vec::new();
            for &q in queries.iter().filter(|q| q.0 < full.0 && corpus.contains(q)) {
                let (d, s) = (value(deep, q, full), value(srl, q, q));
                lines.push(format!("({}, {}) {} ({:+.4})", q.0, q.1, standing(&d, &s), mean(&d) - mean(&s)));
            }
            let (d, s) = (value(deep, full, full), value(srl, full, full));
            let _ = writeln!(
                md,
                "SRL-deep \"corpus deep\" against SRL \"both\", below the full depth: {}. At the full size: \
                 SRL-deep {} against SRL {}: **{}**.\n",
                lines.join("; "),
                cell(&d),
                cell(&s),
                standing(&d, &s)
            );
        }
        for (label, _) in &grids {
            let run = &methods.iter().find(|m| m.label == *label).expect("a method").seeds[0][0];
            let index = if suffix == " Spearman" { 1 } else { 2 };
            let _ = writeln!(md, "![{label}](eval/{run}/cross-{run}-{index}.svg)");
        }
        let seeds = grids.iter().map(|g| g.1.len()).max().unwrap_or(1);
        md.push_str(if seeds > 1 { "\n(Heat-maps: the first seed.)\n\n" } else { "\n" });
    }
    Ok(())
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |c| c.to_uppercase().chain(chars).collect())
}

pub fn results(preset: &Preset, record: &Path, plan: &Plan) -> Result<String> {
    let sizes = preset.sizes();
    let methods = &plan.methods;
    let mut md = format!("# Experiment `{}`\n\nScale: {}.\n\n", preset.name, preset.scale);
    let seeds = preset.seeds();
    if seeds.len() > 1 {
        let names: Vec<String> = preset.seeds.iter().map(|s| s.to_string()).collect();
        let _ = writeln!(
            md,
            "Every trained method ran once per seed ({}); a cell is the mean over the seeds, then each \
             seed's value in that order.\n",
            names.join(", ")
        );
    }
    let benchmarks = preset.sts_benchmarks();
    let sts = method_scores(methods, |runs| sts_scores(record, preset, runs))?;
    let measure = if benchmarks.len() == 1 {
        benchmarks[0].0.clone()
    } else {
        for (label, source) in &benchmarks {
            let _ = writeln!(md, "## {label}, Spearman at every size\n");
            table(&mut md, &sizes, &method_scores(methods, |runs| scores(record, runs, source, "Spearman"))?);
        }
        let labels: Vec<&str> = benchmarks.iter().map(|(l, _)| l.as_str()).collect();
        format!("the STS average ({})", labels.join(", "))
    };
    let _ = writeln!(md, "## {}, Spearman at every size\n", capitalised(&measure));
    table(&mut md, &sizes, &sts);
    if let Some(r) = &preset.retrieval {
        let dl20 = method_scores(methods, |runs| scores(record, runs, &r.queries, "nDCG@10"))?;
        md.push_str("## TREC DL 2020, nDCG@10 at every size (re-ranking BM25's top 100, mean pooling, cosine)\n\n");
        table(&mut md, &sizes, &dl20);
    }
    for (label, spec) in preset.beir_sets() {
        let _ = writeln!(md, "## BEIR {label}, nDCG@10 at every size\n");
        table(&mut md, &sizes, &method_scores(methods, |runs| scores(record, runs, &spec, "nDCG@10"))?);
    }

    let _ = writeln!(md, "## Checks: the paper's ordering on {measure}\n");
    checks(&mut md, &sizes, &sts);
    cross(&mut md, preset, record, methods, &capitalised(&measure))?;

    let _ = writeln!(md, "## The layer × dim grid, {measure} Spearman\n");
    for (method, seeds) in methods.iter().zip(&sts) {
        let grids: Vec<&Grid> = seeds.seeds.iter().filter_map(|s| s.grid.as_ref()).collect();
        if grids.is_empty() {
            continue;
        }
        let label = method.label;
        let _ = writeln!(md, "### {label}\n");
        for runs in &method.seeds {
            let run = &runs[0];
            let _ = writeln!(md, "![{label}](eval/{run}/grid-{run}.svg)");
        }
        if grids.len() > 1 {
            md.push_str("\nThe mean over the seeds:\n");
        }
        md.push('\n');
        grid_table(&mut md, &mean_grid(&grids));
    }

    let srl = sts.iter().find(|s| s.label == "SRL").expect("SRL is a method");
    size_lists(&mut md, preset, record, plan, srl, &measure)?;
    let timings = stage_timings(record)?;
    cost(&mut md, record, plan, &timings)?;

    md.push_str(
        "## Cost of every stage\n\nTraining: the seconds of the training steps (from each run's `metrics.jsonl`); stage: \
         the wall clock of the whole `starbucks` command (loading, checkpoints, the end-of-run STS-B dev \
         evaluation), summed over the invocations that ran it; peak: the largest resident set of those \
         processes.\n\n",
    );
    md.push_str("| stage | steps | training (s) | stage wall clock (s) | peak MiB |\n|---|---|---|---|---|\n");
    // `single` is its own method and the full size of the separately trained one: one line.
    let mut listed = HashSet::new();
    let trained = methods.iter().flat_map(|m| &m.runs).chain(plan.lists.iter().map(|l| &l.run));
    for run in trained.chain(plan.costs.iter().map(|c| &c.run)) {
        if !listed.insert(run) {
            continue;
        }
        let by_step = step_seconds(&record.join(run))?;
        let seconds: f64 = by_step.values().sum();
        let (wall, peak) = timings.get(run).map_or(("reused".to_string(), None), |t| (format!("{:.0}", t.0), t.1));
        let _ = writeln!(md, "| `{run}` | {} | {seconds:.0} | {wall} | {} |", by_step.len(), mib(peak));
    }
    let eval: Vec<&(f64, Option<u64>)> =
        timings.iter().filter(|(k, _)| k.starts_with("eval-")).map(|(_, v)| v).collect();
    let eval_peak = eval.iter().filter_map(|t| t.1).max();
    let _ = writeln!(
        md,
        "| evaluation (all models) | | | {:.0} | {} |",
        eval.iter().map(|t| t.0).sum::<f64>(),
        mib(eval_peak)
    );
    let total: f64 = timings.values().map(|t| t.0).sum();
    let _ = writeln!(md, "| **all stages** | | | {total:.0} ({:.2} h) | |", total / 3600.0);
    Ok(md)
}
