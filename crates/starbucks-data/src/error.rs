//! One error type: every message names the file or URL, and the line or row where it applies.

use std::fmt;

/// Where in a source an error happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The source as a whole.
    Whole,
    /// A 1-based line of a text file.
    Line(usize),
    /// A row of a Parquet file: row group and row within it (0-based).
    Row { row_group: usize, row: usize },
}

/// A data error: which file or URL, where in it, and what is wrong.
#[derive(Debug, thiserror::Error)]
pub struct DataError {
    pub source_name: String,
    pub location: Location,
    pub message: String,
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Location::Whole => write!(f, "{}: {}", self.source_name, self.message),
            Location::Line(line) => write!(f, "{}:{line}: {}", self.source_name, self.message),
            Location::Row { row_group, row } => {
                write!(f, "{} (row group {row_group}, row {row}): {}", self.source_name, self.message)
            }
        }
    }
}

impl DataError {
    pub fn whole(source: impl fmt::Display, message: impl Into<String>) -> Self {
        DataError { source_name: source.to_string(), location: Location::Whole, message: message.into() }
    }

    pub fn line(source: impl fmt::Display, line: usize, message: impl Into<String>) -> Self {
        DataError { source_name: source.to_string(), location: Location::Line(line), message: message.into() }
    }

    pub fn row(source: impl fmt::Display, row_group: usize, row: usize, message: impl Into<String>) -> Self {
        DataError {
            source_name: source.to_string(),
            location: Location::Row { row_group, row },
            message: message.into(),
        }
    }
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;
