//! Tokenisation with the `tokenizers` crate: padding to the longest text, truncation, masks.

use std::path::Path;

use tokenizers::{PaddingParams, PaddingStrategy, TruncationParams};

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
    /// Number of real (non-padding) tokens of each row.
    pub fn lengths(&self) -> Vec<usize> {
        self.attention_mask.chunks(self.seq_len.max(1)).map(|row| row.iter().filter(|&&m| m != 0).count()).collect()
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

impl Tokenizer {
    /// Loads `tokenizer.json`; a file that is not a tokenizer is an error naming it.
    pub fn from_file(path: impl AsRef<Path>, max_length: usize) -> Result<Self> {
        let path = path.as_ref();
        let text = read_to_string(path)?;
        let inner: tokenizers::Tokenizer =
            text.parse().map_err(|e| Error::invalid(path, format!("not a valid tokenizer.json: {e}")))?;
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

    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// The underlying `tokenizers::Tokenizer` (vocabulary, special tokens, word ids).
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    pub fn encode<S: AsRef<str>>(&self, texts: &[S]) -> Result<Batch> {
        let inputs: Vec<&str> = texts.iter().map(AsRef::as_ref).collect();
        let encodings = self.inner.encode_batch(inputs, true).map_err(|e| Error::Tokenize(e.to_string()))?;
        let seq_len = encodings.first().map_or(0, |e| e.get_ids().len());
        let mut batch = Batch {
            input_ids: Vec::with_capacity(texts.len() * seq_len),
            token_type_ids: Vec::with_capacity(texts.len() * seq_len),
            attention_mask: Vec::with_capacity(texts.len() * seq_len),
            batch_size: texts.len(),
            seq_len,
        };
        for encoding in &encodings {
            batch.input_ids.extend(encoding.get_ids().iter().map(|&x| x as i64));
            batch.token_type_ids.extend(encoding.get_type_ids().iter().map(|&x| x as i64));
            batch.attention_mask.extend(encoding.get_attention_mask().iter().map(|&x| x as i64));
        }
        Ok(batch)
    }
}
