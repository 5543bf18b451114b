//! The client: settings from the environment, the listing and file calls, model snapshots.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cache::Cache;
use crate::download;
use crate::error::{Error, Result};
use crate::listing::{Entry, Info, Listing, TreeItem, next_link};
use crate::repo::Repo;

/// A HuggingFace Hub (or a server that behaves as one) and the local cache.
#[derive(Clone)]
pub struct Hub {
    pub(crate) endpoint: String,
    token: Option<String>,
    pub(crate) cache: Cache,
    offline: bool,
    /// Follows no redirect: the metadata of an LFS file is on the hub's redirect itself.
    pub(crate) head_agent: ureq::Agent,
    pub(crate) get_agent: ureq::Agent,
}

impl Hub {
    /// Settings as `huggingface_hub` reads them (`HF_ENDPOINT`, `HF_TOKEN`, `HF_HUB_CACHE`,
    /// `HF_HOME`, `HF_HUB_OFFLINE`).
    pub fn from_env() -> Hub {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let home = var("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
            let base = var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| ".".into())).join(".cache"));
            base.join("huggingface")
        });
        let cache = var("HF_HUB_CACHE").map(PathBuf::from).unwrap_or_else(|| home.join("hub"));
        let token = var("HF_TOKEN").or_else(|| {
            let path = var("HF_TOKEN_PATH").map(PathBuf::from).unwrap_or_else(|| home.join("token"));
            std::fs::read_to_string(path).ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
        });
        let offline = var("HF_HUB_OFFLINE")
            .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"));
        let endpoint = var("HF_ENDPOINT").unwrap_or_else(|| "https://huggingface.co".into());
        Hub::new(&endpoint, cache).with_token(token).with_offline(offline)
    }

    /// A hub at `endpoint` with its cache at `cache`, no token, online.
    pub fn new(endpoint: &str, cache: PathBuf) -> Hub {
        let agent = |redirects: u32| -> ureq::Agent {
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(redirects)
                .max_redirects_will_error(false)
                .user_agent(concat!("starbucks-rs/", env!("CARGO_PKG_VERSION"), " (huggingface_hub-compatible)"))
                .timeout_connect(Some(Duration::from_secs(30)))
                .timeout_recv_response(Some(Duration::from_secs(60)))
                // A whole-body budget: a stalled transfer ends and resumes where it stopped.
                .timeout_recv_body(Some(Duration::from_secs(300)))
                .build()
                .into()
        };
        Hub {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token: None,
            cache: Cache { root: cache },
            offline: false,
            head_agent: agent(0),
            get_agent: agent(10),
        }
    }

    pub fn with_token(mut self, token: Option<String>) -> Hub {
        self.token = token;
        self
    }

    pub fn with_offline(mut self, offline: bool) -> Hub {
        self.offline = offline;
        self
    }

    /// The commit a repository's revision points to, and every file under the folder `under`
    /// (`""`: the whole repository), with the sha256 of LFS files; no files when `under` is not
    /// a folder. Offline: the commit the cache recorded and the files it holds.
    pub fn listing(&self, repo: &Repo, under: &str) -> Result<Listing> {
        let under = under.trim_matches('/');
        let inside =
            |path: &str| under.is_empty() || path.strip_prefix(under).is_some_and(|rest| rest.starts_with('/'));
        if self.offline {
            let commit = self.cached_commit(repo)?;
            let entries = self.cache.snapshot_files(repo, &commit).into_iter().filter(|p| inside(p));
            let entries = entries.map(|path| Entry { path, size: None, sha256: None }).collect();
            return Ok(Listing { commit, entries });
        }
        let what = repo.to_string();
        let info_url = repo.api_url(&self.endpoint, &format!("revision/{}", crate::repo::quote(&repo.revision, false)));
        let info: Info = self.get_json(&what, &info_url)?;
        let folder = if under.is_empty() { String::new() } else { format!("/{}", crate::repo::quote(under, true)) };
        let mut url = Some(repo.api_url(&self.endpoint, &format!("tree/{}{folder}?recursive=true", info.sha)));
        let mut entries = Vec::new();
        while let Some(page) = url.take() {
            let response = self.send(self.get_agent.get(&page)).map_err(|e| self.unreachable(&what, e))?;
            let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
            let status = response.status().as_u16();
            if status == 404 && !under.is_empty() && header("x-error-code").as_deref() == Some("EntryNotFound") {
                break; // `under` is not a folder of the repository
            }
            if status >= 400 {
                return Err(self.status_error(&what, &response));
            }
            url = header("link").and_then(|l| next_link(&l));
            let items: Vec<TreeItem> = read_json(&what, &page, response)?;
            entries.extend(items.into_iter().filter_map(TreeItem::into_entry));
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Listing { commit: info.sha, entries })
    }

    /// One file of a repository, in the cache (fetched unless it is there); its snapshot path.
    pub fn file(&self, repo: &Repo, path: &str) -> Result<PathBuf> {
        if self.offline {
            let commit = self.cached_commit(repo)?;
            return self
                .cache
                .snapshot_file(repo, &commit, path)
                .ok_or_else(|| self.not_cached(&format!("{repo}: {path}")));
        }
        let meta = match download::metadata(self, repo, path) {
            Ok(meta) => meta,
            // As huggingface_hub: when the hub cannot be reached, a cached copy still serves.
            Err(error @ Error::Unreachable { .. }) => {
                if let Some(file) = self.cache.commit(repo).and_then(|c| self.cache.snapshot_file(repo, &c, path)) {
                    tracing::warn!("{error}; using the cached copy");
                    return Ok(file);
                }
                return Err(error);
            }
            Err(error) => return Err(error),
        };
        self.cache.write_ref(repo, &meta.commit)?;
        if let Some(file) = self.cache.snapshot_file(repo, &meta.commit, path) {
            return Ok(file);
        }
        download::blob(self, repo, path, &meta)?;
        self.cache.link(repo, &meta.commit, path, &meta.etag)
    }

    /// The files an encoder needs (`config.json` and the other JSON files, `vocab.txt`,
    /// `model.safetensors`, and the sentence-transformers module folders such as `1_Pooling/`),
    /// in the cache; the snapshot folder, which reads as a local model folder.
    pub fn model_snapshot(&self, repo: &Repo) -> Result<PathBuf> {
        let listing = self.listing(repo, "")?;
        let wanted: Vec<&str> = listing.paths().filter(|p| is_model_file(p)).collect();
        for required in ["config.json", "model.safetensors"] {
            if !wanted.contains(&required) {
                let have = listing.paths().take(20).collect::<Vec<_>>().join(", ");
                let message = format!("no {required} at commit {} (files: {have})", listing.commit);
                return Err(if self.offline {
                    self.not_cached(&format!("{repo}: {required}"))
                } else {
                    Error::Http { what: repo.to_string(), message }
                });
            }
        }
        self.files_at(repo, &listing.commit, &wanted)?;
        Ok(self.cache.snapshot_dir(repo, &listing.commit))
    }

    /// Files of a repository at the commit a [`listing`](Hub::listing) gave, in the cache
    /// (fetched where missing); the revision's ref is recorded, as `snapshot_download` does.
    pub fn files_at(&self, repo: &Repo, commit: &str, paths: &[&str]) -> Result<Vec<PathBuf>> {
        let pinned = Repo { revision: commit.to_string(), ..repo.clone() };
        let files = paths.iter().map(|path| self.file(&pinned, path)).collect::<Result<Vec<_>>>()?;
        if !self.offline {
            self.cache.write_ref(repo, commit)?;
        }
        Ok(files)
    }

    /// The URL of a file at a commit, for reading it remotely with range requests (FineWeb).
    pub fn url(&self, repo: &Repo, commit: &str, path: &str) -> String {
        repo.resolve_url(&self.endpoint, commit, path)
    }

    fn cached_commit(&self, repo: &Repo) -> Result<String> {
        self.cache.commit(repo).ok_or_else(|| self.not_cached(&repo.to_string()))
    }

    fn not_cached(&self, what: &str) -> Error {
        Error::Offline { what: what.to_string(), cache: self.cache.root.display().to_string() }
    }

    fn get_json<T: serde::de::DeserializeOwned>(&self, what: &str, url: &str) -> Result<T> {
        let response = self.send(self.get_agent.get(url)).map_err(|e| self.unreachable(what, e))?;
        if response.status().as_u16() >= 400 {
            return Err(self.status_error(what, &response));
        }
        read_json(what, url, response)
    }

    /// Sends a request to the hub itself, with the token where there is one.
    pub(crate) fn send(
        &self,
        request: ureq::RequestBuilder<ureq::typestate::WithoutBody>,
    ) -> std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        match &self.token {
            Some(token) => request.header("Authorization", format!("Bearer {token}")).call(),
            None => request.call(),
        }
    }

    /// `scheme://host[:port]` of the endpoint, for relative redirects.
    pub(crate) fn origin(&self) -> &str {
        let after_scheme = self.endpoint.find("://").map_or(0, |i| i + 3);
        match self.endpoint[after_scheme..].find('/') {
            Some(i) => &self.endpoint[..after_scheme + i],
            None => &self.endpoint,
        }
    }

    pub(crate) fn unreachable(&self, what: &str, e: ureq::Error) -> Error {
        Error::Unreachable { what: what.to_string(), endpoint: self.endpoint.clone(), message: e.to_string() }
    }

    /// The hub's error status of `response` (4xx, 5xx), said as `huggingface_hub` says it (from
    /// `X-Error-Code` and `X-Error-Message`).
    pub(crate) fn status_error(&self, what: &str, response: &ureq::http::Response<ureq::Body>) -> Error {
        let status = response.status().as_u16();
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok());
        let (code, message) = (header("x-error-code"), header("x-error-message"));
        let detail = match (status, code) {
            (401 | 403, Some("GatedRepo")) => {
                "the repository is gated: accept its terms on the hub and set HF_TOKEN".to_string()
            }
            (401 | 403, _) if self.token.is_none() => {
                "not found, private or gated (no token: set HF_TOKEN or log in with `huggingface-cli login`)"
                    .to_string()
            }
            (401 | 403, _) => "not found, or the token (HF_TOKEN) has no access".to_string(),
            (404, Some("EntryNotFound")) => "no such file in the repository".to_string(),
            (404, Some("RevisionNotFound")) => "no such revision".to_string(),
            (404, _) => "not found".to_string(),
            _ => "the hub refused the request".to_string(),
        };
        let message = message.map(|m| format!(": {m}")).unwrap_or_default();
        Error::Http { what: what.to_string(), message: format!("{detail} (HTTP {status}{message})") }
    }
}

