//! Every SAE layout saescope reads, on files written by tests/fixtures/make_sae_fixtures.py in
//! that layout, checked against the outputs the layout's own math gives in PyTorch; and the
//! native SAELens format round trip.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)] // tests make fixtures and fail loudly

use candle_core::Device;
use saescope_core::sae::formats::{load_sae, save_saelens};
use saescope_core::sae::{Sae, SaeActivation};
use std::collections::HashMap;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sae")
}

fn expected() -> HashMap<String, Vec<f32>> {
    candle_core::safetensors::load(fixtures().join("expected.safetensors"), &Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1().unwrap()))
        .collect()
}

fn assert_close(name: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    let d = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(d < 1e-5, "{name}: max |diff| {d}");
}

fn check(sae: &Sae, prefix: &str, format: &str) {
    let e = expected();
    assert_eq!(sae.meta.source_format.as_deref(), Some(format));
    let f = sae.encode(&e["x"]);
    assert_close(&format!("{prefix}_f"), &f, &e[&format!("{prefix}_f")]);
    assert_close(
        &format!("{prefix}_xhat"),
        &sae.decode(&f),
        &e[&format!("{prefix}_xhat")],
    );
}

#[test]
fn saev_sae_pt_loads_without_subtracting_b_dec() {
    let sae = load_sae(&fixtures().join("saev_sae.pt")).unwrap();
    assert!(!sae.apply_b_dec_to_input);
    assert_eq!(sae.activation, SaeActivation::Relu);
    check(&sae, "saev", "saev");
}

#[test]
fn dictionary_learning_topk_loads() {
    let sae = load_sae(&fixtures().join("dictionary_learning")).unwrap();
    assert_eq!(sae.activation, SaeActivation::TopK { k: 3 });
    check(&sae, "dl", "dictionary_learning");
}

#[test]
fn sparsify_loads() {
    let sae = load_sae(&fixtures().join("sparsify")).unwrap();
    check(&sae, "sparsify", "sparsify");
}

#[test]
fn openai_layout_loads() {
    let sae = load_sae(&fixtures().join("openai_ae.pt")).unwrap();
    check(&sae, "openai", "openai");
}

#[test]
fn saelens_jumprelu_loads_and_round_trips() {
    let sae = load_sae(&fixtures().join("saelens_jumprelu")).unwrap();
    assert_eq!(sae.activation, SaeActivation::JumpRelu);
    assert_eq!(
        sae.meta.hook_name.as_deref(),
        Some("blocks.0.hook_resid_post")
    );
    check(&sae, "jumprelu", "saelens");
    let dir = tempfile::tempdir().unwrap();
    save_saelens(&sae, dir.path()).unwrap();
    let back = load_sae(dir.path()).unwrap();
    assert_eq!(back.w_enc, sae.w_enc);
    assert_eq!(back.w_dec, sae.w_dec);
    assert_eq!(back.threshold, sae.threshold);
    check(&back, "jumprelu", "saelens");
}

#[test]
fn native_round_trip_keeps_every_architecture_and_folds_the_input_scale() {
    let base = load_sae(&fixtures().join("sparsify")).unwrap();
    let x = expected()["x"].clone();
    for act in [
        SaeActivation::Relu,
        SaeActivation::TopK { k: 4 },
        SaeActivation::BatchTopK {
            k: 4.0,
            threshold: 0.05,
        },
    ] {
        let mut s = base.clone();
        s.activation = act;
        s.input_scale = Some(1.7);
        let dir = tempfile::tempdir().unwrap();
        save_saelens(&s, dir.path()).unwrap();
        // D20/D21: names and types as SAELens 6 reads them (checked with the real SAELens by
        // scripts/saelens-check.py): `k` an int (8.0 breaks its `torch.topk`); BatchTopK saved
        // as `jumprelu` with its threshold (SAELens has no inference `batchtopk`).
        let cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("cfg.json")).unwrap()).unwrap();
        match act {
            SaeActivation::Relu => assert_eq!(cfg["architecture"], "standard"),
            SaeActivation::TopK { .. } => {
                assert_eq!(cfg["architecture"], "topk");
                assert!(cfg["k"].is_u64(), "{act:?}: k = {}", cfg["k"]);
            }
            _ => {
                assert_eq!(cfg["architecture"], "jumprelu");
                assert_eq!(cfg["metadata"]["saescope_architecture"], "batchtopk");
                let k = &cfg["metadata"]["saescope_k"];
                assert!(k.is_u64(), "{act:?}: saescope_k = {k}");
            }
        }
        let back = load_sae(dir.path()).unwrap();
        assert_eq!(back.activation, act);
        assert_eq!(
            back.input_scale, None,
            "the scale is folded into the weights"
        );
        let (f1, f2) = (s.encode(&x), back.encode(&x));
        assert_close(&format!("{act:?} f"), &f2, &f1);
        assert_close(&format!("{act:?} xhat"), &back.decode(&f2), &s.decode(&f1));
    }
}

