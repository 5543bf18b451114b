//! The bodies of the fuzz targets: each feeds one input to a parser exactly as the program
//! does (files in a scratch folder, a real loopback HTTP server) and asserts only that it
//! returns: any input may be an `Err`, none may panic, hang or abort.
//!
//! Two drivers call them. `fuzz/` (its own workspace, built by `cargo fuzz` with coverage
//! instrumentation) wraps each in libFuzzer's `fuzz_target!`, where a panic is a crash saved
//! under `fuzz/artifacts/<target>/`; this crate's test replays every committed seed and every
//! saved crash (`fuzz/seeds/`, `fuzz/regressions/`) through them in the main test build.
//!
//! Depends on the crates whose parsers it drives; nothing depends on it but the two drivers.

mod data_files;
mod fineweb;
mod http_range;
mod model_folder;
mod run_config;
mod serve_request;
mod support;
mod tables;

pub use data_files::data_files;
pub use fineweb::fineweb;
pub use http_range::http_range;
pub use model_folder::model_folder;
pub use run_config::run_config;
pub use serve_request::serve_request;
pub use support::SECTION;
pub use tables::tables;

/// A target's body: one input, any bytes.
pub type Target = fn(&[u8]);

/// Every target by the name of its folder under `fuzz/seeds/` and its binary in `fuzz/`.
pub const TARGETS: [(&str, Target); 7] = [
    ("data_files", data_files),
    ("fineweb", fineweb),
    ("http_range", http_range),
    ("model_folder", model_folder),
    ("run_config", run_config),
    ("serve_request", serve_request),
    ("tables", tables),
];
