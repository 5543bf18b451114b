//! `starbucks`: the command-line face of starbucks-rs. The backend is a cargo feature
//! (`flex` by default; `ndarray`, `wgpu`, `cuda`), fixed in `backend.rs`; every subcommand is
//! generic code run on that backend. Flags are declared in `args.rs`.

mod args;
mod backend;
mod bench;
mod embed;
mod eval;
mod export;
mod serve;
mod similarity;
mod train;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use starbucks_train::config::Task;
use tracing_subscriber::EnvFilter;

/// Runs a training task: bad input exits with 2, a failure while training with 1, a run stopped
/// by a signal with 128 + its number (130 for SIGINT, 143 for SIGTERM), as a shell reports it.
fn train(task: Task, args: args::TrainArgs) -> ExitCode {
    match train::run::<backend::Training>(task, args, backend::device_at) {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(signal)) => ExitCode::from((128 + signal) as u8),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(if e.is_input() { 2 } else { 1 })
        }
    }
}

/// Training and the server log their progress at info level; other commands only warn. The GPU
/// runtimes' own info lines (a line per kernel tuned, per cache load) stay out unless asked for.
fn default_log(command: &args::Command) -> &'static str {
    match command {
        args::Command::Pretrain(_) | args::Command::Finetune(_) | args::Command::Serve(_) => {
            "info,cubecl_runtime=warn,cubecl_wgpu=warn,cubecl_cuda=warn,wgpu_core=warn,wgpu_hal=warn"
        }
        _ => "warn",
    }
}

/// burn allocates and frees tensors of up to tens of MB every step. glibc's malloc gives blocks
/// above its mmap threshold, and a heap top above its trim threshold, back to the kernel, which
/// faults the pages in again at the next step. Keeping freed memory avoids those faults
/// (measured in `docs/benchmarks.md`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: mallopt only changes allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = args::Cli::parse();
    // The kernels read the tier cap where they run and cannot refuse it there.
    if let Err(e) = starbucks_model::simd::Tier::cap() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("STARBUCKS_LOG").unwrap_or_else(|_| EnvFilter::new(default_log(&cli.command))),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    tracing::debug!(backend = backend::NAME, "starting");
    let command = match cli.command {
        args::Command::Pretrain(a) => return train(Task::Pretrain, a),
        args::Command::Finetune(a) => return train(Task::Finetune, a),
        command => command,
    };
    let index = command.device_index().expect("every command but training takes --device");
    let device = match backend::device_at(index) {
        Ok(device) => device,
        Err(e) => {
            eprintln!("error: --device: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match command {
        args::Command::Similarity(a) => similarity::run::<backend::Inference>(a, &device),
        args::Command::Bench(a) => bench::run::<backend::Training>(a, &device),
        args::Command::Eval(a) => eval::run::<backend::Inference>(a, &device),
        args::Command::Export(a) => export::run::<backend::Inference>(a, &device),
        args::Command::Embed(a) => embed::run::<backend::Inference>(a, &device),
        args::Command::Serve(a) => serve::run::<backend::Inference>(a, backend::NAME, &device),
        args::Command::Pretrain(_) | args::Command::Finetune(_) => unreachable!("returned above"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
