//! Every hidden state of the real CIFAR-10 ViT and of the tiny CLIP (vision + text), DINOv2 and
//! SigLIP checkpoints in ../shared/models against the reference implementation's outputs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)] // tests make fixtures and fail loudly

use candle_core::{Device, Tensor};
use saescope_core::backbone::{self, Backbone, ModelSpec};
use saescope_core::shared::shared_path;
use std::collections::HashMap;
use std::path::PathBuf;

const TOL: f32 = 1e-4;

fn reference(rel: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(shared_path(rel), &Device::Cpu).expect("reference outputs")
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    saescope_core::linalg::max_abs_diff(a, b).expect("same shapes")
}

fn assert_close(name: &str, got: &Tensor, want: &Tensor) {
    let d = max_abs_diff(got, want);
    assert!(d <= TOL, "{name}: max |diff| = {d:e} > {TOL:e}");
    eprintln!("{name}: max |diff| = {d:e}");
}

fn spec(source: PathBuf, config: Option<PathBuf>) -> ModelSpec {
    ModelSpec::from_cli(source.to_str().unwrap(), config.as_deref()).unwrap()
}

fn vit_cifar10_spec() -> ModelSpec {
    spec(
        shared_path("models/vit-cifar10/vit_cifar10.pth"),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/models/vit-cifar10.json")),
    )
}

#[test]
fn vit_cifar10_matches_pytorch_at_every_layer() {
    let r = reference("models/vit-cifar10/reference.safetensors");
    let m = backbone::load_backbone(&vit_cifar10_spec(), &Device::Cpu).unwrap();
    assert_eq!(m.info().n_layers, 6);
    assert_eq!(m.info().d_model, 128);
    assert_eq!(m.info().geometry.n_tokens(), 65);
    let hidden = m.hidden_states(&r["pixels"]).unwrap();
    for l in 0..6 {
        assert_close(
            &format!("layer{l}"),
            &hidden[l + 1],
            &r[&format!("layer{l}")],
        );
        // Stopping early gives the same tensor.
        assert_close(
            &format!("forward_to({l})"),
            &m.forward_to(&r["pixels"], l).unwrap(),
            &r[&format!("layer{l}")],
        );
    }
    let out = m.outputs(&r["pixels"]).unwrap();
    assert_close("logits", out.logits.as_ref().unwrap(), &r["logits"]);
    // Splicing: finishing from a tapped layer reproduces the logits.
    let spliced = m.finish_from(&r["layer2"], 2).unwrap();
    assert_close(
        "logits from layer2",
        spliced.logits.as_ref().unwrap(),
        &r["logits"],
    );
}

#[test]
fn clip_vision_and_text_match_transformers() {
    let r = reference("models/tiny-random/clip/reference.safetensors");
    let s = spec(shared_path("models/tiny-random/clip"), None);
    let m = backbone::load_backbone(&s, &Device::Cpu).unwrap();
    let hidden = m.hidden_states(&r["pixel_values"]).unwrap();
    assert_eq!(hidden.len(), 4);
    for (i, h) in hidden.iter().enumerate() {
        assert_close(
            &format!("vision_hidden_{i}"),
            h,
            &r[&format!("vision_hidden_{i}")],
        );
    }
    let out = m.outputs(&r["pixel_values"]).unwrap();
    assert_close("vision_pooled", &out.pooled, &r["vision_pooled"]);
    assert_close(
        "image_embeds",
        out.embeds.as_ref().unwrap(),
        &r["image_embeds"],
    );

    let text = backbone::source::load_clip_text(&s, &Device::Cpu).unwrap();
    let t = text.forward(&r["input_ids"]).unwrap();
    for (i, h) in t.hidden.iter().enumerate() {
        assert_close(
            &format!("text_hidden_{i}"),
            h,
            &r[&format!("text_hidden_{i}")],
        );
    }
    assert_close("text_last", &t.last, &r["text_last"]);
    assert_close("text_embeds", t.embeds.as_ref().unwrap(), &r["text_embeds"]);
}

#[test]
fn dinov2_matches_transformers() {
    let r = reference("models/tiny-random/dinov2/reference.safetensors");
    let m = backbone::load_backbone(
        &spec(shared_path("models/tiny-random/dinov2"), None),
        &Device::Cpu,
    )
    .unwrap();
    let hidden = m.hidden_states(&r["pixel_values"]).unwrap();
    for (i, h) in hidden.iter().enumerate() {
        assert_close(&format!("hidden_{i}"), h, &r[&format!("hidden_{i}")]);
    }
    let out = m.outputs(&r["pixel_values"]).unwrap();
    assert_close("last", &out.last, &r["last"]);
    assert_close("pooled", &out.pooled, &r["pooled"]);
}

