//! The `starbucks` binary: bad input is one line on stderr and a non-zero exit, never a panic.

use std::process::Command;

fn starbucks(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_starbucks")).args(args).output().expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn minilm() -> String {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets/all-MiniLM-L6-v2");
    assert!(
        std::path::Path::new(dir).join("model.safetensors").is_file(),
        "run `cargo xtask fetch minilm` first"
    );
    dir.to_string()
}

fn assert_clean_failure(code: i32, stderr: &str, needle: &str) {
    assert_eq!(code, 1, "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr}");
    assert!(lines[0].starts_with("error: ") && lines[0].contains(needle), "{stderr}");
}

#[test]
fn a_missing_model_folder_is_one_line_naming_it() {
    let (code, _, stderr) = starbucks(&["similarity", "--model", "/nonexistent/model"]);
    assert_clean_failure(code, &stderr, "/nonexistent/model");
}

#[test]
fn a_size_larger_than_the_model_is_refused() {
    let (code, stdout, stderr) = starbucks(&["similarity", "--model", &minilm(), "--sizes", "7,32"]);
    assert_clean_failure(code, &stderr, "7 layers");
    assert!(stdout.is_empty());
}

#[test]
fn similarity_prints_one_matrix_per_size() {
    let (code, stdout, stderr) = starbucks(&["similarity", "--model", &minilm(), "--sizes", "1,32 tall", "a", "b"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("size (1, 32)") && stdout.contains("size tall (6, 128)"), "{stdout}");
    // A text compared with itself has cosine 1.
    assert_eq!(stdout.matches("1.000").count(), 4, "{stdout}");
}

#[test]
fn a_bad_size_is_a_usage_error() {
    let (code, _, stderr) = starbucks(&["similarity", "--model", &minilm(), "--sizes", "3x96"]);
    assert_eq!(code, 2, "clap's usage error code: {stderr}");
    assert!(stderr.contains("invalid size '3x96'") && !stderr.contains("panicked"), "{stderr}");
}
