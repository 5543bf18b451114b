//! What a repository holds at a revision: its commit (the info API) and its files (the tree API,
//! followed through its `Link: <…>; rel="next"` pages).

use serde::Deserialize;

/// A repository's files at one commit.
#[derive(Debug, Clone)]
pub struct Listing {
    pub commit: String,
    pub entries: Vec<Entry>,
}

/// One file: its path in the repository, its size and, for LFS files, the sha256 the hub reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub size: Option<u64>,
    pub sha256: Option<String>,
}

impl Listing {
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.path.as_str())
    }
}

/// `GET /api/{models|datasets}/{id}/revision/{revision}`: only the commit is needed here.
#[derive(Deserialize)]
pub(crate) struct Info {
    pub(crate) sha: String,
}

/// An item of `GET /api/{models|datasets}/{id}/tree/{revision}?recursive=true`.
#[derive(Deserialize)]
pub(crate) struct TreeItem {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    size: Option<u64>,
    lfs: Option<Lfs>,
}

#[derive(Deserialize)]
struct Lfs {
    oid: String,
}

impl TreeItem {
    pub(crate) fn into_entry(self) -> Option<Entry> {
        (self.kind == "file").then(|| Entry { path: self.path, size: self.size, sha256: self.lfs.map(|l| l.oid) })
    }
}

/// The `next` URL of a `Link` header (`<https://…?cursor=…>; rel="next"`), as the hub pages
/// listings of more than 1,000 entries.
pub(crate) fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| url.trim().trim_start_matches('<').trim_end_matches('>').to_string())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn next_page_from_the_link_header() {
        let h = "<https://huggingface.co/api/datasets/x/y/tree/main?recursive=true&cursor=ZXhh>; rel=\"next\"";
        assert_eq!(
            super::next_link(h).unwrap(),
            "https://huggingface.co/api/datasets/x/y/tree/main?recursive=true&cursor=ZXhh"
        );
        assert_eq!(super::next_link("<https://a>; rel=\"prev\""), None);
    }
}
