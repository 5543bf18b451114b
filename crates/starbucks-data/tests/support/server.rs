//! A loopback HTTP/1.1 file server for tests: GET with `Range` (206 + Content-Range), 404 for
//! missing files, and on demand a response cut off mid-body to simulate a dropped connection.
//! It binds 127.0.0.1 on a free port and serves files from one folder on disk.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Server {
    pub base: String,
    /// How many upcoming responses of more than 1 KiB to cut off halfway.
    pub drops: Arc<AtomicUsize>,
    /// Requests served so far.
    pub requests: Arc<AtomicUsize>,
}

impl Server {
    pub fn start(root: &Path) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let drops = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (root, d, r) = (root.to_path_buf(), drops.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (root, d, r) = (root.clone(), d.clone(), r.clone());
                std::thread::spawn(move || {
                    let _ = handle(stream, &root, &d, &r);
                });
            }
        });
        Server { base, drops, requests }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }
}

fn handle(stream: TcpStream, root: &Path, drops: &AtomicUsize, requests: &AtomicUsize) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    let mut range = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("range")
        {
            range = value.trim().strip_prefix("bytes=").map(str::to_string);
        }
    }
    requests.fetch_add(1, Ordering::SeqCst);
    let mut stream = stream;
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let path = path.split('?').next().unwrap_or(path);
    let file_path = root.join(path.trim_start_matches('/'));
    let Ok(mut file) = std::fs::File::open(&file_path)
        .and_then(|f| if f.metadata()?.is_file() { Ok(f) } else { Err(std::io::ErrorKind::NotFound.into()) })
    else {
        let body = b"not found";
        write!(stream, "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())?;
        return stream.write_all(body);
    };
    let len = file.metadata()?.len();
    let (status, start, end) = match range {
        Some(r) => {
            let (a, b) = r.split_once('-').unwrap_or((&r, ""));
            let start: u64 = a.parse().unwrap_or(0);
            let end: u64 = if b.is_empty() { len - 1 } else { b.parse::<u64>().unwrap_or(len - 1).min(len - 1) };
            ("206 Partial Content", start, end)
        }
        None => ("200 OK", 0, len.saturating_sub(1)),
    };
    let body_len = if len == 0 { 0 } else { end + 1 - start };
    write!(stream, "HTTP/1.1 {status}\r\nContent-Length: {body_len}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n")?;
    if status.starts_with("206") {
        write!(stream, "Content-Range: bytes {start}-{end}/{len}\r\n")?;
    }
    write!(stream, "\r\n")?;
    let cut = body_len > 1024 && drops.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
    let send = if cut { body_len / 2 } else { body_len };
    file.seek(SeekFrom::Start(start))?;
    std::io::copy(&mut file.take(send), &mut stream)?;
    stream.flush()?;
    if cut {
        stream.shutdown(std::net::Shutdown::Both)?;
    }
    Ok(())
}
