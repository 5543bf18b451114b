//! `starbucks eval`: STS and retrieval at every size (and the grid), for one or more models.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;
use starbucks_data::eval::{
    Beir, StsPair, read_beir, read_beir_files, read_id_text, read_semeval_dir, read_sick, read_sts_table, read_stsb,
    read_trec_qrels, read_trec_run,
};
use starbucks_data::hub::HubDataset;
use starbucks_eval::cross::CrossGrid;
use starbucks_eval::metrics::RetrievalScores;
use starbucks_eval::report::{Report, Row, compare, cross_heatmap_svg, heatmap_svg};
use starbucks_eval::retrieval::{RetrievalConfig, RetrievalTask, Similarity, trec_run_text};
use starbucks_eval::{retrieval, sts, throughput};
use starbucks_files::{check_writable, write_atomic};
use starbucks_hub::{Hub, Repo};
use starbucks_model::{Embedder, Pooling};

use crate::args::{EvalArgs, PoolingArg, SimilarityArg};

/// Named STS datasets, as `sts::evaluate` takes them.
type StsSets = Vec<(String, Vec<StsPair>)>;

/// The STS datasets, the file or folder each was read from (same order), and which of them are
/// benchmarks of their own (the others are a SemEval year's subsets).
struct StsData {
    sets: StsSets,
    sources: Vec<PathBuf>,
    benchmark: Vec<bool>,
}

impl StsData {
    fn push(&mut self, name: String, pairs: Vec<StsPair>, source: PathBuf, benchmark: bool) {
        self.sets.push((name, pairs));
        self.sources.push(source);
        self.benchmark.push(benchmark);
    }

    /// The benchmarks alone: what the grid and the average are over.
    fn benchmarks(&self) -> StsSets {
        self.sets.iter().zip(&self.benchmark).filter(|(_, b)| **b).map(|(s, _)| s.clone()).collect()
    }
}

/// A SemEval year (STS12 … STS16) is one benchmark scored over all its pairs at once, as MTEB and
/// SentEval's "all" do; each subset is reported as well, but not averaged.
fn sts_datasets(args: &EvalArgs) -> Result<StsData> {
    let mut data = StsData { sets: Vec::new(), sources: Vec::new(), benchmark: Vec::new() };
    for path in &args.stsb {
        data.push(file_stem(path), read_stsb(path)?, path.clone(), true);
    }
    for dir in &args.semeval {
        let subsets = read_semeval_dir(dir)?;
        let all: Vec<StsPair> = subsets.values().flatten().cloned().collect();
        data.push(file_stem(dir), all, dir.clone(), true);
        for (name, pairs) in subsets {
            let source = dir.join(format!("STS.input.{name}.txt"));
            data.push(format!("{}/{name}", file_stem(dir)), pairs, source, false);
        }
    }
    if let Some(path) = &args.sick {
        data.push("SICK-R".into(), read_sick(path)?, path.clone(), true);
    }
    for spec in &args.sts {
        let (name, files) = match HubDataset::parse(spec) {
            Some(dataset) => {
                let dataset = dataset?;
                (dataset.name().to_string(), dataset.fetch(&Hub::from_env(), Some(&args.sts_split))?)
            }
            None => (file_stem(Path::new(spec)), vec![PathBuf::from(spec)]),
        };
        let pairs = files.iter().map(|f| read_sts_table(f)).collect::<Result<Vec<_>, _>>()?.concat();
        data.push(name, pairs, PathBuf::from(spec), true);
    }
    Ok(data)
}

fn file_stem(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().trim_end_matches(".gz").trim_end_matches(".csv").to_string())
        .unwrap_or_default()
}

struct Retrieval {
    name: String,
    /// The BEIR folder or the queries file: what the rows name as their source.
    source: PathBuf,
    corpus: Vec<(String, String)>,
    queries: Vec<(String, String)>,
    qrels: HashMap<String, HashMap<String, i32>>,
    candidates: Option<HashMap<String, Vec<String>>>,
    /// A BEIR set: counted in the BEIR average.
    beir: bool,
}

