//! A `starbucks serve` child on a free loopback port, its log collected; killed when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

pub struct Server {
    pub child: Child,
    pub url: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// all-MiniLM-L6-v2 served with the flags `extra`.
    pub fn start(extra: &[&str]) -> Server {
        Server::start_with(&super::minilm(), extra, &[])
    }

    /// `model` (a folder or a hub id) served with the flags `extra` and the hub settings `env`.
    pub fn start_with(model: &str, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = super::command(env)
            .args(["serve", "--model", model, "--port", "0"])
            .args(extra)
            .env("STARBUCKS_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starts");
        // The log is read to its end in a thread: a closed pipe would fail the server's writes.
        let stderr = child.stderr.take().expect("piped");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("listening on ") {
                    let _ = tx.send(line[at + "listening on ".len()..].trim().to_string());
                }
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let url = rx.recv_timeout(Duration::from_secs(120)).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("the server did not start:\n{}", log.lock().unwrap())
        });
        Server { child, url, log }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").args([&format!("-{name}"), &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

/// Status and body of one request (`body` None: GET).
pub fn call(url: &str, body: Option<&str>, key: Option<&str>) -> (u16, String) {
    let agent = agent();
    let mut response = match body {
        Some(body) => {
            let mut request = agent.post(url).header("content-type", "application/json");
            if let Some(key) = key {
                request = request.header("authorization", &format!("Bearer {key}"));
            }
            request.send(body)
        }
        None => {
            let mut request = agent.get(url);
            if let Some(key) = key {
                request = request.header("authorization", &format!("Bearer {key}"));
            }
            request.call()
        }
    }
    .unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().unwrap())
}

pub fn post(server: &Server, path: &str, body: &Value) -> (u16, Value) {
    let (status, text) = call(&format!("{}{path}", server.url), Some(&body.to_string()), None);
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}")))
}

/// A JSON answer read as `T` (vectors, scores), or a panic showing it.
pub fn vectors<T: serde::de::DeserializeOwned>(value: &Value) -> T {
    serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{e}: {value}"))
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}
