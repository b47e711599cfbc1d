//! Where the shared test and benchmark material lives (`../shared` beside the project root,
//! overridable with `SAESCOPE_SHARED`). Tests and benchmarks read it in place.

use std::path::PathBuf;

pub fn shared_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("SAESCOPE_SHARED") {
        return PathBuf::from(p);
    }
    // This crate sits at crates/core of the project; shared/ is beside the project.
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../..")
        .join("shared")
}

pub fn shared_path(rel: &str) -> PathBuf {
    shared_dir().join(rel)
}
