//! CLIP zero-shot labels on a tiny CLIP workspace, and activations of one workspace reused
//! exactly by commands run on another (split from tests/analysis.rs, which stays under 800
//! lines).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)] // tests make fixtures and fail loudly

use saescope_core::shared::shared_path;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{run_json, subset};

const EXE: &str = env!("CARGO_BIN_EXE_saescope");

fn cmd(args: &[&str], ws: &Path) -> Command {
    // The subcommand, then the workspace, then the rest (so callers can append a value to a
    // trailing flag).
    let mut c = Command::new(EXE);
    c.arg(args[0]).arg("--workspace").arg(ws).args(&args[1..]);
    c
}

/// CLIP zero-shot labels on a (tiny, random-weight) CLIP workspace: every labelled feature gets a
/// vocabulary concept with source `clip`, and manual labels survive.
#[test]
fn clip_zero_shot_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("clip");
    std::fs::create_dir_all(&model).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::os::unix::fs::symlink(
            shared_path("models/tiny-random/clip").join(f),
            model.join(f),
        )
        .unwrap();
    }
    std::os::unix::fs::symlink(
        shared_path("data/clip/tokenizer.json"),
        model.join("tokenizer.json"),
    )
    .unwrap();
    let images = tmp.path().join("images");
    subset("data/cifar10/test", &["cat", "ship"], 12, &images);
    let ws = tmp.path().join("ws");
    run_json(
        Command::new(EXE)
            .args(["extract", "--layer", "1", "--model"])
            .arg(&model)
            .arg("--images")
            .arg(&images)
            .arg("--workspace")
            .arg(&ws),
    );
    run_json(&mut cmd(
        &[
            "train", "--d-sae", "32", "--k", "4", "--tokens", "20000", "--batch", "256",
        ],
        &ws,
    ));
    let home = ws.join("saes/topk-32-k4");
    run_json(&mut cmd(&["index", "--top-n", "8"], &ws));
    let vocab = tmp.path().join("vocab.txt");
    std::fs::write(&vocab, "solar panel\nrust\n").unwrap();
    let l = run_json(
        cmd(
            &["label", "--set", "0=kept by hand", "--clip", "--vocab"],
            &ws,
        )
        .arg(&vocab),
    );
    assert!(l["from_clip"].as_u64().unwrap() > 0, "{l}");
    let labels: Value =
        serde_json::from_slice(&std::fs::read(home.join("labels.json")).unwrap()).unwrap();
    assert_eq!(labels["labels"]["0"]["text"], "kept by hand");
    let mut concepts: Vec<String> = saescope_core::analysis::zero_shot::BUILTIN_CONCEPTS
        .iter()
        .map(|s| s.to_string())
        .collect();
    concepts.extend(["solar panel".to_string(), "rust".to_string()]);
    for (id, label) in labels["labels"].as_object().unwrap() {
        if id == "0" {
            continue;
        }
        assert_eq!(label["source"], "clip");
        assert!(
            concepts.contains(&label["text"].as_str().unwrap().to_string()),
            "{label}"
        );
        let c = label["confidence"].as_f64().unwrap();
        assert!(c > 0.0 && c <= 1.0, "{label}");
    }
}

/// Activations read back from a workspace store are the ones the backbone computes for the same
/// image files (f32 store: bit for bit), whichever folder of links names them, across shards.
#[test]
fn stored_activations_are_reused_exactly() {
    use saescope_core::backbone::{self, Backbone, ModelSpec};
    use saescope_core::store::reuse::LayerActivations;
    use saescope_core::store::{Dataset, Workspace};
    let tmp = tempfile::tempdir().unwrap();
    let train = tmp.path().join("train");
    subset("data/cifar10/train", &["cat", "ship"], 7, &train);
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/models/vit-cifar10.json");
    let model = shared_path("models/vit-cifar10/vit_cifar10.pth");
    let ws_dir = tmp.path().join("ws");
    run_json(
        Command::new(EXE)
            .args([
                "extract",
                "--layer",
                "2",
                "--dtype",
                "f32",
                "--shard-images",
                "4",
            ])
            .arg("--model")
            .arg(&model)
            .arg("--model-config")
            .arg(&config)
            .arg("--images")
            .arg(&train)
            .arg("--workspace")
            .arg(&ws_dir),
    );
    let spec = ModelSpec::from_cli(model.to_str().unwrap(), Some(&config)).unwrap();
    let b = backbone::load_backbone(&spec, &candle_core::Device::Cpu).unwrap();
    let ws = Workspace::open(&ws_dir).unwrap();
    // Another folder naming some of the same files, and one file the store lacks.
    let other = tmp.path().join("other");
    subset("data/cifar10/train", &["ship"], 9, &other);
    let ds = Dataset::scan(&other).unwrap();
    let ids: Vec<usize> = (0..ds.len()).collect();
    let source = LayerActivations::new(&b, 2, std::slice::from_ref(&ws)).unwrap();
    let got = source.batch(&ds, &ids).unwrap();
    assert_eq!(got.ok, ids);
    assert_eq!(source.reused(), 7, "7 of the 9 ships are in the store");
    let computed = LayerActivations::new(&b, 2, &[])
        .unwrap()
        .batch(&ds, &ids)
        .unwrap();
    let d = saescope_core::linalg::max_abs_diff(&got.hidden.unwrap(), &computed.hidden.unwrap())
        .unwrap();
    assert_eq!(d, 0.0, "stored rows differ from computed ones by {d:e}");
    // Another layer cannot be answered from this store.
    let l3 = LayerActivations::new(&b, 3, std::slice::from_ref(&ws)).unwrap();
    assert_eq!(l3.stores(), 0);
    // A store that fits but cannot be read is an error naming it, not a silent recomputation.
    std::fs::write(ws_dir.join("activations/manifest.json"), "{ torn").unwrap();
    let err = LayerActivations::new(&b, 2, std::slice::from_ref(&ws))
        .err()
        .expect("a broken store to be refused")
        .to_string();
    assert!(
        err.contains("cannot be reused") && err.contains(&ws_dir.display().to_string()),
        "{err}"
    );
    let _ = b.info();
}
