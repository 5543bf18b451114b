//! Every subcommand's flags, declared in one place.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use starbucks_model::Size;

/// Train, evaluate and use 2D Matryoshka sentence embeddings (Starbucks, 2DMSE) on burn.
#[derive(Debug, Parser)]
#[command(name = "starbucks", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Embed sentences at several sizes and print their cosine-similarity matrix per size.
    Similarity(SimilarityArgs),
    /// Time the encoder's forward pass at each size, and forward + backward at the full size.
    Bench(BenchArgs),
}

/// The size list of METHOD.md for a 6-layer, 384-dim model such as all-MiniLM-L6-v2.
pub const MINILM_SIZES: &str = "1,32 2,64 3,96 4,128 5,256 6,384";

fn parse_size(text: &str) -> Result<Size, String> {
    text.parse().map_err(|e: starbucks_model::Error| e.to_string())
}

#[derive(Debug, Args)]
pub struct SimilarityArgs {
    /// Model folder (HF or sentence-transformers: config.json, model.safetensors, tokenizer.json).
    #[arg(long)]
    pub model: PathBuf,
    /// Sizes as `layers,dims` or paper names (demi, short, tall, ...), space-separated in one
    /// argument; the flag may repeat.
    #[arg(long, value_parser = parse_size, default_value = MINILM_SIZES, value_delimiter = ' ')]
    pub sizes: Vec<Size>,
    /// Sentences to compare; a built-in handful when none are given.
    pub sentences: Vec<String>,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Model folder.
    #[arg(long)]
    pub model: PathBuf,
    /// Sizes to time the forward pass at.
    #[arg(long, value_parser = parse_size, default_value = MINILM_SIZES, value_delimiter = ' ')]
    pub sizes: Vec<Size>,
    /// Texts per batch.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Tokens per text (every row is this long, no padding).
    #[arg(long, default_value_t = 128)]
    pub seq_len: usize,
    /// Timed repetitions of each measurement (the median is reported), after one warm-up.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
}
