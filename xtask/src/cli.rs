//! Builds the `starbucks` CLI in release with one backend feature and runs a subcommand; its
//! exit code becomes xtask's.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::flags::Backend;

/// cargo, run in the workspace with the environment a shell gives it. `cargo xtask` runs
/// xtask through `cargo run`, which sets `CARGO_PKG_*`, `CARGO_MANIFEST_DIR` and the like for
/// it; some build scripts (ring's) rerun when those change, so a build started from here
/// and the README's `cargo test` started from a shell would each recompile ring and every
/// crate above it (the hub, the model, the rest of the workspace) for the other.
fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(crate::fetch::workspace_root());
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_by_cargo_run = name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || ["CARGO_CRATE_NAME", "CARGO_BIN_NAME", "CARGO_PRIMARY_PACKAGE"].contains(&name.as_ref());
        if set_by_cargo_run {
            command.env_remove(name.as_ref());
        }
    }
    command
}

/// `cargo build --release` of the CLI with the backend's feature. On the default backend the
/// build resolves features over the whole workspace (`--workspace --bin starbucks`), exactly as
/// the README's `cargo test --release --workspace` does: the two then share every compiled
/// crate, so neither rebuilds what the other built. (`-p starbucks-cli` alone unifies fewer
/// features, and burn's tree would be built twice.) Another backend builds the CLI alone.
fn cargo_build(backend: Backend) -> Command {
    let mut command = cargo();
    command.args(["build", "--release"]);
    if backend == Backend::Flex {
        command.args(["--workspace", "--bin", "starbucks"]);
    } else {
        command.args(["--package", "starbucks-cli", "--bin", "starbucks"]);
        command.args(["--no-default-features", "--features", backend.feature()]);
    }
    command
}

/// Builds the CLI and returns the binary's path. cargo shows its progress: the first release
/// build of burn is long (README), and a silent one looks hung.
pub fn build(backend: Backend) -> Result<PathBuf> {
    println!(
        "building the starbucks CLI (release, {} backend; the first build takes tens of minutes, see the README)",
        backend.feature()
    );
    let status = cargo_build(backend).status().context("cannot start cargo")?;
    if !status.success() {
        bail!("building starbucks-cli failed ({status})");
    }
    Ok(target_dir().join("release").join("starbucks"))
}

/// Builds every target `cargo test --release --workspace` builds (the libraries, the CLI, the
/// tests and examples) in one release build, as that command resolves them: after it, the
/// README's test command compiles nothing.
pub fn build_tests() -> Result<()> {
    println!(
        "building the starbucks CLI and the tests in one release build, shared with `cargo test --release \
         --workspace` (the first build takes tens of minutes, see the README)"
    );
    let status = cargo()
        .args(["build", "--release", "--workspace", "--lib", "--bins", "--tests", "--examples"])
        .status()
        .context("cannot start cargo")?;
    if !status.success() {
        bail!("building the workspace failed ({status})");
    }
    Ok(())
}

/// cargo's target directory: `CARGO_TARGET_DIR`, else the workspace's `target/`.
pub fn target_dir() -> PathBuf {
    let root = crate::fetch::workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    if target.is_absolute() { target } else { root.join(target) }
}

/// Builds the CLI (cargo's progress shown, see [`build`]) and runs `starbucks <command> <args>`.
pub fn run(backend: Backend, command: &str, args: &[String]) -> Result<()> {
    let binary = build(backend)?;
    let status = Command::new(&binary)
        .current_dir(crate::fetch::workspace_root())
        .arg(command)
        .args(args)
        .status()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    match status.code() {
        Some(0) => Ok(()),
        // The CLI printed its own one-line error: pass its exit code on (2 = bad input).
        Some(code) => std::process::exit(code),
        None => bail!("`starbucks {command}` was stopped ({status})"),
    }
}
