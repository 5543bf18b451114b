//! The train crate's errors. [`Error::Input`] is what a user got wrong (config, paths, data,
//! model folder), found before anything is written; the rest happen while a run goes on.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input: a config key, a path, a data file, a model folder, an output folder in use.
    #[error("{0}")]
    Input(String),
    /// A file could not be written or read while running.
    /// (`error` is in the message, so it is not also a `source`: a chain printer would repeat it.)
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: std::io::Error },
    /// A data file or stream failed while running.
    #[error(transparent)]
    Data(#[from] starbucks_data::DataError),
    /// The model crate failed while running (tokenising, saving).
    #[error(transparent)]
    Model(#[from] starbucks_model::Error),
    /// A checkpoint could not be written or decoded.
    #[error("checkpoint {}: {message}", path.display())]
    Checkpoint { path: PathBuf, message: String },
    /// Too many steps in a row had NaN/Inf gradients.
    #[error("{0}")]
    Diverged(String),
    /// A collective operation of a data-parallel run failed.
    #[error("data-parallel: {0}")]
    Parallel(String),
    /// The evaluation during training failed.
    #[error("evaluation: {0}")]
    Eval(String),
    /// A stop was asked for ([`crate::RunOptions::stop`]): the run ended after `step`.
    #[error("stopped after step {step}; checkpoint {} written; continue with --resume", checkpoint.display())]
    Interrupted { step: usize, checkpoint: PathBuf },
}

impl Error {
    pub(crate) fn io(path: &Path, error: std::io::Error) -> Self {
        Error::Io { path: path.to_path_buf(), error }
    }

    /// True for mistakes in what the user gave (exit code 2), false for failures while running.
    pub fn is_input(&self) -> bool {
        matches!(self, Error::Input(_))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
