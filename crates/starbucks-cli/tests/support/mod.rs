//! What the CLI's test binaries share: where the workspace and the fetched model are, the binary
//! run to its end, and a server child.

#![allow(dead_code, unused_imports)] // each test binary uses its own part of it

mod server;

use std::path::PathBuf;
use std::process::Command;

pub use server::{Server, agent, call, max_abs_diff, post, vectors};

pub fn root() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("../..")
}

/// all-MiniLM-L6-v2 as `cargo xtask fetch minilm` unpacks it; fails with the fix when absent.
pub fn minilm() -> String {
    let dir = root().join("assets/all-MiniLM-L6-v2");
    assert!(dir.join("model.safetensors").is_file(), "run `cargo xtask fetch minilm` first");
    dir.display().to_string()
}

/// The binary with the hub settings and tier cap of `env` only: the machine's own are cleared,
/// so that no test reaches past loopback or reads the user's cache, and the kernels run at the
/// CPU's widest tier unless a test asks for another.
pub fn command(env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_starbucks"));
    for name in
        ["HF_ENDPOINT", "HF_TOKEN", "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_TOKEN_PATH", "STARBUCKS_SIMD"]
    {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    command
}

/// Runs the binary to its end: (exit code, stdout, stderr).
pub fn starbucks(args: &[&str]) -> (i32, String, String) {
    starbucks_with_env(args, &[])
}

pub fn starbucks_with_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = command(env).args(args).output().expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
