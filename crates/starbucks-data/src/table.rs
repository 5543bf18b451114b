//! Tables read by column name, whatever the file: Parquet (the hub's format; the columns found
//! in the file's schema, read one row group at a time) or JSON Lines, plain or `.gz`. A row
//! comes out as a JSON object of the named columns, so one `serde` type reads either format.

use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use bytes::Bytes;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::contain::{contained, corrupt_parquet};
use crate::error::{DataError, Result};
use crate::lines::Lines;

pub fn is_parquet(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
}

/// Every row of `path` as a `T`, read from the columns (Parquet) or fields (JSON Lines) named
/// in `columns`; `what` names a row in errors (`"STS pair (sentence1, sentence2, score)"`).
pub fn records<T: DeserializeOwned>(path: &Path, columns: &[&str], what: &str) -> Result<Vec<T>> {
    let name = path.display().to_string();
    let mut out = Vec::new();
    if is_parquet(path) {
        for (row_group, row, object) in parquet_rows(path, columns)? {
            out.push(
                serde_json::from_value(Value::Object(object))
                    .map_err(|e| DataError::row(&name, row_group, row, format!("not a {what}: {e}")))?,
            );
        }
    } else {
        for item in Lines::open(path)? {
            let (number, line) = item?;
            if line.trim().is_empty() {
                continue;
            }
            out.push(
                serde_json::from_str(&line)
                    .map_err(|e| DataError::line(&name, number, format!("not a {what}: {e}")))?,
            );
        }
    }
    if out.is_empty() {
        return Err(DataError::whole(&name, "the file has no rows"));
    }
    Ok(out)
}

/// A Parquet row: its row group, its row within the group, and the named columns' values.
pub type ParquetRow = (usize, usize, Map<String, Value>);

/// The rows of a Parquet file. A column the schema lacks is an error naming it and the columns
/// there are.
pub fn parquet_rows(path: &Path, columns: &[&str]) -> Result<Vec<ParquetRow>> {
    let name = path.display().to_string();
    let corrupt = |panic: String| DataError::whole(&name, corrupt_parquet(&panic));
    // Read whole: the files read here (evaluation sets, training pairs) are small next to
    // memory, and the parquet crate, walking a corrupt column chunk's page headers, makes a
    // system call per header on a file (one fuzzed file took 55 s; in memory it does not).
    let bytes = Bytes::from(std::fs::read(path).map_err(|e| DataError::whole(&name, format!("cannot open: {e}")))?);
    // The footer is parsed once; every row group's reader shares it.
    let metadata = contained(|| ArrowReaderMetadata::load(&bytes, Default::default()))
        .map_err(corrupt)?
        .map_err(|e| DataError::whole(&name, format!("not a readable Parquet file: {e}")))?;
    let schema = metadata.schema();
    let have: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let mut roots = Vec::new();
    for column in columns {
        let index = have
            .iter()
            .position(|h| h == column)
            .ok_or_else(|| DataError::whole(&name, format!("no `{column}` column (columns: {})", have.join(", "))))?;
        let field = &schema.fields()[index];
        if !supported(field.data_type()) {
            return Err(DataError::whole(
                &name,
                format!("column `{column}` has type {}, which is not read", field.data_type()),
            ));
        }
        roots.push(index);
    }
    let projection = ProjectionMask::roots(metadata.parquet_schema(), roots);
    let mut out = Vec::new();
    for row_group in 0..metadata.metadata().num_row_groups() {
        let reader = contained(|| {
            ParquetRecordBatchReaderBuilder::new_with_metadata(bytes.clone(), metadata.clone())
                .with_projection(projection.clone())
                .with_row_groups(vec![row_group])
                .build()
        })
        .map_err(corrupt)?
        .map_err(|e| DataError::row(&name, row_group, 0, e.to_string()))?;
        let (mut reader, mut row) = (reader, 0);
        // The parquet crate panics on some corrupt pages (found by fuzzing the FineWeb reader).
        while let Some(batch) = contained(|| reader.next()).map_err(corrupt)? {
            let batch = batch.map_err(|e| DataError::row(&name, row_group, row, e.to_string()))?;
            append_rows(&batch, &mut out, row_group, &mut row);
        }
    }
    Ok(out)
}

fn append_rows(batch: &RecordBatch, out: &mut Vec<ParquetRow>, row_group: usize, row: &mut usize) {
    let schema = batch.schema();
    for i in 0..batch.num_rows() {
        let mut object = Map::new();
        for (field, column) in schema.fields().iter().zip(batch.columns()) {
            object.insert(field.name().clone(), value_at(column.as_ref(), i));
        }
        out.push((row_group, *row, object));
        *row += 1;
    }
}

/// One cell as JSON: strings, numbers, booleans, lists and structs (the types the hub's
/// datasets use); any other type comes out as its display text.
fn value_at(array: &dyn Array, i: usize) -> Value {
    if array.is_null(i) {
        return Value::Null;
    }
    macro_rules! number {
        ($t:ty) => {
            serde_json::json!(array.as_primitive::<$t>().value(i))
        };
    }
    match array.data_type() {
        DataType::Utf8 => Value::String(array.as_string::<i32>().value(i).to_string()),
        DataType::LargeUtf8 => Value::String(array.as_string::<i64>().value(i).to_string()),
        DataType::Utf8View => Value::String(array.as_string_view().value(i).to_string()),
        DataType::Boolean => Value::Bool(array.as_boolean().value(i)),
        DataType::Int8 => number!(Int8Type),
        DataType::Int16 => number!(Int16Type),
        DataType::Int32 => number!(Int32Type),
        DataType::Int64 => number!(Int64Type),
        DataType::UInt8 => number!(UInt8Type),
        DataType::UInt16 => number!(UInt16Type),
        DataType::UInt32 => number!(UInt32Type),
        DataType::UInt64 => number!(UInt64Type),
        DataType::Float32 => number!(Float32Type),
        DataType::Float64 => number!(Float64Type),
        DataType::List(_) => list(array.as_list::<i32>().value(i).as_ref()),
        DataType::LargeList(_) => list(array.as_list::<i64>().value(i).as_ref()),
        DataType::Struct(fields) => {
            let s = array.as_struct();
            Value::Object(
                fields.iter().zip(s.columns()).map(|(f, c)| (f.name().clone(), value_at(c.as_ref(), i))).collect(),
            )
        }
        _ => unreachable!("the column types were checked by `supported`"),
    }
}

/// The types [`value_at`] reads.
fn supported(data_type: &DataType) -> bool {
    match data_type {
        DataType::List(f) | DataType::LargeList(f) => supported(f.data_type()),
        DataType::Struct(fields) => fields.iter().all(|f| supported(f.data_type())),
        t => matches!(
            t,
            DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Utf8View
                | DataType::Boolean
                | DataType::Null
                | DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::UInt8
                | DataType::UInt16
                | DataType::UInt32
                | DataType::UInt64
                | DataType::Float32
                | DataType::Float64
        ),
    }
}

fn list(values: &dyn Array) -> Value {
    Value::Array((0..values.len()).map(|j| value_at(values, j)).collect())
}
