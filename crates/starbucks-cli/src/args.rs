//! Every subcommand's flags, declared in one place.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use starbucks_model::{Precision, Size};
use starbucks_serve::Options;

/// Train, evaluate and use 2D Matryoshka sentence embeddings (Starbucks, 2DMSE) on burn.
#[derive(Debug, Parser)]
#[command(name = "starbucks", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per run: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Embed sentences at several sizes and print their cosine-similarity matrix per size.
    Similarity(SimilarityArgs),
    /// Time one benchmark workload and print it as a JSON line (`cargo xtask bench` runs them
    /// all beside PyTorch).
    Bench(BenchArgs),
    /// Evaluate models on STS and retrieval at every size (or the layer × dim grid) and write
    /// Markdown, JSON and SVG reports.
    Eval(EvalArgs),
    /// Export a standalone (n layers, d dims) sentence-transformers / HF folder.
    Export(ExportArgs),
    /// Embed one text per line at one size, streaming, as JSON Lines or .npy.
    Embed(EmbedArgs),
    /// Serve a model over HTTP (TEI `/embed`, OpenAI `/v1/embeddings`); each request picks
    /// its size, and only its layers run.
    Serve(ServeArgs),
    /// SMAE pre-training from a TOML config (`configs/pretrain-*.toml`).
    Pretrain(TrainArgs),
    /// SRL / 2DMSE / single-size fine-tuning from a TOML config (`configs/finetune-*.toml`).
    Finetune(TrainArgs),
}

/// `pretrain` and `finetune`: a config file, overridden by `STARBUCKS_<SECTION>__<KEY>`
/// environment variables, then by `--set`. Bad input exits with code 2 and writes nothing.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The run's TOML config (see `configs/README.md` for every key).
    #[arg(long)]
    pub config: PathBuf,
    /// Override one key, e.g. `--set train.lr=1e-4 --set train.max_steps=200`; repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Output folder (default: the config's `output`).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Continue the run in the output folder from its newest valid checkpoint (a finished run
    /// is reused); starts the run when the folder is empty or missing.
    #[arg(long)]
    pub resume: bool,
    /// No progress bar (logs only; set STARBUCKS_LOG=info to see them).
    #[arg(long)]
    pub no_progress: bool,
}

/// The device a command runs on, for the commands that take one (training reads
/// `train.devices` from its config instead).
#[derive(Debug, Clone, Copy, Args)]
pub struct DeviceArg {
    /// GPU backends: the device's index: CUDA's numbering on cuda; on wgpu the adapters listed
    /// discrete first, then integrated, virtual and CPU. The CPU backends have one device.
    #[arg(long = "device", default_value_t = 0)]
    pub index: usize,
}

impl Command {
    /// The device index of a command that takes `--device`; training commands have none.
    pub fn device_index(&self) -> Option<usize> {
        match self {
            Command::Similarity(a) => Some(a.device.index),
            Command::Bench(a) => Some(a.device.index),
            Command::Eval(a) => Some(a.device.index),
            Command::Export(a) => Some(a.device.index),
            Command::Embed(a) => Some(a.device.index),
            Command::Serve(a) => Some(a.device.index),
            Command::Pretrain(_) | Command::Finetune(_) => None,
        }
    }
}

fn parse_dims(text: &str) -> Result<usize, String> {
    text.parse().ok().filter(|&d| d > 0).ok_or_else(|| format!("invalid dims '{text}': expected a positive integer"))
}

fn parse_size(text: &str) -> Result<Size, String> {
    text.parse().map_err(|e: starbucks_model::Error| e.to_string())
}

/// The sizes of one `--sizes` value (`Size::parse_list`: pairs, paper names, named lists).
#[derive(Debug, Clone)]
pub struct Sizes(Vec<Size>);

fn parse_sizes(text: &str) -> Result<Sizes, String> {
    match Size::parse_list(text) {
        Ok(sizes) if sizes.is_empty() => Err("no size given".into()),
        Ok(sizes) => Ok(Sizes(sizes)),
        Err(e) => Err(e.to_string()),
    }
}

/// Every size of the values of a repeated `--sizes`, in order.
fn flatten(lists: &[Sizes]) -> Vec<Size> {
    lists.iter().flat_map(|l| l.0.iter().copied()).collect()
}

#[derive(Debug, Args)]
pub struct SimilarityArgs {
    #[command(flatten)]
    pub device: DeviceArg,
    /// Model folder (HF or sentence-transformers: config.json, model.safetensors, tokenizer.json)
    /// or hub id (`org/name[@revision]`, fetched into the HuggingFace cache).
    #[arg(long)]
    pub model: PathBuf,
    /// Sizes as `layers,dims`, paper names (demi, short, tall, ...) or a named list (minilm,
    /// bert-base), space-separated in one argument; the flag may repeat.
    #[arg(long = "sizes", value_parser = parse_sizes, default_value = "minilm")]
    size_lists: Vec<Sizes>,
    /// Sentences to compare; a built-in handful when none are given.
    pub sentences: Vec<String>,
}

