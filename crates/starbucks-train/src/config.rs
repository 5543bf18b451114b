//! A training run's settings: one TOML file under `configs/`, read with the `config` crate in
//! three layers (the file, then `STARBUCKS_<SECTION>__<KEY>` environment variables, then
//! `--set section.key=value`), with unknown keys and wrongly typed values reported by key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use starbucks_model::{Pooling, keys};

use crate::error::{Error, Result};
use crate::optim::Decay;

/// What a run does: SMAE pre-training or fine-tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    Pretrain,
    Finetune,
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Task::Pretrain => "pretrain",
            Task::Finetune => "finetune",
        })
    }
}

/// The whole run. Every section but `checkpoint` and `eval` must be present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub task: Task,
    /// The output folder (`--output` overrides it).
    pub output: PathBuf,
    pub model: ModelSection,
    pub data: DataSection,
    pub objective: ObjectiveSection,
    pub train: TrainSection,
    #[serde(default)]
    pub checkpoint: CheckpointSection,
    #[serde(default)]
    pub eval: EvalSection,
}

/// The checkpoint to start from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// An HF or sentence-transformers folder (`config.json`, `model.safetensors`, `tokenizer.json`),
    /// or a hub id (`org/name[@revision]`) fetched into the HuggingFace cache.
    pub path: PathBuf,
    /// Longest input in tokens; default: the folder's `sentence_bert_config.json`, else 512.
    pub max_seq_length: Option<usize>,
    /// Pooling for fine-tuning: mean (STS) or cls (retrieval); default mean, cls for retrieval data.
    pub pooling: Option<Pooling>,
    /// Dropout while training, in place of the folder's `hidden_dropout_prob` and
    /// `attention_probs_dropout_prob` (an exported model keeps the folder's); default the folder's.
    /// 0 gives the same steps on every backend (their dropout masks differ).
    pub dropout: Option<f64>,
}

/// The training data's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataFormat {
    /// `anchor\tpositive\tnegative` TSV with a header, or JSON Lines (`.gz` too).
    Triplets,
    /// NLI pairs `premise\thypothesis\tlabel`; entailment/contradiction pairs become triplets.
    NliPairs,
    /// Tevatron JSON Lines: query, positive and negative passages.
    Tevatron,
    /// MS MARCO `query\tpositive\tnegative` triples, grouped by query.
    MsmarcoTriples,
    /// FineWeb documents: a file, folder or glob of Parquet/JSON Lines/JSON, `http(s)://` URLs
    /// (whitespace separated), or `hf://datasets/<owner>/<name>/<path>` (the hub's tree listing).
    Fineweb,
}

