//! One file into the cache, as `huggingface_hub.hf_hub_download` does it: a `HEAD` on the
//! `resolve` URL for the commit, ETag and size, then a `GET` (of the CDN URL the hub redirects
//! LFS files to) into `blobs/<etag>.incomplete`, resumed with `Range` where a transfer broke,
//! checked, renamed to `blobs/<etag>` and linked from the snapshot.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::hub::Hub;
use crate::repo::Repo;

/// What the `HEAD` of a `resolve` URL says about a file.
pub(crate) struct Metadata {
    pub(crate) commit: String,
    /// The blob's name: the git blob sha1 for small files, the sha256 for LFS files.
    pub(crate) etag: String,
    pub(crate) size: Option<u64>,
    /// Where to `GET` it: the CDN URL of an LFS file, else the `resolve` URL.
    pub(crate) url: String,
    /// True when the ETag is the LFS sha256 (`X-Linked-Etag`), which the download is checked against.
    pub(crate) lfs: bool,
}

/// Transfers that break after making progress are resumed without limit; this many in a row
/// that make none end the download (its partial file stays for the next run).
const STALLED_TRIES: usize = 5;
/// Files from this size get a progress bar.
const PROGRESS_FROM: u64 = 1 << 20;

pub(crate) fn metadata(hub: &Hub, repo: &Repo, path: &str) -> Result<Metadata> {
    let what = format!("{repo}: {path}");
    let mut url = repo.resolve_url(&hub.endpoint, &repo.revision, path);
    // The hub answers a renamed repository with a redirect to itself (followed) and an LFS file
    // with one to its CDN, another host (not followed: the metadata is on the redirect itself;
    // huggingface_hub draws the line at the same origin too).
    for _ in 0..5 {
        let response = hub.send(hub.head_agent.head(&url)).map_err(|e| hub.unreachable(&what, e))?;
        let status = response.status().as_u16();
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        if status >= 400 {
            return Err(hub.status_error(&what, &response));
        }
        let location = header("location");
        if (300..400).contains(&status) {
            let target = location
                .as_deref()
                .map(|l| if l.starts_with('/') { format!("{}{l}", hub.origin()) } else { l.to_string() });
            if let Some(target) = target.filter(|t| t.starts_with(&format!("{}/", hub.origin()))) {
                url = target;
                continue;
            }
        }
        let commit = header("x-repo-commit").ok_or_else(|| Error::Http {
            what: what.clone(),
            message: format!("{url}: no X-Repo-Commit header (is HF_ENDPOINT a hub?)"),
        })?;
        let linked = header("x-linked-etag");
        let lfs = linked.is_some();
        let etag = linked
            .or_else(|| header("etag"))
            .map(|e| normalize_etag(&e))
            .filter(|e| is_safe_name(e))
            .ok_or_else(|| Error::Http { what: what.clone(), message: format!("{url}: no usable ETag header") })?;
        let size = header("x-linked-size").or_else(|| header("content-length")).and_then(|s| s.parse().ok());
        let url = if (300..400).contains(&status) { location.unwrap_or(url) } else { url };
        return Ok(Metadata { commit, etag, size, url, lfs });
    }
    Err(Error::Http { what, message: format!("{url}: too many redirects") })
}

/// Downloads the blob named by `meta` unless it is already whole; returns its path.
pub(crate) fn blob(hub: &Hub, repo: &Repo, path: &str, meta: &Metadata) -> Result<PathBuf> {
    let what = format!("{repo}: {path}");
    let blob = hub.cache.blob(repo, &meta.etag);
    if blob.is_file() {
        return Ok(blob);
    }
    let _lock = hub.cache.lock(repo, &meta.etag)?;
    if blob.is_file() {
        return Ok(blob); // another process finished it while this one waited for the lock
    }
    let partial = blob.with_file_name(format!("{}.incomplete", meta.etag));
    fs::create_dir_all(blob.parent().unwrap()).map_err(|e| Error::io(&blob, e))?;
    transfer(hub, &what, meta, &partial)?;
    if meta.lfs {
        let actual = sha256_of(&partial)?;
        if actual != meta.etag {
            let _ = fs::remove_file(&partial);
            return Err(Error::Checksum { what, expected: meta.etag.clone(), actual });
        }
    }
    fs::rename(&partial, &blob).map_err(|e| Error::io(&blob, e))?;
    Ok(blob)
}

