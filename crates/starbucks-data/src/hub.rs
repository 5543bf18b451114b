//! Datasets by hub id: `hf://datasets/org/name[/config-or-folder][@revision]`, the data files of
//! one config (or folder) and split, fetched into the HuggingFace cache (or, for streaming, as
//! commit-pinned URLs read with range requests).
//!
//! A config is found as the hub's own layouts put it: a folder (`triplet/train-00000-of-00001.parquet`
//! of `sentence-transformers/all-nli`, `default/test/0000.parquet` of a `refs/convert/parquet`
//! branch, `sample/100BT/…` of FineWeb) or a file-name prefix (`corpus.jsonl.gz` of a BEIR
//! repository); a split as a folder or a file-name prefix (`test.jsonl.gz`, `train-00000-….parquet`).

use std::path::PathBuf;

use starbucks_hub::{Hub, Repo};

use crate::error::{DataError, Result};

pub const SCHEME: &str = "hf://datasets/";

/// Files a reader of this crate can read.
const DATA_FILES: [&str; 6] = [".parquet", ".jsonl", ".jsonl.gz", ".tsv", ".tsv.gz", ".json"];

/// A dataset repository at a revision, and the config or folder within it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubDataset {
    pub spec: String,
    pub repo: Repo,
    /// A folder, a config name or a file of the repository; empty for the whole repository.
    pub path: String,
}

impl HubDataset {
    /// `None` when `spec` does not start with `hf://datasets/`.
    pub fn parse(spec: &str) -> Option<Result<Self>> {
        let rest = spec.strip_prefix(SCHEME)?;
        let bad = |reason: String| DataError::whole(spec, reason);
        // The revision follows `@`: at the end (`org/name/config@rev`), or after the name as
        // huggingface_hub's file system writes it (`org/name@rev/path`, `/` in rev as %2F).
        let (location, revision) = match rest.split_once('@') {
            None => (rest.to_string(), "main".to_string()),
            Some((before, after))
                if before.matches('/').count() == 1 && after.contains('/') && !after.starts_with("refs/") =>
            {
                let (revision, path) = after.split_once('/').expect("contains /");
                (format!("{before}/{path}"), revision.replace("%2F", "/"))
            }
            Some((before, after)) => (before.to_string(), after.replace("%2F", "/")),
        };
        let mut parts = location.splitn(3, '/');
        let (Some(org), Some(name)) = (parts.next(), parts.next()) else {
            return Some(Err(bad("expected hf://datasets/<org>/<name>[/<config or path>][@<revision>]".into())));
        };
        let path = parts.next().unwrap_or("").trim_matches('/').to_string();
        Some(
            Repo::dataset(&format!("{org}/{name}@{revision}"))
                .map(|repo| HubDataset { spec: spec.to_string(), repo, path })
                .map_err(|e| bad(e.to_string())),
        )
    }

    /// The repository's name without its owner (`sts12-sts`), for reports.
    pub fn name(&self) -> &str {
        self.repo.id.rsplit('/').next().unwrap_or(&self.repo.id)
    }

    /// The same repository with another path (BEIR's `corpus`, `queries`).
    pub fn with_path(&self, path: &str) -> HubDataset {
        HubDataset { path: path.to_string(), ..self.clone() }
    }

    /// The data files of this config (or folder) and `split` (every split when `None`), in the
    /// cache, fetched unless they are there already; in the repository's order.
    pub fn fetch(&self, hub: &Hub, split: Option<&str>) -> Result<Vec<PathBuf>> {
        let (commit, files) = self.files(hub, split)?;
        let paths: Vec<&str> = files.iter().map(String::as_str).collect();
        hub.files_at(&self.repo, &commit, &paths).map_err(|e| self.error(e))
    }

    /// The same files as URLs at the listed commit, for reading remotely (FineWeb).
    pub fn urls(&self, hub: &Hub, split: Option<&str>) -> Result<Vec<String>> {
        let (commit, files) = self.files(hub, split)?;
        Ok(files.iter().map(|f| hub.url(&self.repo, &commit, f)).collect())
    }

    fn files(&self, hub: &Hub, split: Option<&str>) -> Result<(String, Vec<String>)> {
        let mut listing = hub.listing(&self.repo, &self.path).map_err(|e| self.error(e))?;
        if listing.entries.is_empty() && !self.path.is_empty() {
            // Not a folder: a file, or a config named by a file-name prefix.
            listing = hub.listing(&self.repo, "").map_err(|e| self.error(e))?;
        }
        let all: Vec<&str> = listing.paths().filter(|p| is_data_file(p)).collect();
        let chosen = select(&all, &self.path, split);
        if chosen.is_empty() {
            let what = match split {
                Some(split) if self.path.is_empty() => format!("no data files of split `{split}`"),
                Some(split) => format!("no data files of `{}`, split `{split}`", self.path),
                None => format!("no data files of `{}`", self.path),
            };
            let shown: Vec<&str> = all.iter().copied().take(20).collect();
            return Err(DataError::whole(&self.spec, format!("{what} (data files: {})", shown.join(", "))));
        }
        let chosen = chosen.into_iter().map(str::to_string).collect();
        Ok((listing.commit, chosen))
    }

