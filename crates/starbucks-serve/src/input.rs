//! What the embedding routes share in their bodies: inputs (texts or token ids), the size
//! fields, and a JSON parser whose every error names its field.

use serde::Deserialize;
use serde::de::{Deserializer, Error as _};
use serde_json::{Value, json};
use starbucks_model::{Axis, Size, keys};
use utoipa::openapi::{RefOr, Schema};

use crate::error::ApiError;

/// One input: a text, or token ids as the model's tokenizer would give them (special tokens
/// included; TEI and OpenAI accept both).
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Text(String),
    Ids(Vec<u32>),
}

/// `inputs` / `input`: a string, a list of token ids, or a list of strings and token-id lists.
/// A list of numbers is one input's ids, as OpenAI reads it (`[[…]]` is a batch of one).
#[derive(Debug, Clone, PartialEq)]
pub struct Inputs(pub Vec<Input>);

impl<'de> Deserialize<'de> for Inputs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(text) => Ok(Inputs(vec![Input::Text(text)])),
            Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_number) => {
                nonempty_ids(&items).map(|ids| Inputs(vec![Input::Ids(ids)])).map_err(D::Error::custom)
            }
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(text) => Ok(Input::Text(text.clone())),
                    Value::Array(list) => nonempty_ids(list).map(Input::Ids).map_err(|e| format!("item {i}: {e}")),
                    other => Err(format!("item {i} is {}, not a string or a list of token ids", kind(other))),
                })
                .collect::<Result<_, _>>()
                .map(Inputs)
                .map_err(D::Error::custom),
            other => Err(D::Error::custom(format!(
                "expected a string, a list of strings or a list of token ids, found {}",
                kind(&other)
            ))),
        }
    }
}

/// A list of token ids, at least one.
fn nonempty_ids(items: &[Value]) -> Result<Vec<u32>, String> {
    if items.is_empty() {
        return Err("an empty list of token ids".into());
    }
    token_ids(items)
}

/// A list of token ids: integers from 0 within u32. JSON Schema's integers include `7.0`, so
/// such numbers are ids too (schemathesis sent them).
pub fn token_ids(items: &[Value]) -> Result<Vec<u32>, String> {
    let id = |item: &Value| match item.as_u64() {
        Some(id) => u32::try_from(id).ok(),
        None => item.as_f64().filter(|x| x.fract() == 0.0 && (0.0..=u32::MAX as f64).contains(x)).map(|x| x as u32),
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            id(item).ok_or_else(|| format!("token id {i} is {item}, not an integer from 0 to {}", u32::MAX))
        })
        .collect()
}

/// Refuses the first id at or beyond `vocab`, naming it.
pub fn check_ids(ids: &[u32], vocab: usize) -> Result<(), String> {
    match ids.iter().find(|&&id| id as usize >= vocab) {
        Some(id) => Err(format!("token id {id} is not in the vocabulary (ids 0 to {})", vocab - 1)),
        None => Ok(()),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

impl utoipa::PartialSchema for Inputs {
    fn schema() -> RefOr<Schema> {
        let ids = json!({"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1,
            "description": "Token ids, special tokens included", "example": [101, 7592, 102]});
        schema(json!({
            "oneOf": [
                {"type": "string", "description": "One text", "example": "What is Deep Learning?"},
                ids,
                {"type": "array", "description": "A batch of texts and token-id lists", "minItems": 1,
                 "items": {"oneOf": [{"type": "string"}, ids]}},
            ],
        }))
    }
}

impl utoipa::ToSchema for Inputs {}

/// `inputs` of `/tokenize`: one string or a list of strings.
#[derive(Debug, Clone, PartialEq)]
pub struct Texts(pub Vec<String>);

impl<'de> Deserialize<'de> for Texts {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(text) => Ok(Texts(vec![text])),
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(text) => Ok(text),
                    other => Err(D::Error::custom(format!("item {i} is {}, not a string", kind(&other)))),
                })
                .collect::<Result<_, _>>()
                .map(Texts),
            other => Err(D::Error::custom(format!("expected a string or a list of strings, found {}", kind(&other)))),
        }
    }
}

