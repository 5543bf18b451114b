//! SMAE pre-training examples: one random window of a document, and the encoder and decoder
//! masks of `METHOD.md`: whole-word masking, encoder ratio 0.2 inside decoder ratio 0.4, each
//! masked token replaced by [MASK] 80 %, a random token 10 %, itself 10 %; special tokens never
//! masked; labels only at masked positions (-100 elsewhere, as PyTorch's cross-entropy ignores).

use rand::Rng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};

/// The label of a position that is not predicted.
pub const IGNORE: i64 = -100;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaskingConfig {
    /// Longest example, special tokens included (the paper: 512, so windows of 510).
    pub max_len: usize,
    pub encoder_ratio: f64,
    pub decoder_ratio: f64,
    /// Of the masked tokens: share replaced by [MASK], and share replaced by a random token;
    /// the rest keep their token.
    pub mask_token_share: f64,
    pub random_token_share: f64,
}

impl MaskingConfig {
    /// The first field out of range, named: `max_len` ≥ 3 ([CLS], a token, [SEP]) and
    /// 0 ≤ `encoder_ratio` ≤ `decoder_ratio` ≤ 1 (the encoder's masks are a subset of the decoder's).
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.max_len < 3 {
            return Err(format!("`max_len` must be at least 3 (got {})", self.max_len));
        }
        if !(0.0..=1.0).contains(&self.encoder_ratio) {
            return Err(format!("`encoder_ratio` must be in [0, 1] (got {})", self.encoder_ratio));
        }
        if !(self.encoder_ratio..=1.0).contains(&self.decoder_ratio) {
            return Err(format!(
                "`decoder_ratio` must be in [encoder_ratio, 1] = [{}, 1] (got {})",
                self.encoder_ratio, self.decoder_ratio
            ));
        }
        Ok(())
    }
}

impl Default for MaskingConfig {
    fn default() -> Self {
        MaskingConfig {
            max_len: 512,
            encoder_ratio: 0.2,
            decoder_ratio: 0.4,
            mask_token_share: 0.8,
            random_token_share: 0.1,
        }
    }
}

/// One pre-training example; every vector has the same length, [CLS] first and [SEP] last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PretrainExample {
    /// The window's token ids, unmasked.
    pub input_ids: Vec<u32>,
    pub encoder_input_ids: Vec<u32>,
    pub encoder_labels: Vec<i64>,
    pub decoder_input_ids: Vec<u32>,
    pub decoder_labels: Vec<i64>,
}

/// Tokenises documents and masks them for SMAE.
pub struct SmaeMasker {
    tokenizer: tokenizers::Tokenizer,
    config: MaskingConfig,
    cls: u32,
    sep: u32,
    mask: u32,
    vocab_size: u32,
}

impl SmaeMasker {
    /// Masks with a BERT tokenizer (it needs `[CLS]`, `[SEP]`, `[MASK]`), read from `source`
    /// (named in errors). Its padding and truncation are dropped: windows are cut here.
    pub fn new(mut tokenizer: tokenizers::Tokenizer, config: MaskingConfig, source: &str) -> Result<Self> {
        tokenizer.with_padding(None);
        tokenizer.with_truncation(None).map_err(|e| DataError::whole(source, e.to_string()))?;
        let id = |token: &str| {
            tokenizer
                .token_to_id(token)
                .ok_or_else(|| DataError::whole(source, format!("the vocabulary has no {token} token")))
        };
        let (cls, sep, mask) = (id("[CLS]")?, id("[SEP]")?, id("[MASK]")?);
        config.check().map_err(|message| DataError::whole("masking config", message))?;
        let vocab_size = tokenizer.get_vocab_size(true) as u32;
        Ok(SmaeMasker { tokenizer, config, cls, sep, mask, vocab_size })
    }

    pub fn config(&self) -> &MaskingConfig {
        &self.config
    }

    /// The example for one document, or `None` when it has no tokens.
    pub fn example(&self, text: &str, rng: &mut impl Rng) -> Result<Option<PretrainExample>> {
        let encoding = self.tokenizer.encode(text, false).map_err(|e| DataError::whole("tokenizer", e.to_string()))?;
        let (ids, word_ids) = (encoding.get_ids(), encoding.get_word_ids());
        if ids.is_empty() {
            return Ok(None);
        }
        let window = self.config.max_len - 2;
        let start = if ids.len() > window { rng.random_range(0..=ids.len() - window) } else { 0 };
        let end = (start + window).min(ids.len());
        let (ids, word_ids) = (&ids[start..end], &word_ids[start..end]);

        // Whole words: runs of positions with the same word id.
        let mut words: Vec<std::ops::Range<usize>> = Vec::new();
        for i in 0..ids.len() {
            match words.last_mut() {
                Some(last) if word_ids[i].is_some() && word_ids[i] == word_ids[last.start] => last.end = i + 1,
                _ => words.push(i..i + 1),
            }
        }
        words.shuffle(rng);
        let (decoder_masked, encoder_masked) = self.choose(&words, ids.len());

        let with_specials = |body: Vec<u32>| [vec![self.cls], body, vec![self.sep]].concat();
        let (encoder_input_ids, encoder_labels) = self.apply(ids, &encoder_masked, rng);
        let (decoder_input_ids, decoder_labels) = self.apply(ids, &decoder_masked, rng);
        let labels = |body: Vec<i64>| [vec![IGNORE], body, vec![IGNORE]].concat();
        Ok(Some(PretrainExample {
            input_ids: with_specials(ids.to_vec()),
            encoder_input_ids: with_specials(encoder_input_ids),
            encoder_labels: labels(encoder_labels),
            decoder_input_ids: with_specials(decoder_input_ids),
            decoder_labels: labels(decoder_labels),
        }))
    }

    /// Takes shuffled words while they fit the decoder budget; the encoder's masked words are the
    /// first of those that fit its smaller budget, so they are always a subset.
    fn choose(&self, words: &[std::ops::Range<usize>], len: usize) -> (Vec<bool>, Vec<bool>) {
        let budget = |ratio: f64| ((len as f64 * ratio).round() as usize).max(usize::from(ratio > 0.0));
        let (decoder_budget, encoder_budget) = (budget(self.config.decoder_ratio), budget(self.config.encoder_ratio));
        let (mut decoder, mut encoder) = (vec![false; len], vec![false; len]);
        let (mut decoder_count, mut encoder_count) = (0, 0);
        for word in words {
            if decoder_count + word.len() > decoder_budget {
                continue;
            }
            decoder_count += word.len();
            decoder[word.clone()].fill(true);
            if encoder_count + word.len() <= encoder_budget {
                encoder_count += word.len();
                encoder[word.clone()].fill(true);
            }
        }
        (decoder, encoder)
    }

    /// Replaces masked tokens (80/10/10) and labels them.
    fn apply(&self, ids: &[u32], masked: &[bool], rng: &mut impl Rng) -> (Vec<u32>, Vec<i64>) {
        let mut input = ids.to_vec();
        let mut labels = vec![IGNORE; ids.len()];
        for i in (0..ids.len()).filter(|&i| masked[i]) {
            labels[i] = ids[i] as i64;
            let r: f64 = rng.random();
            if r < self.config.mask_token_share {
                input[i] = self.mask;
            } else if r < self.config.mask_token_share + self.config.random_token_share {
                input[i] = rng.random_range(0..self.vocab_size);
            }
        }
        (input, labels)
    }

    pub fn special_ids(&self) -> [u32; 3] {
        [self.cls, self.sep, self.mask]
    }
}
