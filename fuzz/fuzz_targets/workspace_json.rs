//! A workspace's workspace.json and dataset.json (cut at the first 0x00 byte), opened and listed
//! as every command does first.
#![no_main]
#[path = "scratch.rs"]
mod scratch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = scratch::dir("ws");
    let (ws, ds) = scratch::split(data);
    if std::fs::write(dir.join("workspace.json"), ws).is_ok()
        && std::fs::write(dir.join("dataset.json"), ds).is_ok()
        && let Ok(w) = saescope_core::store::Workspace::open(&dir)
    {
        let _ = w.dataset();
    }
});
