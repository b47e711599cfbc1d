//! Helpers shared by the integration tests: running the CLI for its JSON answer, and making
//! small class-folder subsets of the shared datasets (symlinks, nothing copied).
#![allow(dead_code)] // each test file uses its own subset of these

use saescope_core::shared::shared_path;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// Runs with `--json`, asserts success, and returns the last stdout line as JSON.
pub fn run_json(cmd: &mut Command) -> Value {
    let out = cmd.arg("--json").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(stdout.lines().last().unwrap_or("{}")).unwrap();
    assert!(
        out.status.success(),
        "{v}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    v
}

/// The first `per_class` images (sorted by name) of each class of a shared split, linked into
/// `dst/<class>/`.
pub fn subset(split: &str, classes: &[&str], per_class: usize, dst: &Path) {
    for class in classes {
        std::fs::create_dir_all(dst.join(class)).unwrap();
        let mut names: Vec<_> = std::fs::read_dir(shared_path(split).join(class))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for name in names.into_iter().take(per_class) {
            std::os::unix::fs::symlink(
                shared_path(split).join(class).join(&name),
                dst.join(class).join(&name),
            )
            .unwrap();
        }
    }
}
