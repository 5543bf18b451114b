//! STS evaluation: cosine similarity of each pair against its gold score, Spearman and Pearson,
//! per dataset and size; or the full layer × dim grid; or the first sentence of each pair at one
//! size and the second at another. All sizes come from one pass per batch.

use std::collections::HashMap;

use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};
use starbucks_data::eval::StsPair;
use starbucks_model::{Embedder, Size};

use crate::cross::{self, CrossGrid};
use crate::metrics::{pearson, spearman};

/// One dataset's scores at one size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Correlation {
    pub spearman: f64,
    pub pearson: f64,
}

/// Scores of one dataset at every size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StsScores {
    pub dataset: String,
    pub pairs: usize,
    pub per_size: Vec<(Size, Correlation)>,
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (*x as f64, *y as f64);
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    dot / (na.sqrt() * nb.sqrt()).max(1e-12)
}

/// Each pair of a dataset as two indices into the distinct sentences.
type PairIds = Vec<(usize, usize)>;

fn intern<'a>(text: &'a str, index: &mut HashMap<&'a str, usize>, sentences: &mut Vec<&'a str>) -> usize {
    *index.entry(text).or_insert_with(|| {
        sentences.push(text);
        sentences.len() - 1
    })
}

/// The distinct sentences of the datasets, and each pair's two indices into them.
fn unique_sentences(datasets: &[(String, Vec<StsPair>)]) -> (Vec<&str>, Vec<PairIds>) {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut sentences: Vec<&str> = Vec::new();
    let mut ids = Vec::with_capacity(datasets.len());
    for (_, pairs) in datasets {
        let mut dataset = Vec::with_capacity(pairs.len());
        for pair in pairs {
            let a = intern(&pair.sentence1, &mut index, &mut sentences);
            let b = intern(&pair.sentence2, &mut index, &mut sentences);
            dataset.push((a, b));
        }
        ids.push(dataset);
    }
    (sentences, ids)
}

fn correlate(vectors: &[Vec<f32>], ids: &[(usize, usize)], gold: &[f64], dims: usize) -> Correlation {
    let predicted: Vec<f64> = ids.iter().map(|&(a, b)| cosine(&vectors[a][..dims], &vectors[b][..dims])).collect();
    Correlation { spearman: spearman(&predicted, gold), pearson: pearson(&predicted, gold) }
}

/// Spearman of each dataset's cosines, the first sentences' vectors from `a` and the second's
/// from `b` (the same for one size), at their first `dims`; averaged over the datasets.
fn average_spearman(ids: &[PairIds], golds: &[Vec<f64>], a: &[Vec<f32>], b: &[Vec<f32>], dims: usize) -> f64 {
    let total: f64 = ids
        .iter()
        .zip(golds)
        .map(|(ids, gold)| {
            let predicted: Vec<f64> = ids.iter().map(|&(i, j)| cosine(&a[i][..dims], &b[j][..dims])).collect();
            spearman(&predicted, gold)
        })
        .sum();
    total / ids.len() as f64
}

/// Each dataset's gold scores.
fn golds(datasets: &[(String, Vec<StsPair>)]) -> Vec<Vec<f64>> {
    datasets.iter().map(|(_, pairs)| pairs.iter().map(|p| p.score).collect()).collect()
}

/// Every dataset at every size of `sizes`.
pub fn evaluate<B: Backend>(
    embedder: &Embedder<B>,
    datasets: &[(String, Vec<StsPair>)],
    sizes: &[Size],
) -> starbucks_model::Result<Vec<StsScores>> {
    let (sentences, ids) = unique_sentences(datasets);
    let by_size = embedder.embed_sizes(&sentences, sizes)?;
    Ok(datasets
        .iter()
        .zip(&ids)
        .map(|((name, pairs), ids)| {
            let gold: Vec<f64> = pairs.iter().map(|p| p.score).collect();
            StsScores {
                dataset: name.clone(),
                pairs: pairs.len(),
                per_size: sizes
                    .iter()
                    .zip(&by_size)
                    .map(|(&size, vectors)| (size, correlate(vectors, ids, &gold, size.dims)))
                    .collect(),
            }
        })
        .collect())
}

/// Spearman of the plain average over datasets on the whole grid: `values[i][j]` at layer
/// `layers[i]` and dims `dims[j]` (dims larger than the model are skipped).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    pub metric: String,
    pub layers: Vec<usize>,
    pub dims: Vec<usize>,
    pub values: Vec<Vec<f64>>,
}

pub fn evaluate_grid<B: Backend>(
    embedder: &Embedder<B>,
    datasets: &[(String, Vec<StsPair>)],
    dims: &[usize],
) -> starbucks_model::Result<Grid> {
    let full = embedder.full_size();
    let dims: Vec<usize> = dims.iter().copied().filter(|&d| d <= full.dims).collect();
    let layers: Vec<usize> = (1..=full.layers).collect();
    let sizes: Vec<Size> = layers.iter().map(|&l| Size::new(l, full.dims)).collect();
    let (sentences, ids) = unique_sentences(datasets);
    let by_layer = embedder.embed_sizes(&sentences, &sizes)?;
    let golds = golds(datasets);
    let values = by_layer
        .iter()
        .map(|vectors| dims.iter().map(|&d| average_spearman(&ids, &golds, vectors, vectors, d)).collect())
        .collect();
    Ok(Grid { metric: "STS Spearman (average over datasets)".into(), layers, dims, values })
}

/// Spearman averaged over `datasets` with each pair's first sentence at a size of `first` (the
/// grid's rows) and its second at a size of `second` (its columns), compared at the smaller
/// dims of the two ([`crate::cross`]). Every sentence is embedded once, at each layer either
/// side needs, from one pass per batch.
pub fn evaluate_cross<B: Backend>(
    embedder: &Embedder<B>,
    datasets: &[(String, Vec<StsPair>)],
    first: &[Size],
    second: &[Size],
) -> starbucks_model::Result<CrossGrid> {
    let width = embedder.full_size().dims;
    let layers = cross::by_layer(&[first, second].concat(), width);
    let (sentences, ids) = unique_sentences(datasets);
    let by_layer = embedder.embed_sizes(&sentences, &layers)?;
    let at = |size: Size| &by_layer[layers.iter().position(|l| l.layers == size.layers).expect("every layer embedded")];
    let golds = golds(datasets);
    let values: Vec<f64> = cross::pairs(first, second)
        .into_iter()
        .map(|(a, b)| average_spearman(&ids, &golds, at(a), at(b), cross::dims(a, b)))
        .collect();
    let names: Vec<&str> = datasets.iter().map(|(name, _)| name.as_str()).collect();
    let metric = format!("{} Spearman", names.join(" + "));
    Ok(CrossGrid::from_pairs(metric, first, second, &values))
}
