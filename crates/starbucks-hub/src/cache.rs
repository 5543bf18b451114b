//! The HuggingFace cache layout, as `huggingface_hub` writes it:
//!
//! ```text
//! <cache>/models--org--name/refs/main                  the commit `main` pointed to
//! <cache>/models--org--name/blobs/<etag>               each file once, named by its ETag
//! <cache>/models--org--name/blobs/<etag>.incomplete    a partial download, resumed next time
//! <cache>/models--org--name/snapshots/<commit>/<path>  a relative symlink to its blob
//! <cache>/.locks/models--org--name/<etag>.lock         held while the blob is written
//! <cache>/CACHEDIR.TAG                                 backup tools skip the folder
//! ```
//!
//! (huggingface_hub also keeps `trees/<commit>.json`, a copy of a listing; it is an
//! optimisation of its own, neither needed nor read here.)

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::repo::Repo;

const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by huggingface_hub.\n\
# For information about cache directory tags, see:\n\
#\thttps://bford.info/cachedir/\n";

#[derive(Debug, Clone)]
pub(crate) struct Cache {
    pub(crate) root: PathBuf,
}

impl Cache {
    fn repo_dir(&self, repo: &Repo) -> PathBuf {
        self.root.join(repo.cache_folder())
    }

    /// The commit the repository's revision resolves to in the cache, if it was fetched.
    pub(crate) fn commit(&self, repo: &Repo) -> Option<String> {
        if repo.revision_is_commit() {
            return Some(repo.revision.clone());
        }
        let text = fs::read_to_string(self.repo_dir(repo).join("refs").join(&repo.revision)).ok()?;
        Some(text.trim().to_string()).filter(|c| !c.is_empty())
    }

    pub(crate) fn write_ref(&self, repo: &Repo, commit: &str) -> Result<()> {
        self.tag();
        if repo.revision == commit {
            return Ok(());
        }
        let path = self.repo_dir(repo).join("refs").join(&repo.revision);
        write_atomic(&path, commit.as_bytes())
    }

    /// The Cache Directory Tagging Standard's mark, as huggingface_hub writes it (best effort:
    /// a cache that cannot take it still works).
    fn tag(&self) {
        let tag = self.root.join("CACHEDIR.TAG");
        if !tag.exists() {
            let _ = fs::create_dir_all(&self.root).and_then(|()| fs::write(&tag, CACHEDIR_TAG));
        }
    }

    pub(crate) fn snapshot_dir(&self, repo: &Repo, commit: &str) -> PathBuf {
        self.repo_dir(repo).join("snapshots").join(commit)
    }

    /// A file of a snapshot, if the cache holds it (a link to a blob that is whole).
    pub(crate) fn snapshot_file(&self, repo: &Repo, commit: &str, path: &str) -> Option<PathBuf> {
        let file = self.snapshot_dir(repo, commit).join(path);
        file.is_file().then_some(file)
    }

    pub(crate) fn blob(&self, repo: &Repo, etag: &str) -> PathBuf {
        self.repo_dir(repo).join("blobs").join(etag)
    }

    /// Points `snapshots/<commit>/<path>` at the blob with a relative symlink (as
    /// `huggingface_hub` does, so either tool reads the other's cache), made under a temporary
    /// name and renamed, so the snapshot never shows a half-made entry.
    pub(crate) fn link(&self, repo: &Repo, commit: &str, path: &str, etag: &str) -> Result<PathBuf> {
        let file = self.snapshot_dir(repo, commit).join(path);
        let parent = file.parent().expect("a snapshot file has a folder");
        fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        let depth = path.split('/').count() + 1; // up from the file's folder to the repo folder
        let target = Path::new(&"../".repeat(depth)).join("blobs").join(etag);
        let temporary =
            parent.join(format!(".{}.{}.link", file.file_name().unwrap().to_string_lossy(), std::process::id()));
        let _ = fs::remove_file(&temporary);
        #[cfg(unix)]
        std::os::unix::fs::symlink(&target, &temporary).map_err(|e| Error::io(&temporary, e))?;
        #[cfg(not(unix))]
        fs::copy(self.blob(repo, etag), &temporary).map_err(|e| Error::io(&temporary, e))?;
        fs::rename(&temporary, &file).map_err(|e| Error::io(&file, e))?;
        Ok(file)
    }

    /// An exclusive lock on one blob, held while it is downloaded; the lock file is where
    /// `huggingface_hub` puts its own (both use `flock`), so the two never write one blob at once.
    pub(crate) fn lock(&self, repo: &Repo, etag: &str) -> Result<File> {
        let path = self.root.join(".locks").join(repo.cache_folder()).join(format!("{etag}.lock"));
        fs::create_dir_all(path.parent().unwrap()).map_err(|e| Error::io(&path, e))?;
        let file =
            File::options().create(true).truncate(false).write(true).open(&path).map_err(|e| Error::io(&path, e))?;
        file.lock().map_err(|e| Error::io(&path, e))?;
        Ok(file)
    }

    /// Every file of a snapshot (relative paths with `/`), for listing a repository offline.
    pub(crate) fn snapshot_files(&self, repo: &Repo, commit: &str) -> Vec<String> {
        fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
            let Ok(entries) = fs::read_dir(dir) else { return };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                let path = entry.path();
                let relative = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
                if path.is_dir() {
                    walk(&path, &relative, out);
                } else if path.is_file() && !name.starts_with('.') {
                    out.push(relative);
                }
            }
        }
        let mut files = Vec::new();
        walk(&self.snapshot_dir(repo, commit), "", &mut files);
        files.sort();
        files
    }
}

/// Writes a small file whole or not at all (`starbucks_files`), its folder created first.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let parent = path.parent().expect("a cache file has a folder");
    fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    starbucks_files::write_atomic(path, bytes).map_err(|e| Error::io(path, e))
}
