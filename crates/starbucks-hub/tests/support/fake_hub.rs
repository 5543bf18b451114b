//! A loopback server that answers as the HuggingFace Hub does, for tests (shared by the hub,
//! data and CLI tests through `#[path]`). It serves what `huggingface_hub` and our client call:
//!
//! - `GET /api/{models|datasets}/{org}/{name}/revision/{rev}`: `sha` and `siblings`;
//! - `GET /api/{models|datasets}/{org}/{name}/tree/{rev}[/{path}]?recursive=true`: files and
//!   folders with `oid`, `size` and, for LFS files, `lfs.oid` (the sha256), paged with
//!   `Link: <…&cursor=N>; rel="next"`;
//! - `HEAD`/`GET /[datasets/]{org}/{name}/resolve/{rev}/{path}`: small files answered directly
//!   with `ETag` and `X-Repo-Commit`; LFS files (weights, Parquet, `.gz`) with a `302` to an
//!   absolute CDN URL carrying `X-Linked-Etag` (the sha256), `X-Linked-Size` and `X-Repo-Commit`;
//! - `GET /cdn/{sha256}`: the bytes, with `Range` (206 and `Content-Range`);
//! - errors with the hub's `X-Error-Code`: `RepoNotFound` (401), `GatedRepo` (401 without the
//!   token), `RevisionNotFound` and `EntryNotFound` (404).
//!
//! Faults on demand: a transfer cut half-way (the full `Content-Length` sent, half the body,
//! then the connection closed), and a file served with one byte changed.

#![allow(dead_code)] // each test binary uses its own part of it

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

/// The token a gated repository accepts.
pub const TOKEN: &str = "hf_loopbacktesttoken";

pub struct FakeRepo {
    kind: &'static str,
    pub id: String,
    /// The branch this content is at (`main`, or e.g. `refs/convert/parquet`).
    revision: String,
    files: BTreeMap<String, Vec<u8>>,
    gated: bool,
    /// The commit and each file's sha256, computed once when the server starts (weights are
    /// 90 MB: hashing them per request would be slow).
    hashed: Option<(String, BTreeMap<String, String>)>,
}

impl FakeRepo {
    pub fn model(id: &str) -> Self {
        FakeRepo {
            kind: "models",
            id: id.into(),
            revision: "main".into(),
            files: BTreeMap::new(),
            gated: false,
            hashed: None,
        }
    }

    pub fn dataset(id: &str) -> Self {
        FakeRepo {
            kind: "datasets",
            id: id.into(),
            revision: "main".into(),
            files: BTreeMap::new(),
            gated: false,
            hashed: None,
        }
    }

    pub fn file(mut self, path: &str, bytes: impl Into<Vec<u8>>) -> Self {
        self.files.insert(path.into(), bytes.into());
        self
    }

    /// Every file of a local folder, at the same relative paths.
    pub fn folder(mut self, dir: &Path) -> Self {
        fn walk(dir: &Path, prefix: &str, files: &mut BTreeMap<String, Vec<u8>>) {
            for entry in std::fs::read_dir(dir).unwrap().flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                let relative = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
                if entry.path().is_dir() {
                    walk(&entry.path(), &relative, files);
                } else {
                    files.insert(relative, std::fs::read(entry.path()).unwrap());
                }
            }
        }
        walk(dir, "", &mut self.files);
        self
    }

    /// The same repository at another branch (give each branch its own `FakeRepo`).
    pub fn at(mut self, revision: &str) -> Self {
        self.revision = revision.into();
        self
    }

    pub fn gated(mut self) -> Self {
        self.gated = true;
        self
    }

    /// A commit hash from the content, so a changed repository is a new commit.
    pub fn commit(&self) -> String {
        if let Some((commit, _)) = &self.hashed {
            return commit.clone();
        }
        let mut h = Sha256::new();
        for (path, bytes) in &self.files {
            h.update(path.as_bytes());
            h.update(bytes);
        }
        h.update(self.revision.as_bytes());
        hex(&h.finalize())[..40].to_string()
    }
}