impl SimilarityArgs {
    pub fn sizes(&self) -> Vec<Size> {
        flatten(&self.size_lists)
    }
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub device: DeviceArg,
    /// The workload: train-srl, train-single, train-smae, train-mlm, forward-N (N layers), embed,
    /// one-LENGTH-N (one text per call: LENGTH short, medium or long; N layers).
    #[arg(long)]
    pub workload: String,
    /// Model folder or hub id (`org/name[@revision]`).
    #[arg(long, default_value = "assets/all-MiniLM-L6-v2")]
    pub model: PathBuf,
    /// The shipped data folder (NLI triplets, STS-B test, FineWeb sample).
    #[arg(long, default_value = "data")]
    pub data: PathBuf,
    /// Untimed iterations first.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Timed iterations (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub iters: usize,
    /// The arithmetic of `embed`, `one-LENGTH-N` and `forward-N`: f32, int8 or bf16 (those two on
    /// the CPU backend only; bf16 where the CPU has AVX-512 BF16).
    #[arg(long, default_value_t = Precision::F32)]
    pub precision: Precision,
    /// Triplets per step of `train-srl` and `train-single` (the first rows of the triplets file).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..))]
    pub triplets: u64,
    /// The size list of `train-srl` and `train-smae`, and the sizes `embed` scores STS-B at (as
    /// `similarity --sizes`; the model's full size last).
    #[arg(long = "sizes", value_parser = parse_sizes, default_value = "minilm")]
    size_lists: Vec<Sizes>,
}

