//! Activation shards (safetensors header, dtype, shape, image ids, non-finite values).
#![no_main]
#[path = "scratch.rs"]
mod scratch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = scratch::dir("shard").join("shard-00000.safetensors");
    if std::fs::write(&p, data).is_ok() {
        let _ = saescope_core::store::activations::decode_shard(&p);
    }
});
