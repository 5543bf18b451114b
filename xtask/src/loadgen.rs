//! A small HTTP/1.1 load generator for `cargo xtask bench --serve`: keep-alive connections,
//! one thread each, over loopback; every request timed from its first byte sent to its last
//! byte read. Bounded by a request count and a time limit.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// One request to send: a JSON body, and the label its latency is reported under.
#[derive(Debug, Clone)]
pub struct Shot {
    pub body: Vec<u8>,
    pub label: String,
}

/// What came back for one request.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub label: String,
    pub status: u16,
    pub latency: Duration,
}

/// A finished load: every outcome and the wall-clock time from the first send to the last answer.
#[derive(Debug)]
pub struct Load {
    pub outcomes: Vec<Outcome>,
    pub wall: Duration,
}

impl Load {
    pub fn throughput(&self) -> f64 {
        self.outcomes.len() as f64 / self.wall.as_secs_f64()
    }

    /// The `q` quantile (0..1) of the latencies of `label` (all labels: None), in ms.
    pub fn quantile_ms(&self, label: Option<&str>, q: f64) -> f64 {
        let ms: Vec<f64> = self
            .outcomes
            .iter()
            .filter(|o| label.is_none_or(|l| o.label == l))
            .map(|o| o.latency.as_secs_f64() * 1e3)
            .collect();
        crate::stats::quantile(&ms, q)
    }
}

/// An HTTP/1.1 keep-alive connection to `host:port`.
struct Connection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Connection {
    fn open(address: &str) -> Result<Self> {
        let stream = TcpStream::connect(address).with_context(|| format!("cannot connect to {address}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(300)))?;
        Ok(Connection { reader: BufReader::new(stream.try_clone()?), writer: stream })
    }

    /// POSTs `body` to `path`; returns the status and whether the server keeps the connection.
    fn post(&mut self, address: &str, path: &str, body: &[u8], headers: &str) -> Result<(u16, bool)> {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{headers}\r\n",
            body.len()
        );
        self.writer.write_all(head.as_bytes())?;
        self.writer.write_all(body)?;
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            bail!("the server closed the connection");
        }
        let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("no status line")?;
        let (mut length, mut chunked, mut keep) = (None, false, true);
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap_or((header, ""));
            let (name, value) = (name.to_ascii_lowercase(), value.trim().to_ascii_lowercase());
            match name.as_str() {
                "content-length" => length = value.parse::<usize>().ok(),
                "transfer-encoding" => chunked = value.contains("chunked"),
                "connection" => keep = value != "close",
                _ => {}
            }
        }
        if chunked {
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                let size =
                    usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16).context("bad chunk size")?;
                let mut chunk = vec![0; size + 2];
                self.reader.read_exact(&mut chunk)?;
                if size == 0 {
                    break;
                }
            }
        } else {
            let mut rest = vec![0; length.context("a response without Content-Length")?];
            self.reader.read_exact(&mut rest)?;
        }
        Ok((status, keep))
    }
}

/// Sends `count` requests, `shots[i % shots.len()]` for the i-th, from `concurrency`
/// connections, stopping early at `limit`. `headers` are extra header lines (`Name: value\r\n`).
pub fn run(
    address: &str,
    path: &str,
    headers: &str,
    shots: &[Shot],
    concurrency: usize,
    count: usize,
    limit: Duration,
) -> Result<Load> {
    let next = AtomicUsize::new(0);
    let outcomes = Mutex::new(Vec::with_capacity(count));
    let start = Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..concurrency)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    let mut connection = Connection::open(address)?;
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= count || start.elapsed() > limit {
                            return Ok(());
                        }
                        let shot = &shots[i % shots.len()];
                        let sent = Instant::now();
                        let (status, keep) = match connection.post(address, path, &shot.body, headers) {
                            Ok(answer) => answer,
                            // A connection the server closed between requests: once more, fresh.
                            Err(_) => {
                                connection = Connection::open(address)?;
                                connection.post(address, path, &shot.body, headers)?
                            }
                        };
                        let latency = sent.elapsed();
                        outcomes.lock().unwrap_or_else(|p| p.into_inner()).push(Outcome {
                            label: shot.label.clone(),
                            status,
                            latency,
                        });
                        if !keep {
                            connection = Connection::open(address)?;
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
        }
        Ok(())
    })?;
    let wall = start.elapsed();
    Ok(Load { outcomes: outcomes.into_inner().unwrap_or_else(|p| p.into_inner()), wall })
}