impl utoipa::PartialSchema for Texts {
    fn schema() -> RefOr<Schema> {
        schema(json!({"oneOf": [
            {"type": "string", "example": "What is Deep Learning?"},
            {"type": "array", "description": "A batch of texts", "items": {"type": "string"}, "minItems": 1},
        ]}))
    }
}

impl utoipa::ToSchema for Texts {}

/// A schema written as JSON, for the types whose serde is hand-written.
pub fn schema(value: Value) -> RefOr<Schema> {
    serde_json::from_value(value).expect("a valid OpenAPI schema")
}

/// TEI's `truncation_direction`: only `right` (the default) is supported here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
pub enum TruncationDirection {
    #[default]
    #[serde(alias = "right")]
    Right,
}

/// The size fields every embedding route shares: TEI's and OpenAI's `dimensions`, and our
/// `layers` and `size` (`"3,128"` or a paper name such as `"tall"`). Each body declares them
/// itself: serde's `flatten` would lose the field's name from type errors.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SizeFields {
    pub dimensions: Option<usize>,
    pub layers: Option<usize>,
    pub size: Option<String>,
}

/// Parses a JSON body; a syntax error or a field of the wrong type is a 422 naming the field.
/// The body is an object, as every struct nested in it (see [`object`]).
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let deserializer = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(deserializer)
        .map(|Object(body)| body)
        .map_err(|e| ApiError::validation(keys::json_message(e, "field", Some("the body"))))
}

/// `deserialize_with` for a struct in a body: a JSON object only. serde's derive would also
/// read a struct from a list, field by field in order (`"parameters": []` would pass). The
/// fields are read through the caller's map, so errors still name their path.
pub fn object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<T, D::Error> {
    struct ObjectOnly<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for ObjectOnly<T> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
        }
    }
    deserializer.deserialize_map(ObjectOnly(std::marker::PhantomData))
}

/// [`object`] for an optional field: a JSON object or null.
pub fn object_or_null<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<T>, D::Error> {
    Ok(Option::<Object<T>>::deserialize(deserializer)?.map(|Object(o)| o))
}

/// A `T` read by [`object`].
#[derive(Deserialize)]
#[serde(bound = "T: Deserialize<'de>")]
struct Object<T>(#[serde(deserialize_with = "object")] T);

/// What an embedding request asks for, checked against the model: its inputs, one size, and
/// whether vectors are normalised and long inputs cut (`None`: the server's `--auto-truncate`).
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub inputs: Vec<Input>,
    pub size: Size,
    pub normalize: bool,
    pub truncate: Option<bool>,
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
        let Some((axis, value, bound)) = size.outside(full) else { return Ok(size) };
        let (name, unit) = match axis {
            Axis::Layers => ("layers", "layers"),
            Axis::Dims => ("dimensions", "dims"),
        };
        let field = if self.size.is_some() { "size" } else { name };
        Err(ApiError::validation(if value == 0 {
            format!("field `{field}`: {name} must be at least 1")
        } else {
            format!("field `{field}`: {value} {unit} is more than this model's {bound} {unit}")
        }))
    }
}

