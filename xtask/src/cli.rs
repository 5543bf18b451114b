//! Builds the `starbucks` CLI in release with one backend feature and runs a subcommand; its
//! exit code becomes xtask's.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::flags::Backend;

/// `cargo <verb> --release` of the CLI with the backend's feature.
fn cargo(backend: Backend, verb: &str) -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(crate::fetch::workspace_root()).args([
        verb,
        "--release",
        "--package",
        "starbucks-cli",
        "--bin",
        "starbucks",
    ]);
    if backend != Backend::Flex {
        command.args(["--no-default-features", "--features", backend.feature()]);
    }
    command
}

/// Builds the CLI and returns the binary's path. cargo shows its progress: the first release
/// build of burn takes about 30 minutes on 2 cores, and a silent one looks hung.
pub fn build(backend: Backend) -> Result<PathBuf> {
    announce(backend);
    let status = cargo(backend, "build").status().context("cannot start cargo")?;
    if !status.success() {
        bail!("building starbucks-cli failed ({status})");
    }
    Ok(target_dir().join("release").join("starbucks"))
}

/// cargo's target directory: `CARGO_TARGET_DIR`, else the workspace's `target/`.
pub fn target_dir() -> PathBuf {
    let root = crate::fetch::workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    if target.is_absolute() { target } else { root.join(target) }
}

fn announce(backend: Backend) {
    println!(
        "building the starbucks CLI (release, {} backend; the first build takes ~30 min on 2 cores)",
        backend.feature()
    );
}

/// Builds the CLI (cargo's progress shown, see [`build`]) and runs `starbucks <command> <args>`.
pub fn run(backend: Backend, command: &str, args: &[String]) -> Result<()> {
    announce(backend);
    let mut cargo_run = cargo(backend, "run");
    let status = cargo_run.arg("--").arg(command).args(args).status().context("cannot start cargo")?;
    match status.code() {
        Some(0) => Ok(()),
        // The CLI printed its own one-line error: pass its exit code on (2 = bad input).
        Some(code) => std::process::exit(code),
        None => bail!("`starbucks {command}` was stopped ({status})"),
    }
}
