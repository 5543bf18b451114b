//! Every reader on small files written here, and bad input: each error names the file and the
//! line or row.

mod support;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use starbucks_data::eval::{
    read_beir, read_id_text, read_semeval_dir, read_sick, read_stsb, read_trec_qrels, read_trec_run,
};
use starbucks_data::finetune::{read_msmarco_triples, read_nli_pairs, read_tevatron, read_triplets, sample_group};
use starbucks_data::fineweb::{Position, Source};
use support::{documents, write_parquet};

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, body).unwrap();
    path
}

fn write_gz(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    let mut enc = flate2::write::GzEncoder::new(fs::File::create(&path).unwrap(), flate2::Compression::default());
    enc.write_all(body.as_bytes()).unwrap();
    enc.finish().unwrap();
    path
}

#[test]
fn triplets_from_tsv_and_jsonl_agree() {
    let dir = tempfile::tempdir().unwrap();
    let tsv = write(dir.path(), "t.tsv", "anchor\tpositive\tnegative\na\tb\tc\nd\te\tf\n");
    let jsonl = write(
        dir.path(),
        "t.jsonl",
        "{\"anchor\":\"a\",\"positive\":\"b\",\"negative\":\"c\"}\n\n{\"anchor\":\"d\",\"positive\":\"e\",\"negative\":\"f\"}\n",
    );
    assert_eq!(read_triplets(&tsv).unwrap(), read_triplets(&jsonl).unwrap());
    assert_eq!(read_triplets(&tsv).unwrap()[1].negative, "f");
}

#[test]
fn nli_pairs_with_other_columns_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "p.tsv",
        "source\tpremise\thypothesis\tlabel\nx\tP\tH1\tentailment\nx\tP\tH2\tcontradiction\n",
    );
    let pairs = read_nli_pairs(&path).unwrap();
    assert_eq!(pairs.len(), 2);
    let bad = write(dir.path(), "bad.tsv", "premise\thypothesis\tlabel\nP\tH\tmaybe\n");
    let err = read_nli_pairs(&bad).unwrap_err().to_string();
    assert!(err.contains("bad.tsv:2") && err.contains("maybe"), "{err}");
}

#[test]
fn tevatron_jsonl_and_official_triples_build_groups() {
    let dir = tempfile::tempdir().unwrap();
    let p = |id: &str| format!("{{\"docid\":\"{id}\",\"title\":\"T{id}\",\"text\":\"text {id}\"}}");
    let line = format!(
        "{{\"query_id\":\"1\",\"query\":\"what is rust\",\"positive_passages\":[{}],\"negative_passages\":[{},{},{}]}}\n",
        p("p1"),
        p("n1"),
        p("n2"),
        p("n3")
    );
    let path = write_gz(dir.path(), "train.jsonl.gz", &line);
    let examples = read_tevatron(&path).unwrap();
    assert_eq!(examples[0].negative_passages.len(), 3);
    assert_eq!(examples[0].positive_passages[0].full_text(), "Tp1 text p1");

    let group = sample_group(&examples[0], 2, 42, 0, 0);
    assert_eq!(group.passages.len(), 3);
    assert_eq!(group.passages[0], "Tp1 text p1");
    assert_eq!(group, sample_group(&examples[0], 2, 42, 0, 0), "deterministic");
    let epochs: Vec<_> = (0..8).map(|e| sample_group(&examples[0], 2, 42, e, 0).passages).collect();
    assert!(epochs.iter().any(|p| p != &epochs[0]), "epochs draw different negatives");
    // Too few negatives: drawn with replacement up to k.
    assert_eq!(sample_group(&examples[0], 7, 42, 0, 0).passages.len(), 8);

    let triples =
        write(dir.path(), "triples.train.small.tsv", "q1\tpos a\tneg a\nq1\tpos a\tneg b\nq2\tpos c\tneg c\n");
    let examples = read_msmarco_triples(&triples).unwrap();
    assert_eq!(examples.len(), 2);
    assert_eq!(examples[0].negative_passages.len(), 2);
    assert_eq!(examples[0].positive_passages.len(), 1);
}