/// TEI's `prompt_name` (at `field`): prompts from `config_sentence_transformers.json` are not
/// supported.
pub fn refuse_prompt(field: &str, prompt_name: &Option<String>) -> Result<(), ApiError> {
    match prompt_name {
        Some(name) => Err(ApiError::validation(format!("field `{field}`: {name:?}: prompts are not supported"))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Body {
        inputs: Inputs,
    }

    fn inputs(body: &str) -> Result<Vec<Input>, ApiError> {
        parse::<Body>(body.as_bytes()).map(|b| b.inputs.0)
    }

    #[test]
    fn inputs_are_texts_or_token_ids() {
        let text = |t: &str| Input::Text(t.into());
        assert_eq!(inputs(r#"{"inputs": "a"}"#).unwrap(), vec![text("a")]);
        assert_eq!(inputs(r#"{"inputs": ["a", "b"]}"#).unwrap(), vec![text("a"), text("b")]);
        assert_eq!(inputs(r#"{"inputs": [101, 102]}"#).unwrap(), vec![Input::Ids(vec![101, 102])]);
        assert_eq!(inputs(r#"{"inputs": [[101, 102]]}"#).unwrap(), vec![Input::Ids(vec![101, 102])]);
        assert_eq!(inputs(r#"{"inputs": ["a", [7]]}"#).unwrap(), vec![text("a"), Input::Ids(vec![7])]);
        assert_eq!(inputs(r#"{"inputs": [7.0, 8]}"#).unwrap(), vec![Input::Ids(vec![7, 8])], "JSON Schema integers");
        assert_eq!(inputs(r#"{"inputs": []}"#).unwrap(), vec![]);
    }

    #[test]
    fn bad_inputs_name_the_item() {
        for (body, needle) in [
            (r#"{"inputs": 3}"#, "`inputs`: expected a string"),
            (r#"{"inputs": ["a", 3]}"#, "item 1 is a number"),
            (r#"{"inputs": [1, -2]}"#, "token id 1 is -2"),
            (r#"{"inputs": [1.5]}"#, "token id 0 is 1.5"),
            (r#"{"inputs": [-0.0, -1.0]}"#, "token id 1 is -1.0"),
            (r#"{"inputs": [[1], []]}"#, "item 1: an empty list"),
            (r#"{"inputs": [[1], [4294967296]]}"#, "item 1: token id 0"),
            (r#"{"inputs": [null]}"#, "item 0 is null"),
        ] {
            let e = inputs(body).unwrap_err();
            assert_eq!(e.status, 422, "{body}");
            assert!(e.message.contains(needle), "{body}: {:?} lacks {needle:?}", e.message);
        }
    }

    #[test]
    fn a_body_is_an_object() {
        for body in [r#"[["a"]]"#, r#""a""#, "3", " null"] {
            let e = inputs(body).unwrap_err();
            assert_eq!(e.status, 422, "{body}");
            assert!(e.message.starts_with("the body: invalid type"), "{body}: {:?}", e.message);
            assert!(e.message.contains("expected a JSON object"), "{body}: {:?}", e.message);
        }
        assert!(inputs("").unwrap_err().message.starts_with("the body is not valid JSON"));
    }

    #[test]
    fn sizes_default_to_the_full_model_and_name_their_field() {
        let full = Size::new(6, 384);
        let fields = |d, l, s: Option<&str>| SizeFields { dimensions: d, layers: l, size: s.map(String::from) };
        assert_eq!(fields(None, None, None).resolve(full).unwrap(), full);
        assert_eq!(fields(Some(64), Some(2), None).resolve(full).unwrap(), Size::new(2, 64));
        assert_eq!(fields(None, None, Some("tall")).resolve(full).unwrap(), Size::new(6, 128));
        assert_eq!(fields(None, Some(3), Some("3,96")).resolve(full).unwrap(), Size::new(3, 96));
        for (f, needle) in [
            (fields(None, Some(7), None), "6 layers"),
            (fields(Some(385), None, None), "384 dims"),
            (fields(None, Some(0), None), "`layers`"),
            (fields(None, None, Some("huge")), "`size`"),
            (fields(None, None, Some("grande")), "`size`: 8 layers"),
            (fields(Some(64), None, Some("3,96")), "`dimensions`"),
        ] {
            let e = f.resolve(full).unwrap_err();
            assert!(e.message.contains(needle), "{:?} lacks {needle:?}", e.message);
        }
    }
}
