//! `starbucks`: the command-line face of starbucks-rs. The backend is a cargo feature
//! (`flex` by default; `ndarray`, `wgpu`, `cuda`), fixed in `backend.rs`; every subcommand is
//! generic code run on that backend. Flags are declared in `args.rs`.

mod args;
mod backend;
mod bench;
mod embed;
mod eval;
mod export;
mod similarity;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("STARBUCKS_LOG").unwrap_or_else(|_| EnvFilter::new("warn")))
        .with_writer(std::io::stderr)
        .init();
    let device = backend::device();
    tracing::info!(backend = backend::NAME, "starting");
    let result = match cli.command {
        args::Command::Similarity(a) => similarity::run::<backend::Inference>(a, &device),
        args::Command::Bench(a) => bench::run::<backend::Training>(a, &device),
        args::Command::Eval(a) => eval::run::<backend::Inference>(a, &device),
        args::Command::Export(a) => export::run::<backend::Inference>(a, &device),
        args::Command::Embed(a) => embed::run::<backend::Inference>(a, &device),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