#[test]
fn sts_layouts_read_the_same_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let stsb = write(dir.path(), "sts-test.csv", "g\tf\t2012\t0001\t4.2\tA cat sits.\tA cat is sitting.\n");
    assert_eq!(read_stsb(&stsb).unwrap()[0].score, 4.2);

    let sem = dir.path().join("sts12");
    write(&sem, "STS.input.MSRpar.txt", "A cat sits.\tA cat is sitting.\nno gold\there\nDogs run.\tA dog runs.\n");
    write(&sem, "STS.gs.MSRpar.txt", "4.2\n\n3.0\n");
    write(&sem, "STS.input.OnWN.txt", "x\ty\n");
    write(&sem, "STS.gs.OnWN.txt", "1\n");
    let sets = read_semeval_dir(&sem).unwrap();
    assert_eq!(sets.keys().collect::<Vec<_>>(), ["MSRpar", "OnWN"]);
    assert_eq!(sets["MSRpar"].len(), 2, "the line with an empty gold score is skipped");
    assert_eq!(sets["MSRpar"][1].sentence2, "A dog runs.");

    let sick = write(
        dir.path(),
        "SICK_test_annotated.txt",
        "pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment\n6\tA cat sits.\tA cat is sitting.\t4.2\tENTAILMENT\n",
    );
    assert_eq!(read_sick(&sick).unwrap(), read_stsb(&stsb).unwrap());
}

#[test]
fn beir_and_trec_files() {
    let dir = tempfile::tempdir().unwrap();
    write_gz(
        dir.path(),
        "corpus.jsonl.gz",
        "{\"_id\":\"d1\",\"title\":\"T\",\"text\":\"doc one\"}\n{\"_id\":\"d2\",\"text\":\"doc two\"}\n",
    );
    write(dir.path(), "queries.jsonl", "{\"_id\":\"q1\",\"text\":\"query one\"}\n");
    write(dir.path(), "qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\td2\t1\n");
    let beir = read_beir(dir.path(), "test").unwrap();
    assert_eq!(beir.corpus.len(), 2);
    assert_eq!(beir.corpus[1].title, "");
    assert_eq!(beir.qrels["q1"]["d2"], 1);

    let qrels = write(dir.path(), "qrels.txt", "1 0 d1 2\n1 0 d2 0\n2 0 d3 1\n");
    assert_eq!(read_trec_qrels(&qrels).unwrap()["1"]["d1"], 2);
    let run = write(dir.path(), "run.trec", "1 Q0 d1 1 12.5 bm25\n1 Q0 d2 2 11 bm25\n");
    assert_eq!(read_trec_run(&run).unwrap()[1].score, 11.0);
    let collection = write_gz(dir.path(), "collection.tsv.gz", "0\tfirst passage\n1\tsecond passage\n");
    let rows: Vec<_> = read_id_text(&collection).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(rows[1], ("1".to_string(), "second passage".to_string()));
}

#[test]
fn an_id_given_twice_is_refused_naming_where() {
    // Issue 17, item 4: a repeated corpus id was ranked twice (nDCG@10 above 1).
    let dir = tempfile::tempdir().unwrap();
    let collection = write(dir.path(), "collection.tsv", "0\tfirst\n1\tsecond\n\n0\tthird\n");
    let err = read_id_text(&collection).unwrap().collect::<Result<Vec<_>, _>>().unwrap_err().to_string();
    assert!(
        err.contains("collection.tsv") && err.contains(":4") && err.contains("`0` was already given at line 1"),
        "{err}"
    );

    write(dir.path(), "corpus.jsonl", "{\"_id\":\"d1\",\"text\":\"a\"}\n{\"_id\":\"d1\",\"text\":\"b\"}\n");
    write(dir.path(), "queries.jsonl", "{\"_id\":\"q1\",\"text\":\"query one\"}\n");
    write(dir.path(), "qrels/test.tsv", "q1\td1\t1\n");
    let err = read_beir(dir.path(), "test").unwrap_err().to_string();
    assert!(err.contains("corpus.jsonl") && err.contains("`d1` is given twice (documents 1 and 2)"), "{err}");
}

