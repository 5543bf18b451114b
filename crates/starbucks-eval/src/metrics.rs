//! Correlations for STS and ranking metrics for retrieval, as scipy and trec_eval compute them.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Ranks starting at 1, ties given the average of the ranks they span.
pub fn average_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = rank;
        }
        i = j + 1;
    }
    ranks
}

/// Pearson correlation; NaN when either side is constant.
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len(), "paired samples");
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    sxy / (sxx * syy).sqrt()
}

/// Spearman correlation: Pearson of the average ranks (scipy's `spearmanr`).
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&average_ranks(x), &average_ranks(y))
}

/// Judgements of one query: document id → grade.
pub type Judgements = HashMap<String, i32>;

/// A run's documents for one query in trec_eval's order: score descending, ties by document id
/// descending.
pub fn trec_order(results: &[(String, f64)]) -> Vec<&str> {
    let mut sorted: Vec<&(String, f64)> = results.iter().collect();
    sorted.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    sorted.into_iter().map(|(d, _)| d.as_str()).collect()
}

/// nDCG@k with linear gain (the grade; negative grades count 0), log2 discount.
pub fn ndcg_at(ranking: &[&str], judged: &Judgements, k: usize) -> f64 {
    let gain = |g: i32| g.max(0) as f64;
    let dcg: f64 = ranking
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, d)| gain(*judged.get(*d).unwrap_or(&0)) / (i as f64 + 2.0).log2())
        .sum();
    let mut ideal: Vec<i32> = judged.values().copied().filter(|&g| g > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal.iter().take(k).enumerate().map(|(i, &g)| gain(g) / (i as f64 + 2.0).log2()).sum();
    if idcg == 0.0 { 0.0 } else { dcg / idcg }
}

/// Reciprocal rank of the first document with grade ≥ `level` within the top k, else 0.
pub fn mrr_at(ranking: &[&str], judged: &Judgements, k: usize, level: i32) -> f64 {
    ranking
        .iter()
        .take(k)
        .position(|d| judged.get(*d).is_some_and(|&g| g >= level))
        .map_or(0.0, |i| 1.0 / (i as f64 + 1.0))
}

/// Share of the documents with grade ≥ `level` found in the top k.
pub fn recall_at(ranking: &[&str], judged: &Judgements, k: usize, level: i32) -> f64 {
    let relevant = judged.values().filter(|&&g| g >= level).count();
    if relevant == 0 {
        return 0.0;
    }
    ranking.iter().take(k).filter(|d| judged.get(**d).is_some_and(|&g| g >= level)).count() as f64 / relevant as f64
}

/// The retrieval measures of one query or their mean.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RetrievalScores {
    pub ndcg_cut_10: f64,
    pub mrr_10: f64,
    pub recall_100: f64,
    pub recall_1000: f64,
}

/// Scores a run against qrels. Binary measures count grade ≥ `level` as relevant (TREC DL uses
/// 2 for passages). The mean is over every qrels query, a query the run misses scoring 0
/// (trec_eval `-c`).
pub fn evaluate_run(
    run: &HashMap<String, Vec<(String, f64)>>,
    qrels: &HashMap<String, Judgements>,
    level: i32,
) -> (HashMap<String, RetrievalScores>, RetrievalScores) {
    let mut per_query = HashMap::new();
    for (qid, judged) in qrels {
        let scores = match run.get(qid) {
            Some(results) => {
                let ranking = trec_order(results);
                RetrievalScores {
                    ndcg_cut_10: ndcg_at(&ranking, judged, 10),
                    mrr_10: mrr_at(&ranking, judged, 10, level),
                    recall_100: recall_at(&ranking, judged, 100, level),
                    recall_1000: recall_at(&ranking, judged, 1000, level),
                }
            }
            None => RetrievalScores::default(),
        };
        per_query.insert(qid.clone(), scores);
    }
    let n = per_query.len().max(1) as f64;
    // Summed in query-id order, so the same run gives the same mean to the last bit in every
    // process (a hash map's order differs between processes).
    let mut ids: Vec<&String> = per_query.keys().collect();
    ids.sort();
    let mean = ids.iter().map(|q| &per_query[*q]).fold(RetrievalScores::default(), |m, s| RetrievalScores {
        ndcg_cut_10: m.ndcg_cut_10 + s.ndcg_cut_10 / n,
        mrr_10: m.mrr_10 + s.mrr_10 / n,
        recall_100: m.recall_100 + s.recall_100 / n,
        recall_1000: m.recall_1000 + s.recall_1000 / n,
    });
    (per_query, mean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_cases() {
        assert_eq!(average_ranks(&[10.0, 20.0, 10.0, 30.0]), vec![1.5, 3.0, 1.5, 4.0]);
        assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]) - 1.0).abs() < 1e-12);
        let judged: Judgements = [("a", 3), ("b", 0), ("c", 1)].iter().map(|(d, g)| (d.to_string(), *g)).collect();
        // Ranking b, a, c: DCG = 0 + 3/log2 3 + 1/2; ideal = 3 + 1/log2 3.
        let ndcg = ndcg_at(&["b", "a", "c"], &judged, 10);
        let want = (3.0 / 3f64.log2() + 0.5) / (3.0 + 1.0 / 3f64.log2());
        assert!((ndcg - want).abs() < 1e-12);
        assert_eq!(mrr_at(&["b", "a", "c"], &judged, 10, 1), 0.5);
        assert_eq!(mrr_at(&["b", "c", "a"], &judged, 10, 2), 1.0 / 3.0);
        assert_eq!(mrr_at(&["b", "c", "a"], &judged, 2, 2), 0.0);
        assert_eq!(recall_at(&["c", "x"], &judged, 100, 1), 0.5);
        // Ties: trec_eval puts the larger document id first.
        let run = vec![("d1".to_string(), 1.0), ("d2".to_string(), 1.0), ("d0".to_string(), 2.0)];
        assert_eq!(trec_order(&run), vec!["d0", "d2", "d1"]);
    }
}