/// Appends to `partial` until it holds the whole file, resuming with `Range: bytes=N-`.
fn transfer(hub: &Hub, what: &str, meta: &Metadata, partial: &Path) -> Result<()> {
    let mut file = File::options().create(true).append(true).open(partial).map_err(|e| Error::io(partial, e))?;
    let mut have = file.metadata().map_err(|e| Error::io(partial, e))?.len();
    if meta.size.is_some_and(|size| have > size) {
        file.set_len(0).map_err(|e| Error::io(partial, e))?;
        have = 0;
    }
    if have > 0 {
        tracing::info!("{what}: resuming at byte {have}");
    }
    let bar = progress_bar(what, meta.size, have);
    let mut stalled = 0;
    loop {
        if meta.size == Some(have) {
            break;
        }
        let mut request = hub.get_agent.get(&meta.url).header("Accept-Encoding", "identity");
        if have > 0 {
            request = request.header("Range", format!("bytes={have}-"));
        }
        let before = have;
        let outcome = (|| -> std::result::Result<bool, String> {
            let response = if meta.url.starts_with(&hub.endpoint) { hub.send(request) } else { request.call() }
                .map_err(|e| e.to_string())?;
            match response.status().as_u16() {
                206 => {}
                200 if have > 0 => {
                    // The server ignored the range: start over.
                    file.set_len(0).map_err(|e| e.to_string())?;
                    have = 0;
                    if let Some(bar) = &bar {
                        bar.set_position(0);
                    }
                }
                200 => {}
                416 if meta.size.is_none() => return Ok(true),
                status => return Err(format!("HTTP {status} from {}", meta.url)),
            }
            let mut body = response.into_body().into_reader();
            let mut buffer = vec![0u8; 1 << 16];
            loop {
                let n = body.read(&mut buffer).map_err(|e| e.to_string())?;
                if n == 0 {
                    return Ok(meta.size.is_none());
                }
                file.write_all(&buffer[..n]).map_err(|e| e.to_string())?;
                have += n as u64;
                if let Some(bar) = &bar {
                    bar.set_position(have);
                }
            }
        })();
        match outcome {
            Ok(true) => break,
            Ok(false) => {} // closed early: the size check above decides
            Err(message) => tracing::warn!("{what}: transfer broke at byte {have}: {message}; resuming"),
        }
        stalled = if have > before { 0 } else { stalled + 1 };
        if stalled >= STALLED_TRIES {
            return Err(Error::Http {
                what: what.to_string(),
                message: format!("no progress in {STALLED_TRIES} tries at byte {have}; run again to resume"),
            });
        }
    }
    file.flush().map_err(|e| Error::io(partial, e))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(())
}

fn progress_bar(what: &str, size: Option<u64>, have: u64) -> Option<indicatif::ProgressBar> {
    let size = size.filter(|&s| s >= PROGRESS_FROM)?;
    tracing::info!("{what}: downloading {:.1} MB", size as f64 / 1e6);
    let bar = indicatif::ProgressBar::with_draw_target(Some(size), indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}")
            .expect("a valid template"),
    );
    bar.set_message(what.to_string());
    bar.set_position(have);
    Some(bar)
}

fn sha256_of(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| Error::io(path, e))?;
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// `W/"abc"` → `abc`, as `huggingface_hub._normalize_etag`.
fn normalize_etag(etag: &str) -> String {
    etag.trim().trim_start_matches("W/").trim_matches('"').to_string()
}

/// An ETag becomes a file name in the cache: nothing that could leave `blobs/`.
fn is_safe_name(etag: &str) -> bool {
    !etag.is_empty() && etag.len() <= 128 && etag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    #[test]
    fn etags() {
        assert_eq!(super::normalize_etag("W/\"a1b2\""), "a1b2");
        assert_eq!(super::normalize_etag("\"53aa51\""), "53aa51");
        assert!(!super::is_safe_name("../../x"));
    }
}