#[test]
fn fineweb_json_and_jsonl_read_like_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let docs = documents(5);
    write_parquet(&dir.path().join("a.parquet"), &docs, 2, true);
    let jsonl: String =
        docs.iter().map(|(id, t)| serde_json::json!({"id": id, "text": t, "url": "u"}).to_string() + "\n").collect();
    write_gz(dir.path(), "b.jsonl.gz", &jsonl);
    let array =
        serde_json::to_string(&docs.iter().map(|(id, t)| serde_json::json!({"id": id, "text": t})).collect::<Vec<_>>())
            .unwrap();
    write(dir.path(), "c.json", &array);
    let read: Vec<_> = Source::local(dir.path().to_str().unwrap())
        .unwrap()
        .stream(Position::default())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert_eq!(read.len(), 15);
    for k in 0..5 {
        assert_eq!((&read[k].id, &read[k].text), (&read[5 + k].id, &read[5 + k].text));
        assert_eq!((&read[k].id, &read[k].text), (&read[10 + k].id, &read[10 + k].text));
    }
}

fn first_error(source: &Source) -> String {
    source.stream(Position::default()).find_map(Result::err).expect("an error").to_string()
}

#[test]
fn bad_input_names_the_file_and_the_line_or_row() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let short = write(d, "short.tsv", "anchor\tpositive\tnegative\na\tb\tc\nonly\ttwo\n");
    let err = read_triplets(&short).unwrap_err().to_string();
    assert!(err.contains("short.tsv:3") && err.contains("columns"), "{err}");

    let stsb = write(d, "sts.csv", "g\tf\t2012\t0001\t4.2\tA\tB\ng\tf\t2012\t0002\n");
    let err = read_stsb(&stsb).unwrap_err().to_string();
    assert!(err.contains("sts.csv:2"), "{err}");

    let jsonl = write(d, "docs.jsonl", "{\"text\": \"fine\"}\n{not json\n");
    let err = first_error(&Source::local(jsonl.to_str().unwrap()).unwrap());
    assert!(err.contains("docs.jsonl:2") && err.contains("JSON"), "{err}");

    let utf8 = d.join("latin1.tsv");
    fs::write(&utf8, b"anchor\tpositive\tnegative\ncaf\xe9\tb\tc\n").unwrap();
    let err = read_triplets(&utf8).unwrap_err().to_string();
    assert!(err.contains("latin1.tsv:2") && err.contains("UTF-8"), "{err}");

    let no_text = d.join("notext.parquet");
    write_parquet(&no_text, &documents(3), 2, false);
    let err = first_error(&Source::local(no_text.to_str().unwrap()).unwrap());
    assert!(err.contains("notext.parquet") && err.contains("no `text` column") && err.contains("content"), "{err}");

    let not_parquet = write(d, "garbage.parquet", "this is not parquet at all");
    let err = first_error(&Source::local(not_parquet.to_str().unwrap()).unwrap());
    assert!(err.contains("garbage.parquet"), "{err}");

    for name in ["empty.tsv", "empty.jsonl", "empty.json", "empty.txt"] {
        write(d, name, "");
    }
    let err = read_triplets(&d.join("empty.tsv")).unwrap_err().to_string();
    assert!(err.contains("empty.tsv") && err.contains("empty"), "{err}");
    let err = read_triplets(&d.join("empty.jsonl")).unwrap_err().to_string();
    assert!(err.contains("empty.jsonl") && err.contains("empty"), "{err}");
    let err = first_error(&Source::local(d.join("empty.json").to_str().unwrap()).unwrap());
    assert!(err.contains("empty.json") && err.contains("empty"), "{err}");
    let err = read_trec_qrels(&d.join("empty.txt")).unwrap_err().to_string();
    assert!(err.contains("empty.txt") && err.contains("empty"), "{err}");

    let err = read_tevatron(&write(d, "tev.jsonl", "{\"query\": \"q\", \"positive_passages\": []}\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("tev.jsonl:1") && err.contains("positive"), "{err}");

    let err = Source::local(d.join("nothing-*.parquet").to_str().unwrap()).unwrap_err().to_string();
    assert!(err.contains("no document shards"), "{err}");
}
