//! Every committed seed and every saved crash input, through its target: what `cargo fuzz`
//! starts from and what once crashed must pass in the ordinary test build, without libFuzzer
//! and its instrumented build (`.ci/run` fuzzes when it has the time; docs/reliability.md).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use starbucks_fuzz_targets::{TARGETS, Target};

/// The files under `fuzz/<folder>/<target>/`, sorted; none when the folder does not exist.
fn inputs(folder: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(folder).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.map(|e| e.expect("a readable folder").path()).collect();
    files.sort();
    files
}

/// Runs each of the target's seeds and saved crashes through it; returns the files it panicked on.
fn replay(name: &str, target: Target) -> Vec<String> {
    let seeds = inputs("seeds", name);
    if seeds.is_empty() {
        return vec![format!("fuzz/seeds/{name}/ (no seeds there)")];
    }
    let mut failed = Vec::new();
    for path in seeds.iter().chain(&inputs("regressions", name)) {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        if catch_unwind(AssertUnwindSafe(|| target(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    failed
}

#[test]
fn every_libfuzzer_binary_has_its_target_here() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz_targets");
    let mut binaries: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("a readable folder").path().file_stem().expect("a file").to_string_lossy().into_owned())
        .collect();
    binaries.sort();
    let names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(binaries, names);
}

#[test]
fn every_seed_and_saved_crash_passes_its_target() {
    // One thread per target (each has its own scratch folder); the slowest input, the tables
    // regression that once took 55 s, now takes under a second.
    let failed: Vec<String> = std::thread::scope(|scope| {
        let runs: Vec<_> = TARGETS.iter().map(|&(name, target)| scope.spawn(move || replay(name, target))).collect();
        runs.into_iter().flat_map(|run| run.join().expect("replay catches its panics")).collect()
    });
    assert!(failed.is_empty(), "panicked on {}", failed.join(", "));
}
