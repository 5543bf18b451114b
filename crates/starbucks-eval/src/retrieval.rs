//! Retrieval: exact search over a corpus embedded once (every size of the list from the same
//! pass over each chunk), or re-ranking of a given run; one TREC run per size; or queries at
//! one size against the corpus at another (`evaluate_cross`).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fmt::Write;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};
use starbucks_model::{Embedder, Size};

use crate::cross;
use crate::metrics::{Judgements, RetrievalScores, evaluate_run};

/// How query and passage vectors are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Similarity {
    /// Inner product (the paper's retrieval setting, CLS pooling, no normalisation).
    Dot,
    Cosine,
}

/// What to rank: a corpus, queries, their judgements, and optionally the candidates to re-rank.
pub struct RetrievalTask<'a> {
    pub corpus: &'a [(String, String)],
    pub queries: &'a [(String, String)],
    pub qrels: &'a HashMap<String, Judgements>,
    /// Re-ranking mode: each query's candidate document ids (e.g. BM25's top 100).
    pub candidates: Option<&'a HashMap<String, Vec<String>>>,
}

/// A run: query id → (document id, score), best first.
pub type Run = HashMap<String, Vec<(String, f64)>>;

/// The result at one size.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SizeRun {
    pub size: Size,
    pub scores: RetrievalScores,
    #[serde(skip)]
    pub run: Run,
}

/// Settings of a retrieval evaluation.
#[derive(Debug, Clone, Copy)]
pub struct RetrievalConfig {
    pub similarity: Similarity,
    /// Results kept per query (1000 for MS MARCO).
    pub depth: usize,
    /// Passages embedded per chunk (memory is bounded by this, not by the corpus).
    pub chunk: usize,
    /// Grade from which a document counts as relevant for MRR and recall (2 for TREC DL).
    pub level: i32,
}

impl Default for RetrievalConfig {
    fn default() -> Self {
        RetrievalConfig { similarity: Similarity::Dot, depth: 1000, chunk: 2048, level: 2 }
    }
}

/// A score and a corpus index, ordered by score (total order), then index.
struct Scored(f64, usize);
impl PartialEq for Scored {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
    }
}

/// Rows of `vectors` cut to `dims` as one `[rows, dims]` matrix on `device`; for cosine each
/// row is scaled to unit length, so that one product gives every score.
fn matrix<B: Backend>(vectors: &[Vec<f32>], dims: usize, kind: Similarity, device: &B::Device) -> Tensor<B, 2> {
    let flat: Vec<f32> = vectors.iter().flat_map(|v| v[..dims].iter().copied()).collect();
    let m = Tensor::<B, 2>::from_data(TensorData::new(flat, [vectors.len(), dims]), device);
    match kind {
        Similarity::Dot => m,
        Similarity::Cosine => {
            let norm = m.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
            m / norm
        }
    }
}

/// Ranks the corpus (or each query's candidates) at every size. Scores are one matrix product
/// per chunk and size on the embedder's backend (f32), `[queries, dims] × [dims, passages]`.
pub fn evaluate<B: Backend>(
    embedder: &Embedder<B>,
    task: &RetrievalTask<'_>,
    sizes: &[Size],
    config: RetrievalConfig,
) -> starbucks_model::Result<Vec<SizeRun>> {
    let pairs: Vec<(Size, Size)> = sizes.iter().map(|&s| (s, s)).collect();
    let ranked = rank(embedder, task, &pairs, config)?;
    Ok(sizes.iter().zip(ranked).map(|(&size, (run, scores))| SizeRun { size, scores, run }).collect())
}

/// The scores of every (query size, corpus size) pair of [`cross::pairs`]`(queries, corpus)`,
/// in that order, each pair compared at [`cross::dims`]: every chunk of the corpus is embedded
/// at all the sizes it is compared at from one pass, as are the queries.
pub fn evaluate_cross<B: Backend>(
    embedder: &Embedder<B>,
    task: &RetrievalTask<'_>,
    queries: &[Size],
    corpus: &[Size],
    config: RetrievalConfig,
) -> starbucks_model::Result<Vec<RetrievalScores>> {
    let ranked = rank(embedder, task, &cross::pairs(queries, corpus), config)?;
    Ok(ranked.into_iter().map(|(_, scores)| scores).collect())
}

