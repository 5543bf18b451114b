//! Repository ids as the hub spells them: `org/name[@revision]`, models or datasets.

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoType {
    Model,
    Dataset,
}

impl RepoType {
    /// The plural used in API paths and cache folder names (`models`, `datasets`).
    pub fn plural(self) -> &'static str {
        match self {
            RepoType::Model => "models",
            RepoType::Dataset => "datasets",
        }
    }

    /// The prefix of `resolve` URLs: models have none, datasets `datasets/`.
    fn url_prefix(self) -> &'static str {
        match self {
            RepoType::Model => "",
            RepoType::Dataset => "datasets/",
        }
    }
}

/// A repository at a revision (a branch, tag or commit; `main` when not given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    pub kind: RepoType,
    pub id: String,
    pub revision: String,
}

impl Repo {
    /// A model id, `org/name` or `org/name@revision` (as `huggingface-cli` and TEI spell them;
    /// a bare `name`, such as `bert-base-uncased`, too).
    pub fn model(spec: &str) -> Result<Self> {
        Self::parse(RepoType::Model, spec)
    }

    pub fn dataset(spec: &str) -> Result<Self> {
        Self::parse(RepoType::Dataset, spec)
    }

    pub fn parse(kind: RepoType, spec: &str) -> Result<Self> {
        let bad = |reason: &str| Error::Spec { spec: spec.to_string(), reason: reason.to_string() };
        let (id, revision) = match spec.split_once('@') {
            Some((id, revision)) if !revision.is_empty() => (id, revision),
            Some(_) => return Err(bad("empty revision after `@`")),
            None => (spec, "main"),
        };
        let parts: Vec<&str> = id.split('/').collect();
        if parts.len() > 2 || parts.iter().any(|p| !is_name(p)) {
            return Err(bad("expected a hub id `org/name` or `org/name@revision` (letters, digits, `-`, `_`, `.`)"));
        }
        Ok(Repo { kind, id: id.to_string(), revision: revision.to_string() })
    }

    /// `models--org--name`: the repository's folder in the cache.
    pub fn cache_folder(&self) -> String {
        format!("{}--{}", self.kind.plural(), self.id.replace('/', "--"))
    }

    /// The URL of a file at a revision (or commit): `{endpoint}/[datasets/]{id}/resolve/{revision}/{path}`.
    pub fn resolve_url(&self, endpoint: &str, revision: &str, path: &str) -> String {
        format!(
            "{endpoint}/{}{}/resolve/{}/{}",
            self.kind.url_prefix(),
            self.id,
            quote(revision, false),
            quote(path, true)
        )
    }

    /// The URL of an API route of this repository: `{endpoint}/api/{models|datasets}/{id}/{route}`.
    pub fn api_url(&self, endpoint: &str, route: &str) -> String {
        format!("{endpoint}/api/{}/{}/{route}", self.kind.plural(), self.id)
    }

    /// True when the revision is a full commit hash (the cache needs no `refs/` lookup).
    pub fn revision_is_commit(&self) -> bool {
        is_commit(&self.revision)
    }
}

impl std::fmt::Display for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.kind == RepoType::Dataset { "dataset " } else { "" };
        if self.revision == "main" {
            write!(f, "{kind}{}", self.id)
        } else {
            write!(f, "{kind}{}@{}", self.id, self.revision)
        }
    }
}

fn is_name(part: &str) -> bool {
    !part.is_empty()
        && part != "."
        && part != ".."
        && !part.starts_with('-')
        && part.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

pub(crate) fn is_commit(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Percent-encodes a URL path part as `urllib.parse.quote` does (keeping `/` in file paths;
/// a revision such as `refs/pr/1` is one segment, so its `/` is encoded).
pub(crate) fn quote(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_revisions() {
        let r = Repo::model("sentence-transformers/all-MiniLM-L6-v2@v1.0").unwrap();
        assert_eq!((r.id.as_str(), r.revision.as_str()), ("sentence-transformers/all-MiniLM-L6-v2", "v1.0"));
        assert_eq!(r.cache_folder(), "models--sentence-transformers--all-MiniLM-L6-v2");
        assert_eq!(Repo::model("bert-base-uncased").unwrap().revision, "main");
        assert_eq!(Repo::dataset("mteb/sts12-sts").unwrap().cache_folder(), "datasets--mteb--sts12-sts");
        for bad in ["", "a/b/c", "a/", "/b", "a b/c", "a/b@", "../x", "-a/b"] {
            assert!(Repo::model(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn urls_encode_as_python_does() {
        let r = Repo::dataset("mteb/sts12-sts@refs/pr/1").unwrap();
        assert_eq!(
            r.resolve_url("http://h", &r.revision, "data/test 1.parquet"),
            "http://h/datasets/mteb/sts12-sts/resolve/refs%2Fpr%2F1/data/test%201.parquet"
        );
        assert_eq!(r.api_url("http://h", "tree/main"), "http://h/api/datasets/mteb/sts12-sts/tree/main");
    }
}
