//! Image decoding through our loader (size checks, libjpeg-turbo for JPEG, the image crate for
//! the rest), under each extension it dispatches on.
#![no_main]
#[path = "scratch.rs"]
mod scratch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = scratch::dir("image");
    for ext in ["png", "jpg", "gif", "bmp", "webp"] {
        let p = dir.join(format!("image.{ext}"));
        if std::fs::write(&p, data).is_ok() {
            let _ = saescope_core::store::dataset::load_rgb(&p);
        }
    }
});