/// The run and scores of each (query size, corpus size) pair.
fn rank<B: Backend>(
    embedder: &Embedder<B>,
    task: &RetrievalTask<'_>,
    pairs: &[(Size, Size)],
    config: RetrievalConfig,
) -> starbucks_model::Result<Vec<(Run, RetrievalScores)>> {
    let device = embedder.device();
    // Each side embedded once per (layer, dims) it is compared at, so that an embedder that
    // normalises does so after the cut, as `embed` at that size would.
    let at = |side: fn(&(Size, Size)) -> usize| -> Vec<Size> {
        let mut sizes: Vec<Size> = Vec::new();
        for pair in pairs {
            let size = Size::new(side(pair), cross::dims(pair.0, pair.1));
            if !sizes.contains(&size) {
                sizes.push(size);
            }
        }
        sizes
    };
    let (query_sizes, corpus_sizes) = (at(|p| p.0.layers), at(|p| p.1.layers));
    // Per pair: where its query side and its corpus side are among those sizes.
    let slot = |sizes: &[Size], layers: usize, dims: usize| {
        sizes.iter().position(|&s| s == Size::new(layers, dims)).expect("embedded")
    };
    let slots: Vec<(usize, usize)> = pairs
        .iter()
        .map(|&(q, c)| {
            let dims = cross::dims(q, c);
            (slot(&query_sizes, q.layers, dims), slot(&corpus_sizes, c.layers, dims))
        })
        .collect();
    let query_texts: Vec<&str> = task.queries.iter().map(|(_, t)| t.as_str()).collect();
    let queries = embedder.embed_sizes(&query_texts, &query_sizes)?;
    let wanted: Option<HashSet<&str>> = task
        .candidates
        .map(|c| task.queries.iter().filter_map(|(qid, _)| c.get(qid)).flatten().map(String::as_str).collect());
    let corpus: Vec<&(String, String)> =
        task.corpus.iter().filter(|(id, _)| wanted.as_ref().is_none_or(|w| w.contains(id.as_str()))).collect();
    // Re-ranking: each query's candidates as sorted corpus indices (unknown ids are dropped).
    let allowed: Option<Vec<Vec<usize>>> = task.candidates.map(|c| {
        let index: HashMap<&str, usize> = corpus.iter().enumerate().map(|(i, (id, _))| (id.as_str(), i)).collect();
        task.queries
            .iter()
            .map(|(qid, _)| {
                let mut docs: Vec<usize> =
                    c.get(qid).into_iter().flatten().filter_map(|id| index.get(id.as_str()).copied()).collect();
                docs.sort_unstable();
                docs.dedup();
                docs
            })
            .collect()
    });
    let query_matrices: Vec<Tensor<B, 2>> =
        query_sizes.iter().zip(&queries).map(|(size, q)| matrix(q, size.dims, config.similarity, device)).collect();

    // heaps[pair][query]: the best `depth` (score, corpus index), smallest on top.
    let mut heaps: Vec<Vec<BinaryHeap<Reverse<Scored>>>> =
        pairs.iter().map(|_| task.queries.iter().map(|_| BinaryHeap::new()).collect()).collect();
    let chunk_len = config.chunk.max(1);
    // Time spent scoring and ranking, apart from embedding (logged at the end).
    let mut ranking = std::time::Duration::ZERO;
    for (chunk_no, chunk) in corpus.chunks(chunk_len).enumerate() {
        let texts: Vec<&str> = chunk.iter().map(|(_, t)| t.as_str()).collect();
        let passages = embedder.embed_sizes(&texts, &corpus_sizes)?;
        let started = std::time::Instant::now();
        let first = chunk_no * chunk_len;
        let docs = first..first + chunk.len();
        // Each embedded size's matrix once, shared by the pairs that compare at it (none
        // without queries: there is nothing to score).
        let passage_matrices: Vec<Tensor<B, 2>> = if task.queries.is_empty() {
            Vec::new()
        } else {
            let transposed =
                |(size, p): (&Size, &Vec<Vec<f32>>)| matrix(p, size.dims, config.similarity, device).transpose();
            corpus_sizes.iter().zip(&passages).map(transposed).collect()
        };
        for (p, &(query_slot, corpus_slot)) in slots.iter().enumerate() {
            if task.queries.is_empty() {
                break;
            }
            let corpus_matrix = passage_matrices[corpus_slot].clone();
            let scores = query_matrices[query_slot].clone().matmul(corpus_matrix).into_data();
            let scores = scores.as_slice::<f32>().expect("an f32 product");
            for (q, heap) in heaps[p].iter_mut().enumerate() {
                let row = &scores[q * chunk.len()..(q + 1) * chunk.len()];
                let mut push = |doc: usize| {
                    heap.push(Reverse(Scored(row[doc - first] as f64, doc)));
                    if heap.len() > config.depth {
                        heap.pop();
                    }
                };
                match &allowed {
                    Some(allowed) => {
                        let mine = &allowed[q];
                        let from = mine.partition_point(|&d| d < docs.start);
                        mine[from..].iter().take_while(|&&d| d < docs.end).for_each(|&d| push(d));
                    }
                    None => docs.clone().for_each(push),
                }
            }
        }
        ranking += started.elapsed();
        tracing::info!(done = first + chunk.len(), of = corpus.len(), "passages embedded");
    }
    tracing::info!(seconds = format!("{:.3}", ranking.as_secs_f64()), "passages scored and ranked");
    Ok(heaps
        .into_iter()
        .map(|heaps| {
            let run: Run = task
                .queries
                .iter()
                .zip(heaps)
                .map(|((qid, _), heap)| {
                    let mut results: Vec<(String, f64)> =
                        heap.into_iter().map(|Reverse(Scored(s, d))| (corpus[d].0.clone(), s)).collect();
                    results.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
                    (qid.clone(), results)
                })
                .collect();
            let (_, scores) = evaluate_run(&run, task.qrels, config.level);
            (run, scores)
        })
        .collect())
}

/// A run in TREC format: `qid Q0 docid rank score tag`, queries sorted by id.
pub fn trec_run_text(run: &Run, tag: &str) -> String {
    let mut out = String::new();
    let mut qids: Vec<&String> = run.keys().collect();
    qids.sort();
    for qid in qids {
        for (rank, (doc, score)) in run[qid].iter().enumerate() {
            writeln!(out, "{qid} Q0 {doc} {} {score:.6} {tag}", rank + 1).expect("a String takes any write");
        }
    }
    out
}