impl DataFormat {
    pub fn is_retrieval(self) -> bool {
        matches!(self, DataFormat::Tevatron | DataFormat::MsmarcoTriples)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    pub format: DataFormat,
    pub path: String,
    /// Retrieval: hard negatives per query (group = 1 + negatives); default 7.
    pub negatives: Option<usize>,
    /// Retrieval: query and passage lengths in tokens; default 32 and 196.
    pub query_max_len: Option<usize>,
    pub passage_max_len: Option<usize>,
    /// Pre-training: the window length, special tokens included; default the model's max length.
    pub max_len: Option<usize>,
    /// Pre-training: encoder and decoder mask ratios; default 0.2 and 0.4.
    pub encoder_ratio: Option<f64>,
    pub decoder_ratio: Option<f64>,
}

/// The training method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// SMAE pre-training (task `pretrain` only).
    Smae,
    /// Starbucks Representation Learning over the size list.
    Srl,
    /// SRL plus, at every size shallower than the full depth, its anchors or queries against
    /// the other side at full depth (`docs/objectives.md`).
    #[serde(rename = "srl-deep")]
    SrlDeep,
    /// The 2DMSE baseline (sentence-transformers `Matryoshka2dLoss`), dims from the size list.
    #[serde(rename = "2dmse")]
    Mse2d,
    /// One size alone (`objective.size`, default the full model).
    Single,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectiveSection {
    pub method: Method,
    /// The size list, ordered by layers then dims, the full model last: `"1,32 2,64 … 6,384"`, paper names,
    /// or a named list (`"minilm"`, `"bert-base"`: `Size::LISTS`).
    pub sizes: String,
    /// SRL and SRL-deep: weight of the KL terms; default 0.3 (STS) or 1.0 (retrieval).
    pub kl_weight: Option<f64>,
    /// SRL-deep: weight of the base loss at each smaller size, both sides at it; default 1.
    pub symmetric_weight: Option<f64>,
    /// SRL-deep: weight of the base loss of each shallower size against the other side at
    /// full depth; default 1.
    pub deep_weight: Option<f64>,
    /// SRL-deep: the deep terms' full-depth side detached (only the shallow side learns from
    /// them); default false.
    pub deep_detached: Option<bool>,
    /// Single: the trained size; default the full model.
    pub size: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    #[serde(default = "defaults::seed")]
    pub seed: u64,
    /// Examples (triplets, query groups, documents) per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimiser step.
    #[serde(default = "defaults::one")]
    pub grad_accum: usize,
    /// Passes over the data (fine-tuning); the step count follows from it unless `max_steps` is set.
    pub epochs: Option<usize>,
    /// Optimiser steps; required for pre-training (the stream has no length).
    pub max_steps: Option<usize>,
    pub lr: f64,
    /// Share of the steps spent warming up linearly from 0.
    #[serde(default = "defaults::warmup_ratio")]
    pub warmup_ratio: f64,
    #[serde(default = "defaults::decay")]
    pub decay: Decay,
    #[serde(default)]
    pub weight_decay: f64,
    #[serde(default = "defaults::max_grad_norm")]
    pub max_grad_norm: f64,
    /// Abort after this many steps in a row with NaN/Inf gradients (each is skipped, not applied).
    #[serde(default = "defaults::max_bad_steps")]
    pub max_bad_steps: usize,
    /// A log line every this many steps (`metrics.jsonl` gets every step).
    #[serde(default = "defaults::log_every")]
    pub log_every: usize,
    /// Devices to train on, data-parallel: one peer per entry, each with `batch_size` examples
    /// per micro-batch, gradients averaged by burn's collective all-reduce. Ids are the
    /// backend's device indices (GPU 0, 1, …); the CPU backends have one device, which every
    /// entry then shares.
    #[serde(default = "defaults::devices")]
    pub devices: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSection {
    /// A checkpoint every this many steps (and always at the end).
    #[serde(default = "defaults::checkpoint_every")]
    pub every: usize,
    /// Checkpoints kept; older ones are deleted.
    #[serde(default = "defaults::keep")]
    pub keep: usize,
}

impl Default for CheckpointSection {
    fn default() -> Self {
        CheckpointSection { every: defaults::checkpoint_every(), keep: defaults::keep() }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSection {
    /// STS-B dev CSV evaluated at every size of the list; none: no evaluation during training.
    pub stsb: Option<PathBuf>,
    /// Evaluate every this many steps (0: at the end only).
    #[serde(default)]
    pub every: usize,
}

mod defaults {
    use crate::optim::Decay;

    pub fn seed() -> u64 {
        42
    }
    pub fn one() -> usize {
        1
    }
    pub fn warmup_ratio() -> f64 {
        0.1
    }
    pub fn decay() -> Decay {
        Decay::Linear
    }
    pub fn max_grad_norm() -> f64 {
        1.0
    }
    pub fn max_bad_steps() -> usize {
        10
    }
    pub fn log_every() -> usize {
        10
    }
    pub fn devices() -> Vec<usize> {
        vec![0]
    }
    pub fn checkpoint_every() -> usize {
        500
    }
    pub fn keep() -> usize {
        2
    }
}

/// The environment variables that override config keys: `STARBUCKS_TRAIN__LR=1e-4` sets
/// `train.lr`. Only names with `__` count, so `STARBUCKS_LOG` and the like are left alone.
pub fn env_overrides() -> BTreeMap<String, String> {
    std::env::vars()
        .filter_map(|(name, value)| {
            let rest = name.strip_prefix("STARBUCKS_")?;
            rest.contains("__").then(|| (rest.to_ascii_lowercase().replace("__", "."), value))
        })
        .collect()
}

/// The environment variable of config key `key` (`train.lr` → `STARBUCKS_TRAIN__LR`), as
/// [`env_overrides`] reads it back.
fn env_name(key: &str) -> String {
    format!("STARBUCKS_{}", key.to_ascii_uppercase().replace('.', "__"))
}

/// An override's value: `[a, b]` is a list (`--set train.devices=[0,1]`), anything else a
/// string the config crate converts to the key's type.
fn override_value(value: &str) -> config::Value {
    let value = value.trim();
    match value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
        Some(items) => {
            let items: Vec<config::Value> =
                items.split(',').map(str::trim).filter(|s| !s.is_empty()).map(config::Value::from).collect();
            config::Value::from(items)
        }
        None => config::Value::from(value),
    }
}

impl RunConfig {
    /// Reads `path`, then applies `env` (from [`env_overrides`]) and `sets` (`key=value`), in
    /// that order, and checks every value.
    pub fn load(path: &Path, env: &BTreeMap<String, String>, sets: &[String]) -> Result<Self> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| Error::Input(format!("{name}: {e}")))?;
        let mut builder = config::Config::builder().add_source(config::File::from_str(&text, config::FileFormat::Toml));
        for (key, value) in env {
            builder = builder
                .set_override(key.as_str(), override_value(value))
                .map_err(|e| Error::Input(format!("environment {}: {e}", env_name(key))))?;
        }
        for set in sets {
            let (key, value) = set
                .split_once('=')
                .ok_or_else(|| Error::Input(format!("--set {set}: expected key=value, e.g. train.lr=1e-4")))?;
            builder = builder
                .set_override(key.trim(), override_value(value))
                .map_err(|e| Error::Input(format!("--set {set}: {e}")))?;
        }
        let layered = builder.build().map_err(|e| Error::Input(format!("{name}: {e}")))?;
        // An error names where its key was given: the last `--set`, the environment, or the file.
        let origin = |message: &str| {
            let named = |key: &str| message.contains(&format!("`{key}`"));
            let set = sets.iter().rev().find(|s| s.split_once('=').is_some_and(|(k, _)| named(k.trim())));
            let from_env = env.keys().find(|k| named(k));
            match (set, from_env) {
                (Some(set), _) => format!("--set {set}"),
                (None, Some(key)) => format!("environment {}", env_name(key)),
                (None, None) => name.clone(),
            }
        };
        let config: RunConfig = serde_path_to_error::deserialize(layered).map_err(|e| {
            // The config crate's own errors end in " for key …", which the path already says.
            let message = keys::message(e, "key", None);
            let message = message.split(" for key").next().unwrap_or(&message);
            Error::Input(format!("{}: {message}", origin(message)))
        })?;
        config.check().map_err(|message| Error::Input(format!("{}: {message}", origin(&message))))?;
        Ok(config)
    }

    /// Checks what types cannot: ranges and which keys apply to which task.
    fn check(&self) -> std::result::Result<(), String> {
        let t = &self.train;
        let positive = |key: &str, v: f64| {
            if v.is_finite() && v > 0.0 { Ok(()) } else { Err(format!("key `{key}` must be positive (got {v})")) }
        };
        positive("train.lr", t.lr)?;
        positive("train.max_grad_norm", t.max_grad_norm)?;
        for (key, v) in [("train.batch_size", t.batch_size), ("train.grad_accum", t.grad_accum)] {
            positive(key, v as f64)?;
        }
        if !(0.0..1.0).contains(&t.warmup_ratio) {
            return Err(format!("key `train.warmup_ratio` must be in [0, 1) (got {})", t.warmup_ratio));
        }
        if t.weight_decay.is_nan() || t.weight_decay < 0.0 {
            return Err(format!("key `train.weight_decay` must be ≥ 0 (got {})", t.weight_decay));
        }
        if t.log_every == 0 || self.checkpoint.every == 0 || self.checkpoint.keep == 0 {
            return Err("keys `train.log_every`, `checkpoint.every` and `checkpoint.keep` must be ≥ 1".into());
        }
        if let Some(p) = self.model.dropout
            && !(0.0..1.0).contains(&p)
        {
            return Err(format!("key `model.dropout` must be in [0, 1) (got {p})"));
        }
        if t.devices.is_empty() {
            return Err("key `train.devices` needs at least one device".into());
        }
        if let Some(i) = (1..t.devices.len()).find(|&i| t.devices[..i].contains(&t.devices[i])) {
            return Err(format!("key `train.devices` lists device {} twice", t.devices[i]));
        }
        if t.max_steps == Some(0) || t.epochs == Some(0) {
            return Err("keys `train.max_steps` and `train.epochs` must be ≥ 1 when given".into());
        }
        let d = &self.data;
        let retrieval_keys = d.negatives.is_some() || d.query_max_len.is_some() || d.passage_max_len.is_some();
        let masking_keys = d.max_len.is_some() || d.encoder_ratio.is_some() || d.decoder_ratio.is_some();
        match self.task {
            Task::Pretrain => {
                if d.format != DataFormat::Fineweb {
                    return Err("task `pretrain` reads `data.format = \"fineweb\"`".into());
                }
                if self.objective.method != Method::Smae {
                    return Err("task `pretrain` trains `objective.method = \"smae\"`".into());
                }
                if t.max_steps.is_none() {
                    return Err("task `pretrain` needs `train.max_steps` (a stream has no length)".into());
                }
                if retrieval_keys || self.model.pooling.is_some() {
                    return Err(
                        "keys `data.negatives`, `data.*_max_len` and `model.pooling` are for fine-tuning".into()
                    );
                }
            }
            Task::Finetune => {
                if d.format == DataFormat::Fineweb || self.objective.method == Method::Smae {
                    return Err("FineWeb and SMAE are for task `pretrain`".into());
                }
                if t.epochs.is_none() && t.max_steps.is_none() {
                    return Err("task `finetune` needs `train.epochs` or `train.max_steps`".into());
                }
                if masking_keys {
                    return Err(
                        "keys `data.max_len`, `data.encoder_ratio`, `data.decoder_ratio` are for pre-training".into()
                    );
                }
                if retrieval_keys && !d.format.is_retrieval() {
                    return Err("keys `data.negatives` and `data.*_max_len` apply to retrieval data only".into());
                }
            }
        }
        if self.objective.size.is_some() && self.objective.method != Method::Single {
            return Err("key `objective.size` applies to `method = \"single\"` only".into());
        }
        let o = &self.objective;
        let srl = matches!(o.method, Method::Srl | Method::SrlDeep);
        if o.kl_weight.is_some() && !srl {
            return Err("key `objective.kl_weight` applies to `method = \"srl\"` and `\"srl-deep\"` only".into());
        }
        if (o.symmetric_weight.is_some() || o.deep_weight.is_some() || o.deep_detached.is_some())
            && o.method != Method::SrlDeep
        {
            return Err("keys `objective.symmetric_weight`, `objective.deep_weight` and `objective.deep_detached` \
                 apply to `method = \"srl-deep\"` only"
                .into());
        }
        for (key, weight) in
            [("kl_weight", o.kl_weight), ("symmetric_weight", o.symmetric_weight), ("deep_weight", o.deep_weight)]
        {
            if let Some(w) = weight.filter(|w| !(w.is_finite() && *w >= 0.0)) {
                return Err(format!("key `objective.{key}` must be a finite weight ≥ 0 (got {w})"));
            }
        }
        Ok(())
    }

    /// The resolved config as TOML (every default written out), as saved in the output folder.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a run config serialises to TOML")
    }

    /// The first key whose value differs from `other`'s, as `key: ours vs theirs`.
    pub fn first_difference(&self, other: &RunConfig) -> Option<String> {
        fn flatten(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) {
            match value {
                toml::Value::Table(table) => {
                    for (k, v) in table {
                        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                        flatten(&key, v, out);
                    }
                }
                other => {
                    out.insert(prefix.to_string(), other.to_string());
                }
            }
        }
        let (mut ours, mut theirs) = (BTreeMap::new(), BTreeMap::new());
        flatten("", &toml::Value::try_from(self).expect("serialises"), &mut ours);
        flatten("", &toml::Value::try_from(other).expect("serialises"), &mut theirs);
        let keys: std::collections::BTreeSet<&String> = ours.keys().chain(theirs.keys()).collect();
        keys.into_iter().find_map(|k| {
            let (a, b) = (ours.get(k), theirs.get(k));
            (a != b).then(|| {
                let show = |v: Option<&String>| v.cloned().unwrap_or_else(|| "(unset)".into());
                format!("`{k}`: {} vs {}", show(a), show(b))
            })
        })
    }
}
