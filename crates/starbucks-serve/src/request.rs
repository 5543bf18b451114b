//! Request bodies of `/embed` (TEI) and `/v1/embeddings` (OpenAI), parsed so that every error
//! names its field, and resolved against the model into texts and one size.

use serde::Deserialize;
use serde::de::{Deserializer, Error as _};
use starbucks_model::Size;

use crate::error::ApiError;

/// `inputs` / `input`: one string or a list of strings.
#[derive(Debug, Clone, PartialEq)]
pub struct Texts(pub Vec<String>);

impl<'de> Deserialize<'de> for Texts {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::String(text) => Ok(Texts(vec![text])),
            serde_json::Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    serde_json::Value::String(text) => Ok(text),
                    other => Err(D::Error::custom(format!("item {i} is {}, not a string", kind(&other)))),
                })
                .collect::<Result<_, _>>()
                .map(Texts),
            other => Err(D::Error::custom(format!("expected a string or a list of strings, found {}", kind(&other)))),
        }
    }
}

fn kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The size fields both endpoints share: TEI's and OpenAI's `dimensions`, and our `layers`
/// and `size` (`"3,128"` or a paper name such as `"tall"`). Each body declares them itself:
/// serde's `flatten` would lose the field's name from type errors.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SizeFields {
    pub dimensions: Option<usize>,
    pub layers: Option<usize>,
    pub size: Option<String>,
}

/// TEI's `POST /embed` body.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EmbedRequest {
    pub inputs: Texts,
    #[serde(default = "yes")]
    pub normalize: bool,
    #[serde(default)]
    pub truncate: bool,
    /// TEI's; only `right` (the default) is supported.
    #[serde(default)]
    pub truncation_direction: Option<String>,
    /// TEI's prompt names from `config_sentence_transformers.json`; not supported here.
    #[serde(default)]
    pub prompt_name: Option<String>,
    pub dimensions: Option<usize>,
    pub layers: Option<usize>,
    pub size: Option<String>,
}

fn yes() -> bool {
    true
}

/// How `/v1/embeddings` returns vectors: JSON numbers, or base64 of little-endian f32 bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    #[default]
    Float,
    Base64,
}

/// OpenAI's `POST /v1/embeddings` body (`user` and other unknown fields are ignored, as TEI does).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct OpenAiRequest {
    pub input: Texts,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub encoding_format: EncodingFormat,
    pub dimensions: Option<usize>,
    pub layers: Option<usize>,
    pub size: Option<String>,
}

/// Parses a JSON body; a syntax error or a field of the wrong type is a 422 naming the field.
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // serde would also read a struct from a JSON list, field by field in order.
    if body.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|&b| b != b'{') {
        return Err(ApiError::validation("the body must be a JSON object"));
    }
    let deserializer = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::validation(format!("the body is not valid JSON: {inner}"))
        } else if field == "." {
            ApiError::validation(format!("the body: {inner}"))
        } else {
            ApiError::validation(format!("field `{field}`: {inner}"))
        }
    })
}

/// What a request asks for, checked against the model: its texts, one size, and whether
/// vectors are normalised and long texts cut.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub texts: Vec<String>,
    pub size: Size,
    pub normalize: bool,
    pub truncate: bool,
}

impl SizeFields {
    /// The size asked for within `full` (default: `full` itself). A bound the model does not
    /// have is a 422 naming the field and the bound.
    pub fn resolve(&self, full: Size) -> Result<Size, ApiError> {
        let size = match &self.size {
            Some(text) => {
                let size: Size = text.parse().map_err(|e| ApiError::validation(format!("field `size`: {e}")))?;
                for (field, given, from_size) in
                    [("layers", self.layers, size.layers), ("dimensions", self.dimensions, size.dims)]
                {
                    if given.is_some_and(|g| g != from_size) {
                        return Err(ApiError::validation(format!(
                            "field `{field}`: {} disagrees with `size` {text:?} ({from_size})",
                            given.unwrap_or_default()
                        )));
                    }
                }
                size
            }
            None => Size::new(self.layers.unwrap_or(full.layers), self.dimensions.unwrap_or(full.dims)),
        };
        let field = |name: &str| if self.size.is_some() { "size".to_string() } else { name.to_string() };
        for (name, value, bound, unit) in
            [("layers", size.layers, full.layers, "layers"), ("dimensions", size.dims, full.dims, "dims")]
        {
            if value == 0 {
                return Err(ApiError::validation(format!("field `{}`: {name} must be at least 1", field(name))));
            }
            if value > bound {
                return Err(ApiError::validation(format!(
                    "field `{}`: {value} {unit} is more than this model's {bound} {unit}",
                    field(name)
                )));
            }
        }
        Ok(size)
    }
}

