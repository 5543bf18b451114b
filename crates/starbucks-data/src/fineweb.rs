//! FineWeb documents, streamed: Parquet shards (FineWeb's own layout: a `text` column plus `id`,
//! `dump`, `url`, …) and JSON / JSON Lines with the same fields, from local files, a folder, a
//! glob, URLs, or a HuggingFace dataset path. Parquet is read one row group at a time through
//! range requests, so memory stays flat whatever the shard size.
//!
//! A [`Position`] (shard, row group, row) says where the stream stands; opening a stream at a
//! position resumes there. Shards are split across ranks by index; a seeded buffer shuffles.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Int64Array, LargeStringArray, RecordBatch, StringArray, StringViewArray};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder,
};
use parquet::file::reader::ChunkReader;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::contain::contained;
use crate::error::{DataError, Result};
use crate::http::{self, HttpFile};
use crate::lines::Lines;

/// One document of the stream and where it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub id: String,
    pub text: String,
    pub position: Position,
}

/// A place in a stream: shard index, row group (0 for JSON), row within it (line for JSON Lines).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    pub shard: usize,
    pub row_group: usize,
    pub row: usize,
}

/// Where one shard lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shard {
    Local(PathBuf),
    Remote(String),
}

impl Shard {
    fn name(&self) -> String {
        match self {
            Shard::Local(p) => p.display().to_string(),
            Shard::Remote(u) => u.clone(),
        }
    }

    fn kind(&self) -> Result<Kind> {
        let name = self.name();
        let base = name.split(['?', '#']).next().unwrap_or(&name).trim_end_matches(".gz");
        if base.ends_with(".parquet") {
            Ok(Kind::Parquet)
        } else if base.ends_with(".jsonl") || base.ends_with(".ndjson") {
            Ok(Kind::JsonLines)
        } else if base.ends_with(".json") {
            Ok(Kind::JsonArray)
        } else {
            Err(DataError::whole(name, "unknown document format: expected .parquet, .jsonl or .json (optionally .gz)"))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Parquet,
    JsonLines,
    JsonArray,
}

/// The shards of a corpus, in a fixed order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub shards: Vec<Shard>,
}

impl Source {
    /// A file, a folder (its `.parquet`, `.jsonl`, `.json` files, sorted) or a glob pattern.
    pub fn local(spec: &str) -> Result<Self> {
        let path = Path::new(spec);
        let mut files: Vec<PathBuf> = if path.is_file() {
            vec![path.to_path_buf()]
        } else if path.is_dir() {
            std::fs::read_dir(path)
                .map_err(|e| DataError::whole(spec, format!("cannot list: {e}")))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && Shard::Local(p.clone()).kind().is_ok())
                .collect()
        } else {
            glob::glob(spec)
                .map_err(|e| DataError::whole(spec, format!("bad glob pattern: {e}")))?
                .filter_map(|p| p.ok())
                .filter(|p| p.is_file())
                .collect()
        };
        files.sort();
        if files.is_empty() {
            return Err(DataError::whole(
                spec,
                "no document shards found (a file, a folder of .parquet/.jsonl/.json, or a glob)",
            ));
        }
        Ok(Source { shards: files.into_iter().map(Shard::Local).collect() })
    }

    /// Shards at these URLs, in this order.
    pub fn urls<S: Into<String>>(urls: impl IntoIterator<Item = S>) -> Self {
        Source { shards: urls.into_iter().map(|u| Shard::Remote(u.into())).collect() }
    }

    /// The Parquet shards under `path` of a HuggingFace dataset repository, e.g.
    /// `("https://huggingface.co", "HuggingFaceFW/fineweb", "sample/10BT", "main")`, listed with
    /// the hub's tree API and read with range requests from its `resolve` URLs.
    pub fn hf_dataset(endpoint: &str, repo: &str, path: &str, revision: &str) -> Result<Self> {
        #[derive(Deserialize)]
        struct Entry {
            #[serde(rename = "type")]
            kind: String,
            path: String,
        }
        let endpoint = endpoint.trim_end_matches('/');
        let path = path.trim_matches('/');
        let api = format!("{endpoint}/api/datasets/{repo}/tree/{revision}/{path}?recursive=true");
        let listing: Vec<Entry> = serde_json::from_str(&http::get_string(&api)?)
            .map_err(|e| DataError::whole(&api, format!("unexpected listing: {e}")))?;
        let mut files: Vec<String> =
            listing.into_iter().filter(|e| e.kind == "file" && e.path.ends_with(".parquet")).map(|e| e.path).collect();
        files.sort();
        if files.is_empty() {
            return Err(DataError::whole(&api, "no .parquet files under this path"));
        }
        Ok(Source::urls(files.iter().map(|f| format!("{endpoint}/datasets/{repo}/resolve/{revision}/{f}"))))
    }

