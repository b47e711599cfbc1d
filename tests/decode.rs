//! Decoded pixels equal Pillow's (`Image.open(f).convert("RGB")`) on every image in
//! ../shared/data: the per-class SHA-256 digests in tests/fixtures/pillow_rgb_digests.json were
//! written by scripts/reference/pillow_rgb_digests.py (Pillow 13.0, libjpeg-turbo 3.2).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)] // tests make fixtures and fail loudly

use saescope_core::shared::shared_path;
use saescope_core::store::dataset::load_rgb;
use sha2::{Digest, Sha256};

#[test]
fn every_shared_image_decodes_exactly_as_pillow() {
    let fixture = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/pillow_rgb_digests.json"),
    )
    .unwrap();
    let fixture: serde_json::Value = serde_json::from_str(&fixture).unwrap();
    let classes = fixture["classes"].as_object().unwrap();
    assert_eq!(classes.len(), 30);
    let mut mismatched = Vec::new();
    let mut images = 0;
    for (rel, want) in classes {
        let dir = shared_path(rel);
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert_eq!(
            files.len() as u64,
            want["images"].as_u64().unwrap(),
            "{rel}"
        );
        let mut h = Sha256::new();
        for f in &files {
            let img = load_rgb(&dir.join(f)).unwrap_or_else(|e| panic!("{rel}/{f}: {e}"));
            h.update(img.as_raw());
        }
        images += files.len();
        let got = format!("{:x}", h.finalize());
        if got != want["sha256"].as_str().unwrap() {
            mismatched.push(rel.clone());
        }
    }
    assert!(
        mismatched.is_empty(),
        "pixels differ from Pillow's in {mismatched:?}"
    );
    eprintln!("{images} images decode exactly as Pillow does");
}
