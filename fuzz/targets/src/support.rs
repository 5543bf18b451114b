//! What the targets share: a scratch folder per thread (the parsers under test read files, as
//! they do in use), a split of one input into sections, and valid Parquet files to overwrite.

use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use tempfile::TempDir;

thread_local! {
    /// Per thread, so that the test harness's threads do not overwrite each other's files;
    /// in memory where the system has `/dev/shm`. Removed when the thread ends.
    static SCRATCH: TempDir = {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
        tempfile::Builder::new().prefix("starbucks-fuzz-").tempdir_in(base).expect("a scratch folder")
    };
}

/// This thread's scratch folder.
pub(crate) fn scratch() -> PathBuf {
    SCRATCH.with(|dir| dir.path().to_path_buf())
}

/// Writes `bytes` to `name` in the scratch folder and returns its path.
pub(crate) fn file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = scratch().join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("a scratch sub-folder");
    }
    std::fs::write(&path, bytes).expect("scratch is writable");
    path
}

/// `batch` as the bytes of a Parquet file (`properties`: the writer's defaults if none).
pub(crate) fn parquet(batch: &RecordBatch, properties: Option<WriterProperties>) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), properties).expect("a writer");
    writer.write(batch).expect("written to memory");
    writer.close().expect("closed in memory");
    bytes
}

/// Overwrites bytes of a valid file at input-chosen places, which reaches past the checks that
/// random bytes rarely pass: `edits` is (position: 2 bytes, value: 1 byte) triples, each
/// position taken modulo the file's length.
pub(crate) fn overwrite(bytes: &mut [u8], edits: &[u8]) {
    for edit in edits.chunks_exact(3) {
        let at = u16::from_le_bytes([edit[0], edit[1]]) as usize % bytes.len();
        bytes[at] = edit[2];
    }
}

/// The section marker of multi-file inputs (a line of its own).
pub const SECTION: &[u8] = b"\n\x00--8<--\n";

/// `data` cut at each [`SECTION`] into exactly `n` parts (missing ones empty, extra ones joined
/// to the last).
pub(crate) fn sections(data: &[u8], n: usize) -> Vec<&[u8]> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_pads_with_empty_parts_and_joins_extra_ones_to_the_last() {
        let data = [b"a".as_slice(), SECTION, b"b", SECTION, b"c"].concat();
        assert_eq!(sections(&data, 2), vec![b"a".as_slice(), &[b"b".as_slice(), SECTION, b"c"].concat()]);
        assert_eq!(sections(b"a", 3), vec![b"a".as_slice(), b"", b""]);
    }
}