    /// This rank's share of the shards: every `world`-th one starting at `rank`.
    pub fn for_rank(self, rank: usize, world: usize) -> Self {
        assert!(world > 0 && rank < world, "rank {rank} of {world}");
        Source {
            shards: self.shards.into_iter().enumerate().filter(|(i, _)| i % world == rank).map(|(_, s)| s).collect(),
        }
    }

    /// A stream of the documents from `start` on; empty and whitespace-only texts are skipped
    /// and counted.
    pub fn stream(&self, start: Position) -> DocumentStream {
        DocumentStream { shards: self.shards.clone(), next: start, reader: None, skipped_empty: 0, failed: false }
    }
}

/// Reads one shard's rows in order from a position.
trait ShardReader: Send {
    /// The next row: (row group, row, id, text).
    fn next_row(&mut self) -> Option<Result<(usize, usize, String, String)>>;
}

/// Documents in shard order; `Iterator<Item = Result<Document>>`. After an error it ends.
pub struct DocumentStream {
    shards: Vec<Shard>,
    next: Position,
    reader: Option<Box<dyn ShardReader>>,
    skipped_empty: usize,
    failed: bool,
}

impl DocumentStream {
    /// Where the next document will be read from (save it to resume).
    pub fn position(&self) -> Position {
        self.next
    }

    /// Empty or whitespace-only texts skipped so far.
    pub fn skipped_empty(&self) -> usize {
        self.skipped_empty
    }

    fn open(&self, shard: &Shard, at: Position) -> Result<Box<dyn ShardReader>> {
        let name = shard.name();
        Ok(match (shard.kind()?, shard) {
            (Kind::Parquet, Shard::Local(path)) => {
                let file = File::open(path).map_err(|e| DataError::whole(&name, format!("cannot open: {e}")))?;
                Box::new(ParquetShard::open(file, name, at.row_group, at.row)?)
            }
            (Kind::Parquet, Shard::Remote(url)) => {
                Box::new(ParquetShard::open(HttpFile::open(url)?, name, at.row_group, at.row)?)
            }
            (Kind::JsonLines, Shard::Local(path)) => Box::new(JsonLinesShard::new(Lines::open(path)?, at.row)),
            (Kind::JsonLines, Shard::Remote(url)) => {
                let reader = http::get_reader(url)?;
                let reader: Box<dyn BufRead + Send> = if url.ends_with(".gz") {
                    Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(reader)))
                } else {
                    Box::new(BufReader::new(reader))
                };
                Box::new(JsonLinesShard::new(Lines::from_reader(name, reader), at.row))
            }
            (Kind::JsonArray, Shard::Local(path)) => Box::new(JsonArrayShard::read(Lines::open(path)?, at.row)?),
            (Kind::JsonArray, Shard::Remote(url)) => Box::new(JsonArrayShard::read(
                Lines::from_reader(name, Box::new(BufReader::new(http::get_reader(url)?))),
                at.row,
            )?),
        })
    }
}

impl Iterator for DocumentStream {
    type Item = Result<Document>;

    fn next(&mut self) -> Option<Result<Document>> {
        loop {
            if self.failed || self.next.shard >= self.shards.len() {
                return None;
            }
            if self.reader.is_none() {
                match self.open(&self.shards[self.next.shard], self.next) {
                    Ok(reader) => self.reader = Some(reader),
                    Err(e) => {
                        self.failed = true;
                        return Some(Err(e));
                    }
                }
            }
            match self.reader.as_mut().expect("opened").next_row() {
                None => {
                    self.reader = None;
                    self.next = Position { shard: self.next.shard + 1, row_group: 0, row: 0 };
                }
                Some(Err(e)) => {
                    self.failed = true;
                    return Some(Err(e));
                }
                Some(Ok((row_group, row, id, text))) => {
                    let position = Position { shard: self.next.shard, row_group, row };
                    self.next = Position { row: row + 1, ..position };
                    if text.trim().is_empty() {
                        self.skipped_empty += 1;
                        continue;
                    }
                    return Some(Ok(Document { id, text, position }));
                }
            }
        }
    }
}

/// The error of a Parquet read that panicked. parquet 60.x asserts on a negative column-chunk
/// range and divides by zero on some corrupt pages (found by fuzzing): every read of a shard
/// runs under [`contained`].
fn corrupt(panic: &str) -> String {
    format!("corrupt Parquet data (the reader failed: {panic})")
}

/// A Parquet shard, read one row group at a time, projected to `text` (and `id`).
struct ParquetShard<R: ChunkReader + 'static> {
    file: Arc<R>,
    name: String,
    metadata: ArrowReaderMetadata,
    projection: ProjectionMask,
    text_index: usize,
    id_index: Option<usize>,
    row_group: usize,
    skip: usize,
    batch: Option<(RecordBatch, usize)>,
    reader: Option<ParquetRecordBatchReader>,
    row: usize,
}

