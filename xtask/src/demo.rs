//! `cargo xtask demo`: the README's main job. Fetches all-MiniLM-L6-v2, fine-tunes it with SRL
//! on the shipped SNLI triplets (resuming, or reusing, a run already in `runs/`), then evaluates
//! the untouched and the fine-tuned model on STS-B dev and test at every size of the list.
//! Its build is the one the README's test command uses.

use anyhow::Result;

use crate::{cli, fetch, flags::Backend};

const CONFIG: &str = "configs/finetune-srl-nli-minilm-demo.toml";
const RUN: &str = "runs/finetune-srl-nli-minilm-demo";

pub fn run(backend: Backend) -> Result<()> {
    fetch::run("minilm")?;
    // On the default backend the tests are built too, in the same build: the README's second
    // command then only runs them.
    if backend == Backend::Flex {
        cli::build_tests()?;
    }
    let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    cli::run(backend, "finetune", &args(&["--config", CONFIG, "--resume"]))?;
    let model = format!("{RUN}/model");
    let report = format!("{RUN}/eval");
    println!("\nSTS-B Spearman at every size, untouched vs fine-tuned (report in {report}/):\n");
    cli::run(
        backend,
        "eval",
        &args(&[
            "--model",
            fetch::MINILM_DIR,
            "--name",
            "all-MiniLM-L6-v2 (untouched)",
            "--model",
            &model,
            "--name",
            "SRL demo (fine-tuned)",
            "--stsb",
            "data/stsb/sts-dev.csv",
            "--stsb",
            "data/stsb/sts-test.csv",
            "--no-throughput",
            "--output",
            &report,
        ]),
    )
}
