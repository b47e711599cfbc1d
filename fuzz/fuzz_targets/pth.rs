//! PyTorch `.pth` files through candle's pickle reader (tensors only; nothing is executed).
#![no_main]
#[path = "scratch.rs"]
mod scratch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = scratch::dir("pth").join("model.pth");
    if std::fs::write(&p, data).is_ok() {
        let _ = saescope_core::backbone::weights::Weights::load_pth(&p, &candle_core::Device::Cpu);
    }
});
