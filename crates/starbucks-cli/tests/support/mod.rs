//! What the CLI's test binaries share: where the workspace and the fetched model are.

use std::path::PathBuf;

pub fn root() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("../..")
}

/// all-MiniLM-L6-v2 as `cargo xtask fetch minilm` unpacks it; fails with the fix when absent.
pub fn minilm() -> String {
    let dir = root().join("assets/all-MiniLM-L6-v2");
    assert!(dir.join("model.safetensors").is_file(), "run `cargo xtask fetch minilm` first");
    dir.display().to_string()
}
