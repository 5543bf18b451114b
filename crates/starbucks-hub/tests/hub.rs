//! The hub client against a loopback server that answers as the hub does
//! (`support/fake_hub.rs`): the cache layout huggingface_hub shares, offline reads, resumed
//! transfers, checksums, tokens, and the hub's errors.

#[path = "support/fake_hub.rs"]
mod fake_hub;

use std::path::Path;

use fake_hub::{FakeHub, FakeRepo, TOKEN, sha256};
use starbucks_hub::{Error, Hub, Repo};

/// 3 MiB of weights (an LFS file, with a progress bar), small JSON files, a module folder, and
/// files an encoder does not need.
fn weights() -> Vec<u8> {
    (0..3u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

fn model_repo() -> FakeRepo {
    FakeRepo::model("org/tiny-encoder")
        .file("config.json", r#"{"hidden_size": 8}"#)
        .file("tokenizer.json", "{}")
        .file("model.safetensors", weights())
        .file("1_Pooling/config.json", r#"{"pooling_mode_mean_tokens": true}"#)
        .file("pytorch_model.bin", vec![1u8; 100])
        .file("onnx/model.onnx", vec![2u8; 100])
        .file("README.md", "# tiny")
}

fn hub(server: &FakeHub, cache: &Path) -> Hub {
    Hub::new(&server.url, cache.to_path_buf())
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in walk(dir) {
        out.push(entry.strip_prefix(dir).unwrap().display().to_string());
    }
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() && !path.is_symlink() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_model_fills_an_empty_cache_in_huggingface_hubs_layout() {
    let repo = model_repo();
    let commit = repo.commit();
    let server = FakeHub::start(vec![repo]);
    let cache = tempfile::tempdir().unwrap();
    let dir = hub(&server, cache.path()).model_snapshot(&Repo::model("org/tiny-encoder").unwrap()).unwrap();

    let root = cache.path().join("models--org--tiny-encoder");
    assert_eq!(dir, root.join("snapshots").join(&commit));
    assert_eq!(std::fs::read_to_string(root.join("refs/main")).unwrap(), commit);
    // Only what an encoder reads, each a relative link to its blob, as huggingface_hub makes them.
    assert_eq!(files_under(&dir), ["1_Pooling/config.json", "config.json", "model.safetensors", "tokenizer.json"]);
    let link = std::fs::read_link(dir.join("model.safetensors")).unwrap();
    assert_eq!(link, Path::new("../../blobs").join(sha256(&weights())));
    let nested = std::fs::read_link(dir.join("1_Pooling/config.json")).unwrap();
    assert!(nested.starts_with("../../../blobs"), "{}", nested.display());
    assert_eq!(std::fs::read(dir.join("model.safetensors")).unwrap(), weights());
    let blobs = files_under(&root.join("blobs"));
    assert_eq!(blobs.len(), 4, "one blob per file: {blobs:?}");
    assert!(blobs.iter().all(|b| !b.ends_with(".incomplete")));

    // A second call finds everything in the cache: one info and one tree call, one HEAD per file.
    let before = server.requests();
    hub(&server, cache.path()).model_snapshot(&Repo::model("org/tiny-encoder").unwrap()).unwrap();
    assert_eq!(server.requests() - before, 2 + 4, "nothing downloaded again");
}

#[test]
fn offline_reads_only_the_cache_and_names_what_is_missing() {
    let server = FakeHub::start(vec![model_repo()]);
    let cache = tempfile::tempdir().unwrap();
    let repo = Repo::model("org/tiny-encoder").unwrap();
    let online = hub(&server, cache.path()).model_snapshot(&repo).unwrap();
    server.stop();
    let requests = server.requests();
    let offline = hub(&server, cache.path()).with_offline(true);
    assert_eq!(offline.model_snapshot(&repo).unwrap(), online);
    assert_eq!(offline.file(&repo, "config.json").unwrap(), online.join("config.json"));
    assert_eq!(server.requests(), requests, "offline sends nothing");

    let missing = offline.model_snapshot(&Repo::model("org/other").unwrap()).unwrap_err();
    assert!(matches!(missing, Error::Offline { .. }), "{missing}");
    assert!(missing.to_string().contains("org/other") && missing.to_string().contains("HF_HUB_OFFLINE"), "{missing}");
    let not_fetched = offline.file(&repo, "README.md").unwrap_err();
    assert!(not_fetched.to_string().contains("README.md"), "{not_fetched}");

    // Online with the hub unreachable, a cached file still serves (as huggingface_hub does).
    assert_eq!(hub(&server, cache.path()).file(&repo, "config.json").unwrap(), online.join("config.json"));
    let err = hub(&server, cache.path()).file(&repo, "README.md").unwrap_err();
    assert!(err.to_string().contains("cannot reach"), "{err}");
}

#[test]
fn a_transfer_cut_half_way_resumes_where_it_stopped() {
    let server = FakeHub::start(vec![model_repo()]);
    let cache = tempfile::tempdir().unwrap();
    server.cut_once(&sha256(&weights()));
    let dir = hub(&server, cache.path()).model_snapshot(&Repo::model("org/tiny-encoder").unwrap()).unwrap();
    assert_eq!(server.cuts_pending(), 0, "the transfer was cut");
    assert_eq!(std::fs::read(dir.join("model.safetensors")).unwrap(), weights());

    // A partial file left by another run (huggingface_hub's name for it) is resumed, not restarted.
    let cache = tempfile::tempdir().unwrap();
    let blobs = cache.path().join("models--org--tiny-encoder/blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    let sha = sha256(&weights());
    std::fs::write(blobs.join(format!("{sha}.incomplete")), &weights()[..1 << 20]).unwrap();
    let dir = hub(&server, cache.path()).model_snapshot(&Repo::model("org/tiny-encoder").unwrap()).unwrap();
    assert_eq!(std::fs::read(dir.join("model.safetensors")).unwrap(), weights());
    assert!(!blobs.join(format!("{sha}.incomplete")).exists());
}

#[test]
fn a_file_whose_sha256_differs_is_refused_and_nothing_of_it_is_kept() {
    let server = FakeHub::start(vec![model_repo()]);
    let cache = tempfile::tempdir().unwrap();
    let sha = sha256(&weights());
    server.corrupt(&sha);
    let err = hub(&server, cache.path()).model_snapshot(&Repo::model("org/tiny-encoder").unwrap()).unwrap_err();
    assert!(matches!(err, Error::Checksum { .. }), "{err}");
    assert!(err.to_string().contains("model.safetensors") && err.to_string().contains(&sha), "{err}");
    let root = cache.path().join("models--org--tiny-encoder");
    let left: Vec<String> =
        files_under(&root).into_iter().filter(|f| f.contains(&sha) || f.contains("model.safetensors")).collect();
    assert!(left.is_empty(), "left in the cache: {left:?}");
}

#[test]
fn a_gated_repository_needs_the_token() {
    let server = FakeHub::start(vec![model_repo().gated()]);
    let cache = tempfile::tempdir().unwrap();
    let repo = Repo::model("org/tiny-encoder").unwrap();
    let err = hub(&server, cache.path()).model_snapshot(&repo).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("gated") && message.contains("HF_TOKEN") && message.contains("401"), "{message}");
    assert!(message.contains("org/tiny-encoder"), "{message}");
    hub(&server, cache.path()).with_token(Some(TOKEN.into())).model_snapshot(&repo).unwrap();
}

#[test]
fn missing_repositories_files_and_revisions_are_named() {
    let repo = model_repo();
    let commit = repo.commit();
    let server = FakeHub::start(vec![repo, FakeRepo::model("org/no-weights").file("config.json", "{}")]);
    let cache = tempfile::tempdir().unwrap();
    let hub = hub(&server, cache.path());
    let message = |spec: &str| hub.model_snapshot(&Repo::model(spec).unwrap()).unwrap_err().to_string();
    let m = message("org/nothing");
    assert!(m.contains("org/nothing") && m.contains("401") && m.contains("not found"), "{m}");
    let m = message("org/tiny-encoder@v9");
    assert!(m.contains("no such revision") && m.contains("404"), "{m}");
    let m = message("org/no-weights");
    assert!(m.contains("no model.safetensors"), "{m}");
    let m = hub.file(&Repo::model("org/tiny-encoder").unwrap(), "missing.json").unwrap_err().to_string();
    assert!(m.contains("missing.json") && m.contains("no such file") && m.contains("404"), "{m}");

    // A commit as the revision: read as is, no ref written for it.
    let pinned = hub.model_snapshot(&Repo::model(&format!("org/tiny-encoder@{commit}")).unwrap()).unwrap();
    assert!(pinned.ends_with(&commit));
    assert!(!cache.path().join("models--org--tiny-encoder/refs").join(&commit).exists());
}

#[test]
fn listings_follow_the_hubs_pages() {
    let server = FakeHub::start(vec![model_repo()]);
    server.page_size(2);
    let cache = tempfile::tempdir().unwrap();
    let listing = hub(&server, cache.path()).listing(&Repo::model("org/tiny-encoder").unwrap(), "").unwrap();
    let paths: Vec<&str> = listing.paths().collect();
    assert_eq!(
        paths,
        [
            "1_Pooling/config.json",
            "README.md",
            "config.json",
            "model.safetensors",
            "onnx/model.onnx",
            "pytorch_model.bin",
            "tokenizer.json"
        ]
    );
    let entry = listing.entries.iter().find(|e| e.path == "model.safetensors").unwrap();
    assert_eq!(entry.sha256.as_deref(), Some(sha256(&weights()).as_str()));
    let under = hub(&server, cache.path()).listing(&Repo::model("org/tiny-encoder").unwrap(), "onnx").unwrap();
    assert_eq!(under.paths().collect::<Vec<_>>(), ["onnx/model.onnx"]);
    let none = hub(&server, cache.path()).listing(&Repo::model("org/tiny-encoder").unwrap(), "absent").unwrap();
    assert!(none.entries.is_empty());
}
