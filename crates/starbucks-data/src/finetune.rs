//! Fine-tuning data: NLI triplets (anchor, positive, negative) from TSV or JSONL, or built from
//! labelled pairs; MS MARCO queries with positive and negative passages, from Tevatron JSONL or
//! the official `triples.train.small.tsv`, sampled into groups of 1 positive + k negatives.

use std::collections::HashMap;
use std::path::Path;

use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::lines::{Lines, split_tsv};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Triplet {
    pub anchor: String,
    pub positive: String,
    pub negative: String,
}

/// The texts of `rows` in the order the losses read them: every anchor, then every positive,
/// then every negative.
pub fn triplet_texts(rows: &[Triplet]) -> Vec<&str> {
    let column = |pick: fn(&Triplet) -> &String| rows.iter().map(move |t| pick(t).as_str());
    column(|t| &t.anchor).chain(column(|t| &t.positive)).chain(column(|t| &t.negative)).collect()
}

fn is_jsonl(path: &Path) -> bool {
    let name = path.to_string_lossy();
    name.trim_end_matches(".gz").ends_with(".jsonl") || name.trim_end_matches(".gz").ends_with(".json")
}

/// Reads rows of a TSV (with a header naming the columns), JSONL or Parquet file; `required`
/// names the string columns / fields every row must have. Empty files are errors. The number
/// beside each row is its line (its 1-based row for Parquet).
fn read_records(path: &Path, required: &[&str]) -> Result<Vec<(usize, HashMap<String, String>)>> {
    if crate::table::is_parquet(path) {
        let name = path.display().to_string();
        let rows = crate::table::parquet_rows(path, required)?;
        if rows.is_empty() {
            return Err(DataError::whole(&name, "the file has no rows"));
        }
        return rows
            .into_iter()
            .enumerate()
            .map(|(i, (row_group, row, mut object))| {
                let mut record = HashMap::new();
                for key in required {
                    match object.remove(*key) {
                        Some(serde_json::Value::String(s)) => record.insert(key.to_string(), s),
                        _ => {
                            return Err(DataError::row(
                                &name,
                                row_group,
                                row,
                                format!("column `{key}` is not a string here"),
                            ));
                        }
                    };
                }
                Ok((i + 1, record))
            })
            .collect();
    }
    let mut lines = Lines::open(path)?;
    let name = lines.name().to_string();
    let mut records = Vec::new();
    if is_jsonl(path) {
        for item in lines.by_ref() {
            let (number, line) = item?;
            if line.trim().is_empty() {
                continue;
            }
            let value: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&line)
                .map_err(|e| DataError::line(&name, number, format!("not a JSON object: {e}")))?;
            let mut record = HashMap::new();
            for key in required {
                match value.get(*key) {
                    Some(serde_json::Value::String(s)) => record.insert(key.to_string(), s.clone()),
                    _ => return Err(DataError::line(&name, number, format!("missing string field `{key}`"))),
                };
            }
            records.push((number, record));
        }
    } else {
        let Some(header) = lines.next().transpose()? else {
            return Err(DataError::whole(&name, "the file is empty"));
        };
        let columns: Vec<String> = header.1.split('\t').map(|c| c.trim().to_lowercase()).collect();
        let index: Vec<usize> = required
            .iter()
            .map(|key| {
                columns.iter().position(|c| c == key).ok_or_else(|| {
                    DataError::line(&name, 1, format!("header has no `{key}` column (columns: {})", columns.join(", ")))
                })
            })
            .collect::<Result<_>>()?;
        for item in lines {
            let (number, line) = item?;
            if line.is_empty() {
                continue;
            }
            let cols = split_tsv(&name, number, &line, columns.len())?;
            records.push((
                number,
                required.iter().zip(&index).map(|(k, &i)| (k.to_string(), cols[i].to_string())).collect(),
            ));
        }
    }
    if records.is_empty() {
        return Err(DataError::whole(&name, "the file is empty"));
    }
    Ok(records)
}

