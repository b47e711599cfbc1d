//! One writer per workspace: an OS file lock (`flock` through std's `File::try_lock`) on
//! `WS/.saescope.lock`, which also names its holder so a second writer is told who is busy.
//! The lock dies with its process, so a crash never leaves a workspace locked.

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

pub const LOCK_FILE: &str = ".saescope.lock";

/// Held for as long as a command writes into a workspace; released on drop (or process exit).
pub struct WriterLock {
    _file: Option<File>,
}

/// Takes the workspace's writer lock for `command`. With `wait`, a busy workspace is retried for
/// up to `wait` (for short edits such as labels); otherwise, or after waiting, the error names
/// the holder's pid and command. A folder that does not exist gets no lock (the command's own
/// "not a workspace" error follows; `extract` creates the folder before locking it).
pub fn lock_writer(ws_dir: &Path, command: &str, wait: Option<Duration>) -> Result<WriterLock> {
    if !ws_dir.is_dir() {
        return Ok(WriterLock { _file: None });
    }
    let path = ws_dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    let start = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) => {
                if wait.is_some_and(|w| start.elapsed() < w) {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let holder = if holder.is_empty() {
                    "another saescope process is writing it"
                } else {
                    holder
                };
                return Err(crate::fixable!(
                    [ws_dir, format!(": workspace busy ({holder})")],
                    [
                        "wait for it to finish or give another folder with ",
                        crate::fix::Opt::Workspace
                    ]
                ));
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
    }
    // Name the holder for the next writer (best effort: the lock is what protects).
    let _ = file.set_len(0);
    let _ = file.seek(SeekFrom::Start(0));
    let _ = write!(file, "pid {}, saescope {command}", std::process::id());
    let _ = file.flush();
    Ok(WriterLock { _file: Some(file) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_told_who_holds_the_workspace() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock_writer(dir.path(), "train", None).unwrap();
        let err = lock_writer(dir.path(), "extract", Some(Duration::from_millis(50)))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("workspace busy") && err.contains("saescope train"),
            "{err}"
        );
        drop(held);
        lock_writer(dir.path(), "extract", None).unwrap();
    }
}
