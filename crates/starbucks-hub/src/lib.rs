//! Models and datasets by HuggingFace Hub id, fetched into the cache that Python's
//! `huggingface_hub` (and so sentence-transformers, TEI and candle) shares.
//!
//! ```no_run
//! use starbucks_hub::{Hub, Repo};
//!
//! let hub = Hub::from_env();
//! // `org/name` or `org/name@revision`; only the files an encoder needs.
//! let folder = hub.model_snapshot(&Repo::model("sentence-transformers/all-MiniLM-L6-v2")?)?;
//! assert!(folder.join("config.json").is_file());
//! # Ok::<(), starbucks_hub::Error>(())
//! ```
//!
//! The environment is read as `huggingface_hub` reads it: `HF_ENDPOINT`, `HF_TOKEN` (else the
//! token file under `HF_HOME`), `HF_HUB_CACHE` (else `$HF_HOME/hub`, else
//! `~/.cache/huggingface/hub`) and `HF_HUB_OFFLINE=1` (the cache only). The cache layout
//! (`models--org--name/{refs,blobs,snapshots}`, partial files as `blobs/<etag>.incomplete`,
//! locks under `.locks/`) is the one both tools read and write.
//!
//! Must never depend on burn or on any other starbucks crate: the model and data crates use it.

mod cache;
mod download;
mod error;
mod hub;
mod listing;
mod repo;

pub use error::{Error, Result};
pub use hub::{Hub, resolve_model};
pub use listing::{Entry, Listing};
pub use repo::{Repo, RepoType};
