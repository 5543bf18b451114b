//! Range reads over HTTP(S) with retries: a remote file that Parquet can read like a local one.
//!
//! `HttpFile` learns the length with a one-byte range request, then serves reads from one cached
//! block (8 MiB by default) at a time, so memory stays flat whatever the file's size. A body that
//! breaks mid-transfer is re-requested from the byte where it stopped, up to `retries` times.

use std::io::Read;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use parquet::errors::ParquetError;
use parquet::file::reader::{ChunkReader, Length};

use crate::error::{DataError, Result};

/// A remote file read by HTTP range requests.
pub struct HttpFile {
    url: String,
    len: u64,
    agent: ureq::Agent,
    retries: usize,
    block: u64,
    cache: Mutex<Option<(u64, Bytes)>>,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_body(Some(Duration::from_secs(120)))
        .build()
        .into()
}

/// GETs a resource as a byte stream (for JSON Lines shards read front to back).
pub fn get_reader(url: &str) -> Result<Box<dyn Read + Send>> {
    let response = agent().get(url).call().map_err(|e| http_error(url, e))?;
    Ok(Box::new(response.into_body().into_reader()))
}

fn http_error(url: &str, e: ureq::Error) -> DataError {
    match e {
        ureq::Error::StatusCode(code) => DataError::whole(url, format!("HTTP {code}")),
        other => DataError::whole(url, format!("HTTP request failed: {other}")),
    }
}

impl HttpFile {
    pub fn open(url: &str) -> Result<Self> {
        let file = HttpFile {
            url: url.to_string(),
            len: 0,
            agent: agent(),
            retries: 5,
            block: 8 << 20,
            cache: Mutex::new(None),
        };
        let response = file.agent.get(url).header("Range", "bytes=0-0").call().map_err(|e| http_error(url, e))?;
        let total = response
            .headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit('/').next())
            .and_then(|v| v.parse::<u64>().ok());
        let Some(len) = total else {
            return Err(DataError::whole(url, "the server does not answer range requests (no Content-Range)"));
        };
        Ok(HttpFile { len, ..file })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// How many times a broken transfer is re-requested (5 by default).
    pub fn with_retries(self, retries: usize) -> Self {
        HttpFile { retries, ..self }
    }

    /// Bytes `start..start + len`, retrying a broken transfer from where it stopped.
    pub fn fetch(&self, start: u64, len: u64) -> Result<Bytes> {
        let mut data = Vec::with_capacity(len as usize);
        let mut attempt = 0;
        while (data.len() as u64) < len {
            let from = start + data.len() as u64;
            let range = format!("bytes={from}-{}", start + len - 1);
            let outcome = self.agent.get(&self.url).header("Range", &range).call();
            let result = match outcome {
                Ok(response) if response.status() == 206 => {
                    let mut body = response.into_body().into_reader().take(start + len - from);
                    body.read_to_end(&mut data).map_err(|e| e.to_string())
                }
                Ok(response) => Err(format!("expected 206 Partial Content, got HTTP {}", response.status())),
                Err(ureq::Error::StatusCode(code)) => return Err(DataError::whole(&self.url, format!("HTTP {code}"))),
                Err(e) => Err(e.to_string()),
            };
            if let Err(reason) = result.and_then(|_| {
                if (data.len() as u64) < len { Err("connection closed early".to_string()) } else { Ok(()) }
            }) {
                attempt += 1;
                if attempt > self.retries {
                    return Err(DataError::whole(
                        &self.url,
                        format!("range {range} failed after {} retries: {reason}", self.retries),
                    ));
                }
                tracing::warn!(url = %self.url, range, attempt, "{reason}; retrying from byte {}", start + data.len() as u64);
                std::thread::sleep(Duration::from_millis(50 << attempt.min(6)));
            }
        }
        Ok(Bytes::from(data))
    }

    /// Bytes `start..start + len` from the cached block, fetching a new block when needed.
    fn read_cached(&self, start: u64, len: u64) -> Result<Bytes> {
        let mut cache = self.cache.lock().expect("cache lock");
        if let Some((block_start, block)) = cache.as_ref()
            && start >= *block_start
            && start + len <= block_start + block.len() as u64
        {
            let offset = (start - block_start) as usize;
            return Ok(block.slice(offset..offset + len as usize));
        }
        let fetch_len = len.max(self.block).min(self.len - start);
        let block = self.fetch(start, fetch_len)?;
        let out = block.slice(0..len as usize);
        *cache = Some((start, block));
        Ok(out)
    }
}

impl Length for HttpFile {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for HttpFile {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        use bytes::Buf;
        let len = self.block.min(self.len.saturating_sub(start));
        Ok(self.read_cached(start, len).map_err(|e| ParquetError::External(Box::new(e)))?.reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.read_cached(start, length as u64).map_err(|e| ParquetError::External(Box::new(e)))
    }
}
