//! Checkpoints: `checkpoints/step-00000100/` holds the model (`model.bin`), the optimiser's
//! moments (`optimizer.bin`), and `state.json` (step, skipped steps, data position, seed — the
//! RNG of step s is derived from (seed, s), so this is its whole state). `manifest.json`, written
//! last, holds each file's SHA-256. A checkpoint is built in a hidden `.partial` folder, every
//! file fsynced, then renamed into place, so a killed run leaves either a whole checkpoint or
//! none; on resume a checkpoint whose files do not match its manifest is skipped with a warning.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use burn::module::{AutodiffModule, Module};
use burn::optim::Optimizer;
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Full precision: `CompactRecorder` would round the weights and moments to f16.
type Rec = BinFileRecorder<FullPrecisionSettings>;

/// The loop's own state, beside the model and the optimiser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimiser steps done (skipped ones included).
    pub step: usize,
    /// Steps skipped for NaN/Inf gradients, in all and in a row now.
    pub skipped: usize,
    pub bad_in_row: usize,
    /// Where the data continues (the task's own format).
    pub position: serde_json::Value,
    /// The seed every step's RNG is derived from.
    pub seed: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    step: usize,
    files: BTreeMap<String, String>,
}

const FILES: [&str; 3] = ["model.bin", "optimizer.bin", "state.json"];

fn sha256(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn fsync(path: &Path) -> Result<()> {
    File::open(path).and_then(|f| f.sync_all()).map_err(|e| Error::io(path, e))
}

/// Writes `text` to `path` through a temporary file, fsync and rename.
pub fn write_atomic(path: &Path, text: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    file.write_all(text).and_then(|_| file.sync_all()).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

fn step_dir(root: &Path, step: usize) -> PathBuf {
    root.join(format!("step-{step:08}"))
}

/// The finished checkpoints under `root`, newest first.
pub fn list(root: &Path) -> Vec<(usize, PathBuf)> {
    let mut found: Vec<(usize, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let step = name.strip_prefix("step-")?.parse().ok()?;
            Some((step, e.path()))
        })
        .collect();
    found.sort_by_key(|entry| std::cmp::Reverse(entry.0));
    found
}

/// Saves a checkpoint of step `state.step` under `root`, then deletes all but the `keep` newest.
pub fn save<B, M, O>(root: &Path, model: &M, optimizer: &O, state: &TrainState, keep: usize) -> Result<PathBuf>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
{
    std::fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
    let dir = step_dir(root, state.step);
    let partial = root.join(format!(".step-{:08}.partial", state.step));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(|e| Error::io(&partial, e))?;
    }
    std::fs::create_dir_all(&partial).map_err(|e| Error::io(&partial, e))?;
    let failed = |message: String| Error::Checkpoint { path: dir.clone(), message };
    let recorder = Rec::new();
    recorder.record(model.clone().into_record(), partial.join("model")).map_err(|e| failed(e.to_string()))?;
    recorder.record(optimizer.to_record(), partial.join("optimizer")).map_err(|e| failed(e.to_string()))?;
    let state_json = serde_json::to_vec_pretty(state).expect("the train state serialises");
    std::fs::write(partial.join("state.json"), state_json).map_err(|e| Error::io(&partial, e))?;

    let mut files = BTreeMap::new();
    for name in FILES {
        let path = partial.join(name);
        fsync(&path)?;
        files.insert(name.to_string(), sha256(&path).map_err(|e| Error::io(&path, e))?);
    }
    let manifest = serde_json::to_vec_pretty(&Manifest { step: state.step, files }).expect("serialises");
    write_atomic(&partial.join("manifest.json"), &manifest)?;
    fsync(&partial)?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    std::fs::rename(&partial, &dir).map_err(|e| Error::io(&dir, e))?;
    fsync(root)?;

    for (_, old) in list(root).into_iter().skip(keep) {
        if let Err(e) = std::fs::remove_dir_all(&old) {
            tracing::warn!("cannot delete old checkpoint {}: {e}", old.display());
        }
    }
    Ok(dir)
}

/// Why `dir` is not a whole checkpoint, or its state.
fn verify(dir: &Path) -> std::result::Result<TrainState, String> {
    let text = std::fs::read_to_string(dir.join("manifest.json")).map_err(|e| format!("manifest.json: {e}"))?;
    let manifest: Manifest = serde_json::from_str(&text).map_err(|e| format!("manifest.json: {e}"))?;
    for name in FILES {
        let want = manifest.files.get(name).ok_or_else(|| format!("manifest.json lists no {name}"))?;
        let got = sha256(&dir.join(name)).map_err(|e| format!("{name}: {e}"))?;
        if &got != want {
            return Err(format!("{name} does not match its hash in manifest.json"));
        }
    }
    let text = std::fs::read_to_string(dir.join("state.json")).map_err(|e| format!("state.json: {e}"))?;
    let state: TrainState = serde_json::from_str(&text).map_err(|e| format!("state.json: {e}"))?;
    if state.step != manifest.step {
        return Err(format!("state.json is step {} but manifest.json step {}", state.step, manifest.step));
    }
    Ok(state)
}

type Records<B, M, O> = (<M as Module<B>>::Record, <O as Optimizer<M, B>>::Record);

/// Decodes the model and optimiser records of the checkpoint in `dir`.
fn records<B, M, O>(dir: &Path, device: &B::Device) -> Result<Records<B, M, O>>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
{
    let recorder = Rec::new();
    let failed = |e: burn::record::RecorderError| Error::Checkpoint { path: dir.to_path_buf(), message: e.to_string() };
    Ok((
        recorder.load(dir.join("model"), device).map_err(failed)?,
        recorder.load(dir.join("optimizer"), device).map_err(failed)?,
    ))
}

/// Loads the checkpoint in `dir` into `model` and `optimizer` (on `device`).
pub fn load<B, M, O>(dir: &Path, model: M, optimizer: O, device: &B::Device) -> Result<(M, O)>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
{
    let (m, o) = records::<B, M, O>(dir, device)?;
    Ok((model.load_record(m), optimizer.load_record(o)))
}

/// The newest checkpoint under `root` whose files match its manifest and decode, loaded into
/// `model` and `optimizer`, with its folder and state; corrupt ones are skipped with a warning
/// naming them. `None` when there is no valid checkpoint.
#[allow(clippy::type_complexity)]
pub fn load_newest<B, M, O>(
    root: &Path,
    model: M,
    optimizer: O,
    device: &B::Device,
) -> (M, O, Option<(PathBuf, TrainState)>)
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
{
    for (_, dir) in list(root) {
        let state = match verify(&dir) {
            Ok(state) => state,
            Err(why) => {
                tracing::warn!("skipping checkpoint {}: {why}", dir.display());
                continue;
            }
        };
        match records::<B, M, O>(&dir, device) {
            Ok((m, o)) => {
                tracing::info!("resuming from {} (step {})", dir.display(), state.step);
                return (model.load_record(m), optimizer.load_record(o), Some((dir, state)));
            }
            Err(e) => tracing::warn!("skipping checkpoint {}: cannot decode: {e}", dir.display()),
        }
    }
    (model, optimizer, None)
}
