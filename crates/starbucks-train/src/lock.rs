//! One run per output folder: `.lock` in the folder, held with an advisory lock (`flock`) for
//! the life of the run. The OS releases it when the process ends in any way, SIGKILL included,
//! so a killed run never blocks the `--resume` that follows it; a second run, or a `--resume`
//! started beside a live run, is refused before it writes anything.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The lock file's name inside an output folder.
pub const LOCK_FILE: &str = ".lock";

/// Held while a run uses its output folder; dropping it releases the folder.
#[derive(Debug)]
pub struct OutputLock {
    _file: File,
}

/// Takes the lock on `file` (`output`'s `lock`), or says which live run holds it.
fn try_hold(output: &Path, lock: &Path, file: &mut File) -> Result<()> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(TryLockError::Error(e)) => Err(Error::io(lock, e)),
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let pid = holder.trim();
            let by = if pid.is_empty() { String::new() } else { format!(" (pid {pid})") };
            Err(Error::Input(format!(
                "{}: another run{by} is using this output folder (it holds {}); wait for it to end or choose another --output",
                output.display(),
                lock.display()
            )))
        }
    }
}

/// Refuses `output` when a live run holds its lock; creates nothing (a lock taken here is
/// released when the file closes at the end of the call).
pub fn check_free(output: &Path) -> Result<()> {
    let lock = output.join(LOCK_FILE);
    let Ok(mut file) = File::open(&lock) else { return Ok(()) };
    try_hold(output, &lock, &mut file)
}

/// Takes `output`'s lock (creating the folder), and writes this process's id into it.
pub fn lock(output: &Path) -> Result<OutputLock> {
    std::fs::create_dir_all(output).map_err(|e| Error::io(output, e))?;
    let lock: PathBuf = output.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock)
        .map_err(|e| Error::io(&lock, e))?;
    try_hold(output, &lock, &mut file)?;
    let pid = std::process::id().to_string();
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(pid.as_bytes()))
        .map_err(|e| Error::io(&lock, e))?;
    Ok(OutputLock { _file: file })
}
