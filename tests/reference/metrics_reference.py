#!/usr/bin/env python3
"""Reference values for the evaluation metrics, from the tools the field trusts.

Run by hand, never by CI:
    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install numpy scipy pytrec_eval_terrier
    /tmp/ref/bin/python tests/reference/metrics_reference.py --out tests/fixtures/metrics

- correlation.json: scipy.stats.spearmanr (average ranks for ties) and pearsonr on vectors with
  many ties;
- qrels.txt, run.trec, trec_eval.json: a small graded qrels/run pair (score ties, a query the run
  misses, unjudged documents), evaluated with pytrec_eval (the trec_eval 9 C code): ndcg_cut_10,
  recip_rank on the run cut to its top 10 (MRR@10), recall_100, recall_1000; per query and the
  mean over all qrels queries with 0 for queries the run misses (trec_eval -c). The same with
  relevance level 2 (trec_eval -l 2) for the binary measures.
"""
import argparse
import json
import random
from pathlib import Path

import numpy as np
import pytrec_eval
from scipy import stats


def correlation(out):
    rng = np.random.default_rng(7)
    cases = []
    for n, levels in [(20, 4), (50, 6), (200, 11), (7, 2)]:
        x = rng.integers(0, levels, n).astype(float) / 2
        y = (x + rng.normal(0, 1, n)).round(1)
        cases.append({"x": x.tolist(), "y": y.tolist(),
                      "spearman": float(stats.spearmanr(x, y).statistic),
                      "pearson": float(stats.pearsonr(x, y).statistic)})
    (out / "correlation.json").write_text(json.dumps(cases, indent=1) + "\n")


def trec(out):
    rnd = random.Random(11)
    qrels, run = {}, {}
    for q in range(1, 9):
        qid = f"q{q}"
        docs = [f"d{q}_{i:03d}" for i in range(150)]
        qrels[qid] = {d: rnd.choice([0, 0, 0, 1, 2, 3]) for d in rnd.sample(docs, 40)}
        if q == 8:
            continue  # a query the run misses
        depth = 8 if q == 7 else 120
        ranked = rnd.sample(docs, depth)
        # Coarse scores so that many documents tie (trec_eval breaks ties by docno).
        run[qid] = {d: float(rnd.randint(0, 30)) / 2 for d in ranked}
    with open(out / "qrels.txt", "w") as f:
        for qid, docs in qrels.items():
            for d, g in docs.items():
                f.write(f"{qid} 0 {d} {g}\n")
    with open(out / "run.trec", "w") as f:
        for qid, docs in run.items():
            ordered = sorted(docs.items(), key=lambda kv: (-kv[1], kv[0]))
            for rank, (d, s) in enumerate(ordered, 1):
                f.write(f"{qid} Q0 {d} {rank} {s} ref\n")

    def top10(r):
        # trec_eval's own order: score descending, then docno descending.
        return {q: dict(sorted(docs.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)[:10]) for q, docs in r.items()}

    result = {}
    for level in (1, 2):
        judged = {q: {d: (g if g >= level else 0) for d, g in docs.items()} for q, docs in qrels.items()}
        ndcg = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)
        rr = pytrec_eval.RelevanceEvaluator(judged, {"recip_rank"}).evaluate(top10(run))
        rec = pytrec_eval.RelevanceEvaluator(judged, {"recall.100,1000"}).evaluate(run)
        per_query = {}
        for q in qrels:
            per_query[q] = {
                "ndcg_cut_10": ndcg.get(q, {}).get("ndcg_cut_10", 0.0),
                "mrr_10": rr.get(q, {}).get("recip_rank", 0.0),
                "recall_100": rec.get(q, {}).get("recall_100", 0.0),
                "recall_1000": rec.get(q, {}).get("recall_1000", 0.0),
            }
        # -c: every qrels query counts; one the run misses scores 0.
        mean = {m: sum(v[m] for v in per_query.values()) / len(per_query) for m in next(iter(per_query.values()))}
        result[f"level_{level}"] = {"per_query": per_query, "mean": mean}
    (out / "trec_eval.json").write_text(json.dumps(result, indent=1) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    correlation(args.out)
    trec(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