/// The retrieval sets: the --corpus/--queries/--qrels one (re-ranking --rerank), then each BEIR set.
fn retrieval_data(args: &EvalArgs) -> Result<Vec<Retrieval>> {
    let mut sets = Vec::new();
    if let (Some(corpus), Some(queries), Some(qrels)) = (&args.corpus, &args.queries, &args.qrels) {
        let candidates = match &args.rerank {
            Some(path) => {
                let mut by_query: HashMap<String, Vec<String>> = HashMap::new();
                for entry in read_trec_run(path)? {
                    by_query.entry(entry.query_id).or_default().push(entry.doc_id);
                }
                Some(by_query)
            }
            None => None,
        };
        let set = Retrieval {
            name: file_stem(queries),
            source: queries.clone(),
            corpus: read_id_text(corpus)?.collect::<Result<Vec<_>, _>>()?,
            queries: read_id_text(queries)?.collect::<Result<Vec<_>, _>>()?,
            qrels: read_trec_qrels(qrels)?,
            candidates,
            beir: false,
        };
        sets.push(set.judged_only());
    }
    for spec in &args.beir {
        let (name, beir) = match HubDataset::parse(spec) {
            Some(dataset) => hub_beir(&dataset?, &args.beir_split)?,
            None => (file_stem(Path::new(spec)), read_beir(Path::new(spec), &args.beir_split)?),
        };
        let corpus = beir
            .corpus
            .into_iter()
            .map(|d| (d.id, if d.title.is_empty() { d.text } else { format!("{} {}", d.title, d.text) }))
            .collect();
        let source = PathBuf::from(spec);
        let set =
            Retrieval { name, source, corpus, queries: beir.queries, qrels: beir.qrels, candidates: None, beir: true };
        sets.push(set.judged_only());
    }
    Ok(sets)
}

impl Retrieval {
    /// Only the judged queries are asked: an unjudged one has no score to count.
    fn judged_only(mut self) -> Self {
        self.queries.retain(|(id, _)| self.qrels.contains_key(id));
        self
    }
}

/// A BEIR set on the hub, as the BEIR authors published it: `BeIR/<name>` holds `corpus` and
/// `queries`, `BeIR/<name>-qrels` one TSV per split.
fn hub_beir(dataset: &HubDataset, split: &str) -> Result<(String, Beir)> {
    let hub = Hub::from_env();
    let one = |d: &HubDataset, split: Option<&str>| -> Result<PathBuf> {
        let files = d.fetch(&hub, split)?;
        match files.as_slice() {
            [file] => Ok(file.clone()),
            _ => bail!("{}: expected one file of `{}`, found {}", d.spec, d.path, files.len()),
        }
    };
    let corpus = one(&dataset.with_path("corpus"), None)?;
    let queries = one(&dataset.with_path("queries"), None)?;
    let qrels_id = format!("{}-qrels", dataset.repo.id);
    let qrels =
        HubDataset { spec: format!("hf://datasets/{qrels_id}"), repo: Repo::dataset(&qrels_id)?, path: String::new() };
    let qrels = one(&qrels, Some(split))?;
    Ok((dataset.name().to_string(), read_beir_files(&corpus, &queries, &qrels)?))
}