    fn error(&self, e: starbucks_hub::Error) -> DataError {
        DataError::whole(&self.spec, e.to_string())
    }
}

fn is_data_file(path: &str) -> bool {
    DATA_FILES.iter().any(|ext| path.ends_with(ext))
}

/// `name` is `prefix` or starts with it followed by a separator (`test.jsonl.gz`, `train-0000…`).
fn named(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '-', '_']))
}

/// The files of `path` (a file, a folder or a file-name prefix) and `split`.
fn select<'a>(files: &[&'a str], path: &str, split: Option<&str>) -> Vec<&'a str> {
    if let Some(file) = files.iter().find(|f| **f == path) {
        return vec![file];
    }
    let in_path: Vec<(&'a str, &'a str)> = if path.is_empty() {
        files.iter().map(|f| (*f, *f)).collect()
    } else {
        let under: Vec<_> = files.iter().filter_map(|f| Some((*f, f.strip_prefix(path)?.strip_prefix('/')?))).collect();
        if under.is_empty() {
            files.iter().filter(|f| named(base(f), path)).map(|f| (*f, base(f))).collect()
        } else {
            under
        }
    };
    match split {
        None => in_path.into_iter().map(|(f, _)| f).collect(),
        Some(split) => in_path
            .into_iter()
            .filter(|(_, rest)| {
                let mut parts: Vec<&str> = rest.split('/').collect();
                let file = parts.pop().unwrap_or_default();
                parts.contains(&split) || named(file, split)
            })
            .map(|(f, _)| f)
            .collect(),
    }
}

fn base(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The local files behind `spec`: the path itself, or the data files of `split` of an
/// `hf://datasets/…` spec, fetched into the cache with the environment's hub settings.
pub fn local_files(spec: &str, split: Option<&str>) -> Result<Vec<PathBuf>> {
    match HubDataset::parse(spec) {
        None => Ok(vec![PathBuf::from(spec)]),
        Some(dataset) => dataset?.fetch(&Hub::from_env(), split),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        let d = HubDataset::parse("hf://datasets/sentence-transformers/all-nli/triplet").unwrap().unwrap();
        assert_eq!(
            (d.repo.id.as_str(), d.repo.revision.as_str(), d.path.as_str()),
            ("sentence-transformers/all-nli", "main", "triplet")
        );
        let d = HubDataset::parse("hf://datasets/mteb/sts12-sts@refs/convert/parquet").unwrap().unwrap();
        assert_eq!((d.repo.revision.as_str(), d.path.as_str(), d.name()), ("refs/convert/parquet", "", "sts12-sts"));
        let d = HubDataset::parse("hf://datasets/HuggingFaceFW/fineweb@v1.2/sample/100BT").unwrap().unwrap();
        assert_eq!((d.repo.revision.as_str(), d.path.as_str()), ("v1.2", "sample/100BT"));
        let d = HubDataset::parse("hf://datasets/BeIR/scifact/corpus@abc").unwrap().unwrap();
        assert_eq!((d.repo.revision.as_str(), d.path.as_str()), ("abc", "corpus"));
        assert!(HubDataset::parse("data/x.tsv").is_none());
        assert!(HubDataset::parse("hf://datasets/only-org").unwrap().is_err());
    }

    #[test]
    fn configs_and_splits_in_the_hubs_layouts() {
        let nli = [
            "pair/train-00000-of-00001.parquet",
            "triplet/dev-00000-of-00001.parquet",
            "triplet/train-00000-of-00001.parquet",
        ];
        assert_eq!(select(&nli, "triplet", Some("train")), ["triplet/train-00000-of-00001.parquet"]);
        let mteb = ["test.jsonl.gz", "train.jsonl.gz"];
        assert_eq!(select(&mteb, "", Some("test")), ["test.jsonl.gz"]);
        let converted = ["default/test/0000.parquet", "default/train/0000.parquet"];
        assert_eq!(select(&converted, "", Some("test")), ["default/test/0000.parquet"]);
        let beir = ["corpus.jsonl.gz", "queries.jsonl.gz"];
        assert_eq!(select(&beir, "corpus", None), ["corpus.jsonl.gz"]);
        let fineweb = ["sample/100BT/000_00000.parquet", "sample/10BT/000_00000.parquet"];
        assert_eq!(select(&fineweb, "sample/100BT", None), ["sample/100BT/000_00000.parquet"]);
        assert!(select(&mteb, "", Some("validation")).is_empty());
        // `test` is not `testing`
        assert!(select(&["testing.jsonl"], "", Some("test")).is_empty());
    }
}
