//! Crash-safe file writes: write a temporary file beside the target, fsync, rename over it.
//! A reader therefore sees either the old complete file or the new complete file, never a torn one.

use crate::error::{Error, IoContext, Result};
use serde::{Serialize, de::DeserializeOwned};
use std::io::Write;
use std::path::Path;

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).at(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // The machine is in the name too: tasks on several machines of a cluster share the folder,
    // and their process ids may coincide.
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        this_host()
    ));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp).at(&tmp)?;
        // Fault injection for the crash tests: die halfway through writing this file.
        if std::env::var("SAESCOPE_CRASH_MID_WRITE").is_ok_and(|n| n == name) {
            let _ = f.write_all(&bytes[..bytes.len() / 2]);
            let _ = f.sync_all();
            std::process::abort();
        }
        f.write_all(bytes).at(&tmp)?;
        f.sync_all().at(&tmp)?;
        std::fs::rename(&tmp, path).at(path)
    })();
    if let Err(e) = written {
        // A full disk must not stay full of our own half-written file (D16).
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // Make the rename itself durable.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// This machine's name, once per process (in temporary files' names).
fn this_host() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(host_name)
}

/// This machine's name (temporary files and task claims say which machine wrote them).
pub fn host_name() -> String {
    sysinfo::System::host_name().unwrap_or_else(|_| "unknown-host".into())
}

/// Removes `.name.tmp-PID-HOST` files (left by a killed [`write_atomic`]) in `dir` and, with
/// `depth`, its sub-folders: the real files were never replaced. With `writers_stopped` (the
/// caller holds the writer lock) every one goes; otherwise only those of this machine whose
/// process is gone (told by /proc; without it none), so a live writer's file, or another
/// machine's, is left alone. Returns how many were removed.
pub fn remove_stale_temp_files(dir: &Path, depth: usize, writers_stopped: bool) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let proc_fs = Path::new("/proc/self").exists();
    let mut removed = 0;
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            if depth > 0 {
                removed += remove_stale_temp_files(&path, depth - 1, writers_stopped);
            }
            continue;
        }
        let Some((pid, host)) = name
            .strip_prefix('.')
            .and_then(|n| n.rsplit_once(".tmp-"))
            .and_then(|(_, tail)| {
                // Files of older versions have no host: this machine's.
                let (pid, host) = tail.split_once('-').unwrap_or((tail, this_host()));
                Some((pid.parse::<u32>().ok()?, host))
            })
        else {
            continue;
        };
        let writer_gone = writers_stopped
            || (proc_fs
                && host == this_host()
                && pid != std::process::id()
                && !Path::new(&format!("/proc/{pid}")).exists());
        if writer_gone && std::fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::Json {
        path: path.into(),
        error: e,
    })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).at(path)?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Json {
        path: path.into(),
        error: e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// D16: a write that fails (here the rename: the target is a folder with a file in it; a
    /// full disk fails the same way one step earlier) leaves no temporary file behind.
    #[test]
    fn a_failed_write_removes_its_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::create_dir_all(target.join("inside")).unwrap();
        assert!(write_atomic(&target, b"bytes").is_err());
        let left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["target"], "{left:?}");
    }

    #[test]
    fn temp_files_of_dead_writers_go_and_live_ones_stay() {
        let d = tempfile::tempdir().unwrap();
        let sub = d.path().join("index");
        std::fs::create_dir_all(&sub).unwrap();
        // pid 4294967 is above Linux's pid_max: never a live process.
        let dead = sub.join(".progress.json.tmp-4294967");
        let live = d
            .path()
            .join(format!(".labels.json.tmp-{}", std::process::id()));
        let real = d.path().join("labels.json");
        for p in [&dead, &live, &real] {
            std::fs::write(p, "x").unwrap();
        }
        assert_eq!(
            remove_stale_temp_files(d.path(), 0, false),
            0,
            "depth 0 stays at the top"
        );
        assert_eq!(remove_stale_temp_files(d.path(), 1, false), 1);
        assert!(!dead.exists() && live.exists() && real.exists());
        // With the writer lock held nobody else writes: every temp file is stale.
        assert_eq!(remove_stale_temp_files(d.path(), 1, true), 1);
        assert!(!live.exists() && real.exists());
    }

    #[test]
    fn atomic_write_replaces_whole_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_json_atomic(&p, &vec![1, 2, 3]).unwrap();
        write_json_atomic(&p, &vec![4]).unwrap();
        let back: Vec<i32> = read_json(&p).unwrap();
        assert_eq!(back, vec![4]);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "temporary files left behind: {names:?}");
    }
}