/// A retrieval measure: its label and how it is read from the scores.
type Measure = (&'static str, fn(&RetrievalScores) -> f64);

/// The retrieval measures of the report, each row named by its label; the query × corpus grids
/// take the first two.
const MEASURES: [Measure; 4] = [
    ("nDCG@10", |s| s.ndcg_cut_10),
    ("MRR@10", |s| s.mrr_10),
    ("R@100", |s| s.recall_100),
    ("R@1000", |s| s.recall_1000),
];

pub fn run<B: Backend>(args: EvalArgs, device: &B::Device) -> Result<()> {
    if !args.names.is_empty() && args.names.len() != args.models.len() {
        bail!("give one --name per --model ({} names for {} models)", args.names.len(), args.models.len());
    }
    let sizes = args.sizes();
    let (query_sizes, corpus_sizes) = args.cross_sizes();
    // A size given twice would count twice in the average (and be a grid's row or column twice).
    for (flag, list) in [("--sizes", &sizes), ("--query-sizes", &query_sizes), ("--corpus-sizes", &corpus_sizes)] {
        if let Some((i, size)) = list.iter().enumerate().find(|(i, s)| list[..*i].contains(s)) {
            bail!("{flag}: {size} is given twice (entry {})", i + 1);
        }
    }
    let sts_data = sts_datasets(&args)?;
    let datasets = &sts_data.sets;
    let retrieval_sets = retrieval_data(&args)?;
    check_writable(&args.output).map_err(anyhow::Error::msg)?;

    // Every file is written at the end, each whole: a failed run creates no folder and leaves
    // an earlier report as it was.
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    let mut reports = Vec::new();
    for (i, dir) in args.models.iter().enumerate() {
        let name = args.names.get(i).cloned().unwrap_or_else(|| file_stem(dir));
        let mut embedder = Embedder::<B>::from_pretrained(dir, device)?
            .with_batch_size(args.batch_size)
            .with_precision(args.precision)?;
        if let Some(max) = args.max_seq_length {
            embedder =
                embedder.with_max_seq_length(max).with_context(|| format!("--max-seq-length for {}", dir.display()))?;
        }
        for size in sizes.iter().chain(&query_sizes).chain(&corpus_sizes) {
            size.check_within(embedder.full_size())?;
        }
        let mut cross = Vec::new();
        let mut rows = Vec::new();
        if !datasets.is_empty() {
            let scores = sts::evaluate(&embedder, datasets, &sizes)?;
            for (s, source) in scores.iter().zip(&sts_data.sources) {
                let values = s.per_size.iter().map(|(_, c)| c.spearman).collect();
                rows.push(Row::new(&s.dataset, Some(source), "Spearman", values));
            }
            // A dev split is for choosing, not for reporting: the average leaves it out (STS-B
            // dev and test averaged together would count one benchmark twice).
            let averaged: Vec<_> = scores
                .iter()
                .zip(&sts_data.benchmark)
                .filter(|(s, benchmark)| **benchmark && !s.dataset.contains("dev"))
                .map(|(s, _)| s)
                .collect();
            if averaged.len() > 1 {
                let avg = (0..sizes.len())
                    .map(|j| averaged.iter().map(|s| s.per_size[j].1.spearman).sum::<f64>() / averaged.len() as f64)
                    .collect();
                let names: Vec<&str> = averaged.iter().map(|s| s.dataset.as_str()).collect();
                let name = format!("STS average Spearman ({})", names.join(", "));
                rows.push(Row { name, values: avg, source: None, measure: "Spearman".into() });
            }
        }
        if !query_sizes.is_empty() && !datasets.is_empty() {
            cross.push(sts::evaluate_cross(&embedder, &sts_data.benchmarks(), &query_sizes, &corpus_sizes)?);
        }
        let grid = if args.grid && !datasets.is_empty() {
            Some(sts::evaluate_grid(&embedder, &sts_data.benchmarks(), &args.grid_dims)?)
        } else {
            None
        };
        if let Some(grid) = &grid {
            files.push((format!("grid-{name}.svg").into(), heatmap_svg(grid, &format!("{name}: {}", grid.metric))));
        }
        let throughput = if args.no_throughput || datasets.is_empty() {
            Vec::new()
        } else {
            let texts: Vec<&str> =
                datasets[0].1.iter().take(256).flat_map(|p| [p.sentence1.as_str(), p.sentence2.as_str()]).collect();
            throughput(&embedder, &texts, &sizes)?.into_iter().map(|(_, t)| t).collect()
        };
        if !retrieval_sets.is_empty() {
            let pooling = match args.retrieval_pooling {
                PoolingArg::Model => embedder.sentence_config().pooling,
                PoolingArg::Mean => Pooling::Mean,
                PoolingArg::Cls => Pooling::Cls,
            };
            // STS, the grid and the throughput are done: the same loaded model serves retrieval.
            let retriever = embedder.with_pooling(pooling).with_normalize(false);
            let config = RetrievalConfig {
                similarity: match args.similarity {
                    SimilarityArg::Dot => Similarity::Dot,
                    SimilarityArg::Cosine => Similarity::Cosine,
                },
                depth: args.depth,
                level: args.relevance_level,
                ..Default::default()
            };
            let mut beir_ndcg = Vec::new();
            for data in &retrieval_sets {
                let task = RetrievalTask {
                    corpus: &data.corpus,
                    queries: &data.queries,
                    qrels: &data.qrels,
                    candidates: data.candidates.as_ref(),
                };
                let runs = retrieval::evaluate(&retriever, &task, &sizes, config)?;
                // One set: `runs/<model>/`; several: a folder per set below it.
                let folder = match retrieval_sets.len() {
                    1 => Path::new("runs").join(&name),
                    _ => Path::new("runs").join(&name).join(&data.name),
                };
                for r in &runs {
                    let (layers, dims) = (r.size.layers, r.size.dims);
                    let path = folder.join(format!("run.{layers}x{dims}.trec"));
                    files.push((path, trec_run_text(&r.run, &format!("{name}-{layers}x{dims}"))));
                }
                for (label, pick) in MEASURES {
                    let values: Vec<f64> = runs.iter().map(|r| pick(&r.scores)).collect();
                    if label == "nDCG@10" && data.beir {
                        beir_ndcg.push((data.name.clone(), values.clone()));
                    }
                    rows.push(Row::new(&data.name, Some(&data.source), label, values));
                }
                if !query_sizes.is_empty() {
                    let scores = retrieval::evaluate_cross(&retriever, &task, &query_sizes, &corpus_sizes, config)?;
                    for (label, pick) in &MEASURES[..2] {
                        let values: Vec<f64> = scores.iter().map(pick).collect();
                        let metric = format!("{} {label}", data.name);
                        cross.push(CrossGrid::from_pairs(metric, &query_sizes, &corpus_sizes, &values));
                    }
                }
            }
            // BEIR's own summary: the mean nDCG@10 over its sets.
            if beir_ndcg.len() > 1 {
                let avg = (0..sizes.len())
                    .map(|j| beir_ndcg.iter().map(|(_, v)| v[j]).sum::<f64>() / beir_ndcg.len() as f64)
                    .collect();
                let names: Vec<&str> = beir_ndcg.iter().map(|(n, _)| n.as_str()).collect();
                let name = format!("BEIR average nDCG@10 ({})", names.join(", "));
                rows.push(Row { name, values: avg, source: None, measure: "nDCG@10".into() });
            }
        }
        for (i, grid) in cross.iter().enumerate() {
            let title = format!("{name}: {}", grid.metric);
            files.push((format!("cross-{name}-{}.svg", i + 1).into(), cross_heatmap_svg(grid, &title)));
        }
        reports.push(Report {
            model: name,
            precision: args.precision,
            sizes: sizes.clone(),
            rows,
            throughput,
            grid,
            cross,
        });
    }

    let mut markdown: String = reports.iter().map(|r| r.to_markdown() + "\n").collect();
    if reports.len() > 1 {
        markdown.push_str("## Comparison (difference from the first model)\n\n");
        markdown.push_str(&compare(&reports));
    }
    print!("{markdown}");
    files.push(("report.md".into(), markdown));
    files.push(("report.json".into(), serde_json::to_string_pretty(&reports)? + "\n"));
    for (file, text) in files {
        let path = args.output.join(file);
        let folder = path.parent().expect("a file under the output folder");
        std::fs::create_dir_all(folder).with_context(|| format!("{}: cannot create", folder.display()))?;
        write_atomic(&path, text.as_bytes()).with_context(|| format!("{}: cannot write", path.display()))?;
    }
    Ok(())
}
