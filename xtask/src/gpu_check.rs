//! `cargo xtask gpu-check`: the folder to carry to a machine with one NVIDIA GPU, which has
//! Python with torch and transformers but no Rust toolchain and no network. It holds the CUDA
//! build of the CLI (stripped), the bert-base-uncased WordPiece tokenizer (all-MiniLM-L6-v2's),
//! 300 STS-B test sentences, the SNLI triplets, and `run.py` (`gpu_check/run.py`), which does
//! the checks there and writes its report to `$OUT`. Written under a temporary name and renamed.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::flags::Backend;
use crate::{cli, fetch};

/// The script, kept beside this file and copied into the folder.
const SCRIPT: &str = include_str!("../gpu_check/run.py");
/// STS-B test sentences carried for the embedding check.
const SENTENCES: usize = 300;
/// The folder must stay small enough to carry.
const LIMIT_MIB: u64 = 60;
const TOKENIZER_FILES: [&str; 4] = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"];

fn folder_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        total += if kind.is_dir() { folder_size(&entry.path())? } else { entry.metadata()?.len() };
    }
    Ok(total)
}

/// The first sentences of the first `count` STS-B test pairs, one a line.
fn sentences(count: usize) -> Result<String> {
    let all = fetch::stsb_test_sentences()?;
    if all.len() < 2 * count {
        bail!("data/stsb/sts-test.csv: only {} pairs", all.len() / 2);
    }
    Ok(all[..count].join("\n") + "\n")
}

/// Writes the folder into `tmp`: binary, tokenizer, data, script.
fn assemble(root: &Path, binary: &Path, tmp: &Path) -> Result<()> {
    let copy = |from: &Path, to: &Path| -> Result<()> {
        std::fs::create_dir_all(to.parent().expect("a file in the folder"))?;
        std::fs::copy(from, to).with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
        Ok(())
    };
    let bin = tmp.join("bin/starbucks");
    copy(binary, &bin)?;
    // Debug line tables are most of the binary; the device needs none of them.
    let status = Command::new("strip").arg(&bin).status().context("cannot start strip (binutils)")?;
    if !status.success() {
        bail!("strip {} failed ({status})", bin.display());
    }
    let minilm = root.join(fetch::MINILM_DIR);
    for name in TOKENIZER_FILES {
        copy(&minilm.join(name), &tmp.join("tokenizer").join(name))?;
    }
    copy(&root.join("data/nli/snli-triplets.tsv.gz"), &tmp.join("data/nli/snli-triplets.tsv.gz"))?;
    std::fs::write(tmp.join("data/sentences.txt"), sentences(SENTENCES)?)?;
    std::fs::write(tmp.join("run.py"), SCRIPT)?;
    Ok(())
}

pub fn run(output: &Path) -> Result<()> {
    let root = fetch::workspace_root();
    fetch::run("minilm")?;
    let binary = cli::build(Backend::Cuda)?;
    let output = if output.is_absolute() { output.to_path_buf() } else { root.join(output) };
    let tmp = output.with_extension("tmp");
    for dir in [&tmp, &output] {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("cannot clear {}", dir.display()))?;
        }
    }
    assemble(&root, &binary, &tmp)?;
    let size = folder_size(&tmp)?;
    if size > LIMIT_MIB << 20 {
        bail!("{}: {:.1} MiB, over the {LIMIT_MIB} MiB to carry", tmp.display(), size as f64 / (1 << 20) as f64);
    }
    std::fs::rename(&tmp, &output)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), output.display()))?;
    println!("gpu-check folder: {} ({:.1} MiB)", output.display(), size as f64 / (1 << 20) as f64);
    println!("on the GPU machine: python3 run.py --out \"$OUT\"   (here, on the CPU build: see docs/gpu.md)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_carried_sentences_are_stsb_first_sentences() {
        let text = sentences(3).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|l| !l.is_empty() && !l.contains('\t')));
    }
}
