//! Tokenisation with the `tokenizers` crate: padding to the longest text, truncation, masks.

use std::path::Path;

use tokenizers::{PaddingParams, PaddingStrategy, TruncationParams};

use crate::config::BertConfig;
use crate::error::{Error, Result, read_to_string};

/// A tokenised batch, row-major `[batch_size, seq_len]`, padded to the longest text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub input_ids: Vec<i64>,
    pub token_type_ids: Vec<i64>,
    pub attention_mask: Vec<i64>,
    pub batch_size: usize,
    pub seq_len: usize,
}

impl Batch {
    /// Token-id rows padded with `pad_id` on the right to the longest (token type 0 throughout),
    /// read straight from the caller's rows.
    pub fn from_ids(rows: &[&[u32]], pad_id: u32) -> Batch {
        let mut batch = Batch::empty(rows.len(), rows.iter().map(|r| r.len()).max().unwrap_or(0));
        for row in rows {
            let ids = row.iter().map(|&t| i64::from(t));
            batch.push_row(ids, std::iter::repeat_n(0, row.len()), (i64::from(pad_id), 0));
        }
        batch
    }

    /// No rows yet, room for `rows` of `seq_len`.
    fn empty(rows: usize, seq_len: usize) -> Batch {
        Batch {
            input_ids: Vec::with_capacity(rows * seq_len),
            token_type_ids: Vec::with_capacity(rows * seq_len),
            attention_mask: Vec::with_capacity(rows * seq_len),
            batch_size: rows,
            seq_len,
        }
    }

    /// Appends one row of real tokens (ids and type ids, as many of each), padded on the right
    /// to `seq_len` with `(pad_id, pad_type_id)`.
    fn push_row(
        &mut self,
        ids: impl ExactSizeIterator<Item = i64>,
        type_ids: impl Iterator<Item = i64>,
        (pad_id, pad_type_id): (i64, i64),
    ) {
        let (len, pad) = (ids.len(), self.seq_len - ids.len());
        self.input_ids.extend(ids.chain(std::iter::repeat_n(pad_id, pad)));
        self.token_type_ids.extend(type_ids.chain(std::iter::repeat_n(pad_type_id, pad)));
        self.attention_mask.extend(std::iter::repeat_n(1, len).chain(std::iter::repeat_n(0, pad)));
    }

    /// Number of real (non-padding) tokens of each row.
    pub fn lengths(&self) -> Vec<usize> {
        self.attention_mask.chunks(self.seq_len.max(1)).map(|row| row.iter().filter(|&&m| m != 0).count()).collect()
    }

    /// Non-padding tokens in the whole batch.
    pub fn tokens(&self) -> usize {
        self.attention_mask.iter().filter(|&&m| m != 0).count()
    }

    /// Rows `rows` of this batch, cut to `seq_len` tokens each (their longest).
    fn rows(&self, rows: &[usize], seq_len: usize) -> Batch {
        let take = |v: &[i64]| -> Vec<i64> {
            rows.iter().flat_map(|&r| v[r * self.seq_len..r * self.seq_len + seq_len].iter().copied()).collect()
        };
        Batch {
            input_ids: take(&self.input_ids),
            token_type_ids: take(&self.token_type_ids),
            attention_mask: take(&self.attention_mask),
            batch_size: rows.len(),
            seq_len,
        }
    }

