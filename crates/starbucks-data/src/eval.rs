//! Evaluation data: STS pairs (STS-B layout, SemEval STS 2012–2016, SICK), BEIR folders, and
//! MS MARCO / TREC files (collection, queries, qrels, runs).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{DataError, Result};
use crate::lines::{Lines, split_tsv};

/// Two sentences and their gold similarity.
#[derive(Debug, Clone, PartialEq)]
pub struct StsPair {
    pub sentence1: String,
    pub sentence2: String,
    pub score: f64,
}

fn parse_score(name: &str, number: usize, text: &str) -> Result<f64> {
    text.trim().parse().map_err(|_| DataError::line(name, number, format!("score `{text}` is not a number")))
}

fn nonempty<T>(name: &str, rows: Vec<T>) -> Result<Vec<T>> {
    if rows.is_empty() { Err(DataError::whole(name, "the file is empty")) } else { Ok(rows) }
}

/// STS Benchmark (`sts-{train,dev,test}.csv`): tab-separated, no quoting; columns 5, 6, 7
/// (1-based) are score 0–5, sentence 1, sentence 2; extra columns ignored.
pub fn read_stsb(path: &Path) -> Result<Vec<StsPair>> {
    let lines = Lines::open(path)?;
    let name = lines.name().to_string();
    let mut pairs = Vec::new();
    for item in lines {
        let (number, line) = item?;
        if line.is_empty() {
            continue;
        }
        let cols = split_tsv(&name, number, &line, 7)?;
        pairs.push(StsPair {
            sentence1: cols[5].into(),
            sentence2: cols[6].into(),
            score: parse_score(&name, number, cols[4])?,
        });
    }
    nonempty(&name, pairs)
}

/// One SemEval STS file pair: `STS.input.X.txt` (sentence 1 TAB sentence 2 per line) and
/// `STS.gs.X.txt` (one score per line); lines with an empty gold score are skipped.
pub fn read_semeval_sts(input: &Path, gold: &Path) -> Result<Vec<StsPair>> {
    let inputs: Vec<(usize, String)> = Lines::open(input)?.collect::<Result<_>>()?;
    let golds: Vec<(usize, String)> = Lines::open(gold)?.collect::<Result<_>>()?;
    let input_name = input.display().to_string();
    if inputs.len() != golds.len() {
        return Err(DataError::whole(
            gold.display(),
            format!("{} gold lines for {} input lines in {input_name}", golds.len(), inputs.len()),
        ));
    }
    let mut pairs = Vec::new();
    for ((number, line), (_, score)) in inputs.iter().zip(&golds) {
        if score.trim().is_empty() {
            continue;
        }
        let cols = split_tsv(&input_name, *number, line, 2)?;
        pairs.push(StsPair {
            sentence1: cols[0].into(),
            sentence2: cols[1].into(),
            score: parse_score(&gold.display().to_string(), *number, score)?,
        });
    }
    nonempty(&input_name, pairs)
}

/// Every `STS.input.X.txt` of a SemEval folder with its `STS.gs.X.txt`, by dataset name `X`.
pub fn read_semeval_dir(dir: &Path) -> Result<BTreeMap<String, Vec<StsPair>>> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::whole(dir.display(), format!("cannot list: {e}")))?;
    let mut sets = BTreeMap::new();
    for entry in entries.filter_map(|e| e.ok()) {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(dataset) = file.strip_prefix("STS.input.").and_then(|f| f.strip_suffix(".txt")) else { continue };
        let gold: PathBuf = dir.join(format!("STS.gs.{dataset}.txt"));
        if !gold.is_file() {
            return Err(DataError::whole(gold.display(), "missing gold file for its STS.input file"));
        }
        sets.insert(dataset.to_string(), read_semeval_sts(&entry.path(), &gold)?);
    }
    if sets.is_empty() {
        return Err(DataError::whole(dir.display(), "no STS.input.*.txt files"));
    }
    Ok(sets)
}

/// An STS set in MTEB's hub layout (`mteb/sts12-sts` … `mteb/sickr-sts`): JSON Lines (plain or
/// `.gz`) or Parquet with `sentence1`, `sentence2` and a numeric `score` (other columns ignored).
pub fn read_sts_table(path: &Path) -> Result<Vec<StsPair>> {
    #[derive(Deserialize)]
    struct Row {
        sentence1: String,
        sentence2: String,
        score: f64,
    }
    let rows: Vec<Row> = crate::table::records(
        path,
        &["sentence1", "sentence2", "score"],
        "STS pair (`sentence1`, `sentence2`, `score`)",
    )?;
    Ok(rows.into_iter().map(|r| StsPair { sentence1: r.sentence1, sentence2: r.sentence2, score: r.score }).collect())
}

