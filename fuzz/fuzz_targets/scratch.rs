//! A per-process scratch folder in memory (/dev/shm when there is one) where each target writes
//! its input as the files a loader reads; loaders take paths, as they do in the app.

#![allow(dead_code)] // each target uses part of it

use std::path::PathBuf;

pub fn dir(name: &str) -> PathBuf {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let d = base.join(format!("saescope-fuzz-{name}-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&d);
    d
}

/// The input cut at its first 0x00 byte into two files' contents (the second empty without one).
pub fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}
