//! `BertConfig`: the HuggingFace `config.json` of a BERT model, keys as HF spells them.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, read_json};

/// The activation named by `hidden_act`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HiddenAct {
    /// Exact GELU, `x · Φ(x)` with the error function (BERT's default).
    Gelu,
    /// The tanh approximation of GELU.
    #[serde(alias = "gelu_pytorch_tanh")]
    GeluNew,
    Relu,
}

/// HuggingFace `BertConfig`. The five keys that shape the weights are required (a default of
/// bert-base's would surface later as a weight-shape error blaming the weights); the others
/// default as HF's do; keys this crate does not use are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "defaults::hidden_act")]
    pub hidden_act: HiddenAct,
    #[serde(default = "defaults::dropout")]
    pub hidden_dropout_prob: f64,
    #[serde(default = "defaults::dropout")]
    pub attention_probs_dropout_prob: f64,
    #[serde(default = "defaults::max_position_embeddings")]
    pub max_position_embeddings: usize,
    #[serde(default = "defaults::type_vocab_size")]
    pub type_vocab_size: usize,
    #[serde(default = "defaults::layer_norm_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: usize,
    #[serde(default = "defaults::position_embedding_type")]
    pub position_embedding_type: String,
    /// The sizes the model was trained for, `[layers, dims]` pairs, as `starbucks export` and
    /// training write them (our key; absent from other models' folders).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub starbucks_sizes: Vec<[usize; 2]>,
}

mod defaults {
    use super::HiddenAct;
    pub fn hidden_act() -> HiddenAct {
        HiddenAct::Gelu
    }
    pub fn dropout() -> f64 {
        0.1
    }
    pub fn max_position_embeddings() -> usize {
        512
    }
    pub fn type_vocab_size() -> usize {
        2
    }
    pub fn layer_norm_eps() -> f64 {
        1e-12
    }
    pub fn position_embedding_type() -> String {
        "absolute".into()
    }
}

impl BertConfig {
    /// Reads and checks a `config.json`; every error names the file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let config: Self = read_json(path)?;
        config.validate().map_err(|message| Error::invalid(path, message))?;
        Ok(config)
    }

    /// Checks the values that the encoder relies on; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(format!("`{key}` must be greater than 0"));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "`hidden_size` ({}) is not divisible by `num_attention_heads` ({})",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.position_embedding_type != "absolute" {
            return Err(format!(
                "`position_embedding_type` is \"{}\"; only \"absolute\" is supported",
                self.position_embedding_type
            ));
        }
        for (key, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            ("attention_probs_dropout_prob", self.attention_probs_dropout_prob),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(format!("`{key}` must be in [0, 1), got {p}"));
            }
        }
        Ok(())
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// bert-base's shape keys, with `extra`'s keys over them.
    fn bert_base(extra: &str) -> serde_json::Result<BertConfig> {
        let mut json = serde_json::json!({"vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12,
            "num_attention_heads": 12, "intermediate_size": 3072});
        let extra: serde_json::Map<String, serde_json::Value> = serde_json::from_str(extra).unwrap();
        json.as_object_mut().unwrap().extend(extra);
        serde_json::from_value(json)
    }

    #[test]
    fn defaults_are_hf_ones() {
        let config = bert_base("{}").unwrap();
        assert_eq!((config.head_dim(), config.max_position_embeddings, config.type_vocab_size), (64, 512, 2));
        assert_eq!(config.hidden_act, HiddenAct::Gelu);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn a_missing_shape_key_is_named() {
        // Issue 17, item 13: a missing hidden_size defaulted to 768.
        let error = serde_json::from_str::<BertConfig>(r#"{"vocab_size": 50, "num_hidden_layers": 2}"#).unwrap_err();
        assert!(error.to_string().contains("missing field `hidden_size`"), "{error}");
    }

    #[test]
    fn invalid_values_name_the_key() {
        let check = |json: &str| bert_base(json).unwrap().validate().unwrap_err();
        assert!(check(r#"{"hidden_size": 100, "num_attention_heads": 12}"#).contains("not divisible"));
        assert!(check(r#"{"num_hidden_layers": 0}"#).contains("num_hidden_layers"));
        assert!(check(r#"{"position_embedding_type": "relative_key"}"#).contains("position_embedding_type"));
        assert!(check(r#"{"hidden_dropout_prob": 1.5}"#).contains("hidden_dropout_prob"));
        assert!(bert_base(r#"{"hidden_act": "swish"}"#).is_err());
        let tanh = bert_base(r#"{"hidden_act": "gelu_pytorch_tanh"}"#).unwrap();
        assert_eq!(tanh.hidden_act, HiddenAct::GeluNew);
    }
}
