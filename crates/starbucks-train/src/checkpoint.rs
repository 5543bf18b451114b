//! Checkpoints: `checkpoints/step-00000100/` holds the model (`model.bin`), the optimiser's
//! moments (`optimizer.bin`), and `state.json` (step, skipped steps, data position, seed — the
//! RNG of step s is derived from (seed, s), so this is its whole state). `manifest.json`, written
//! last, holds each file's SHA-256. A checkpoint is built in a hidden `.partial` folder, every
//! file fsynced, then renamed into place, so a killed run leaves either a whole checkpoint or
//! none; on resume a checkpoint whose files do not match its manifest is skipped with a warning.
//! A checkpoint that fails to write (a full disk) removes its `.partial` folder, so the failure
//! does not keep the disk full, and its error names the file and the OS's reason in words.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use burn::module::{AutodiffModule, Module};
use burn::optim::Optimizer;
use burn::record::{BinBytesRecorder, BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Full precision: `CompactRecorder` would round the weights and moments to f16. Records are
/// encoded to bytes and written by a [`Store`], so a write error is the OS's own; the file
/// recorder decodes them (the same bincode format).
type Rec = BinFileRecorder<FullPrecisionSettings>;
type Encoder = BinBytesRecorder<FullPrecisionSettings>;

/// Where checkpoint files are written: [`Disk`], or in tests a writer that fails part-way.
pub trait Store {
    /// Writes `bytes` to a new file at `path` and makes it durable.
    fn write(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()>;
}

/// Files on disk, each fsynced.
pub struct Disk;

impl Store for Disk {
    fn write(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let mut file = File::create(path)?;
        file.write_all(bytes)?;
        file.sync_all()
    }
}

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

fn hex(hasher: Sha256) -> String {
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

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
    Ok(hex(hasher))
}

fn fsync(path: &Path) -> Result<()> {
    File::open(path).and_then(|f| f.sync_all()).map_err(|e| Error::io(path, e))
}

/// Writes `text` to `path` whole or not at all (a failed write leaves `path` as it was).
pub fn write_atomic(path: &Path, text: &[u8]) -> Result<()> {
    starbucks_files::write_atomic(path, text).map_err(|e| Error::io(path, e))
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
    save_to(&Disk, root, model, optimizer, state, keep)
}

/// [`save`] through `store`.
pub fn save_to<B, M, O>(
    store: &dyn Store,
    root: &Path,
    model: &M,
    optimizer: &O,
    state: &TrainState,
    keep: usize,
) -> Result<PathBuf>
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
    if let Err(message) = write_partial(store, &partial, model, optimizer, state) {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(Error::Checkpoint { path: dir, message: format!("{message}; the partial checkpoint was removed") });
    }
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

/// Writes every file of a checkpoint into `partial`, the manifest last; the error says which
/// file failed and why.
fn write_partial<B, M, O>(
    store: &dyn Store,
    partial: &Path,
    model: &M,
    optimizer: &O,
    state: &TrainState,
) -> std::result::Result<(), String>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
{
    let encoder = Encoder::default();
    let encoded = |e: burn::record::RecorderError| format!("encoding: {e:?}");
    let model_bin = Recorder::<B>::record(&encoder, model.clone().into_record(), ()).map_err(encoded)?;
    let optimizer_bin = Recorder::<B>::record(&encoder, optimizer.to_record(), ()).map_err(encoded)?;
    let state_json = serde_json::to_vec_pretty(state).expect("the train state serialises");
    let mut files = BTreeMap::new();
    let write =
        |name: &str, bytes: &[u8]| store.write(&partial.join(name), bytes).map_err(|e| format!("writing {name}: {e}"));
    for (name, bytes) in FILES.into_iter().zip([&model_bin, &optimizer_bin, &state_json]) {
        write(name, bytes)?;
        let mut hasher = Sha256::new();
        hasher.update(bytes);
        files.insert(name.to_string(), hex(hasher));
    }
    let manifest = serde_json::to_vec_pretty(&Manifest { step: state.step, files }).expect("serialises");
    write("manifest.json", &manifest)?;
    fsync(partial).map_err(|e| format!("syncing the folder: {e}"))
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
