//! Datasets in the hub's own layouts, made from the shipped data, for the loopback hub
//! (`starbucks-hub/tests/support/fake_hub.rs`). Shared by the data and CLI tests through
//! `#[path]`; the test crate declares `mod fake_hub` beside this module.
//!
//! The layouts are those of the real repositories: `sentence-transformers/all-nli`
//! (`triplet/train-00000-of-00001.parquet`), `mteb/stsbenchmark-sts` (`test.jsonl.gz` on `main`,
//! `default/test/0000.parquet` on `refs/convert/parquet`), `BeIR/<name>` (`corpus.jsonl.gz`,
//! `queries.jsonl.gz`) with `BeIR/<name>-qrels` (`test.tsv`).

#![allow(dead_code)] // each test binary uses its own part of it

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use parquet::arrow::ArrowWriter;
use starbucks_data::eval::{StsPair, read_id_text, read_stsb, read_trec_qrels};
use starbucks_data::finetune::read_triplets;

use super::fake_hub::FakeRepo;

pub enum Column {
    Text(Vec<String>),
    Number(Vec<f64>),
}

/// A Parquet file of these columns (row groups of 500 rows, as the hub's converter writes several).
pub fn parquet(columns: Vec<(&str, Column)>) -> Vec<u8> {
    let arrays: Vec<(&str, ArrayRef)> = columns
        .into_iter()
        .map(|(name, c)| {
            let array: ArrayRef = match c {
                Column::Text(v) => Arc::new(StringArray::from(v)),
                Column::Number(v) => Arc::new(Float64Array::from(v)),
            };
            (name, array)
        })
        .collect();
    let batch = RecordBatch::try_from_iter(arrays).unwrap();
    let mut bytes = Vec::new();
    let props = parquet::file::properties::WriterProperties::builder().set_max_row_group_row_count(Some(500)).build();
    let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), Some(props)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    bytes
}

pub fn gzip(text: &str) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(text.as_bytes()).unwrap();
    encoder.finish().unwrap()
}

/// `sentence-transformers/all-nli`, config `triplet`, from the first `rows` shipped SNLI triplets.
pub fn all_nli(root: &Path, rows: usize) -> FakeRepo {
    let triplets = read_triplets(&root.join("data/nli/snli-triplets.tsv.gz")).unwrap();
    let triplets = &triplets[..rows.min(triplets.len())];
    let text = |f: fn(&starbucks_data::finetune::Triplet) -> &String| {
        Column::Text(triplets.iter().map(|t| f(t).clone()).collect())
    };
    let file = parquet(vec![
        ("anchor", text(|t| &t.anchor)),
        ("positive", text(|t| &t.positive)),
        ("negative", text(|t| &t.negative)),
    ]);
    FakeRepo::dataset("sentence-transformers/all-nli")
        .file(
            "README.md",
            "---\nconfigs:\n- config_name: triplet\n  data_files:\n  - split: train\n    path: triplet/train-*\n---\n",
        )
        .file("triplet/train-00000-of-00001.parquet", file)
        .file(
            "pair/train-00000-of-00001.parquet",
            parquet(vec![("anchor", Column::Text(vec!["a".into()])), ("positive", Column::Text(vec!["b".into()]))]),
        )
}

pub fn stsb_test(root: &Path) -> Vec<StsPair> {
    read_stsb(&root.join("data/stsb/sts-test.csv")).unwrap()
}

/// `mteb/stsbenchmark-sts` as on `main`: JSON Lines, gzip, one file per split, MTEB's fields.
pub fn mteb_stsb(root: &Path) -> FakeRepo {
    let lines: String = stsb_test(root)
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let row = serde_json::json!({ "split": "test", "genre": "main-captions", "dataset": "MSRvid", "year": "2012test",
                "sid": format!("{i:04}"), "score": p.score, "sentence1": p.sentence1, "sentence2": p.sentence2 });
            format!("{row}\n")
        })
        .collect();
    FakeRepo::dataset("mteb/stsbenchmark-sts")
        .file("test.jsonl.gz", gzip(&lines))
        .file("validation.jsonl.gz", gzip("{\"sentence1\": \"a\", \"sentence2\": \"b\", \"score\": 1.0}\n"))
        .file("README.md", "# STS Benchmark")
}

/// The same set as the hub's Parquet converter publishes it, on `refs/convert/parquet`.
pub fn mteb_stsb_parquet(root: &Path) -> FakeRepo {
    let pairs = stsb_test(root);
    let file = parquet(vec![
        ("split", Column::Text(pairs.iter().map(|_| "test".to_string()).collect())),
        ("score", Column::Number(pairs.iter().map(|p| p.score).collect())),
        ("sentence1", Column::Text(pairs.iter().map(|p| p.sentence1.clone()).collect())),
        ("sentence2", Column::Text(pairs.iter().map(|p| p.sentence2.clone()).collect())),
    ]);
    FakeRepo::dataset("mteb/stsbenchmark-sts").at("refs/convert/parquet").file("default/test/0000.parquet", file)
}

/// A BEIR set in BEIR's hub layout from the shipped TREC DL 2020 data: the first `queries`
/// judged queries and every passage judged for them. Returns the corpus repo and the qrels repo.
pub fn beir(root: &Path, name: &str, queries: usize) -> (FakeRepo, FakeRepo) {
    let dl = root.join("data/msmarco-dl20");
    let qrels = read_trec_qrels(&dl.join("qrels.dl20.in_corpus.txt")).unwrap();
    let mut judged: Vec<&String> = qrels.keys().collect();
    judged.sort();
    judged.truncate(queries);
    let all_queries: Vec<(String, String)> =
        read_id_text(&dl.join("queries.dl20.tsv")).unwrap().map(Result::unwrap).collect();
    let query_lines: String = all_queries
        .iter()
        .filter(|(id, _)| judged.contains(&id))
        .map(|(id, text)| format!("{}\n", serde_json::json!({ "_id": id, "text": text, "metadata": {} })))
        .collect();
    let wanted: std::collections::HashSet<&String> = judged.iter().flat_map(|q| qrels[*q].keys()).collect();
    let corpus_lines: String = read_id_text(&dl.join("corpus.tsv.gz"))
        .unwrap()
        .map(Result::unwrap)
        .filter(|(id, _)| wanted.contains(id))
        .map(|(id, text)| format!("{}\n", serde_json::json!({ "_id": id, "title": "", "text": text, "metadata": {} })))
        .collect();
    let mut tsv = String::from("query-id\tcorpus-id\tscore\n");
    for q in &judged {
        let mut docs: Vec<_> = qrels[*q].iter().collect();
        docs.sort();
        for (d, grade) in docs {
            tsv.push_str(&format!("{q}\t{d}\t{grade}\n"));
        }
    }
    let corpus = FakeRepo::dataset(&format!("BeIR/{name}"))
        .file("corpus.jsonl.gz", gzip(&corpus_lines))
        .file("queries.jsonl.gz", gzip(&query_lines))
        .file(&format!("{name}.py"), "# the loading script the BEIR repositories ship");
    let qrels = FakeRepo::dataset(&format!("BeIR/{name}-qrels")).file("test.tsv", tsv).file("README.md", "# qrels");
    (corpus, qrels)
}