#[test]
fn bad_files_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    // Truncated weights.
    let good = fixtures().join("saelens_jumprelu");
    let bad = dir.path().join("truncated");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::copy(good.join("cfg.json"), bad.join("cfg.json")).unwrap();
    let w = std::fs::read(good.join("sae_weights.safetensors")).unwrap();
    std::fs::write(bad.join("sae_weights.safetensors"), &w[..w.len() / 2]).unwrap();
    let err = load_sae(&bad).unwrap_err().to_string();
    assert!(err.contains("truncated"), "{err}");
    // Unknown layout.
    let unknown = dir.path().join("unknown.safetensors");
    let t = candle_core::Tensor::zeros((2, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
    candle_core::safetensors::save(
        &HashMap::from([("mystery.weight".to_string(), t)]),
        &unknown,
    )
    .unwrap();
    let err = load_sae(&unknown).unwrap_err().to_string();
    assert!(
        err.contains("unknown SAE layout") && err.contains("mystery.weight"),
        "{err}"
    );
    // Mismatched width.
    let sae = load_sae(&fixtures().join("sparsify")).unwrap();
    let err = sae
        .check_fits(128, "layer 3 of vit_cifar10")
        .unwrap_err()
        .to_string();
    assert!(err.contains("d_in=6") && err.contains("width 128"), "{err}");

    // Non-finite weights (a diverged run) and integer weights are refused, naming the tensor.
    let nan_dir = dir.path().join("nan");
    std::fs::create_dir_all(&nan_dir).unwrap();
    let good = fixtures().join("saelens_jumprelu");
    std::fs::copy(good.join("cfg.json"), nan_dir.join("cfg.json")).unwrap();
    let mut tensors =
        candle_core::safetensors::load(good.join("sae_weights.safetensors"), &Device::Cpu).unwrap();
    let w = tensors["W_dec"].clone();
    let mut v: Vec<f32> = w.flatten_all().unwrap().to_vec1().unwrap();
    v[5] = f32::NAN;
    tensors.insert(
        "W_dec".into(),
        candle_core::Tensor::from_vec(v, w.dims(), &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&tensors, nan_dir.join("sae_weights.safetensors")).unwrap();
    let err = load_sae(&nan_dir).unwrap_err().to_string();
    assert!(err.contains("W_dec") && err.contains("non-finite"), "{err}");
    let ints = dir.path().join("ints");
    std::fs::create_dir_all(&ints).unwrap();
    std::fs::copy(fixtures().join("sparsify/cfg.json"), ints.join("cfg.json")).unwrap();
    let mut tensors =
        candle_core::safetensors::load(fixtures().join("sparsify/sae.safetensors"), &Device::Cpu)
            .unwrap();
    for t in tensors.values_mut() {
        *t = t.to_dtype(candle_core::DType::U32).unwrap();
    }
    candle_core::safetensors::save(&tensors, ints.join("sae.safetensors")).unwrap();
    let err = load_sae(&ints).unwrap_err().to_string();
    assert!(err.contains("must be floating point"), "{err}");

    // D7: a cfg.json that is not an object, or has no text architecture, is refused by name
    // (such files loaded a TopK SAE as a ReLU one).
    let cfg_dir = dir.path().join("cfg");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    std::fs::copy(
        good.join("sae_weights.safetensors"),
        cfg_dir.join("sae_weights.safetensors"),
    )
    .unwrap();
    let mut fine: serde_json::Value =
        serde_json::from_slice(&std::fs::read(good.join("cfg.json")).unwrap()).unwrap();
    let mut numeric = fine.clone();
    numeric["architecture"] = serde_json::json!(3);
    let mut missing = fine.clone();
    missing.as_object_mut().unwrap().remove("architecture");
    for (cfg, want) in [
        ("[1,2,3]".to_string(), "must be a JSON object"),
        ("null".to_string(), "must be a JSON object"),
        ("\"topk\"".to_string(), "must be a JSON object"),
        (numeric.to_string(), "`architecture` must be text"),
        (missing.to_string(), "no `architecture`"),
    ] {
        std::fs::write(cfg_dir.join("cfg.json"), &cfg).unwrap();
        let err = load_sae(&cfg_dir).unwrap_err().to_string();
        assert!(
            err.contains(want) && err.contains("cfg.json"),
            "{cfg}: {err}"
        );
    }
    fine["architecture"] = serde_json::json!("jumprelu");
    std::fs::write(cfg_dir.join("cfg.json"), fine.to_string()).unwrap();
    assert!(load_sae(&cfg_dir).is_ok());
    assert_eq!(
        saescope_core::sae::formats::hook_block("blocks.5.hook_resid_post"),
        Some(5)
    );
    assert_eq!(
        saescope_core::sae::formats::hook_block("encoder.layer.5"),
        None
    );
}

/// People pick the weights file, not the folder: a SAELens `sae_weights.safetensors` loads with
/// its folder's cfg.json, and files that are not SAEs say so in words, not a parser's.
#[test]
fn a_saelens_weights_file_loads_and_other_files_say_what_is_wrong() {
    let good = fixtures().join("saelens_jumprelu");
    let by_file = load_sae(&good.join("sae_weights.safetensors")).unwrap();
    let by_dir = load_sae(&good).unwrap();
    assert_eq!(by_file.fingerprint(), by_dir.fingerprint());

    let dir = tempfile::tempdir().unwrap();
    // The weights without their cfg.json.
    let lone = dir.path().join("sae_weights.safetensors");
    std::fs::copy(good.join("sae_weights.safetensors"), &lone).unwrap();
    let err = load_sae(&lone).unwrap_err().to_string();
    assert!(err.contains("without their cfg.json"), "{err}");
    // A pretty-printed JSON file that is not a saev checkpoint.
    let json = dir.path().join("dataset.json");
    std::fs::write(&json, "{\n  \"images\": []\n}\n").unwrap();
    let err = load_sae(&json).unwrap_err().to_string();
    assert!(err.contains("not an SAE file"), "{err}");
    assert!(!err.contains("EOF"), "{err}");
}
