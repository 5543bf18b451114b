//! The hub's table formats, read by column name (`starbucks_data::table`): an MTEB STS set as
//! JSON Lines or Parquet, NLI triplets in Parquet, a BEIR corpus in Parquet (first byte 0–3, the
//! input as the file), or (4–6) a valid Parquet file of those columns written from the input's
//! lines with bytes of it then overwritten at input-chosen places.

use std::sync::Arc;

use crate::support::{file, overwrite, parquet, sections};
use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use parquet::file::properties::WriterProperties;
use starbucks_data::{eval, finetune};

/// A Parquet file whose string columns are `names`, filled from the input's lines in turn, and
/// a `score` column from their lengths (row groups of 8 rows, so a file has several).
fn table(names: &[&str], text: &[u8]) -> Vec<u8> {
    let lines: Vec<String> = String::from_utf8_lossy(text).lines().map(str::to_string).collect();
    let rows = lines.len() / names.len();
    let mut columns: Vec<(&str, ArrayRef)> = names
        .iter()
        .enumerate()
        .map(|(c, name)| {
            let values = (0..rows).map(|r| lines[r * names.len() + c].clone());
            (*name, Arc::new(StringArray::from_iter_values(values)) as ArrayRef)
        })
        .collect();
    columns.push(("score", Arc::new(Float64Array::from_iter_values((0..rows).map(|r| lines[r].len() as f64)))));
    let batch = RecordBatch::try_from_iter(columns).expect("columns of one length");
    parquet(&batch, Some(WriterProperties::builder().set_max_row_group_row_count(Some(8)).build()))
}

pub fn tables(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else { return };
    let layouts: [&[&str]; 3] =
        [&["sentence1", "sentence2"], &["anchor", "positive", "negative"], &["_id", "title", "text"]];
    let (path, layout) = match which % 7 {
        0 => (file("test.jsonl", rest), 0),
        n @ 1..=3 => (file("train.parquet", rest), n as usize - 1),
        n => {
            // Lines of text, then overwrites.
            let layout = n as usize - 4;
            let parts = sections(rest, 2);
            let mut bytes = table(layouts[layout], parts[0]);
            overwrite(&mut bytes, parts[1]);
            (file("train.parquet", &bytes), layout)
        }
    };
    match layout {
        0 => drop(eval::read_sts_table(&path)),
        1 => drop(finetune::read_triplets(&path)),
        _ => {
            let queries = file("queries.jsonl", b"{\"_id\": \"q\", \"text\": \"a\"}\n");
            let qrels = file("qrels.tsv", b"q\td\t1\n");
            drop(eval::read_beir_files(&path, &queries, &qrels));
        }
    }
}
