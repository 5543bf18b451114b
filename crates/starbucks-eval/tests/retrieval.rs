//! Retrieval scoring on the backend (one f32 matrix product per chunk and size) against the
//! scalar f64 scoring it replaced, on real data: all-MiniLM-L6-v2 re-ranking the BM25 top 100 of
//! the first TREC DL 2020 queries, in chunks smaller than the candidate pool, at three sizes.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use burn::backend::Flex;
use starbucks_data::eval::{read_id_text, read_trec_qrels, read_trec_run};
use starbucks_eval::metrics::evaluate_run;
use starbucks_eval::retrieval::{RetrievalConfig, RetrievalTask, Run, Similarity, evaluate};
use starbucks_model::{Embedder, Size};

fn root() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("../..")
}

/// The scalar scoring: f64 sums over the first `dims` of each vector, sorted best first.
/// `queries[q]` and `passages[id]` are the vectors at this size.
fn scalar_run(
    queries: &[(String, Vec<f32>)],
    candidates: &HashMap<String, Vec<String>>,
    passages: &HashMap<&str, &Vec<f32>>,
    similarity: Similarity,
) -> Run {
    let score = |a: &[f32], b: &[f32]| -> f64 {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
        match similarity {
            Similarity::Dot => dot,
            Similarity::Cosine => {
                let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
                dot / (norm(a) * norm(b)).max(1e-12)
            }
        }
    };
    queries
        .iter()
        .map(|(qid, query)| {
            let mut results: Vec<(String, f64)> = candidates[qid]
                .iter()
                .filter_map(|d| passages.get(d.as_str()).map(|p| (d.clone(), score(query, p))))
                .collect();
            results.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
            (qid.clone(), results)
        })
        .collect()
}

#[test]
fn backend_scoring_ranks_as_the_scalar_scoring_did() {
    let model = root().join("assets/all-MiniLM-L6-v2");
    assert!(model.join("model.safetensors").is_file(), "run `cargo xtask fetch minilm` first");
    let data = root().join("data/msmarco-dl20");
    let qrels = read_trec_qrels(&data.join("qrels.dl20.in_corpus.txt")).unwrap();
    let queries: Vec<(String, String)> = read_id_text(&data.join("queries.dl20.tsv"))
        .unwrap()
        .map(Result::unwrap)
        .filter(|(id, _)| qrels.contains_key(id))
        .take(4)
        .collect();
    let mut candidates: HashMap<String, Vec<String>> = HashMap::new();
    for entry in read_trec_run(&data.join("bm25.dl20.top100.trec")).unwrap() {
        candidates.entry(entry.query_id).or_default().push(entry.doc_id);
    }
    let wanted: HashSet<&String> = queries.iter().flat_map(|(q, _)| &candidates[q]).collect();
    let corpus: Vec<(String, String)> = read_id_text(&data.join("corpus.tsv.gz"))
        .unwrap()
        .map(Result::unwrap)
        .filter(|(id, _)| wanted.contains(id))
        .collect();
    let embedder = Embedder::<Flex>::from_pretrained(&model, &Default::default()).unwrap();

    let task = RetrievalTask { corpus: &corpus, queries: &queries, qrels: &qrels, candidates: Some(&candidates) };
    let sizes = [Size::new(1, 32), Size::new(3, 96), Size::new(6, 384)];
    let query_vectors = embedder.embed_sizes(&queries.iter().map(|(_, t)| t).collect::<Vec<_>>(), &sizes).unwrap();
    let passage_vectors = embedder.embed_sizes(&corpus.iter().map(|(_, t)| t).collect::<Vec<_>>(), &sizes).unwrap();
    for similarity in [Similarity::Dot, Similarity::Cosine] {
        // A chunk smaller than the pool, so candidates fall in several chunks.
        let config = RetrievalConfig { similarity, depth: 1000, chunk: 96, level: 2 };
        let runs = evaluate(&embedder, &task, &sizes, config).unwrap();
        for (s, (size, ours)) in sizes.iter().zip(&runs).enumerate() {
            let query_at: Vec<(String, Vec<f32>)> =
                queries.iter().map(|(id, _)| id.clone()).zip(query_vectors[s].clone()).collect();
            let passage_at: HashMap<&str, &Vec<f32>> =
                corpus.iter().map(|(id, _)| id.as_str()).zip(&passage_vectors[s]).collect();
            let scalar = scalar_run(&query_at, &candidates, &passage_at, similarity);
            let (_, theirs) = evaluate_run(&scalar, &qrels, 2);
            let what = format!("{similarity:?} at {size}");
            assert!((ours.scores.ndcg_cut_10 - theirs.ndcg_cut_10).abs() < 1e-6, "{what}: nDCG@10");
            assert!((ours.scores.mrr_10 - theirs.mrr_10).abs() < 1e-6, "{what}: MRR@10");
            for (qid, expected) in &scalar {
                let got = &ours.run[qid];
                assert_eq!(got.len(), expected.len(), "{what}: query {qid} keeps every candidate");
                for ((doc, score), (expected_doc, expected_score)) in got.iter().zip(expected).take(10) {
                    assert_eq!(doc, expected_doc, "{what}: query {qid}, the top 10 in the same order");
                    let tolerance = 1e-5 * expected_score.abs().max(1.0);
                    assert!((score - expected_score).abs() < tolerance, "{what}: {doc}: {score} vs {expected_score}");
                }
            }
        }
    }
}