    /// Splits the batch into groups of rows of similar length, so that little padding is
    /// computed: the rows sorted by length, cut where the padded tokens plus `group_cost` per
    /// group (the fixed cost of one more, smaller pass, in tokens) add up to the least
    /// (an exact dynamic programme over the sorted rows). Returns each group's row indices
    /// (into this batch) and its sub-batch.
    pub fn by_length(&self, group_cost: usize) -> Vec<(Vec<usize>, Batch)> {
        let lengths = self.lengths();
        let mut order: Vec<usize> = (0..self.batch_size).collect();
        order.sort_by_key(|&r| (lengths[r], r));
        let n = order.len();
        // best[j]: least cost of the first j sorted rows; cut[j]: where its last group starts.
        let mut best = vec![0usize; n + 1];
        let mut cut = vec![0usize; n + 1];
        for j in 1..=n {
            let longest = lengths[order[j - 1]];
            (best[j], cut[j]) = (0..j).map(|i| (best[i] + (j - i) * longest + group_cost, i)).min().expect("j >= 1");
        }
        let mut groups = Vec::new();
        let mut j = n;
        while j > 0 {
            let rows = order[cut[j]..j].to_vec();
            let group = self.rows(&rows, lengths[order[j - 1]]);
            groups.push((rows, group));
            j = cut[j];
        }
        groups.reverse();
        groups
    }
}

/// One text's tokens, special tokens included, cut at the tokenizer's `max_length`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    pub ids: Vec<i64>,
    pub type_ids: Vec<i64>,
    /// Whether the text had more tokens than `max_length` (the rest were dropped).
    pub truncated: bool,
}

impl Tokens {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// A HuggingFace `tokenizer.json` set up to pad each batch to its longest text and truncate
/// at `max_length` tokens (special tokens included).
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    max_length: usize,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer").field("max_length", &self.max_length).finish_non_exhaustive()
    }
}

/// Checks what tokenizers' `TemplateProcessing` trusts when read from a file but its builder
/// checks (it panics at the first encoding otherwise; found by fuzzing): every special token of
/// a template is defined, with as many ids as tokens. Nested `Sequence` processors included;
/// tokenizers reads processors untagged (a misspelt `type` still makes a template), so every
/// object is checked by its shape, not its `type`.
fn check_templates(processor: &serde_json::Value) -> Result<(), String> {
    if let Some(list) = processor.get("processors").and_then(|p| p.as_array()) {
        return list.iter().try_for_each(check_templates);
    }
    let specials = processor.get("special_tokens").and_then(|s| s.as_object());
    for (name, special) in specials.into_iter().flatten() {
        let count = |key: &str| special.get(key).and_then(|v| v.as_array()).map(Vec::len);
        if count("ids") != count("tokens") {
            return Err(format!("special token {name:?} has {:?} ids but {:?} tokens", count("ids"), count("tokens")));
        }
    }
    for template in ["single", "pair"] {
        for piece in processor.get(template).and_then(|t| t.as_array()).into_iter().flatten() {
            let Some(id) = piece.get("SpecialToken").and_then(|s| s.get("id")).and_then(|id| id.as_str()) else {
                continue;
            };
            if !specials.is_some_and(|s| s.contains_key(id)) {
                return Err(format!("the `{template}` template uses {id:?}, which `special_tokens` does not define"));
            }
        }
    }
    Ok(())
}

