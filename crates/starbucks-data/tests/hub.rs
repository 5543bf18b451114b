//! Datasets by hub id (`hf://datasets/…`) against a loopback stand-in of the hub serving the
//! shipped data in the real repositories' layouts: configs, splits, branches, Parquet and JSON
//! Lines read by column name, FineWeb streamed by range requests.

#[path = "../../starbucks-hub/tests/support/fake_hub.rs"]
mod fake_hub;
#[path = "support/hub_data.rs"]
mod hub_data;
mod support;

use fake_hub::{FakeHub, FakeRepo};
use starbucks_data::eval::read_sts_table;
use starbucks_data::finetune::read_triplets;
use starbucks_data::fineweb::{Document, Position, Source};
use starbucks_data::hub::HubDataset;
use starbucks_hub::Hub;
use support::{documents, write_parquet};

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn dataset(spec: &str) -> HubDataset {
    HubDataset::parse(spec).unwrap().unwrap()
}

#[test]
fn all_nli_triplets_come_from_the_config_and_split_in_parquet() {
    let server = FakeHub::start(vec![hub_data::all_nli(&root(), 1200)]);
    let cache = tempfile::tempdir().unwrap();
    let hub = Hub::new(&server.url, cache.path().to_path_buf());
    let files = dataset("hf://datasets/sentence-transformers/all-nli/triplet").fetch(&hub, Some("train")).unwrap();
    assert_eq!(files.len(), 1);
    assert!(files[0].ends_with("triplet/train-00000-of-00001.parquet"), "{}", files[0].display());
    assert!(files[0].starts_with(cache.path().join("datasets--sentence-transformers--all-nli/snapshots")));
    let triplets = read_triplets(&files[0]).unwrap();
    let shipped = read_triplets(&root().join("data/nli/snli-triplets.tsv.gz")).unwrap();
    assert_eq!(triplets, shipped[..1200], "every row, across the file's row groups");

    let err = dataset("hf://datasets/sentence-transformers/all-nli/triplet").fetch(&hub, Some("test")).unwrap_err();
    assert!(err.to_string().contains("split `test`") && err.to_string().contains("triplet/train-00000"), "{err}");
}

#[test]
fn mteb_sts_sets_read_the_same_from_json_lines_on_main_and_parquet_on_the_converted_branch() {
    let server = FakeHub::start(vec![hub_data::mteb_stsb(&root()), hub_data::mteb_stsb_parquet(&root())]);
    let cache = tempfile::tempdir().unwrap();
    let hub = Hub::new(&server.url, cache.path().to_path_buf());
    let shipped = hub_data::stsb_test(&root());
    let main = dataset("hf://datasets/mteb/stsbenchmark-sts").fetch(&hub, Some("test")).unwrap();
    assert!(main[0].ends_with("test.jsonl.gz"));
    assert_eq!(read_sts_table(&main[0]).unwrap(), shipped);
    let converted =
        dataset("hf://datasets/mteb/stsbenchmark-sts@refs/convert/parquet").fetch(&hub, Some("test")).unwrap();
    assert!(converted[0].ends_with("default/test/0000.parquet"));
    assert_eq!(read_sts_table(&converted[0]).unwrap(), shipped);
    assert!(cache.path().join("datasets--mteb--stsbenchmark-sts/refs/refs/convert/parquet").is_file());

    // Offline, the same files come from the cache.
    server.stop();
    let offline = Hub::new(&server.url, cache.path().to_path_buf()).with_offline(true);
    assert_eq!(dataset("hf://datasets/mteb/stsbenchmark-sts").fetch(&offline, Some("test")).unwrap(), main);
}

#[test]
fn a_column_the_file_lacks_is_named_with_the_file() {
    let file = hub_data::parquet(vec![
        ("sentence1", hub_data::Column::Text(vec!["a".into()])),
        ("sentence2", hub_data::Column::Text(vec!["b".into()])),
    ]);
    let server =
        FakeHub::start(vec![FakeRepo::dataset("org/no-scores").file("data/test-00000-of-00001.parquet", file)]);
    let cache = tempfile::tempdir().unwrap();
    let hub = Hub::new(&server.url, cache.path().to_path_buf());
    let files = dataset("hf://datasets/org/no-scores").fetch(&hub, Some("test")).unwrap();
    let err = read_sts_table(&files[0]).unwrap_err().to_string();
    assert!(
        err.contains("test-00000-of-00001.parquet")
            && err.contains("no `score` column (columns: sentence1, sentence2)"),
        "{err}"
    );
    let err = read_triplets(&files[0]).unwrap_err().to_string();
    assert!(err.contains("no `anchor` column"), "{err}");
}

#[test]
fn fineweb_streams_the_shards_of_a_folder_at_the_listed_commit() {
    let dir = tempfile::tempdir().unwrap();
    let docs = documents(380);
    write_parquet(&dir.path().join("a.parquet"), &docs[..250], 40, true);
    write_parquet(&dir.path().join("b.parquet"), &docs[250..], 40, true);
    let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
    let repo = FakeRepo::dataset("HuggingFaceFW/fineweb")
        .file("sample/10BT/000_00000.parquet", read("a.parquet"))
        .file("sample/10BT/000_00001.parquet", read("b.parquet"))
        .file("sample/10BT/README.md", "not data")
        .file("sample/100BT/000_00000.parquet", read("b.parquet"));
    let commit = repo.commit();
    let server = FakeHub::start(vec![repo]);
    server.page_size(2);
    let hub = Hub::new(&server.url, dir.path().join("cache"));
    let urls = dataset("hf://datasets/HuggingFaceFW/fineweb/sample/10BT").urls(&hub, None).unwrap();
    assert_eq!(urls.len(), 2);
    assert!(urls.iter().all(|u| u.contains(&commit)), "{urls:?}");
    // Read by range requests through the hub's redirect to its CDN, resumable mid-shard.
    let source = Source::urls(urls);
    let all: Vec<Document> = source.stream(Position::default()).collect::<Result<_, _>>().unwrap();
    assert_eq!(
        all.iter().map(|d| d.text.as_str()).collect::<Vec<_>>(),
        docs.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>()
    );
    let rest: Vec<Document> =
        source.stream(Position { shard: 1, row_group: 1, row: 3 }).collect::<Result<_, _>>().unwrap();
    assert_eq!(rest[0].text, docs[250 + 43].1);
    assert!(!dir.path().join("cache").exists(), "streamed, not cached");

    let err = dataset("hf://datasets/nobody/nothing/x").urls(&hub, None).unwrap_err().to_string();
    assert!(err.contains("nobody/nothing") && err.contains("401"), "{err}");
}
