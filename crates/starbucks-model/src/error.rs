//! One error type for everything a user can get wrong: each message names the file.

use std::path::{Path, PathBuf};

/// Errors from loading a model folder, tokenising, or asking for a size the model lacks.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read (missing, unreadable).
    /// (`error` is in the message, so it is not also a `source`: a chain printer would repeat it.)
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: std::io::Error },
    /// A file was read but its content is wrong (bad JSON, bad value, truncated data).
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    /// A size that does not fit the model.
    #[error("size ({layers} layers, {dims} dims) does not fit this model ({max_layers} layers, {max_dims} dims)")]
    SizeTooLarge { layers: usize, dims: usize, max_layers: usize, max_dims: usize },
    /// A size name or pair that cannot be parsed.
    #[error(
        "invalid size '{0}': expected a name (demi, short, tall, grande, venti, trenta) or 'layers,dims' with both > 0"
    )]
    BadSize(String),
    /// The tokenizer failed on an input text.
    #[error("tokenizer: {0}")]
    Tokenize(String),
    /// A hub id that could not be fetched (or, offline, is not in the cache).
    #[error(transparent)]
    Hub(#[from] starbucks_hub::Error),
    /// A precision this build or backend does not run.
    #[error("precision {precision} runs on the CPU (flex) backend only; this embedder runs on {backend}")]
    Precision { precision: crate::precision::Precision, backend: String },
    /// bf16 asked of a CPU without AVX-512 BF16, or of a process held below the AVX-512 tier.
    #[error(
        "precision bf16 needs a CPU with AVX-512 BF16 (`avx512_bf16` in /proc/cpuinfo's flags, as on Zen 4 or \
         Sapphire Rapids); this one has none, or STARBUCKS_SIMD holds the kernels below avx512: use f32 or int8"
    )]
    NoBf16,
}

impl Error {
    pub(crate) fn io(path: &Path, error: std::io::Error) -> Self {
        Error::Io { path: path.to_path_buf(), error }
    }

    pub(crate) fn invalid(path: &Path, message: impl Into<String>) -> Self {
        Error::Invalid { path: path.to_path_buf(), message: message.into() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Reads a file to a string, naming the file on failure.
pub(crate) fn read_to_string(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

/// Writes `value` as pretty JSON with a final newline.
pub(crate) fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("JSON values serialise") + "\n";
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

/// Reads and parses a JSON file, naming the file, the key and the line on failure.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = read_to_string(path)?;
    let deserializer = &mut serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(deserializer)
        .map_err(|e| Error::invalid(path, crate::keys::json_message(e, "key", None)))
}
