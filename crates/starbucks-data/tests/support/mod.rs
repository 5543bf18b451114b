#![allow(dead_code)]
//! Shared test helpers: the shipped data folder, Parquet writing, the loopback server.

pub mod server;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

pub fn data_dir() -> PathBuf {
    Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("../../data")
}

pub fn tokenizer_json() -> PathBuf {
    let path = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("../../assets/all-MiniLM-L6-v2/tokenizer.json");
    assert!(path.is_file(), "{} is missing: run `cargo xtask fetch minilm`", path.display());
    path
}

/// Writes a FineWeb-shaped Parquet file (`text`, `id`, `url`, `token_count`), `rows_per_group`
/// rows per row group. `text_column` false writes `content` instead of `text`.
pub fn write_parquet(path: &Path, docs: &[(String, String)], rows_per_group: usize, text_column: bool) {
    let text_name = if text_column { "text" } else { "content" };
    let file = std::fs::File::create(path).unwrap();
    let props = WriterProperties::builder().set_max_row_group_row_count(Some(rows_per_group)).build();
    let mut writer: Option<ArrowWriter<std::fs::File>> = None;
    for chunk in docs.chunks(rows_per_group) {
        let batch = RecordBatch::try_from_iter(vec![
            (text_name, Arc::new(StringArray::from_iter_values(chunk.iter().map(|(_, t)| t.as_str()))) as ArrayRef),
            ("id", Arc::new(StringArray::from_iter_values(chunk.iter().map(|(i, _)| i.as_str()))) as ArrayRef),
            (
                "url",
                Arc::new(StringArray::from_iter_values(chunk.iter().map(|(i, _)| format!("https://example.com/{i}"))))
                    as ArrayRef,
            ),
            (
                "token_count",
                Arc::new(Int64Array::from_iter_values(chunk.iter().map(|(_, t)| t.len() as i64))) as ArrayRef,
            ),
        ])
        .unwrap();
        let w = writer.get_or_insert_with(|| {
            ArrowWriter::try_new(file.try_clone().unwrap(), batch.schema(), Some(props.clone())).unwrap()
        });
        w.write(&batch).unwrap();
        w.flush().unwrap();
    }
    writer.expect("at least one row").close().unwrap();
}

/// `n` documents with ids `doc-i` and varied texts.
pub fn documents(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("doc-{i}"), format!("Document number {i} says {} things.", "many ".repeat(i % 7 + 1))))
        .collect()
}
