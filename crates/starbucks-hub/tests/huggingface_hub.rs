//! Python's `huggingface_hub` (the real client) against the loopback hub our tests use, and the
//! two clients' caches read by each other. Run by hand, never by CI (it needs Python with
//! huggingface_hub):
//!
//! ```sh
//! cargo test --release -p starbucks-hub --test huggingface_hub -- --ignored
//! ```
//!
//! It shows that the loopback hub behaves as the hub for the real client (so the other tests
//! test against something faithful), that `huggingface_hub` reads a cache we filled offline,
//! that we read one it filled offline, and that both fill the same layout.

#[path = "support/fake_hub.rs"]
mod fake_hub;

use std::path::Path;
use std::process::Command;

use fake_hub::{FakeHub, FakeRepo, sha256};
use starbucks_hub::{Hub, Repo};

fn python(args: &[&str]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/reference/hub_client_check.py");
    let out = Command::new("python3").arg(script).args(args).output().expect("python3 runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("the script prints JSON")
}

fn weights() -> Vec<u8> {
    (0..3u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = path.strip_prefix(root).unwrap().display().to_string();
            // Locks are empty files; `trees/` is huggingface_hub's own copy of a listing.
            if name.starts_with(".locks") || name.contains("/trees/") {
                continue;
            }
            if path.is_dir() && !path.is_symlink() {
                walk(&path, root, out);
            } else {
                let link = std::fs::read_link(&path).map(|l| format!(" -> {}", l.display())).unwrap_or_default();
                out.push(format!("{name}{link}"));
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
#[ignore = "needs Python with huggingface_hub; run by hand"]
fn huggingface_hub_and_ours_fill_and_read_one_cache() {
    let model = FakeRepo::model("org/tiny-encoder")
        .file("config.json", r#"{"hidden_size": 8}"#)
        .file("tokenizer.json", "{}")
        .file("model.safetensors", weights())
        .file("1_Pooling/config.json", r#"{"pooling_mode_mean_tokens": true}"#);
    let dataset = FakeRepo::dataset("org/tiny-triplets")
        .file("README.md", "# tiny")
        .file("triplet/train-00000-of-00001.parquet", weights()[..70_000].to_vec())
        .file("test.jsonl.gz", weights()[..5_000].to_vec());
    let server = FakeHub::start(vec![model, dataset]);
    let dir = tempfile::tempdir().unwrap();
    let (theirs, ours) = (dir.path().join("python"), dir.path().join("rust"));

    // The real client downloads from the loopback hub.
    let py = python(&["download", &server.url, theirs.to_str().unwrap(), "model", "org/tiny-encoder"]);
    assert_eq!(py["files"]["model.safetensors"], sha256(&weights()));

    // Ours fills its own cache: the same tree (refs, blobs, relative links).
    Hub::new(&server.url, ours.clone()).model_snapshot(&Repo::model("org/tiny-encoder").unwrap()).unwrap();
    let data = python(&["download", &server.url, theirs.to_str().unwrap(), "dataset", "org/tiny-triplets"]);
    let hub = Hub::new(&server.url, ours.clone());
    let repo = Repo::dataset("org/tiny-triplets").unwrap();
    let listing = hub.listing(&repo, "").unwrap();
    hub.files_at(&repo, &listing.commit, &listing.paths().collect::<Vec<_>>()).unwrap();
    assert_eq!(data["files"]["test.jsonl.gz"], sha256(&weights()[..5_000]));
    assert_eq!(tree(&ours), tree(&theirs), "the same cache layout");

    // Each reads the other's cache with the hub stopped.
    server.stop();
    let read_by_python = python(&["offline", ours.to_str().unwrap(), "model", "org/tiny-encoder"]);
    assert_eq!(read_by_python["files"], py["files"]);
    let read_by_python = python(&["offline", ours.to_str().unwrap(), "dataset", "org/tiny-triplets"]);
    assert_eq!(read_by_python["files"], data["files"]);
    let scan = python(&["scan", ours.to_str().unwrap()]);
    assert_eq!(scan["warnings"], serde_json::json!([]), "{scan}");
    for repo in scan["repos"].as_array().unwrap() {
        assert_eq!(repo["revisions"][0]["refs"], serde_json::json!(["main"]), "{scan}");
    }
    assert_eq!(scan["repos"].as_array().unwrap().len(), 2, "{scan}");
    let read_by_us = Hub::new(&server.url, theirs.clone())
        .with_offline(true)
        .model_snapshot(&Repo::model("org/tiny-encoder").unwrap())
        .unwrap();
    assert_eq!(std::fs::read(read_by_us.join("model.safetensors")).unwrap(), weights());
}
