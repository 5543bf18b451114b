//! What the CLI's test binaries share: where the fetched model is.

/// all-MiniLM-L6-v2 as `cargo xtask fetch minilm` unpacks it; fails with the fix when absent.
pub fn minilm() -> String {
    let dir = format!(
        "{}/../../assets/all-MiniLM-L6-v2",
        std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")
    );
    assert!(std::path::Path::new(&dir).join("model.safetensors").is_file(), "run `cargo xtask fetch minilm` first");
    dir
}
