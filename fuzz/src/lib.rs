//! What the fuzz targets share: a scratch folder per process (the parsers under test read
//! files, as they do in use), and a split of one input into sections.
//!
//! Each target asserts only that a parser returns: any input may be an `Err`, none may panic,
//! hang or abort. A panic is a crash libFuzzer saves under `fuzz/artifacts/<target>/`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A folder private to this process, in memory where the system has `/dev/shm`.
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = Path::new("/dev/shm");
        let base = if base.is_dir() { base.to_path_buf() } else { std::env::temp_dir() };
        let dir = base.join(format!("starbucks-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch folder");
        dir
    })
}

/// Writes `bytes` to `name` in the scratch folder and returns its path.
pub fn file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = scratch().join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("a scratch sub-folder");
    }
    std::fs::write(&path, bytes).expect("scratch is writable");
    path
}

/// The section marker of multi-file inputs (a line of its own).
pub const SECTION: &[u8] = b"\n\x00--8<--\n";

/// `data` cut at each [`SECTION`] into exactly `n` parts (missing ones empty, extra ones joined
/// to the last).
pub fn sections(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut parts = Vec::with_capacity(n);
    let mut rest = data;
    while parts.len() + 1 < n {
        match rest.windows(SECTION.len()).position(|w| w == SECTION) {
            Some(at) => {
                parts.push(&rest[..at]);
                rest = &rest[at + SECTION.len()..];
            }
            None => break,
        }
    }
    parts.push(rest);
    parts.resize(n, &[][..]);
    parts
}