/// SICK (`SICK_test_annotated.txt`): tab-separated with a header naming `sentence_A`,
/// `sentence_B`, `relatedness_score`.
pub fn read_sick(path: &Path) -> Result<Vec<StsPair>> {
    let mut lines = Lines::open(path)?;
    let name = lines.name().to_string();
    let Some((_, header)) = lines.next().transpose()? else {
        return Err(DataError::whole(&name, "the file is empty"));
    };
    let columns: Vec<&str> = header.split('\t').collect();
    let find = |key: &str| {
        columns
            .iter()
            .position(|c| c.trim() == key)
            .ok_or_else(|| DataError::line(&name, 1, format!("header has no `{key}` column")))
    };
    let (a, b, s) = (find("sentence_A")?, find("sentence_B")?, find("relatedness_score")?);
    let mut pairs = Vec::new();
    for item in lines {
        let (number, line) = item?;
        if line.is_empty() {
            continue;
        }
        let cols = split_tsv(&name, number, &line, columns.len())?;
        pairs.push(StsPair {
            sentence1: cols[a].into(),
            sentence2: cols[b].into(),
            score: parse_score(&name, number, cols[s])?,
        });
    }
    nonempty(&name, pairs)
}

/// Relevance judgements: query id → document id → grade.
pub type Qrels = HashMap<String, HashMap<String, i32>>;

/// Visits the whitespace-separated fields of every non-empty line, which must be exactly as
/// many as `layout` names (e.g. `qid iter docid grade`); `f` gets the file name, line and fields.
fn for_each_record(path: &Path, layout: &str, mut f: impl FnMut(&str, usize, &[&str]) -> Result<()>) -> Result<()> {
    let lines = Lines::open(path)?;
    let name = lines.name().to_string();
    let fields = layout.split_whitespace().count();
    let mut seen = false;
    for item in lines {
        let (number, line) = item?;
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.is_empty() {
            continue;
        }
        if cols.len() != fields {
            return Err(DataError::line(&name, number, format!("expected `{layout}`, found {} fields", cols.len())));
        }
        f(&name, number, &cols)?;
        seen = true;
    }
    if !seen {
        return Err(DataError::whole(&name, "the file is empty"));
    }
    Ok(())
}

/// TREC qrels: `qid iteration docid grade`, whitespace-separated.
pub fn read_trec_qrels(path: &Path) -> Result<Qrels> {
    let mut qrels: Qrels = HashMap::new();
    for_each_record(path, "qid iter docid grade", |name, number, cols| {
        let grade = cols[3]
            .parse()
            .map_err(|_| DataError::line(name, number, format!("grade `{}` is not an integer", cols[3])))?;
        qrels.entry(cols[0].into()).or_default().insert(cols[2].into(), grade);
        Ok(())
    })?;
    Ok(qrels)
}

/// One line of a TREC run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEntry {
    pub query_id: String,
    pub doc_id: String,
    pub rank: usize,
    pub score: f64,
}

/// A TREC run: `qid Q0 docid rank score tag`, whitespace-separated.
pub fn read_trec_run(path: &Path) -> Result<Vec<RunEntry>> {
    let mut run = Vec::new();
    for_each_record(path, "qid Q0 docid rank score tag", |name, number, cols| {
        let bad = |what: &str| DataError::line(name, number, format!("{what} is not a number"));
        run.push(RunEntry {
            query_id: cols[0].into(),
            doc_id: cols[2].into(),
            rank: cols[3].parse().map_err(|_| bad("rank"))?,
            score: cols[4].parse().map_err(|_| bad("score"))?,
        });
        Ok(())
    })?;
    Ok(run)
}

/// `id TAB text` files (MS MARCO `collection.tsv[.gz]`, `queries.tsv`), streamed. An id seen
/// twice is an error naming both lines: it would be ranked (and counted) twice.
pub fn read_id_text(path: &Path) -> Result<impl Iterator<Item = Result<(String, String)>>> {
    let lines = Lines::open(path)?;
    let name = lines.name().to_string();
    let mut seen: HashMap<String, usize> = HashMap::new();
    Ok(lines.filter_map(move |item| match item {
        Err(e) => Some(Err(e)),
        Ok((_, line)) if line.is_empty() => None,
        Ok((number, line)) => Some(split_tsv(&name, number, &line, 2).and_then(|cols| {
            if let Some(first) = seen.insert(cols[0].to_string(), number) {
                return Err(DataError::line(
                    &name,
                    number,
                    format!("id `{}` was already given at line {first}", cols[0]),
                ));
            }
            Ok((cols[0].to_string(), cols[1].to_string()))
        })),
    }))
}

