//! Shared helpers of the end-to-end tests: where the fetched model and the fixtures are.

use std::path::{Path, PathBuf};

/// The CPU backend the tests run on (the CLI's default).
pub type TestBackend = burn::backend::Flex;

pub fn workspace_root() -> PathBuf {
    Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf()
}

/// all-MiniLM-L6-v2 as `cargo xtask fetch minilm` unpacks it; fails with the fix when absent.
pub fn minilm_dir() -> PathBuf {
    let dir = workspace_root().join("assets/all-MiniLM-L6-v2");
    assert!(
        dir.join("model.safetensors").is_file(),
        "{} is missing: run `cargo xtask fetch minilm` first (the README's test command does)",
        dir.display()
    );
    dir
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

/// Largest absolute difference between two equally long vectors.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "vector lengths differ");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}