fn read_json<T: serde::de::DeserializeOwned>(
    what: &str,
    url: &str,
    response: ureq::http::Response<ureq::Body>,
) -> Result<T> {
    let text = response
        .into_body()
        .with_config()
        .limit(256 << 20)
        .read_to_string()
        .map_err(|e| Error::Http { what: what.to_string(), message: format!("{url}: {e}") })?;
    serde_json::from_str(&text)
        .map_err(|e| Error::Http { what: what.to_string(), message: format!("{url}: unexpected answer: {e}") })
}

/// The files of a model repository that loading an encoder reads (no other weight formats).
fn is_model_file(path: &str) -> bool {
    match path.split_once('/') {
        None => path.ends_with(".json") || path == "vocab.txt" || path == "model.safetensors",
        // sentence-transformers modules: `1_Pooling/config.json`, `2_Dense/model.safetensors`.
        Some((folder, file)) => {
            folder.split_once('_').is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                && (file == "config.json" || file == "model.safetensors")
        }
    }
}

/// A model folder from `spec`: a local folder when one exists at that path, else a hub id
/// (`org/name[@revision]`) fetched into the cache with [`Hub::from_env`].
pub fn resolve_model(spec: &Path) -> Result<PathBuf> {
    if spec.exists() {
        return Ok(spec.to_path_buf());
    }
    let text = spec.to_string_lossy();
    let repo = Repo::model(&text).map_err(|_| Error::Spec {
        spec: text.to_string(),
        reason: "no such folder, and not a hub id (`org/name` or `org/name@revision`)".into(),
    })?;
    Hub::from_env().model_snapshot(&repo).map_err(|e| {
        // `runs/model` beside an existing `runs/` was more likely meant as a folder: say both.
        let first = text.split('/').next().unwrap_or_default();
        if Path::new(first).is_dir() {
            Error::Spec { spec: text.to_string(), reason: format!("no such folder (tried as a hub id too: {e})") }
        } else {
            e
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn model_files() {
        for yes in [
            "config.json",
            "tokenizer.json",
            "vocab.txt",
            "model.safetensors",
            "1_Pooling/config.json",
            "2_Dense/model.safetensors",
        ] {
            assert!(super::is_model_file(yes), "{yes}");
        }
        for no in
            ["pytorch_model.bin", "onnx/model.onnx", "onnx/config.json", "README.md", "tf_model.h5", "x_y/config.json"]
        {
            assert!(!super::is_model_file(no), "{no}");
        }
    }
}
