//! HTTP range responses as `HttpFile` reads them: a loopback server answers the length probe
//! with the input's first section and every range request with its second, raw bytes on the
//! wire (status line, headers, body), then closes the connection.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Mutex, OnceLock};

use crate::support::sections;
use starbucks_data::http::HttpFile;

/// The two answers of the current input.
static ANSWERS: Mutex<(Vec<u8>, Vec<u8>)> = Mutex::new((Vec::new(), Vec::new()));

/// The server's address; it runs for the life of the process.
fn server() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let url = format!("http://{}/shard.parquet", listener.local_addr().expect("bound"));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream);
                let mut probe = false;
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    probe |= line.to_ascii_lowercase().starts_with("range: bytes=0-0");
                    line.clear();
                }
                let answers = ANSWERS.lock().expect("no panic holds it");
                let answer = if probe { &answers.0 } else { &answers.1 };
                let _ = reader.get_mut().write_all(answer);
            }
        });
        url
    })
}

pub fn http_range(data: &[u8]) {
    let url = server();
    let parts = sections(data, 2);
    *ANSWERS.lock().expect("no panic holds it") = (parts[0].to_vec(), parts[1].to_vec());
    if let Ok(file) = HttpFile::open(url) {
        let file = file.with_retries(1);
        let len = parquet::file::reader::Length::len(&file);
        if len > 0 {
            let _ = file.fetch(0, len.min(64));
            let _ = file.fetch(len - 1, 1);
        }
    }
}