/// The real DINOv2-small (22 M parameters, 224 px from a 37×37 position table) from the image
/// files to `pooled`: Pillow-exact decoding and resizing, transformers 5's position interpolation.
#[test]
fn real_dinov2_small_matches_transformers_from_image_files() {
    const HIDDEN_TOL: f32 = 1e-3;
    let rel = "models/dinov2-small/reference.safetensors";
    let bytes = std::fs::read(shared_path(rel)).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let images: Vec<String> =
        serde_json::from_str(&meta.metadata().as_ref().unwrap()["images"]).unwrap();
    assert_eq!(images.len(), 3);
    let r = reference(rel);
    let m = backbone::load_backbone(
        &spec(shared_path("models/dinov2-small"), None),
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(
        m.info().pos_interpolation,
        Some(backbone::PosInterpolation::Transformers)
    );
    let decoded: Vec<_> = images
        .iter()
        .map(|f| saescope_core::store::dataset::load_rgb(&shared_path(f)).unwrap())
        .collect();
    let (pixels, _) = m.preprocessor().batch(&decoded, &Device::Cpu).unwrap();
    let d = max_abs_diff(&pixels, &r["pixel_values"]);
    eprintln!("pixel_values from files: max |diff| = {d:e}");
    assert!(d <= 1e-5, "pixels differ from transformers' by {d:e}");
    let hidden = m.hidden_states(&pixels).unwrap();
    for i in [0, 1, 4, 8, 12] {
        let d = max_abs_diff(&hidden[i], &r[&format!("hidden_{i}")]);
        eprintln!("hidden_{i}: max |diff| = {d:e}");
        assert!(d <= HIDDEN_TOL, "hidden_{i}: max |diff| = {d:e}");
    }
    let out = m.outputs(&pixels).unwrap();
    for (name, got) in [("last", &out.last), ("pooled", &out.pooled)] {
        let d = max_abs_diff(got, &r[name]);
        eprintln!("{name}: max |diff| = {d:e}");
        assert!(d <= HIDDEN_TOL, "{name}: max |diff| = {d:e}");
    }
    // Stopping after block 7 gives hidden_8.
    let d = max_abs_diff(&m.forward_to(&pixels, 7).unwrap(), &r["hidden_8"]);
    assert!(d <= HIDDEN_TOL, "forward_to(7): {d:e}");
}

/// The original DINOv2 code's interpolation is selectable, is recorded, and really differs.
#[test]
fn dinov2_original_position_interpolation_is_selectable() {
    let r = reference("models/dinov2-small/reference.safetensors");
    let mut s = spec(shared_path("models/dinov2-small"), None);
    s.pos_interpolation = Some(backbone::PosInterpolation::Original);
    let m = backbone::load_backbone(&s, &Device::Cpu).unwrap();
    assert_eq!(
        m.info().pos_interpolation,
        Some(backbone::PosInterpolation::Original)
    );
    let px = r["pixel_values"].narrow(0, 0, 1).unwrap();
    let emb = &m.hidden_states(&px).unwrap()[0];
    let d = max_abs_diff(emb, &r["hidden_0"].narrow(0, 0, 1).unwrap());
    // Same weights, other positions: the embeddings move by about 1e-2 (measured 1.4e-2).
    assert!(
        d > 1e-3 && d < 0.1,
        "original vs transformers embeddings: {d:e}"
    );
}

#[test]
fn siglip_matches_transformers() {
    let r = reference("models/tiny-random/siglip/reference.safetensors");
    let m = backbone::load_backbone(
        &spec(shared_path("models/tiny-random/siglip"), None),
        &Device::Cpu,
    )
    .unwrap();
    assert!(!m.info().geometry.has_cls);
    let hidden = m.hidden_states(&r["pixel_values"]).unwrap();
    for (i, h) in hidden.iter().enumerate() {
        assert_close(&format!("hidden_{i}"), h, &r[&format!("hidden_{i}")]);
    }
    let out = m.outputs(&r["pixel_values"]).unwrap();
    assert_close("last", &out.last, &r["last"]);
    assert_close("pooled", &out.pooled, &r["pooled"]);
}

#[test]
fn pth_without_heads_is_refused_with_the_fix() {
    let s = ModelSpec {
        source: shared_path("models/vit-cifar10/vit_cifar10.pth")
            .display()
            .to_string(),
        torch_vit: None,
        pos_interpolation: None,
    };
    let err = backbone::load_backbone(&s, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("--model-config") && err.contains("heads"),
        "{err}"
    );
}

#[test]
fn asking_for_a_missing_layer_names_the_range() {
    let m = backbone::load_backbone(&vit_cifar10_spec(), &Device::Cpu).unwrap();
    let px = Tensor::zeros((1, 3, 32, 32), candle_core::DType::F32, &Device::Cpu).unwrap();
    let err = m.forward_to(&px, 6).err().unwrap().to_string();
    assert!(err.contains("0..=5"), "{err}");
}

#[test]
fn cpu_fast_path_matches_the_candle_path() {
    let cases = [
        (
            vit_cifar10_spec(),
            "models/vit-cifar10/reference.safetensors",
            "pixels",
        ),
        (
            spec(shared_path("models/tiny-random/clip"), None),
            "models/tiny-random/clip/reference.safetensors",
            "pixel_values",
        ),
        (
            spec(shared_path("models/tiny-random/dinov2"), None),
            "models/tiny-random/dinov2/reference.safetensors",
            "pixel_values",
        ),
        (
            spec(shared_path("models/tiny-random/siglip"), None),
            "models/tiny-random/siglip/reference.safetensors",
            "pixel_values",
        ),
    ];
    // The candle path runs on the test device (the CPU unless SAESCOPE_TEST_DEVICE names a GPU,
    // as scripts/gpu-bench.sh does); the reference is always the CPU fast path.
    let device = saescope_core::device::test_device().unwrap();
    let bound = if device.is_cpu() { 1e-5 } else { 1e-3 };
    for (s, r, px) in cases {
        let r = reference(r);
        let fast = backbone::load_backbone(&s, &Device::Cpu)
            .unwrap()
            .hidden_states(&r[px])
            .unwrap();
        let mut m = backbone::load_backbone(&s, &device).unwrap();
        m.use_fast_path = false;
        let slow = m.hidden_states(&r[px].to_device(&device).unwrap()).unwrap();
        for (i, (a, b)) in fast.iter().zip(&slow).enumerate() {
            let d = max_abs_diff(a, &b.to_device(&Device::Cpu).unwrap());
            assert!(
                d < bound,
                "{}: layer {i}: fast vs candle path on {device:?} differ by {d:e}",
                s.source
            );
        }
    }
}