/// Triplets from a TSV with header `anchor, positive, negative` or JSONL with those fields.
pub fn read_triplets(path: &Path) -> Result<Vec<Triplet>> {
    Ok(read_records(path, &["anchor", "positive", "negative"])?
        .into_iter()
        .map(|(_, mut r)| Triplet {
            anchor: r.remove("anchor").expect("required"),
            positive: r.remove("positive").expect("required"),
            negative: r.remove("negative").expect("required"),
        })
        .collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NliLabel {
    Entailment,
    Neutral,
    Contradiction,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NliPair {
    pub premise: String,
    pub hypothesis: String,
    pub label: NliLabel,
}

/// Labelled NLI pairs from a TSV with header `premise, hypothesis, label` (other columns
/// ignored) or JSONL with those fields; labels `entailment`, `neutral`, `contradiction`.
pub fn read_nli_pairs(path: &Path) -> Result<Vec<NliPair>> {
    let name = path.display().to_string();
    read_records(path, &["premise", "hypothesis", "label"])?
        .into_iter()
        .map(|(number, mut r)| {
            let label = match r["label"].trim() {
                "entailment" => NliLabel::Entailment,
                "neutral" => NliLabel::Neutral,
                "contradiction" => NliLabel::Contradiction,
                other => return Err(DataError::line(&name, number, format!("unknown label `{other}`"))),
            };
            Ok(NliPair {
                premise: r.remove("premise").expect("required"),
                hypothesis: r.remove("hypothesis").expect("required"),
                label,
            })
        })
        .collect()
}

/// One triplet per premise that has both an entailed and a contradicted hypothesis: the first
/// of each, in file order (how the shipped `snli-triplets.tsv` was built).
pub fn triplets_from_pairs(pairs: &[NliPair]) -> Vec<Triplet> {
    let mut order: Vec<&str> = Vec::new();
    let mut by_premise: HashMap<&str, (Option<&str>, Option<&str>)> = HashMap::new();
    for pair in pairs {
        let entry = by_premise.entry(&pair.premise).or_insert_with(|| {
            order.push(&pair.premise);
            (None, None)
        });
        match pair.label {
            NliLabel::Entailment => entry.0 = entry.0.or(Some(&pair.hypothesis)),
            NliLabel::Contradiction => entry.1 = entry.1.or(Some(&pair.hypothesis)),
            NliLabel::Neutral => {}
        }
    }
    order
        .into_iter()
        .filter_map(|premise| match by_premise[premise] {
            (Some(positive), Some(negative)) => {
                Some(Triplet { anchor: premise.into(), positive: positive.into(), negative: negative.into() })
            }
            _ => None,
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Passage {
    #[serde(default)]
    pub docid: String,
    #[serde(default)]
    pub title: String,
    pub text: String,
}

impl Passage {
    /// The text the encoder sees: `title text` when there is a title (Tevatron's format).
    pub fn full_text(&self) -> String {
        if self.title.trim().is_empty() { self.text.clone() } else { format!("{} {}", self.title, self.text) }
    }
}

/// A training query with its judged passages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetrievalExample {
    #[serde(default)]
    pub query_id: String,
    pub query: String,
    pub positive_passages: Vec<Passage>,
    #[serde(default)]
    pub negative_passages: Vec<Passage>,
}

/// Tevatron JSONL (`query_id`, `query`, `positive_passages`, `negative_passages`; passages with
/// `docid`, `title`, `text`), plain or `.gz`, or Parquet with those columns.
pub fn read_tevatron(path: &Path) -> Result<Vec<RetrievalExample>> {
    if crate::table::is_parquet(path) {
        let columns = ["query_id", "query", "positive_passages", "negative_passages"];
        let examples: Vec<RetrievalExample> = crate::table::records(path, &columns, "Tevatron training example")?;
        if let Some(i) = examples.iter().position(|e| e.positive_passages.is_empty()) {
            return Err(DataError::whole(path.display(), format!("row {}: no positive passage", i + 1)));
        }
        return Ok(examples);
    }
    let mut examples = Vec::new();
    let lines = Lines::open(path)?;
    let name = lines.name().to_string();
    for item in lines {
        let (number, line) = item?;
        if line.trim().is_empty() {
            continue;
        }
        let example: RetrievalExample = serde_json::from_str(&line)
            .map_err(|e| DataError::line(&name, number, format!("not a Tevatron training example: {e}")))?;
        if example.positive_passages.is_empty() {
            return Err(DataError::line(&name, number, "no positive passage"));
        }
        examples.push(example);
    }
    if examples.is_empty() {
        return Err(DataError::whole(&name, "the file is empty"));
    }
    Ok(examples)
}

/// MS MARCO triples: `query, positive, negative` per line (the official
/// `triples.train.small.tsv`), or `qid, pos_pid, neg_pid, query, positive, negative` with a
/// header. Lines of one query are merged into one example, in order of first appearance.
pub fn read_msmarco_triples(path: &Path) -> Result<Vec<RetrievalExample>> {
    let mut lines = Lines::open(path)?;
    let name = lines.name().to_string();
    let mut examples: Vec<RetrievalExample> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let passage = |docid: &str, text: &str| Passage { docid: docid.into(), title: String::new(), text: text.into() };
    let mut with_ids = None;
    for item in lines.by_ref() {
        let (number, line) = item?;
        if line.is_empty() {
            continue;
        }
        let cols = split_tsv(&name, number, &line, 3)?;
        let ids = *with_ids.get_or_insert(cols.len() >= 6);
        if ids && number == 1 && cols[0] == "qid" {
            continue;
        }
        let (qid, query, pos, neg) = if ids {
            let cols = split_tsv(&name, number, &line, 6)?;
            ((cols[0], cols[1], cols[2]), cols[3], cols[4], cols[5])
        } else {
            (("", "", ""), cols[0], cols[1], cols[2])
        };
        let key = if ids { qid.0.to_string() } else { query.to_string() };
        let at = *index.entry(key).or_insert_with(|| {
            examples.push(RetrievalExample {
                query_id: qid.0.into(),
                query: query.into(),
                positive_passages: Vec::new(),
                negative_passages: Vec::new(),
            });
            examples.len() - 1
        });
        let example = &mut examples[at];
        if !example.positive_passages.iter().any(|p| p.text == pos) {
            example.positive_passages.push(passage(qid.1, pos));
        }
        if !example.negative_passages.iter().any(|p| p.text == neg) {
            example.negative_passages.push(passage(qid.2, neg));
        }
    }
    if examples.is_empty() {
        return Err(DataError::whole(&name, "the file is empty"));
    }
    Ok(examples)
}

/// How groups are built and how long their texts may be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupConfig {
    /// Negatives per group (the paper: 7, so groups of 8).
    pub negatives: usize,
    pub query_max_len: usize,
    pub passage_max_len: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig { negatives: 7, query_max_len: 32, passage_max_len: 196 }
    }
}

/// A query and its group: `passages[0]` is the positive, then the negatives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub query: String,
    pub passages: Vec<String>,
}

/// The group of example `index` in `epoch`: a positive and `negatives` negatives drawn by a
/// generator seeded from (seed, epoch, index), so every epoch differs and every rerun agrees.
/// With too few negatives they are drawn with replacement (Tevatron's rule).
pub fn sample_group(example: &RetrievalExample, negatives: usize, seed: u64, epoch: u64, index: usize) -> Group {
    let mut rng = ChaCha8Rng::seed_from_u64(
        seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (index as u64).wrapping_mul(0xD1B5_4A32_D192_ED03),
    );
    let positive = example.positive_passages.choose(&mut rng).expect("examples have a positive").full_text();
    let pool = &example.negative_passages;
    let mut passages = vec![positive];
    if pool.len() >= negatives {
        let mut chosen: Vec<&Passage> = pool.iter().collect();
        chosen.shuffle(&mut rng);
        passages.extend(chosen[..negatives].iter().map(|p| p.full_text()));
    } else if !pool.is_empty() {
        passages.extend((0..negatives).map(|_| pool[rng.random_range(0..pool.len())].full_text()));
    }
    Group { query: example.query.clone(), passages }
}
