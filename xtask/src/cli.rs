//! Builds the `starbucks` CLI in release with one backend feature and runs a subcommand; its
//! exit code becomes xtask's.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::flags::Backend;

pub fn run(backend: Backend, command: &str, args: &[String]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cargo_run = Command::new(cargo);
    cargo_run.current_dir(crate::fetch::workspace_root()).args([
        "run",
        "--release",
        "--quiet",
        "--package",
        "starbucks-cli",
        "--bin",
        "starbucks",
    ]);
    if backend != Backend::Flex {
        cargo_run.args(["--no-default-features", "--features", backend.feature()]);
    }
    let status = cargo_run.arg("--").arg(command).args(args).status().context("cannot start cargo")?;
    match status.code() {
        Some(0) => Ok(()),
        // The CLI printed its own one-line error: pass its exit code on (2 = bad input).
        Some(code) => std::process::exit(code),
        None => bail!("`starbucks {command}` was stopped ({status})"),
    }
}
