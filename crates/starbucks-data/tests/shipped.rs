//! The real sample data shipped under data/: row counts and consistency.

mod support;

use starbucks_data::eval::{read_id_text, read_stsb, read_trec_qrels, read_trec_run};
use starbucks_data::finetune::{NliLabel, read_msmarco_triples, read_nli_pairs, read_triplets, triplets_from_pairs};
use starbucks_data::fineweb::{Position, Source};
use support::data_dir;

#[test]
fn stsb_has_its_published_row_counts() {
    let d = data_dir().join("stsb");
    let test = read_stsb(&d.join("sts-test.csv")).unwrap();
    assert_eq!(test.len(), 1379);
    assert_eq!(read_stsb(&d.join("sts-dev.csv")).unwrap().len(), 1500);
    assert_eq!(read_stsb(&d.join("sts-train.csv.gz")).unwrap().len(), 5749);
    assert_eq!(test[0].sentence1, "A girl is styling her hair.");
    assert_eq!(test[0].score, 2.5);
    assert!(test.iter().all(|p| (0.0..=5.0).contains(&p.score)));
}

#[test]
fn snli_triplets_agree_with_the_labelled_pairs() {
    let d = data_dir().join("nli");
    let shipped = read_triplets(&d.join("snli-triplets.tsv.gz")).unwrap();
    assert_eq!(shipped.len(), 5863);
    let pairs = read_nli_pairs(&d.join("snli-pairs.tsv.gz")).unwrap();
    assert_eq!(pairs.len(), 19666);
    // Built from the pairs: one triplet per premise with an entailment and a contradiction, in
    // the same premise order as the shipped file (which drew its hypotheses at random).
    let built = triplets_from_pairs(&pairs);
    assert_eq!(built.len(), shipped.len());
    let has = |premise: &str, hypothesis: &str, label: NliLabel| {
        pairs.iter().any(|p| p.premise == premise && p.hypothesis == hypothesis && p.label == label)
    };
    for (b, s) in built.iter().zip(&shipped).step_by(97) {
        assert_eq!(b.anchor, s.anchor);
        assert!(
            has(&s.anchor, &s.positive, NliLabel::Entailment) && has(&s.anchor, &s.negative, NliLabel::Contradiction)
        );
        assert!(
            has(&b.anchor, &b.positive, NliLabel::Entailment) && has(&b.anchor, &b.negative, NliLabel::Contradiction)
        );
    }
}

#[test]
fn the_fineweb_sample_streams_300_documents() {
    let source = Source::local(data_dir().join("fineweb/fineweb-subset-300.json.gz").to_str().unwrap()).unwrap();
    let mut stream = source.stream(Position::default());
    let docs: Vec<_> = stream.by_ref().collect::<Result<_, _>>().unwrap();
    assert_eq!(docs.len() + stream.skipped_empty(), 300);
    assert_eq!(docs.len(), 300);
    assert!(docs[3].text.starts_with("Listeners Get Sky-high View of Missoula"));
    assert_eq!(docs[3].position, Position { shard: 0, row_group: 0, row: 3 });
}

#[test]
fn the_trec_dl20_subset_is_complete() {
    let d = data_dir().join("msmarco-dl20");
    let corpus: Vec<_> = read_id_text(&d.join("corpus.tsv.gz")).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(corpus.len(), 28606);
    let queries: Vec<_> = read_id_text(&d.join("queries.dl20.tsv")).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(queries.len(), 54);
    let qrels = read_trec_qrels(&d.join("qrels.dl20.in_corpus.txt")).unwrap();
    // 5,012 judgements (shared/data/README.md says 5,011; `wc -l` and this count agree on 5,012).
    assert_eq!(qrels.values().map(|q| q.len()).sum::<usize>(), 5012);
    assert_eq!(qrels.len(), 54);
    assert_eq!(read_trec_run(&d.join("bm25.dl20.top100.trec")).unwrap().len(), 5400);
    let triples = read_msmarco_triples(&d.join("triples.dl20.bm25neg.tsv.gz")).unwrap();
    let lines: usize = triples.iter().map(|e| e.positive_passages.len().max(e.negative_passages.len())).sum();
    assert!(triples.len() <= 54 && lines <= 1098, "{} queries", triples.len());
    let corpus_ids: std::collections::HashSet<&str> = corpus.iter().map(|(id, _)| id.as_str()).collect();
    for example in &triples {
        for p in example.positive_passages.iter().chain(&example.negative_passages) {
            assert!(corpus_ids.contains(p.docid.as_str()), "{} not in the corpus", p.docid);
        }
    }
}
