//! Memory while streaming a large Parquet shard over HTTP (a measurement, not a test).
//!
//! ```sh
//! cargo run --release -p starbucks-data --example stream_parquet -- write /tmp/shard.parquet 200
//! cargo run --release -p starbucks-data --example stream_parquet -- stream /tmp/shard.parquet
//! ```
//!
//! `write` makes a FineWeb-shaped shard of about N MB (random English words from the shipped
//! FineWeb sample, 2,000 documents per row group). `stream` serves its folder from a loopback
//! HTTP server in this process, reads every document through `Source::urls` (range requests),
//! and prints the documents, bytes, time, and the process's peak resident memory (VmHWM).

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use rand::{Rng, SeedableRng};
use starbucks_data::fineweb::{Position, Source};

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn write(path: &Path, megabytes: u64) {
    let sample = support::data_dir().join("fineweb/fineweb-subset-300.json.gz");
    let mut words: Vec<String> = Source::local(sample.to_str().unwrap())
        .unwrap()
        .stream(Position::default())
        .flat_map(|d| d.unwrap().text.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect();
    words.sort();
    words.dedup();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let props = WriterProperties::builder().set_max_row_group_row_count(Some(2000)).build();
    let file = std::fs::File::create(path).unwrap();
    let mut writer: Option<ArrowWriter<std::fs::File>> = None;
    let mut n = 0usize;
    while writer.as_ref().map_or(0, |w| w.bytes_written() as u64) < megabytes << 20 {
        let texts: Vec<String> = (0..2000)
            .map(|_| {
                (0..rng.random_range(200..800))
                    .map(|_| words[rng.random_range(0..words.len())].as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        let ids: Vec<String> = (n..n + texts.len()).map(|i| format!("<urn:uuid:{i:08}>")).collect();
        n += texts.len();
        let batch = RecordBatch::try_from_iter(vec![
            ("text", Arc::new(StringArray::from(texts)) as ArrayRef),
            ("id", Arc::new(StringArray::from(ids)) as ArrayRef),
        ])
        .unwrap();
        let w = writer.get_or_insert_with(|| {
            ArrowWriter::try_new(file.try_clone().unwrap(), batch.schema(), Some(props.clone())).unwrap()
        });
        w.write(&batch).unwrap();
        w.flush().unwrap();
    }
    writer.unwrap().close().unwrap();
    let size = std::fs::metadata(path).unwrap().len();
    println!("wrote {} documents, {:.1} MB, to {}", n, size as f64 / 1048576.0, path.display());
}

fn stream(path: &Path) {
    let server = support::server::Server::start(path.parent().unwrap());
    let url = server.url(path.file_name().unwrap().to_str().unwrap());
    let start = Instant::now();
    let (mut docs, mut bytes) = (0usize, 0usize);
    for doc in Source::urls([url.clone()]).stream(Position::default()) {
        let doc = doc.unwrap();
        docs += 1;
        bytes += doc.text.len();
    }
    let size = std::fs::metadata(path).unwrap().len() as f64 / 1048576.0;
    println!(
        "streamed {url} ({size:.1} MB): {docs} documents, {:.1} MB of text in {:.1} s over {} HTTP requests; peak RSS {:.1} MB",
        bytes as f64 / 1048576.0,
        start.elapsed().as_secs_f64(),
        server.requests.load(std::sync::atomic::Ordering::SeqCst),
        peak_rss_mb()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["write", path, mb] => write(Path::new(path), mb.parse().expect("size in MB")),
        ["stream", path] => stream(Path::new(path)),
        _ => eprintln!("usage: stream_parquet write PATH MB | stream PATH"),
    }
}