impl<R: ChunkReader + 'static> ParquetShard<R> {
    fn open(file: R, name: String, row_group: usize, row: usize) -> Result<Self> {
        let file = Arc::new(file);
        let metadata = contained(|| ArrowReaderMetadata::load(&ArcReader(file.clone()), ArrowReaderOptions::default()))
            .map_err(|panic| DataError::whole(&name, corrupt(&panic)))?
            .map_err(|e| DataError::whole(&name, format!("not a readable Parquet file: {e}")))?;
        let schema = metadata.parquet_schema();
        let names: Vec<String> = (0..schema.num_columns()).map(|i| schema.column(i).name().to_string()).collect();
        let column = |wanted: &str| names.iter().position(|n| n == wanted);
        let Some(text_leaf) = column("text") else {
            return Err(DataError::whole(&name, format!("no `text` column (columns: {})", names.join(", "))));
        };
        let id_leaf = column("id");
        let mut leaves = vec![text_leaf];
        leaves.extend(id_leaf);
        leaves.sort();
        let projection = ProjectionMask::leaves(schema, leaves.clone());
        let index_of = |leaf: usize| leaves.iter().position(|&l| l == leaf).expect("projected");
        Ok(ParquetShard {
            projection,
            text_index: index_of(text_leaf),
            id_index: id_leaf.map(index_of),
            file,
            name,
            metadata,
            row_group,
            skip: row,
            batch: None,
            reader: None,
            row,
        })
    }

    fn open_row_group(&mut self) -> Result<ParquetRecordBatchReader> {
        let skip = std::mem::take(&mut self.skip);
        let built = contained(|| {
            ParquetRecordBatchReaderBuilder::new_with_metadata(ArcReader(self.file.clone()), self.metadata.clone())
                .with_projection(self.projection.clone())
                .with_row_groups(vec![self.row_group])
                .with_offset(skip)
                .with_batch_size(256)
                .build()
        });
        built
            .map_err(|panic| corrupt(&panic))
            .and_then(|b| b.map_err(|e| e.to_string()))
            .map_err(|e| DataError::row(&self.name, self.row_group, self.row, e))
    }
}

fn string_at(array: &ArrayRef, i: usize) -> Option<String> {
    if array.is_null(i) {
        return None;
    }
    let any = array.as_any();
    if let Some(a) = any.downcast_ref::<StringArray>() {
        Some(a.value(i).to_string())
    } else if let Some(a) = any.downcast_ref::<LargeStringArray>() {
        Some(a.value(i).to_string())
    } else if let Some(a) = any.downcast_ref::<StringViewArray>() {
        Some(a.value(i).to_string())
    } else {
        any.downcast_ref::<Int64Array>().map(|a| a.value(i).to_string())
    }
}

impl<R: ChunkReader + 'static> ShardReader for ParquetShard<R> {
    fn next_row(&mut self) -> Option<Result<(usize, usize, String, String)>> {
        loop {
            if let Some((batch, i)) = self.batch.as_mut() {
                if *i < batch.num_rows() {
                    let (row_group, row) = (self.row_group, self.row);
                    let (texts, i_now) = (batch.column(self.text_index), *i);
                    let id = self.id_index.and_then(|c| string_at(batch.column(c), i_now));
                    *i += 1;
                    self.row += 1;
                    let id = id.unwrap_or_else(|| format!("{row_group}:{row}"));
                    if texts.is_null(i_now) {
                        return Some(Ok((row_group, row, id, String::new())));
                    }
                    return Some(match string_at(texts, i_now) {
                        Some(text) => Ok((row_group, row, id, text)),
                        None => {
                            Err(DataError::row(&self.name, row_group, row, "the `text` column is not a string column"))
                        }
                    });
                }
                self.batch = None;
            }
            if self.reader.is_none() {
                if self.row_group >= self.metadata.metadata().num_row_groups() {
                    return None;
                }
                match self.open_row_group() {
                    Ok(reader) => self.reader = Some(reader),
                    Err(e) => return Some(Err(e)),
                }
            }
            let reader = self.reader.as_mut().expect("opened");
            let next = match contained(|| reader.next()) {
                Ok(next) => next,
                Err(panic) => return Some(Err(DataError::row(&self.name, self.row_group, self.row, corrupt(&panic)))),
            };
            match next {
                Some(Ok(batch)) => self.batch = Some((batch, 0)),
                Some(Err(e)) => return Some(Err(DataError::row(&self.name, self.row_group, self.row, e.to_string()))),
                None => {
                    self.reader = None;
                    self.row_group += 1;
                    self.row = 0;
                }
            }
        }
    }
}

