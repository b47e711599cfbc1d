//! Taxonomy files (WordNet node-link JSON, parent/child lines) and class-id files.
#![no_main]
#[path = "scratch.rs"]
mod scratch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = scratch::dir("taxonomy");
    for name in ["taxonomy.json", "taxonomy.txt"] {
        let p = dir.join(name);
        if std::fs::write(&p, data).is_ok() {
            let _ = saescope_core::analysis::ontology::load_taxonomy(&p);
        }
    }
    let p = dir.join("class_ids.txt");
    if std::fs::write(&p, data).is_ok() {
        let _ = saescope_core::analysis::ontology::load_class_ids(&p, 10);
    }
});