impl FakeRepo {
    fn hash(&mut self) {
        let shas = self.files.iter().map(|(p, b)| (p.clone(), sha256(b))).collect();
        self.hashed = Some((self.commit(), shas));
    }

    fn sha(&self, path: &str) -> String {
        self.hashed.as_ref().expect("hashed at start").1[path].clone()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// What .gitattributes puts in LFS on the hub: weights, Parquet, archives.
fn is_lfs(path: &str) -> bool {
    [".safetensors", ".parquet", ".gz", ".bin", ".onnx"].iter().any(|e| path.ends_with(e))
}

/// A git object id stand-in: 40 hex digits from the content.
fn blob_id(bytes: &[u8]) -> String {
    sha256(bytes)[..40].to_string()
}

struct State {
    base: String,
    cdn: String,
    repos: Vec<FakeRepo>,
    requests: AtomicUsize,
    page_size: AtomicUsize,
    cut: Mutex<HashSet<String>>,
    corrupt: Mutex<HashSet<String>>,
    stopped: AtomicBool,
}

pub struct FakeHub {
    pub url: String,
    state: Arc<State>,
}

impl FakeHub {
    pub fn start(mut repos: Vec<FakeRepo>) -> FakeHub {
        repos.iter_mut().for_each(FakeRepo::hash);
        // The hub and its CDN are different origins, as huggingface.co and its storage hosts
        // are: a client follows the hub's redirects to itself, but stops at the one to the CDN.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let cdn = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(State {
            base: url.clone(),
            cdn: format!("http://{}", cdn.local_addr().unwrap()),
            repos,
            requests: AtomicUsize::new(0),
            page_size: AtomicUsize::new(1000),
            cut: Mutex::default(),
            corrupt: Mutex::default(),
            stopped: AtomicBool::new(false),
        });
        for listener in [listener, cdn] {
            let shared = state.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    if shared.stopped.load(Ordering::SeqCst) {
                        break; // the listener closes: later connections are refused
                    }
                    let state = shared.clone();
                    std::thread::spawn(move || {
                        let _ = handle(stream, &state);
                    });
                }
            });
        }
        FakeHub { url, state }
    }

    /// Requests answered so far.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Tree listings return this many entries per page.
    pub fn page_size(&self, n: usize) {
        self.state.page_size.store(n, Ordering::SeqCst);
    }

    /// The next download of the LFS file with this sha256 stops half-way.
    pub fn cut_once(&self, sha256: &str) {
        self.state.cut.lock().unwrap().insert(sha256.into());
    }

    /// Cuts asked for and not yet made.
    pub fn cuts_pending(&self) -> usize {
        self.state.cut.lock().unwrap().len()
    }

    /// Every download of the LFS file with this sha256 has one byte changed.
    pub fn corrupt(&self, sha256: &str) {
        self.state.corrupt.lock().unwrap().insert(sha256.into());
    }

    /// Stops answering: the port is closed, so a client gets "connection refused".
    pub fn stop(&self) {
        self.state.stopped.store(true, Ordering::SeqCst);
        for origin in [&self.url, &self.state.cdn] {
            let _ = TcpStream::connect(origin.trim_start_matches("http://"));
        }
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Answer {
    status: &'static str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Send only this many body bytes, then close (a transfer cut half-way).
    cut_at: Option<usize>,
}

impl Answer {
    fn new(status: &'static str) -> Self {
        Answer { status, headers: Vec::new(), body: Vec::new(), cut_at: None }
    }

    fn header(mut self, name: &str, value: impl ToString) -> Self {
        self.headers.push((name.into(), value.to_string()));
        self
    }

    fn json(self, value: serde_json::Value) -> Self {
        let mut a = self.header("Content-Type", "application/json");
        a.body = value.to_string().into_bytes();
        a
    }

    fn error(status: &'static str, code: &str, message: &str) -> Self {
        Answer::new(status)
            .header("X-Error-Code", code)
            .header("X-Error-Message", message)
            .json(serde_json::json!({ "error": message }))
    }
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn handle(stream: TcpStream, state: &State) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut headers = BTreeMap::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    if state.stopped.load(Ordering::SeqCst) {
        return Ok(());
    }
    state.requests.fetch_add(1, Ordering::SeqCst);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let answer = route(state, method, path, query, &headers);
    let mut stream = stream;
    write!(stream, "HTTP/1.1 {}\r\n", answer.status)?;
    for (name, value) in &answer.headers {
        write!(stream, "{name}: {value}\r\n")?;
    }
    let has_length = answer.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-length"));
    if !has_length {
        write!(stream, "Content-Length: {}\r\n", answer.body.len())?;
    }
    write!(stream, "Connection: close\r\n\r\n")?;
    if method != "HEAD" {
        let end = answer.cut_at.unwrap_or(answer.body.len());
        stream.write_all(&answer.body[..end])?;
    }
    stream.flush()
}

fn route(state: &State, method: &str, path: &str, query: &str, headers: &BTreeMap<String, String>) -> Answer {
    let segments: Vec<String> = path.trim_start_matches('/').split('/').map(decode).collect();
    let s: Vec<&str> = segments.iter().map(String::as_str).collect();
    let authorized = headers.get("authorization").is_some_and(|v| v == &format!("Bearer {TOKEN}"));
    // The repository at a revision: a branch name or a commit.
    let find = |kind: &str, org: &str, name: &str, revision: &str| -> Result<&FakeRepo, Answer> {
        let id = format!("{org}/{name}");
        let mut of_id = state.repos.iter().filter(|r| r.kind == kind && r.id == id).peekable();
        if of_id.peek().is_none() {
            let message = format!("Repository Not Found for url: {}/api/{kind}/{id}.", state.base);
            return Err(Answer::error("401 Unauthorized", "RepoNotFound", &message));
        }
        of_id
            .find(|r| r.revision == revision || r.commit() == revision)
            .ok_or_else(|| Answer::error("404 Not Found", "RevisionNotFound", &format!("Invalid rev id: {revision}")))
    };
    match s.as_slice() {
        ["api", kind @ ("models" | "datasets"), org, name, "revision", revision @ ..] => {
            let repo = match find(kind, org, name, &revision.join("/")) {
                Ok(repo) => repo,
                Err(answer) => return answer,
            };
            let siblings: Vec<_> = repo.files.keys().map(|p| serde_json::json!({ "rfilename": p })).collect();
            Answer::new("200 OK").json(serde_json::json!({
                "_id": repo.commit()[..24].to_string(), "id": repo.id, "sha": repo.commit(), "private": false,
                "gated": if repo.gated { serde_json::json!("manual") } else { serde_json::json!(false) },
                "siblings": siblings,
            }))
        }
        ["api", kind @ ("models" | "datasets"), org, name, "tree", revision, rest @ ..] => {
            match find(kind, org, name, revision) {
                Ok(repo) => tree(state, repo, &rest.join("/"), query),
                Err(answer) => answer,
            }
        }
        ["cdn", sha] => cdn(state, sha, headers),
        _ => {
            let (kind, rest) = if s.first() == Some(&"datasets") { ("datasets", &s[1..]) } else { ("models", &s[..]) };
            let [org, name, "resolve", revision, file @ ..] = rest else {
                return Answer::new("404 Not Found").json(serde_json::json!({ "error": "Not Found" }));
            };
            let repo = match find(kind, org, name, revision) {
                Ok(repo) => repo,
                Err(answer) => return answer,
            };
            if repo.gated && !authorized {
                let message = format!(
                    "Access to model {} is restricted. You must have access to it and be authenticated to access it. Please log in.",
                    repo.id
                );
                return Answer::error("401 Unauthorized", "GatedRepo", &message);
            }
            let file = file.join("/");
            let Some(bytes) = repo.files.get(&file) else {
                return Answer::error(
                    "404 Not Found",
                    "EntryNotFound",
                    &format!("{file} does not exist on \"{revision}\""),
                );
            };
            if is_lfs(&file) {
                let sha = repo.sha(&file);
                Answer::new("302 Found")
                    .header("Location", format!("{}/cdn/{sha}?name={}", state.cdn, file.replace('/', "%2F")))
                    .header("ETag", format!("\"{}\"", blob_id(sha.as_bytes())))
                    .header("X-Linked-Etag", format!("\"{sha}\""))
                    .header("X-Linked-Size", bytes.len())
                    .header("X-Repo-Commit", repo.commit())
            } else {
                let mut a = Answer::new("200 OK")
                    .header("ETag", format!("\"{}\"", &repo.sha(&file)[..40]))
                    .header("X-Repo-Commit", repo.commit())
                    .header("Content-Length", bytes.len());
                if method != "HEAD" {
                    a.body = bytes.clone();
                }
                a
            }
        }
    }
}

fn tree(state: &State, repo: &FakeRepo, under: &str, query: &str) -> Answer {
    let inside = |p: &str| under.is_empty() || p.strip_prefix(under).is_some_and(|r| r.starts_with('/'));
    let mut entries: Vec<serde_json::Value> = Vec::new();
    let mut folders: Vec<String> = repo
        .files
        .keys()
        .flat_map(|p| {
            let parts: Vec<&str> = p.split('/').collect();
            (1..parts.len()).map(move |n| parts[..n].join("/"))
        })
        .filter(|d| inside(d))
        .collect();
    folders.sort();
    folders.dedup();
    if !under.is_empty() && !repo.files.keys().any(|p| inside(p)) {
        return Answer::error("404 Not Found", "EntryNotFound", &format!("{under} does not exist on \"main\""));
    }
    for folder in folders {
        entries.push(
            serde_json::json!({ "type": "directory", "oid": blob_id(folder.as_bytes()), "size": 0, "path": folder }),
        );
    }
    for (path, bytes) in repo.files.iter().filter(|(p, _)| inside(p)) {
        let mut entry =
            serde_json::json!({ "type": "file", "oid": &repo.sha(path)[..40], "size": bytes.len(), "path": path });
        if is_lfs(path) {
            entry["lfs"] = serde_json::json!({ "oid": repo.sha(path), "size": bytes.len(), "pointerSize": 134 });
        }
        entries.push(entry);
    }
    entries.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    let cursor: usize =
        query.split('&').find_map(|kv| kv.strip_prefix("cursor=")).and_then(|c| c.parse().ok()).unwrap_or(0);
    let page = state.page_size.load(Ordering::SeqCst);
    let end = (cursor + page).min(entries.len());
    let mut answer = Answer::new("200 OK").json(serde_json::Value::Array(entries[cursor.min(end)..end].to_vec()));
    if end < entries.len() {
        let folder = if under.is_empty() { String::new() } else { format!("/{under}") };
        let next = format!(
            "{}/api/{}/{}/tree/{}{folder}?recursive=true&cursor={end}",
            state.base,
            repo.kind,
            repo.id,
            repo.commit()
        );
        answer = answer.header("Link", format!("<{next}>; rel=\"next\""));
    }
    answer
}

fn cdn(state: &State, sha: &str, headers: &BTreeMap<String, String>) -> Answer {
    let found = state.repos.iter().find_map(|r| r.files.iter().find(|(p, _)| r.sha(p) == sha).map(|(_, b)| b));
    let Some(bytes) = found else {
        return Answer::new("404 Not Found");
    };
    let mut bytes = bytes.clone();
    if state.corrupt.lock().unwrap().contains(sha) {
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
    }
    let len = bytes.len();
    let start = headers
        .get("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split('-').next())
        .and_then(|s| s.parse::<usize>().ok());
    let mut answer = match start {
        Some(start) if start >= len => {
            return Answer::new("416 Range Not Satisfiable").header("Content-Range", format!("bytes */{len}"));
        }
        Some(start) => {
            let mut a =
                Answer::new("206 Partial Content").header("Content-Range", format!("bytes {start}-{}/{len}", len - 1));
            a.body = bytes[start..].to_vec();
            a
        }
        None => {
            let mut a = Answer::new("200 OK");
            a.body = bytes;
            a
        }
    };
    let length = answer.body.len();
    answer = answer.header("Accept-Ranges", "bytes").header("Content-Length", length);
    if state.cut.lock().unwrap().remove(sha) {
        answer.cut_at = Some(answer.body.len() / 2);
    }
    answer
}
