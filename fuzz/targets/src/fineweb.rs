//! FineWeb shards as `Source::local` streams them: the input as a JSON Lines, JSON array or
//! Parquet file (first byte 0, 1, 2), or (3) a valid Parquet file written from the input's lines
//! with bytes of it then overwritten at input-chosen places, which reaches past the footer
//! checks that random bytes rarely pass.

use std::sync::Arc;

use crate::support::{file, overwrite, parquet, sections};
use arrow_array::{ArrayRef, RecordBatch, StringArray};
use starbucks_data::fineweb::Source;

/// A Parquet file of FineWeb's `text` and `id` columns, one document per line of `text`.
fn shard(text: &[u8]) -> Vec<u8> {
    let docs: Vec<String> = String::from_utf8_lossy(text).lines().map(str::to_string).collect();
    let ids: Vec<String> = (0..docs.len()).map(|i| format!("doc-{i}")).collect();
    let batch = RecordBatch::try_from_iter(vec![
        ("text", Arc::new(StringArray::from_iter_values(&docs)) as ArrayRef),
        ("id", Arc::new(StringArray::from_iter_values(&ids)) as ArrayRef),
    ])
    .expect("two string columns of one length");
    parquet(&batch, None)
}

pub fn fineweb(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else { return };
    let path = match which % 4 {
        0 => file("shard.jsonl", rest),
        1 => file("shard.json", rest),
        2 => file("shard.parquet", rest),
        _ => {
            // Lines of text, then overwrites.
            let parts = sections(rest, 2);
            let mut bytes = shard(parts[0]);
            overwrite(&mut bytes, parts[1]);
            file("shard.parquet", &bytes)
        }
    };
    let Ok(source) = Source::local(path.to_str().expect("a UTF-8 scratch path")) else { return };
    source.stream(Default::default()).take(10_000).for_each(drop);
}