impl BenchArgs {
    pub fn sizes(&self) -> Vec<Size> {
        flatten(&self.size_lists)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PoolingArg {
    /// The model folder's own pooling (`1_Pooling/config.json`; mean when absent).
    Model,
    Mean,
    Cls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SimilarityArg {
    Dot,
    Cosine,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub device: DeviceArg,
    /// Model folder or hub id; repeat to compare models (the first is the baseline of the differences).
    #[arg(long = "model", required = true)]
    pub models: Vec<PathBuf>,
    /// A display name per model, in the same order (default: the folder name).
    #[arg(long = "name")]
    pub names: Vec<String>,
    /// Sizes to evaluate (as `similarity --sizes`).
    #[arg(long = "sizes", value_parser = parse_sizes, default_value = "minilm")]
    size_lists: Vec<Sizes>,
    /// STS Benchmark files (STS-B layout); repeatable.
    #[arg(long = "stsb", default_value = "data/stsb/sts-test.csv")]
    pub stsb: Vec<PathBuf>,
    /// SemEval STS folders (`STS.input.*.txt` + `STS.gs.*.txt`), e.g. STS12 … STS16; repeatable.
    #[arg(long = "semeval")]
    pub semeval: Vec<PathBuf>,
    /// SICK file (`SICK_test_annotated.txt`).
    #[arg(long)]
    pub sick: Option<PathBuf>,
    /// STS sets in MTEB's layout (`sentence1`, `sentence2`, `score`): a hub dataset such as
    /// `hf://datasets/mteb/sts12-sts` (STS12–16, `stsbenchmark-sts`, `sickr-sts`), or a local
    /// Parquet / JSON Lines file; repeatable.
    #[arg(long = "sts")]
    pub sts: Vec<String>,
    /// The split of the --sts hub datasets.
    #[arg(long, default_value = "test")]
    pub sts_split: String,
    /// Also evaluate STS on the full layer × dim grid and draw its heat-map.
    #[arg(long)]
    pub grid: bool,
    /// Dims of the grid's columns (those above the model's width are skipped).
    #[arg(long, value_parser = parse_dims, default_value = "32 64 128 256 384 512 768", value_delimiter = ' ')]
    pub grid_dims: Vec<usize>,
    /// Also score every query size against every corpus size (STS: each pair's first sentence
    /// at a query size, its second at a corpus size), the two compared at the smaller dims: a
    /// query at (1,32) against the corpus at (6,384) is scored on the first 32 dims of each.
    /// Sizes as --sizes; each side comes from one pass per batch.
    #[arg(long = "query-sizes", value_parser = parse_sizes, requires = "corpus_size_lists")]
    query_size_lists: Vec<Sizes>,
    /// The corpus sizes of the --query-sizes grid (its columns).
    #[arg(long = "corpus-sizes", value_parser = parse_sizes, requires = "query_size_lists")]
    corpus_size_lists: Vec<Sizes>,
    /// Retrieval corpus: `id<TAB>text` (MS MARCO collection.tsv[.gz]).
    #[arg(long, requires_all = ["queries", "qrels"])]
    pub corpus: Option<PathBuf>,
    /// A BEIR folder (`corpus.jsonl[.gz]`, `queries.jsonl`, `qrels/<split>.tsv`), or a BEIR set
    /// on the hub (`hf://datasets/BeIR/scifact`: corpus and queries from it, qrels from
    /// `BeIR/scifact-qrels`); repeatable, beside --corpus/--queries/--qrels. With more than one
    /// set the report adds their average nDCG@10.
    #[arg(long)]
    pub beir: Vec<String>,
    /// The BEIR qrels split.
    #[arg(long, default_value = "test")]
    pub beir_split: String,
    /// Retrieval queries: `id<TAB>text`.
    #[arg(long)]
    pub queries: Option<PathBuf>,
    /// Retrieval judgements: TREC qrels.
    #[arg(long)]
    pub qrels: Option<PathBuf>,
    /// Re-rank this TREC run (e.g. BM25 top 100) instead of searching the whole --corpus.
    #[arg(long, requires = "corpus")]
    pub rerank: Option<PathBuf>,
    /// Results kept per query.
    #[arg(long, default_value_t = 1000)]
    pub depth: usize,
    /// Grade from which a passage counts as relevant for MRR and recall (TREC DL: 2).
    #[arg(long, default_value_t = 2)]
    pub relevance_level: i32,
    #[arg(long, value_enum, default_value_t = SimilarityArg::Dot)]
    pub similarity: SimilarityArg,
    /// Pooling for retrieval (the paper: CLS).
    #[arg(long, value_enum, default_value_t = PoolingArg::Model)]
    pub retrieval_pooling: PoolingArg,
    /// Texts per forward pass.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// The arithmetic of the matrix products: f32; int8 (int8 weights, activations quantised per
    /// token at run time); or bf16 (bf16 weights and activations, f32 sums; a CPU with AVX-512
    /// BF16). int8 and bf16 run on the CPU backend only.
    #[arg(long, default_value_t = Precision::F32)]
    pub precision: Precision,
    /// Truncate every text at this many tokens (default: each model's
    /// `sentence_bert_config.json`, else 512).
    #[arg(long)]
    pub max_seq_length: Option<usize>,
    /// Skip measuring texts/s per size.
    #[arg(long)]
    pub no_throughput: bool,
    /// Folder for report.md, report.json, the heat-maps and the TREC runs.
    #[arg(long)]
    pub output: PathBuf,
}

impl EvalArgs {
    pub fn sizes(&self) -> Vec<Size> {
        flatten(&self.size_lists)
    }

    /// The query sizes and corpus sizes of the cross grid (both empty without one).
    pub fn cross_sizes(&self) -> (Vec<Size>, Vec<Size>) {
        (flatten(&self.query_size_lists), flatten(&self.corpus_size_lists))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// sentence-transformers folder (modules.json, pooling, Dense cut, optional Normalize).
    SentenceTransformers,
    /// A plain HF BertModel folder (config, weights, tokenizer): every dim, no pooling files.
    Hf,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub device: DeviceArg,
    /// Model folder or hub id to export from.
    #[arg(long)]
    pub model: PathBuf,
    /// The size to export: a paper name or `layers,dims`.
    #[arg(long, value_parser = parse_size)]
    pub size: Size,
    #[arg(long, value_enum, default_value_t = ExportFormat::SentenceTransformers)]
    pub format: ExportFormat,
    /// Append a Normalize module.
    #[arg(long)]
    pub normalize: bool,
    /// The sizes the model was trained for, recorded in config.json (default: the exported one).
    #[arg(long = "trained-sizes", value_parser = parse_sizes)]
    trained_size_lists: Vec<Sizes>,
    /// Output folder (must not exist).
    #[arg(long)]
    pub output: PathBuf,
}

impl ExportArgs {
    pub fn trained_sizes(&self) -> Vec<Size> {
        flatten(&self.trained_size_lists)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EmbedFormat {
    /// One JSON array of floats per line.
    Jsonl,
    /// A float32 NumPy array `[texts, dims]` (needs --output).
    Npy,
}

#[derive(Debug, Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub device: DeviceArg,
    /// Model folder or hub id (`org/name[@revision]`).
    #[arg(long)]
    pub model: PathBuf,
    /// Size to embed at (default: the full model).
    #[arg(long, value_parser = parse_size)]
    pub size: Option<Size>,
    /// Input file with one text per line; `-` for standard input.
    #[arg(long, default_value = "-")]
    pub input: PathBuf,
    #[arg(long, value_enum, default_value_t = EmbedFormat::Jsonl)]
    pub format: EmbedFormat,
    /// Output file; standard output when absent (JSON Lines only).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Texts per forward pass.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// The arithmetic of the matrix products: f32; int8 (int8 weights, activations quantised per
    /// token at run time); or bf16 (bf16 weights and activations, f32 sums; a CPU with AVX-512
    /// BF16). int8 and bf16 run on the CPU backend only.
    #[arg(long, default_value_t = Precision::F32)]
    pub precision: Precision,
}

/// `serve`: TEI's flag names and meanings where TEI has the flag.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub device: DeviceArg,
    /// Model folder (HF or sentence-transformers) or hub id (`org/name[@revision]`).
    #[arg(long)]
    pub model: PathBuf,
    // The server's settings: their flags, help and defaults are declared on `Options`.
    #[command(flatten)]
    pub options: Options,
}
