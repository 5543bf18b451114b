//! Reading text files line by line, plain or gzip, with 1-based line numbers and UTF-8 checked
//! per line, so every error can name the file and the line.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;

use crate::error::{DataError, Result};

/// Opens a file for reading, decompressing it when its name ends in `.gz`.
pub fn open(path: &Path) -> Result<Box<dyn BufRead + Send>> {
    let file = File::open(path).map_err(|e| DataError::whole(path.display(), format!("cannot open: {e}")))?;
    let reader: Box<dyn Read + Send> =
        if path.extension().is_some_and(|e| e == "gz") { Box::new(MultiGzDecoder::new(file)) } else { Box::new(file) };
    Ok(Box::new(BufReader::with_capacity(1 << 16, reader)))
}

/// The lines of a file with their 1-based numbers, without the line break (`\n` or `\r\n`).
/// A line that is not UTF-8 is an error naming the line.
pub struct Lines {
    name: String,
    reader: Box<dyn BufRead + Send>,
    number: usize,
    buf: Vec<u8>,
}

impl Lines {
    pub fn open(path: &Path) -> Result<Self> {
        Ok(Lines::from_reader(path.display().to_string(), open(path)?))
    }

    /// Lines of any reader (an HTTP body, say), named `name` in errors.
    pub fn from_reader(name: impl Into<String>, reader: Box<dyn BufRead + Send>) -> Self {
        Lines { name: name.into(), reader, number: 0, buf: Vec::new() }
    }

    /// The file's name as errors print it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// An error at the current line.
    pub fn error(&self, message: impl Into<String>) -> DataError {
        DataError::line(&self.name, self.number, message)
    }
}

impl Iterator for Lines {
    type Item = Result<(usize, String)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.buf.clear();
        match self.reader.read_until(b'\n', &mut self.buf) {
            Ok(0) => None,
            Ok(_) => {
                self.number += 1;
                while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
                    self.buf.pop();
                }
                Some(match std::str::from_utf8(&self.buf) {
                    Ok(text) => Ok((self.number, text.to_string())),
                    Err(e) => Err(self.error(format!("invalid UTF-8 at byte {}", e.valid_up_to()))),
                })
            }
            Err(e) => Some(Err(DataError::line(&self.name, self.number + 1, format!("cannot read: {e}")))),
        }
    }
}

/// Reads every line; an empty file is an error (a data file with no rows is a mistake).
pub fn read_nonempty(path: &Path) -> Result<Vec<(usize, String)>> {
    let lines: Vec<_> = Lines::open(path)?.collect::<Result<_>>()?;
    if lines.iter().all(|(_, l)| l.trim().is_empty()) {
        return Err(DataError::whole(path.display(), "the file is empty"));
    }
    Ok(lines)
}

/// Splits a tab-separated line into at least `at_least` columns, naming the file and line when short.
pub fn split_tsv<'a>(name: &str, number: usize, line: &'a str, at_least: usize) -> Result<Vec<&'a str>> {
    let cols: Vec<&str> = line.split('\t').collect();
    if cols.len() < at_least {
        return Err(DataError::line(
            name,
            number,
            format!("expected at least {at_least} tab-separated columns, found {}", cols.len()),
        ));
    }
    Ok(cols)
}