/// Lets several readers share one `ChunkReader` (a file or an `HttpFile` with its cache).
struct ArcReader<R>(Arc<R>);

impl<R: ChunkReader> parquet::file::reader::Length for ArcReader<R> {
    fn len(&self) -> u64 {
        self.0.len()
    }
}

impl<R: ChunkReader> ChunkReader for ArcReader<R> {
    type T = R::T;

    fn get_read(&self, start: u64) -> parquet::errors::Result<R::T> {
        self.0.get_read(start)
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        self.0.get_bytes(start, length)
    }
}

#[derive(Deserialize)]
struct JsonDocument {
    #[serde(default)]
    id: Option<serde_json::Value>,
    text: Option<String>,
}

fn json_id(id: Option<serde_json::Value>, row: usize) -> String {
    match id {
        Some(serde_json::Value::String(s)) => s,
        Some(other) if !other.is_null() => other.to_string(),
        _ => format!("0:{row}"),
    }
}

/// JSON Lines, one document per line; the row is the 0-based line index.
struct JsonLinesShard {
    lines: Lines,
    skip: usize,
}

impl JsonLinesShard {
    fn new(lines: Lines, skip: usize) -> Self {
        JsonLinesShard { lines, skip }
    }
}

impl ShardReader for JsonLinesShard {
    fn next_row(&mut self) -> Option<Result<(usize, usize, String, String)>> {
        loop {
            let (number, line) = match self.lines.next()? {
                Ok(x) => x,
                Err(e) => return Some(Err(e)),
            };
            let row = number - 1;
            if row < self.skip {
                continue;
            }
            if line.trim().is_empty() {
                return Some(Ok((0, row, format!("0:{row}"), String::new())));
            }
            return Some(match serde_json::from_str::<JsonDocument>(&line) {
                Ok(JsonDocument { text: Some(text), id }) => Ok((0, row, json_id(id, row), text)),
                Ok(_) => Err(self.lines.error("no `text` field")),
                Err(e) => Err(self.lines.error(format!("not a JSON document: {e}"))),
            });
        }
    }
}

/// A JSON array of documents (read whole: this layout is for samples, not shards).
struct JsonArrayShard {
    documents: std::vec::IntoIter<(usize, String, String)>,
}

impl JsonArrayShard {
    fn read(lines: Lines, skip: usize) -> Result<Self> {
        let name = lines.name().to_string();
        let mut text = String::new();
        for line in lines {
            text.push_str(&line?.1);
            text.push('\n');
        }
        if text.trim().is_empty() {
            return Err(DataError::whole(&name, "the file is empty"));
        }
        let documents: Vec<JsonDocument> = serde_json::from_str(&text).map_err(|e| {
            DataError::line(&name, e.line(), format!("not a JSON array of documents with a `text` field: {e}"))
        })?;
        let mut rows = Vec::with_capacity(documents.len());
        for (row, document) in documents.into_iter().enumerate().skip(skip) {
            let Some(text) = document.text else {
                return Err(DataError::whole(&name, format!("document {row} has no `text` field")));
            };
            rows.push((row, json_id(document.id, row), text));
        }
        Ok(JsonArrayShard { documents: rows.into_iter() })
    }
}

impl ShardReader for JsonArrayShard {
    fn next_row(&mut self) -> Option<Result<(usize, usize, String, String)>> {
        self.documents.next().map(|(row, id, text)| Ok((0, row, id, text)))
    }
}

/// Shuffles a stream with a seeded buffer of `size` documents (`size` 1 keeps the order).
pub struct Shuffled<I> {
    inner: I,
    buffer: Vec<Document>,
    size: usize,
    rng: ChaCha8Rng,
}

impl<I: Iterator<Item = Result<Document>>> Shuffled<I> {
    pub fn new(inner: I, size: usize, seed: u64) -> Self {
        Shuffled { inner, buffer: Vec::with_capacity(size), size: size.max(1), rng: ChaCha8Rng::seed_from_u64(seed) }
    }

    pub fn inner(&self) -> &I {
        &self.inner
    }
}

impl<I: Iterator<Item = Result<Document>>> Iterator for Shuffled<I> {
    type Item = Result<Document>;

    fn next(&mut self) -> Option<Result<Document>> {
        while self.buffer.len() < self.size {
            match self.inner.next() {
                Some(Ok(doc)) => self.buffer.push(doc),
                Some(Err(e)) => return Some(Err(e)),
                None => break,
            }
        }
        if self.buffer.is_empty() {
            return None;
        }
        let i = self.rng.random_range(0..self.buffer.len());
        Some(Ok(self.buffer.swap_remove(i)))
    }
}
