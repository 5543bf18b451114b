//! One error type; every message names the repository (and the file where one applies).

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A string that is not `org/name[@revision]` (or a dataset spec that is not `hf://datasets/…`).
    #[error("{spec}: {reason}")]
    Spec { spec: String, reason: String },
    /// The hub answered with an error status, or an answer that is not the hub's.
    #[error("{what}: {message}")]
    Http { what: String, message: String },
    /// The hub could not be reached (a cached copy, where there is one, serves instead).
    #[error("{what}: cannot reach {endpoint}: {message} (HF_HUB_OFFLINE=1 reads the cache only)")]
    Unreachable { what: String, endpoint: String, message: String },
    /// `HF_HUB_OFFLINE` is set and the cache does not hold what was asked for.
    #[error("{what}: not in the HuggingFace cache {cache} and HF_HUB_OFFLINE is set")]
    Offline { what: String, cache: String },
    /// A downloaded file whose sha256 differs from the one the hub reported; nothing was kept.
    #[error("{what}: sha256 {actual} does not match the hub's {expected}; the download was deleted")]
    Checksum { what: String, expected: String, actual: String },
    /// Reading or writing the cache.
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

impl Error {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Error::Io { path: path.display().to_string(), source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