impl EmbedRequest {
    pub fn resolve(self, full: Size) -> Result<Resolved, ApiError> {
        if let Some(direction) = self.truncation_direction.as_deref().filter(|d| !d.eq_ignore_ascii_case("right")) {
            return Err(ApiError::validation(format!(
                "field `truncation_direction`: {direction:?} is not supported (only \"right\")"
            )));
        }
        if let Some(name) = &self.prompt_name {
            return Err(ApiError::validation(format!("field `prompt_name`: {name:?}: prompts are not supported")));
        }
        let size = SizeFields { dimensions: self.dimensions, layers: self.layers, size: self.size }.resolve(full)?;
        Ok(Resolved { texts: self.inputs.0, size, normalize: self.normalize, truncate: self.truncate })
    }
}

impl OpenAiRequest {
    /// OpenAI's embeddings are unit vectors and its inputs are cut at the model's limit (no
    /// `truncate` field); we keep the first and refuse over-long texts, as TEI's default.
    pub fn resolve(self, full: Size) -> Result<(Resolved, EncodingFormat), ApiError> {
        let size = SizeFields { dimensions: self.dimensions, layers: self.layers, size: self.size }.resolve(full)?;
        Ok((Resolved { texts: self.input.0, size, normalize: true, truncate: false }, self.encoding_format))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: Size = Size::new(6, 384);

    fn embed(body: &str) -> Result<Resolved, ApiError> {
        parse::<EmbedRequest>(body.as_bytes())?.resolve(FULL)
    }

    #[test]
    fn inputs_are_a_string_or_a_list_and_sizes_default_to_the_full_model() {
        let r = embed(r#"{"inputs": "a"}"#).unwrap();
        assert_eq!((r.texts, r.size, r.normalize, r.truncate), (vec!["a".to_string()], FULL, true, false));
        let r = embed(r#"{"inputs": ["a", "b"], "dimensions": 64, "layers": 2, "normalize": false}"#).unwrap();
        assert_eq!((r.texts.len(), r.size, r.normalize), (2, Size::new(2, 64), false));
        assert_eq!(embed(r#"{"inputs": "a", "size": "tall"}"#).unwrap().size, Size::new(6, 128));
        assert_eq!(embed(r#"{"inputs": "a", "size": "3,96", "layers": 3}"#).unwrap().size, Size::new(3, 96));
        assert_eq!(embed(r#"{"inputs": "a", "dimensions": 32}"#).unwrap().size, Size::new(6, 32));
        assert!(embed(r#"{"inputs": "a", "truncation_direction": "Right", "prompt_name": null}"#).is_ok());
    }

    #[test]
    fn every_error_names_its_field() {
        let cases = [
            (r#"{"inputs": 3}"#, "`inputs`"),
            (r#"{"inputs": ["a", 3]}"#, "item 1"),
            (r#"{"inputs": "a", "dimensions": "64"}"#, "`dimensions`"),
            (r#"{"inputs": "a", "dimensions": -1}"#, "`dimensions`"),
            (r#"{"inputs": "a", "normalize": 1}"#, "`normalize`"),
            (r#"{"inputs": "a", "layers": 7}"#, "6 layers"),
            (r#"{"inputs": "a", "dimensions": 385}"#, "384 dims"),
            (r#"{"inputs": "a", "layers": 0}"#, "`layers`"),
            (r#"{"inputs": "a", "size": "huge"}"#, "`size`"),
            (r#"{"inputs": "a", "size": "grande"}"#, "`size`: 8 layers"),
            (r#"{"inputs": "a", "size": "3,96", "dimensions": 64}"#, "`dimensions`"),
            (r#"{"inputs": "a""#, "not valid JSON"),
            (r#"[1, 2]"#, "the body"),
            (r#"{}"#, "inputs"),
            (r#"{"inputs": "a", "truncation_direction": "Left"}"#, "`truncation_direction`"),
            (r#"{"inputs": "a", "prompt_name": "query"}"#, "`prompt_name`"),
        ];
        for (body, needle) in cases {
            let e = embed(body).unwrap_err();
            assert_eq!(e.status, 422, "{body}");
            assert!(e.message.contains(needle), "{body}: {:?} lacks {needle:?}", e.message);
        }
    }

    #[test]
    fn openai_bodies() {
        let body = r#"{"input": ["a"], "model": "m", "encoding_format": "base64", "layers": 2, "user": "u"}"#;
        let (r, format) = parse::<OpenAiRequest>(body.as_bytes()).unwrap().resolve(FULL).unwrap();
        assert_eq!((r.size, format, r.normalize), (Size::new(2, 384), EncodingFormat::Base64, true));
        let e = parse::<OpenAiRequest>(br#"{"input": "a", "encoding_format": "hex"}"#).unwrap_err();
        assert!(e.message.contains("`encoding_format`"), "{}", e.message);
    }
}
