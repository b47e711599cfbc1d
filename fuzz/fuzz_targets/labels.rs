//! An SAE's labels.json and an export's features.json (imported label sets), cut at the first
//! 0x00 byte.
#![no_main]
#[path = "scratch.rs"]
mod scratch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = scratch::dir("labels");
    let (labels, export) = scratch::split(data);
    if std::fs::write(dir.join("labels.json"), labels).is_ok() {
        let _ = saescope_core::analysis::labels::Labels::load(&dir);
    }
    let p = dir.join("features.json");
    if std::fs::write(&p, export).is_ok() {
        let _ = saescope_core::analysis::export::read_export(&p);
    }
});
