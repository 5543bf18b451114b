//! FineWeb streaming from Parquet and JSON Lines, local and over a loopback HTTP server:
//! range requests, a dropped connection, 404, HF dataset paths, resuming, shuffling, ranks.

mod support;

use std::sync::atomic::Ordering;

use starbucks_data::fineweb::{Document, Position, Shuffled, Source};
use support::server::Server;
use support::{documents, write_parquet};

fn texts(docs: &[Document]) -> Vec<&str> {
    docs.iter().map(|d| d.text.as_str()).collect()
}

/// Two Parquet shards (250 and 130 documents, 40 rows per row group) in a temp folder.
fn two_shards() -> (tempfile::TempDir, Vec<(String, String)>) {
    let dir = tempfile::tempdir().unwrap();
    let docs = documents(380);
    write_parquet(&dir.path().join("000_00000.parquet"), &docs[..250], 40, true);
    write_parquet(&dir.path().join("000_00001.parquet"), &docs[250..], 40, true);
    (dir, docs)
}

#[test]
fn local_parquet_shards_stream_in_order_with_positions() {
    let (dir, docs) = two_shards();
    let source = Source::local(dir.path().to_str().unwrap()).unwrap();
    let read: Vec<Document> = source.stream(Position::default()).collect::<Result<_, _>>().unwrap();
    assert_eq!(read.len(), 380);
    assert_eq!(texts(&read), docs.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>());
    assert_eq!(read[0].id, "doc-0");
    assert_eq!(read[85].position, Position { shard: 0, row_group: 2, row: 5 });
    assert_eq!(read[250].position, Position { shard: 1, row_group: 0, row: 0 });
    // A glob finds the same shards.
    let glob = Source::local(&format!("{}/*.parquet", dir.path().display())).unwrap();
    assert_eq!(glob, source);
}

#[test]
fn a_stream_resumes_at_its_saved_position() {
    let (dir, _) = two_shards();
    let source = Source::local(dir.path().to_str().unwrap()).unwrap();
    let all: Vec<Document> = source.stream(Position::default()).collect::<Result<_, _>>().unwrap();
    for cut in [0, 1, 39, 40, 123, 249, 250, 379] {
        let mut stream = source.stream(Position::default());
        for _ in 0..cut {
            stream.next().unwrap().unwrap();
        }
        let saved = stream.position();
        let rest: Vec<Document> = source.stream(saved).collect::<Result<_, _>>().unwrap();
        assert_eq!(rest, all[cut..].to_vec(), "resumed at {saved:?}");
    }
}

#[test]
fn remote_parquet_over_http_equals_local_even_when_a_connection_drops() {
    let (dir, docs) = two_shards();
    let server = Server::start(dir.path());
    let source = Source::urls([server.url("000_00000.parquet"), server.url("000_00001.parquet")]);
    server.drops.store(3, Ordering::SeqCst);
    let read: Vec<Document> = source.stream(Position::default()).collect::<Result<_, _>>().unwrap();
    assert_eq!(texts(&read), docs.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>());
    assert_eq!(server.drops.load(Ordering::SeqCst), 0, "every planned drop happened and was retried");
    // Resuming mid-shard over HTTP.
    let rest: Vec<Document> =
        source.stream(Position { shard: 0, row_group: 3, row: 7 }).collect::<Result<_, _>>().unwrap();
    assert_eq!(rest[0].text, docs[127].1);
    assert_eq!(rest.len(), 380 - 127);
}

#[test]
fn http_404_is_an_error_naming_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let url = server.url("missing.parquet");
    let err = Source::urls([url.clone()]).stream(Position::default()).next().unwrap().unwrap_err();
    let message = err.to_string();
    assert!(message.contains(&url) && message.contains("404"), "{message}");
}

#[test]
fn remote_json_lines_stream_too() {
    let dir = tempfile::tempdir().unwrap();
    let lines: String = (0..20).map(|i| format!("{{\"id\": \"j{i}\", \"text\": \"line {i}\"}}\n")).collect();
    std::fs::write(dir.path().join("part.jsonl"), lines).unwrap();
    let server = Server::start(dir.path());
    let read: Vec<Document> = Source::urls([server.url("part.jsonl")])
        .stream(Position { shard: 0, row_group: 0, row: 5 })
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(read.len(), 15);
    assert_eq!((read[0].id.as_str(), read[0].text.as_str()), ("j5", "line 5"));
}

#[test]
fn empty_texts_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut docs = documents(10);
    docs[2].1 = String::new();
    docs[7].1 = "  \n\t ".into();
    write_parquet(&dir.path().join("a.parquet"), &docs, 4, true);
    let source = Source::local(dir.path().to_str().unwrap()).unwrap();
    let mut stream = source.stream(Position::default());
    let read: Vec<Document> = stream.by_ref().collect::<Result<_, _>>().unwrap();
    assert_eq!(read.len(), 8);
    assert_eq!(stream.skipped_empty(), 2);
}

#[test]
fn the_shuffle_is_seeded_and_a_permutation() {
    let (dir, _) = two_shards();
    let source = Source::local(dir.path().to_str().unwrap()).unwrap();
    let shuffled = |seed| -> Vec<String> {
        Shuffled::new(source.stream(Position::default()), 64, seed).map(|d| d.unwrap().id).collect()
    };
    let (a, b, c) = (shuffled(1), shuffled(1), shuffled(2));
    assert_eq!(a, b);
    assert_ne!(a, c);
    let mut sorted = a.clone();
    sorted.sort();
    let mut expected: Vec<String> = (0..380).map(|i| format!("doc-{i}")).collect();
    expected.sort();
    assert_eq!(sorted, expected);
}

#[test]
fn ranks_split_the_shards() {
    let (dir, _) = two_shards();
    let source = Source::local(dir.path().to_str().unwrap()).unwrap();
    let r0 = source.clone().for_rank(0, 2);
    let r1 = source.clone().for_rank(1, 2);
    assert_eq!(r0.shards, vec![source.shards[0].clone()]);
    assert_eq!(r1.shards, vec![source.shards[1].clone()]);
}
