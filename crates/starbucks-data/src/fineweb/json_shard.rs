//! Documents as JSON Lines (one per line) or as one JSON array (samples), with FineWeb's
//! `text` and `id` fields.

use std::io::{BufRead, Read};

use serde::Deserialize;

use super::ShardReader;
use crate::error::{DataError, Result};
use crate::lines::Lines;

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
pub(super) struct JsonLinesShard {
    lines: Lines,
    skip: usize,
}

impl JsonLinesShard {
    pub(super) fn new(lines: Lines, skip: usize) -> Self {
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
pub(super) struct JsonArrayShard {
    documents: std::vec::IntoIter<(usize, String, String)>,
}

impl JsonArrayShard {
    /// Parses the whole of `reader` (named `name` in errors) at once.
    pub(super) fn read(name: &str, mut reader: Box<dyn BufRead + Send>, skip: usize) -> Result<Self> {
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).map_err(|e| DataError::whole(name, format!("cannot read: {e}")))?;
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            let before = &bytes[..e.valid_up_to()];
            let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
            DataError::line(name, line, format!("invalid UTF-8 at byte {}", e.valid_up_to() - line_start))
        })?;
        if text.trim().is_empty() {
            return Err(DataError::whole(name, "the file is empty"));
        }
        let documents: Vec<JsonDocument> = serde_json::from_str(text).map_err(|e| {
            DataError::line(name, e.line(), format!("not a JSON array of documents with a `text` field: {e}"))
        })?;
        let mut rows = Vec::with_capacity(documents.len());
        for (row, document) in documents.into_iter().enumerate().skip(skip) {
            let Some(text) = document.text else {
                return Err(DataError::whole(name, format!("document {row} has no `text` field")));
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