impl Tokenizer {
    /// Loads `tokenizer.json`; a file that is not a tokenizer is an error naming it.
    pub fn from_file(path: impl AsRef<Path>, max_length: usize) -> Result<Self> {
        let path = path.as_ref();
        let text = read_to_string(path)?;
        // Parsed to a JSON value first: tokenizers panics on a syntax error inside `decoder`
        // when it parses text itself (found by fuzzing); from a value it cannot meet one.
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::invalid(path, format!("not valid JSON: {e}")))?;
        if let Some(processor) = value.get("post_processor") {
            check_templates(processor).map_err(|e| Error::invalid(path, format!("key `post_processor`: {e}")))?;
        }
        let inner: tokenizers::Tokenizer = serde_json::from_value(value)
            .map_err(|e| Error::invalid(path, format!("not a valid tokenizer.json: {e}")))?;
        Self::new(inner, max_length).map_err(|e| Error::invalid(path, e))
    }

    fn new(mut inner: tokenizers::Tokenizer, max_length: usize) -> Result<Self, String> {
        // Keep the file's pad token (BERT: [PAD] = 0) but pad per batch, not to a fixed length.
        let padding = PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..inner.get_padding().cloned().unwrap_or_default()
        };
        inner.with_padding(Some(padding));
        inner
            .with_truncation(Some(TruncationParams { max_length, ..Default::default() }))
            .map_err(|e| format!("cannot truncate at {max_length} tokens: {e}"))?;
        Ok(Tokenizer { inner, max_length })
    }

    /// Errors when this tokenizer (read from `path`) can give token or token-type ids that
    /// `config` has no embedding for: the lookup would fail deep inside the backend instead.
    /// Token ids come from the vocabulary, the padding and the post-processor's special tokens,
    /// type ids from the padding and the post-processor's template (one probe encoding shows
    /// every piece of a single-text template).
    pub fn check_vocab(&self, config: &BertConfig, path: &Path) -> Result<()> {
        let size = self.inner.get_vocab_size(true);
        if size > config.vocab_size {
            return Err(Error::invalid(
                path,
                format!(
                    "{size} tokens, more than the model's `vocab_size` {} in config.json: their ids have no embedding",
                    config.vocab_size
                ),
            ));
        }
        let probe = self.encode_one("a")?;
        let padding = self.inner.get_padding();
        let ids = self.inner.get_vocab(true).into_values().map(i64::from);
        let ids = ids.chain(probe.ids.iter().copied()).chain(padding.map(|p| i64::from(p.pad_id)));
        if let Some(id) = ids.max().filter(|&id| id >= config.vocab_size as i64) {
            return Err(Error::invalid(
                path,
                format!("token id {id} is beyond the model's `vocab_size` {} in config.json", config.vocab_size),
            ));
        }
        let types = probe.type_ids.iter().copied().chain(padding.map(|p| i64::from(p.pad_type_id)));
        if let Some(id) = types.max().filter(|&id| id >= config.type_vocab_size as i64) {
            return Err(Error::invalid(
                path,
                format!(
                    "token type id {id} is beyond the model's `type_vocab_size` {} in config.json",
                    config.type_vocab_size
                ),
            ));
        }
        Ok(())
    }

    /// The same tokenizer truncating at `max_length` tokens instead.
    pub fn with_max_length(self, max_length: usize) -> Result<Self> {
        Self::new(self.inner, max_length).map_err(Error::Tokenize)
    }

    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// The padding token's id (BERT's `[PAD]` = 0 when the file sets no padding).
    pub fn pad_id(&self) -> u32 {
        self.inner.get_padding().map_or(0, |p| p.pad_id)
    }

    /// The underlying `tokenizers::Tokenizer` (vocabulary, special tokens, word ids).
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// One text, unpadded; [`Tokens::truncated`] says whether it was longer than `max_length`.
    pub fn encode_one(&self, text: &str) -> Result<Tokens> {
        let encoding = self.inner.encode(text, true).map_err(|e| Error::Tokenize(e.to_string()))?;
        Ok(Tokens {
            ids: encoding.get_ids().iter().map(|&x| x as i64).collect(),
            type_ids: encoding.get_type_ids().iter().map(|&x| x as i64).collect(),
            truncated: !encoding.get_overflowing().is_empty(),
        })
    }

    /// Texts encoded one by one ([`Self::encode_one`]) padded into one batch, as [`Self::encode`]
    /// would have made it: the file's pad token, padding on the right to the longest row.
    pub fn pad(&self, rows: &[&Tokens]) -> Batch {
        let pad = self.inner.get_padding().map_or((0, 0), |p| (i64::from(p.pad_id), i64::from(p.pad_type_id)));
        let mut batch = Batch::empty(rows.len(), rows.iter().map(|r| r.len()).max().unwrap_or(0));
        for row in rows {
            batch.push_row(row.ids.iter().copied(), row.type_ids.iter().copied(), pad);
        }
        batch
    }

    pub fn encode<S: AsRef<str>>(&self, texts: &[S]) -> Result<Batch> {
        let inputs: Vec<&str> = texts.iter().map(AsRef::as_ref).collect();
        let encodings = self.inner.encode_batch(inputs, true).map_err(|e| Error::Tokenize(e.to_string()))?;
        // tokenizers pads every row to the longest already (`BatchLongest`), with its mask.
        let mut batch = Batch::empty(texts.len(), encodings.first().map_or(0, |e| e.get_ids().len()));
        for encoding in &encodings {
            batch.input_ids.extend(encoding.get_ids().iter().map(|&x| x as i64));
            batch.token_type_ids.extend(encoding.get_type_ids().iter().map(|&x| x as i64));
            batch.attention_mask.extend(encoding.get_attention_mask().iter().map(|&x| x as i64));
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::Batch;

    /// A batch whose rows have these real lengths (ids = 1 + position, padding 0).
    fn batch(lengths: &[usize]) -> Batch {
        let seq_len = lengths.iter().copied().max().unwrap_or(0);
        let row = |&l: &usize| (0..seq_len).map(move |i| if i < l { 1 + i as i64 } else { 0 });
        let mask = |&l: &usize| (0..seq_len).map(move |i| (i < l) as i64);
        Batch {
            input_ids: lengths.iter().flat_map(row).collect(),
            token_type_ids: vec![0; lengths.len() * seq_len],
            attention_mask: lengths.iter().flat_map(mask).collect(),
            batch_size: lengths.len(),
            seq_len,
        }
    }

    /// The least cost of any split of the sorted lengths into consecutive groups, by brute force.
    fn brute_force(sorted: &[usize], group_cost: usize) -> usize {
        let n = sorted.len();
        (0..1usize << (n - 1))
            .map(|cuts| {
                let (mut cost, mut start) = (0, 0);
                for end in 1..=n {
                    if end == n || cuts & (1 << (end - 1)) != 0 {
                        cost += (end - start) * sorted[end - 1] + group_cost;
                        start = end;
                    }
                }
                cost
            })
            .min()
            .unwrap()
    }

    #[test]
    fn pads_to_the_longest_in_the_batch_not_to_max_len() {
        let p = Batch::from_ids(&[&[101, 7, 102], &[101, 102]], 0);
        assert_eq!((p.batch_size, p.seq_len), (2, 3));
        assert_eq!(p.input_ids, vec![101, 7, 102, 101, 102, 0]);
        assert_eq!(p.attention_mask, vec![1, 1, 1, 1, 1, 0]);
        assert_eq!(p.token_type_ids, vec![0; 6]);
    }

    #[test]
    fn length_groups_cover_every_row_once_with_their_own_padding() {
        let lengths = [12, 3, 40, 5, 11, 38, 4, 13, 39, 6];
        let b = batch(&lengths);
        for group_cost in [0, 20, 60, 10_000] {
            let groups = b.by_length(group_cost);
            let mut seen: Vec<usize> = groups.iter().flat_map(|(rows, _)| rows.clone()).collect();
            seen.sort();
            assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>());
            let mut cost = 0;
            for (rows, group) in &groups {
                let longest = rows.iter().map(|&r| lengths[r]).max().unwrap();
                assert_eq!((group.batch_size, group.seq_len), (rows.len(), longest));
                // Each row keeps its tokens, padded to the group's longest.
                for (i, &r) in rows.iter().enumerate() {
                    let got = &group.input_ids[i * longest..(i + 1) * longest];
                    assert_eq!(got, &b.input_ids[r * b.seq_len..r * b.seq_len + longest]);
                    assert_eq!(group.lengths()[i], lengths[r]);
                }
                cost += rows.len() * longest + group_cost;
            }
            let mut sorted = lengths.to_vec();
            sorted.sort();
            assert_eq!(cost, brute_force(&sorted, group_cost), "the split is the cheapest at cost {group_cost}");
        }
        assert_eq!(b.by_length(10_000).len(), 1, "a high group cost keeps one group");
        assert_eq!(b.by_length(0).len(), 10, "a free group gives every distinct length its own");
    }
}
