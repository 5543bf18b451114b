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

/// Another size list SRL is trained on (from the first seed), evaluated over the whole grid.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizeList {
    /// Names the run (`srl-list-<name>`) and its row.
    pub name: String,
    pub sizes: String,
}

/// Queries at one size against the corpus at another (`starbucks eval --query-sizes
/// --corpus-sizes`), for the untouched model and every one-model method.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cross {
    pub query_sizes: String,
    pub corpus_sizes: String,
}

/// The methods a preset may train, in the order of the tables; `METHODS[..5]` are the paper's
/// comparison, a preset's default.
pub const METHODS: [&str; 6] = ["single", "separate", "2dmse", "srl", "smae-srl", "srl-deep"];

/// The cost of a training step and the peak memory of some methods at some batch sizes: short
/// runs, alternated (every method at a batch, then the next batch; `rounds` times).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cost {
    pub methods: Vec<String>,
    pub batch_sizes: Vec<usize>,
    pub steps: usize,
    pub rounds: usize,
}

/// An experiment as data: what every method starts from and the settings they share (each
/// field is described in the preset files).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    /// The file stem.
    #[serde(skip)]
    pub name: String,
    /// `cargo xtask fetch` targets the inputs need.
    #[serde(default)]
    pub fetch: Vec<String>,
    pub base: String,
    pub finetune: String,
    #[serde(default)]
    pub finetune_set: Vec<String>,
    pub pretrain: String,
    #[serde(default)]
    pub pretrain_set: Vec<String>,
    /// The methods trained, of [`METHODS`]; none: the paper's comparison (all but `srl-deep`).
    #[serde(default)]
    pub methods: Vec<String>,
    pub sizes: String,
    pub grid_dims: String,
    pub max_seq_length: usize,
    pub stsb: String,
    /// SemEval STS folders (STS12 … STS16) and a SICK-R file, where the data is at hand: each is
    /// one benchmark, and the tables add the paper's average over all of them and STS-B.
    #[serde(default)]
    pub semeval: Vec<String>,
    pub sick: Option<String>,
    /// STS sets on the hub in MTEB's layout (`hf://datasets/mteb/sts12-sts`), `starbucks eval --sts`.
    #[serde(default)]
    pub sts: Vec<String>,
    /// BEIR sets (folders, or `hf://datasets/BeIR/<name>`), `starbucks eval --beir`.
    #[serde(default)]
    pub beir: Vec<String>,
    /// Every method is trained once per seed; none: once, with the configs' seed.
    #[serde(default)]
    pub seeds: Vec<u64>,
    pub retrieval: Option<Retrieval>,
    pub cross: Option<Cross>,
    #[serde(default)]
    pub size_lists: Vec<SizeList>,
    pub cost: Option<Cost>,
    /// Where each finished stage's small files are kept (committed), so that a clone elsewhere
    /// continues from them; none: the output folder.
    pub record: Option<String>,
    /// A page the results are also written into, below its marker line (`document::MARKER`),
    /// the text above it (the reading) kept; the record must lie in the page's folder.
    pub document: Option<String>,
    pub scale: String,
}

impl Preset {
    /// The sizes of the list, one string each (`"1,32"`).
    pub fn sizes(&self) -> Vec<String> {
        self.sizes.split_whitespace().map(str::to_string).collect()
    }

    /// Whether the preset trains `method` (a name of [`METHODS`]).
    pub fn trains(&self, method: &str) -> bool {
        if self.methods.is_empty() { METHODS[..5].contains(&method) } else { self.methods.iter().any(|m| m == method) }
    }

    /// The seeds, or one `None` (the configs' own) when the preset names none.
    pub fn seeds(&self) -> Vec<Option<u64>> {
        if self.seeds.is_empty() { vec![None] } else { self.seeds.iter().copied().map(Some).collect() }
    }

