//! An experiment preset: a TOML file under `configs/experiments/`, named by its file stem.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::fetch;

/// Where the presets are, relative to the workspace.
pub const DIR: &str = "configs/experiments";

/// TREC DL re-ranking: the files `starbucks eval` reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retrieval {
    pub corpus: String,
    pub queries: String,
    pub qrels: String,
    pub rerank: String,
}

/// An experiment as data: what every method starts from and the settings they share (each
/// field is described in the preset files).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    /// The file stem.
    #[serde(skip)]
    pub name: String,
    pub base: String,
    pub finetune: String,
    #[serde(default)]
    pub finetune_set: Vec<String>,
    pub pretrain: String,
    #[serde(default)]
    pub pretrain_set: Vec<String>,
    pub sizes: String,
    pub grid_dims: String,
    pub max_seq_length: usize,
    pub stsb: String,
    pub retrieval: Retrieval,
    pub scale: String,
}

impl Preset {
    /// The sizes of the list, one string each (`"1,32"`, `"demi"`).
    pub fn sizes(&self) -> Vec<String> {
        self.sizes.split_whitespace().map(str::to_string).collect()
    }

    /// Every input the preset names, as paths relative to the workspace.
    pub fn inputs(&self) -> [&str; 8] {
        let r = &self.retrieval;
        [&self.base, &self.finetune, &self.pretrain, &self.stsb, &r.corpus, &r.queries, &r.qrels, &r.rerank]
    }
}

fn path(name: &str) -> PathBuf {
    fetch::workspace_root().join(DIR).join(format!("{name}.toml"))
}

/// The presets there are, sorted.
pub fn names() -> Result<Vec<String>> {
    let dir = fetch::workspace_root().join(DIR);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("{}: cannot list", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    Ok(names)
}

/// Reads the preset `name`; an unknown name lists the others, a bad file names its key.
pub fn load(name: &str) -> Result<Preset> {
    let file = path(name);
    if !file.is_file() {
        bail!("unknown preset '{name}'; the presets are {} (the files of {DIR}/)", names()?.join(", "));
    }
    let text = std::fs::read_to_string(&file).with_context(|| format!("{}: cannot read", file.display()))?;
    let mut preset: Preset = toml::from_str(&text).with_context(|| format!("{}: not a preset", file.display()))?;
    preset.name = name.to_string();
    Ok(preset)
}
