//! The record of an experiment: each finished stage's small files, kept apart from the output
//! folder (models, checkpoints: gigabytes, never committed) so that they can be committed and a
//! clone elsewhere continues from them. Layout, under the record folder:
//!
//! - `<run>/metrics.jsonl`, `<run>/config.toml`: a training stage's metrics and resolved config;
//! - `eval/<run>/report.json`, `eval/<run>/*.svg`: its evaluation;
//! - `timings.jsonl`: one line per invocation of a stage (wall clock, peak memory);
//! - `results.md`: the tables, written from the above.
//!
//! Without a record folder the output folder is its own record (nothing is copied).

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// A line of `timings.jsonl`: one invocation's wall clock of one stage, and the peak resident
/// memory of its process.
#[derive(Serialize, Deserialize)]
pub struct Timing {
    pub stage: String,
    pub seconds: f64,
    #[serde(default)]
    pub peak_rss_kib: Option<u64>,
}

pub struct Record {
    out: PathBuf,
    dir: PathBuf,
}

impl Record {
    /// The record in `dir` (or `out` itself) of the stages under `out`; creates both folders.
    pub fn new(out: PathBuf, dir: Option<PathBuf>) -> Result<Self> {
        let dir = dir.unwrap_or_else(|| out.clone());
        for d in [&out, &dir] {
            std::fs::create_dir_all(d).with_context(|| format!("{}: cannot create", d.display()))?;
        }
        Ok(Record { out, dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn has_training(&self, run: &str) -> bool {
        self.dir.join(run).join("metrics.jsonl").is_file()
    }

    pub fn has_eval(&self, run: &str) -> bool {
        self.dir.join("eval").join(run).join("report.json").is_file()
    }

    /// Copies a finished training stage's metrics and config into the record.
    pub fn keep_training(&self, run: &str) -> Result<()> {
        self.keep(Path::new(run), |name| name == "metrics.jsonl" || name == "config.toml")
    }

    /// Copies a finished evaluation's report and heat-maps into the record.
    pub fn keep_eval(&self, run: &str) -> Result<()> {
        self.keep(&Path::new("eval").join(run), |name| name == "report.json" || name.ends_with(".svg"))
    }

    fn keep(&self, folder: &Path, wanted: impl Fn(&str) -> bool) -> Result<()> {
        if self.dir == self.out {
            return Ok(());
        }
        let from = self.out.join(folder);
        let entries = std::fs::read_dir(&from).with_context(|| format!("{}: cannot list", from.display()))?;
        for entry in entries {
            let path = entry.with_context(|| format!("{}: cannot list", from.display()))?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if path.is_file() && wanted(&name) {
                let text = std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
                write_atomic(&self.dir.join(folder).join(&name), &text)?;
            }
        }
        Ok(())
    }

    /// Appends the wall clock since `started` and the peak memory of stage `stage` to
    /// `timings.jsonl` (a stage resumed over several invocations has several lines).
    pub fn time(&self, stage: &str, started: Instant, peak_rss_kib: u64) -> Result<()> {
        use std::io::Write;
        let path = self.dir.join("timings.jsonl");
        let timing =
            Timing { stage: stage.into(), seconds: started.elapsed().as_secs_f64(), peak_rss_kib: Some(peak_rss_kib) };
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("{}: cannot open", path.display()))?;
        writeln!(file, "{}", serde_json::to_string(&timing).expect("a timing serialises"))
            .with_context(|| format!("{}: cannot write", path.display()))
    }
}

/// Writes `path` whole or not at all (`starbucks_files`), its folder created first.
pub fn write_atomic(path: &Path, contents: impl AsRef<[u8]>) -> Result<()> {
    let parent = path.parent().expect("a file in a folder");
    std::fs::create_dir_all(parent).with_context(|| format!("{}: cannot create", parent.display()))?;
    starbucks_files::write_atomic(path, contents.as_ref()).with_context(|| format!("{}: cannot write", path.display()))
}

/// Waits for `child` and returns its exit status with its peak resident memory in KiB (the
/// kernel's `ru_maxrss` of that one process, from `wait4`; `Child::wait` does not report it).
pub fn wait_with_peak_memory(child: Child) -> Result<(ExitStatus, u64)> {
    use std::os::unix::process::ExitStatusExt;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: `usage` is a plain C struct the call fills in; `pid` is our own unreaped child
    // (`child` is dropped unwaited, which neither kills nor reaps it).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if reaped == pid {
            break;
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error).context("waiting for a stage");
        }
    }
    drop(child);
    Ok((ExitStatus::from_raw(status), usage.ru_maxrss.max(0) as u64))
}