    /// The STS benchmarks, each as its label and the path `starbucks eval` is given (the
    /// source of its rows): STS-B, the SemEval years, SICK-R.
    pub fn sts_benchmarks(&self) -> Vec<(String, String)> {
        let mut sets = vec![("STS-B test".to_string(), self.stsb.clone())];
        for dir in &self.semeval {
            let name = std::path::Path::new(dir).file_name().map(|n| n.to_string_lossy().into_owned());
            sets.push((name.unwrap_or_else(|| dir.clone()), dir.clone()));
        }
        sets.extend(self.sick.iter().map(|path| ("SICK-R".to_string(), path.clone())));
        for spec in &self.sts {
            sets.push((hub_label(spec), spec.clone()));
        }
        sets
    }

    /// The BEIR sets, each as its label and the spec `starbucks eval` is given.
    pub fn beir_sets(&self) -> Vec<(String, String)> {
        self.beir.iter().map(|spec| (hub_label(spec), spec.clone())).collect()
    }

    /// Every local input the preset names, as paths relative to the workspace (hub ids and
    /// `hf://` datasets are fetched by the runs themselves).
    pub fn inputs(&self) -> Vec<&str> {
        let mut inputs = vec![self.base.as_str(), &self.finetune, &self.pretrain, &self.stsb];
        inputs.extend(self.semeval.iter().map(String::as_str).chain(self.sick.as_deref()));
        let local = |spec: &&String| !spec.starts_with("hf://");
        inputs.extend(self.sts.iter().chain(&self.beir).filter(local).map(String::as_str));
        if let Some(r) = &self.retrieval {
            inputs.extend([r.corpus.as_str(), &r.queries, &r.qrels, &r.rerank]);
        }
        inputs
    }
}

/// The label of a set named by a path or a hub spec: its last part (`sts12-sts`, `scifact`).
fn hub_label(spec: &str) -> String {
    let spec = spec.split('@').next().unwrap_or(spec).trim_end_matches('/');
    spec.rsplit('/').next().unwrap_or(spec).to_string()
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
    if let Some(unknown) = preset.methods.iter().find(|m| !METHODS.contains(&m.as_str())) {
        bail!("{}: key `methods`: unknown method '{unknown}'; the methods are {}", file.display(), METHODS.join(", "));
    }
    let mut lists = vec![("sizes", &preset.sizes)];
    lists.extend(preset.size_lists.iter().map(|l| ("size_lists.sizes", &l.sizes)));
    if let Some(cross) = &preset.cross {
        lists.extend([("cross.query_sizes", &cross.query_sizes), ("cross.corpus_sizes", &cross.corpus_sizes)]);
    }
    for (key, list) in lists {
        pairs(list).map_err(|e| anyhow::anyhow!("{}: key `{key}`: {e}", file.display()))?;
    }
    Ok(preset)
}

/// The sizes of a preset's list as (layers, dims). A preset writes its sizes as `layers,dims`
/// pairs, which xtask reads without the model crate; the CLI's paper names (`"tall"`) and named
/// lists (`"minilm"`) are refused here rather than dropped.
pub fn pairs(list: &str) -> Result<Vec<(usize, usize)>> {
    list.split_whitespace()
        .map(|token| {
            let pair = token.split_once(',').and_then(|(l, d)| Some((l.parse().ok()?, d.parse().ok()?)));
            match pair {
                Some((layers, dims)) if layers > 0 && dims > 0 => Ok((layers, dims)),
                _ => bail!("'{token}' is not a `layers,dims` pair (presets write sizes as pairs)"),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_loads_and_names_are_refused_not_dropped() {
        for name in names().unwrap() {
            load(&name).unwrap();
        }
        assert_eq!(pairs("1,32  6,384").unwrap(), [(1, 32), (6, 384)]);
        for bad in ["1,32 tall", "minilm", "0,32", "1,x"] {
            let message = pairs(bad).unwrap_err().to_string();
            assert!(message.contains("not a `layers,dims` pair"), "{message}");
        }
    }
}
