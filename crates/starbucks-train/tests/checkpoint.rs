//! Checkpoints under faults (issue 17, item 10): a disk that fills part-way through a checkpoint
//! leaves no `.partial` folder behind, keeps the checkpoints already there, and the error names
//! the file and says "No space left on device"; a failed atomic write leaves no temporary file.

use std::cell::Cell;
use std::io::Write;
use std::path::Path;

use burn::backend::{Autodiff, Flex};
use burn::nn::{Linear, LinearConfig};
use starbucks_train::adamw;
use starbucks_train::checkpoint::{self, Disk, Store, TrainState};

type B = Autodiff<Flex>;

/// A disk with `room` bytes left: the write that passes it stores what fits, then fails with
/// ENOSPC, as a full file system does.
struct FillsUp {
    room: Cell<usize>,
}

impl Store for FillsUp {
    fn write(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let fits = bytes.len().min(self.room.get());
        let mut file = std::fs::File::create(path)?;
        file.write_all(&bytes[..fits])?;
        self.room.set(self.room.get() - fits);
        if fits < bytes.len() { Err(std::io::Error::from_raw_os_error(28)) } else { Ok(()) }
    }
}

fn state(step: usize) -> TrainState {
    TrainState { step, skipped: 0, bad_in_row: 0, position: serde_json::Value::Null, seed: 1 }
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

#[test]
fn a_checkpoint_that_runs_out_of_space_cleans_up_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("checkpoints");
    let model: Linear<B> = LinearConfig::new(64, 64).init(&Default::default());
    let optimizer = adamw(0.0).init::<B, Linear<B>>();
    checkpoint::save(&root, &model, &optimizer, &state(2), 3).unwrap();
    let model_bin = std::fs::metadata(root.join("step-00000002/model.bin")).unwrap().len() as usize;

    // Full in the middle of model.bin, then in the middle of optimizer.bin.
    for room in [model_bin / 2, model_bin + 100] {
        let store = FillsUp { room: Cell::new(room) };
        let error = checkpoint::save_to(&store, &root, &model, &optimizer, &state(4), 3).unwrap_err().to_string();
        assert!(error.contains(&root.join("step-00000004").display().to_string()), "{error}");
        assert!(error.contains("No space left on device"), "{error}");
        let file = if room < model_bin { "model.bin" } else { "optimizer.bin" };
        assert!(error.contains(file), "names the file: {error}");
        assert_eq!(names(&root), ["step-00000002"], "no partial folder left, the older checkpoint kept");
    }
    // With room again, the same step is written whole.
    checkpoint::save_to(&Disk, &root, &model, &optimizer, &state(4), 3).unwrap();
    assert_eq!(names(&root), ["step-00000002", "step-00000004"]);
    let (_, _, found) = checkpoint::load_newest::<B, _, _>(&root, model, optimizer, &Default::default());
    assert_eq!(found.unwrap().1.step, 4);
}

#[test]
fn a_failed_atomic_write_leaves_the_target_and_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    // A folder where the file should go: the temporary file is written, the rename fails.
    let target = dir.path().join("config.toml");
    std::fs::create_dir(&target).unwrap();
    let error = checkpoint::write_atomic(&target, b"task = \"finetune\"").unwrap_err().to_string();
    assert!(error.contains("config.toml"), "{error}");
    assert_eq!(names(dir.path()), ["config.toml"], "no config.tmp left");
    assert!(target.is_dir());
}
