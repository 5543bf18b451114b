//! FineWeb's Parquet shards, read one row group at a time and projected to `text` (and `id`):
//! through range requests when remote, so memory stays flat whatever the shard size.

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Int64Array, LargeStringArray, RecordBatch, StringArray, StringViewArray};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder,
};
use parquet::file::reader::ChunkReader;

use super::ShardReader;
use crate::contain::{contained, corrupt_parquet as corrupt};
use crate::error::{DataError, Result};

/// A Parquet shard, read one row group at a time, projected to `text` (and `id`).
pub(super) struct ParquetShard<R: ChunkReader + 'static> {
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
    pub(super) fn open(file: R, name: String, row_group: usize, row: usize) -> Result<Self> {
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
