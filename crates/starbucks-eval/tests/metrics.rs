//! Metrics against published reference outputs: scipy's Spearman and Pearson (with ties), and
//! trec_eval's nDCG@10, MRR@10 and recall on a committed qrels/run pair
//! (tests/reference/metrics_reference.py, run by hand with pytrec_eval).

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Deserialize;
use starbucks_data::eval::{read_trec_qrels, read_trec_run};
use starbucks_eval::metrics::{RetrievalScores, evaluate_run, pearson, spearman};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/metrics")
        .join(name)
}

#[derive(Deserialize)]
struct Correlation {
    x: Vec<f64>,
    y: Vec<f64>,
    spearman: f64,
    pearson: f64,
}

#[test]
fn correlations_match_scipy_with_ties() {
    let cases: Vec<Correlation> =
        serde_json::from_str(&std::fs::read_to_string(fixture("correlation.json")).unwrap()).unwrap();
    for case in cases {
        assert!((spearman(&case.x, &case.y) - case.spearman).abs() < 1e-12, "spearman n={}", case.x.len());
        assert!((pearson(&case.x, &case.y) - case.pearson).abs() < 1e-12, "pearson n={}", case.x.len());
    }
}

#[derive(Deserialize)]
struct Level {
    per_query: HashMap<String, RetrievalScores>,
    mean: RetrievalScores,
}

fn close(a: &RetrievalScores, b: &RetrievalScores, what: &str) {
    for (x, y, m) in [
        (a.ndcg_cut_10, b.ndcg_cut_10, "ndcg_cut_10"),
        (a.mrr_10, b.mrr_10, "mrr_10"),
        (a.recall_100, b.recall_100, "recall_100"),
        (a.recall_1000, b.recall_1000, "recall_1000"),
    ] {
        assert!((x - y).abs() < 1e-9, "{what} {m}: ours {x}, trec_eval {y}");
    }
}

#[test]
fn ranking_metrics_match_trec_eval() {
    let expected: HashMap<String, Level> =
        serde_json::from_str(&std::fs::read_to_string(fixture("trec_eval.json")).unwrap()).unwrap();
    let qrels = read_trec_qrels(&fixture("qrels.txt")).unwrap();
    let mut run: HashMap<String, Vec<(String, f64)>> = HashMap::new();
    for entry in read_trec_run(&fixture("run.trec")).unwrap() {
        run.entry(entry.query_id).or_default().push((entry.doc_id, entry.score));
    }
    for level in [1, 2] {
        let want = &expected[&format!("level_{level}")];
        let (per_query, mean) = evaluate_run(&run, &qrels, level);
        assert_eq!(per_query.len(), want.per_query.len());
        for (qid, scores) in &want.per_query {
            close(&per_query[qid], scores, &format!("level {level} {qid}"));
        }
        close(&mean, &want.mean, &format!("level {level} mean"));
    }
}
