//! `metrics.jsonl`: one JSON line per step and one per evaluation, typed so that the writer and
//! every reader share the keys.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use starbucks_model::Size;

use crate::checkpoint;
use crate::engine::StepReport;
use crate::error::{Error, Result};

/// One optimiser step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepLine {
    pub step: usize,
    /// NaN on a skipped step (JSON has no NaN: written as `null`, read back as NaN).
    #[serde(deserialize_with = "nan_if_null")]
    pub loss: f64,
    /// Loss terms by name (`base(n, d)`, `kl(n, d)`, `mlm(n, d)`, …).
    #[serde(deserialize_with = "nan_if_null_in_map")]
    pub terms: BTreeMap<String, f64>,
    pub lr: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub grad_norm: f64,
    pub tokens: usize,
    pub tokens_per_s: f64,
    pub applied: bool,
    /// Steps skipped for NaN/Inf so far.
    pub skipped: usize,
}

impl StepLine {
    pub fn new(report: &StepReport, skipped: usize, seconds: f64) -> Self {
        StepLine {
            step: report.step,
            loss: report.loss,
            terms: report.terms.iter().cloned().collect(),
            lr: report.lr,
            grad_norm: report.grad_norm,
            tokens: report.tokens,
            tokens_per_s: report.tokens as f64 / seconds.max(1e-9),
            applied: report.applied,
            skipped,
        }
    }
}

fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

fn nan_if_null_in_map<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<BTreeMap<String, f64>, D::Error> {
    let map = BTreeMap::<String, Option<f64>>::deserialize(d)?;
    Ok(map.into_iter().map(|(k, v)| (k, v.unwrap_or(f64::NAN))).collect())
}

/// One evaluation: Spearman per size (keyed `layers,dims`) and their mean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalLine {
    pub step: usize,
    pub eval: EvalScores,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalScores {
    #[serde(deserialize_with = "nan_if_null_in_map")]
    pub spearman: BTreeMap<String, f64>,
    #[serde(deserialize_with = "nan_if_null")]
    pub mean: f64,
}

impl EvalLine {
    pub fn new(step: usize, scores: &[(Size, f64)]) -> Self {
        let spearman = scores.iter().map(|(size, v)| (format!("{},{}", size.layers, size.dims), *v)).collect();
        let mean = scores.iter().map(|(_, v)| v).sum::<f64>() / scores.len().max(1) as f64;
        EvalLine { step, eval: EvalScores { spearman, mean } }
    }
}

/// A line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MetricsLine {
    Step(StepLine),
    Eval(EvalLine),
}

impl MetricsLine {
    pub fn step(&self) -> usize {
        match self {
            MetricsLine::Step(line) => line.step,
            MetricsLine::Eval(line) => line.step,
        }
    }
}

/// Every line of a `metrics.jsonl`; a line that is not one is an error naming its number.
pub fn read(path: &Path) -> Result<Vec<MetricsLine>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line)
                .map_err(|e| Error::Input(format!("{}: line {}: not a metrics line: {e}", path.display(), i + 1)))
        })
        .collect()
}

/// Appends lines to `metrics.jsonl`, flushed line by line.
pub(super) struct Metrics {
    path: PathBuf,
    file: std::fs::File,
}

impl Metrics {
    /// Opens `path`, keeping only the lines of steps ≤ `step` (those after the checkpoint a
    /// resumed run continues from were never saved and will be redone).
    pub fn open(path: &Path, step: usize) -> Result<Self> {
        let kept: String = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter(|line| serde_json::from_str::<MetricsLine>(line).is_ok_and(|l| l.step() <= step))
            .map(|line| format!("{line}\n"))
            .collect();
        checkpoint::write_atomic(path, kept.as_bytes())?;
        let file = OpenOptions::new().append(true).open(path).map_err(|e| Error::io(path, e))?;
        Ok(Metrics { path: path.to_path_buf(), file })
    }

    pub fn write(&mut self, line: &MetricsLine) -> Result<()> {
        let text = serde_json::to_string(line).expect("a metrics line serialises");
        writeln!(self.file, "{text}").map_err(|e| Error::io(&self.path, e))
    }
}
