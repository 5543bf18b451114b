//! Output files are written whole or not at all: under a hidden name beside the target, fsynced,
//! then renamed over it, so a failed or killed run leaves an existing file as it was and never a
//! half-written one. [`check_writable`] lets a command refuse an output it cannot create before
//! it spends minutes loading a model.
//!
//! The one home of these for the workspace and xtask: it must depend on nothing (xtask, which
//! builds in seconds, uses it).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A file written under a hidden name beside `path`, renamed to `path` by [`Staged::commit`],
/// and removed if dropped uncommitted.
pub struct Staged {
    path: PathBuf,
    staging: PathBuf,
    file: Option<File>,
}

impl Staged {
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let name = path.file_name().ok_or_else(|| std::io::Error::other("not a file name"))?;
        let staging = path.with_file_name(format!(".{}.partial-{}", name.to_string_lossy(), std::process::id()));
        let file = File::create(&staging)?;
        Ok(Staged { path: path.to_path_buf(), staging, file: Some(file) })
    }

    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("present until commit")
    }

    /// Makes the file durable and puts it in place.
    pub fn commit(mut self) -> std::io::Result<()> {
        let file = self.file.take().expect("present until commit");
        let committed = file.sync_all().and_then(|()| std::fs::rename(&self.staging, &self.path));
        if committed.is_err() {
            let _ = std::fs::remove_file(&self.staging);
        }
        committed
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.staging);
        }
    }
}

/// Writes `bytes` to `path` through a [`Staged`] file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut staged = Staged::create(path)?;
    staged.file().write_all(bytes)?;
    staged.commit()
}

/// Why `path` (a file or folder, existing or not) cannot be created or written, in one line
/// naming it: its nearest existing ancestor must be a folder this process can write in (tried
/// with a probe file, removed at once).
pub fn check_writable(path: &Path) -> Result<(), String> {
    let folder = if path.is_dir() {
        path
    } else {
        let mut ancestor = path.parent();
        loop {
            match ancestor {
                Some(a) if a.as_os_str().is_empty() => break Path::new("."),
                Some(a) if a.exists() => break a,
                Some(a) => ancestor = a.parent(),
                None => break Path::new("/"),
            }
        }
    };
    if !folder.is_dir() {
        return Err(format!("{}: cannot create it: {} is a file, not a folder", path.display(), folder.display()));
    }
    let probe = folder.join(format!(".starbucks-probe-{}", std::process::id()));
    match File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(format!("{}: cannot write in {}: {e}", path.display(), folder.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_file_leaves_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, "old").unwrap();
        let mut staged = Staged::create(&path).unwrap();
        staged.file().write_all(b"new, half").unwrap();
        drop(staged);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no staging file left");
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
    }

    #[test]
    fn unwritable_outputs_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, "").unwrap();
        assert!(check_writable(&dir.path().join("new/deeper/out")).is_ok());
        assert!(check_writable(&file).is_ok(), "an existing file in a writable folder");
        let under_file = check_writable(&file.join("out")).unwrap_err();
        assert!(under_file.contains("a-file is a file, not a folder"), "{under_file}");
        let proc = check_writable(Path::new("/proc/no-such/out")).unwrap_err();
        assert!(proc.starts_with("/proc/no-such/out: cannot write in /proc"), "{proc}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no probe left");
    }
}
