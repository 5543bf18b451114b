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

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

mod json_shard;
mod parquet_shard;

use self::json_shard::{JsonArrayShard, JsonLinesShard};
use self::parquet_shard::ParquetShard;
use crate::error::{DataError, Result};
use crate::http::{self, HttpFile};
use crate::lines::{self, Lines};

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
pub(crate) trait ShardReader: Send {
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
            (Kind::JsonArray, Shard::Local(path)) => Box::new(JsonArrayShard::read(&name, lines::open(path)?, at.row)?),
            (Kind::JsonArray, Shard::Remote(url)) => {
                Box::new(JsonArrayShard::read(&name, Box::new(BufReader::new(http::get_reader(url)?)), at.row)?)
            }
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