/// Errors when two entries of `ids` (in file order) are the same: `what` names them.
fn check_unique<'a>(name: &str, what: &str, ids: impl Iterator<Item = &'a str>) -> Result<()> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, id) in ids.enumerate() {
        if let Some(first) = seen.insert(id, i + 1) {
            return Err(DataError::whole(name, format!("`_id` `{id}` is given twice ({what} {first} and {})", i + 1)));
        }
    }
    Ok(())
}

/// A document of a BEIR corpus.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BeirDocument {
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(default)]
    pub title: String,
    pub text: String,
}

/// A BEIR folder: `corpus.jsonl[.gz]`, `queries.jsonl`, `qrels/<split>.tsv`.
#[derive(Debug, Clone)]
pub struct Beir {
    pub corpus: Vec<BeirDocument>,
    pub queries: Vec<(String, String)>,
    pub qrels: Qrels,
}

fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path, what: &str) -> Result<Vec<T>> {
    let lines = Lines::open(path)?;
    let name = lines.name().to_string();
    let mut rows = Vec::new();
    for item in lines {
        let (number, line) = item?;
        if line.trim().is_empty() {
            continue;
        }
        rows.push(
            serde_json::from_str(&line).map_err(|e| DataError::line(&name, number, format!("not a {what}: {e}")))?,
        );
    }
    nonempty(&name, rows)
}

pub fn read_beir(dir: &Path, split: &str) -> Result<Beir> {
    let corpus = ["corpus.jsonl", "corpus.jsonl.gz"].iter().map(|f| dir.join(f)).find(|p| p.is_file());
    let corpus = corpus.ok_or_else(|| DataError::whole(dir.join("corpus.jsonl").display(), "not found"))?;
    read_beir_files(&corpus, &dir.join("queries.jsonl"), &dir.join("qrels").join(format!("{split}.tsv")))
}

/// A BEIR set from its three files, as the hub's `BeIR/<name>` and `BeIR/<name>-qrels`
/// repositories hold them: corpus and queries in JSON Lines (plain or `.gz`) or Parquet
/// (`_id`, `title`, `text`), qrels a TSV `query-id, corpus-id, score` with or without header.
pub fn read_beir_files(corpus_path: &Path, queries_path: &Path, qrels_path: &Path) -> Result<Beir> {
    let corpus: Vec<BeirDocument> = if crate::table::is_parquet(corpus_path) {
        crate::table::records(corpus_path, &["_id", "title", "text"], "BEIR document (`_id`, `title`, `text`)")?
    } else {
        read_jsonl(corpus_path, "BEIR document (`_id`, `title`, `text`)")?
    };
    check_unique(&corpus_path.display().to_string(), "documents", corpus.iter().map(|d| d.id.as_str()))?;
    #[derive(Deserialize)]
    struct Query {
        #[serde(rename = "_id")]
        id: String,
        text: String,
    }
    let queries: Vec<Query> = if crate::table::is_parquet(queries_path) {
        crate::table::records(queries_path, &["_id", "text"], "BEIR query (`_id`, `text`)")?
    } else {
        read_jsonl(queries_path, "BEIR query (`_id`, `text`)")?
    };
    check_unique(&queries_path.display().to_string(), "queries", queries.iter().map(|q| q.id.as_str()))?;
    let lines = Lines::open(qrels_path)?;
    let name = lines.name().to_string();
    let mut qrels: Qrels = HashMap::new();
    for item in lines {
        let (number, line) = item?;
        if line.is_empty() || (number == 1 && line.starts_with("query-id")) {
            continue;
        }
        let cols = split_tsv(&name, number, &line, 3)?;
        let grade = cols[2]
            .trim()
            .parse()
            .map_err(|_| DataError::line(&name, number, format!("score `{}` is not an integer", cols[2])))?;
        qrels.entry(cols[0].into()).or_default().insert(cols[1].into(), grade);
    }
    if qrels.is_empty() {
        return Err(DataError::whole(&name, "the file is empty"));
    }
    Ok(Beir { corpus, queries: queries.into_iter().map(|q| (q.id, q.text)).collect(), qrels })
}
