//! SAE folders: a SAELens cfg.json and its weights (cut at the first 0x00 byte), in every layout
//! `load_sae` recognises from the file names.
#![no_main]
#[path = "scratch.rs"]
mod scratch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = scratch::dir("sae");
    let (cfg, weights) = scratch::split(data);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::create_dir_all(&dir);
    if std::fs::write(dir.join("cfg.json"), cfg).is_ok()
        && std::fs::write(dir.join("sae_weights.safetensors"), weights).is_ok()
    {
        let _ = saescope_core::sae::formats::load_sae(&dir);
    }
    // The same bytes as a lone weights file of the other layouts.
    let lone = scratch::dir("sae-lone").join("sae.safetensors");
    if std::fs::write(&lone, data).is_ok() {
        let _ = saescope_core::sae::formats::load_sae(&lone);
    }
});
