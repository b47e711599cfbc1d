//! `saescope intervene --attribute`: a feature's class attribution over a real CIFAR-10 ViT
//! workspace (its decoder direction written into the stream, beside random directions of the
//! same norm), saved beside the SAE keyed by feature.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)] // tests make fixtures and fail loudly

use saescope_core::shared::shared_path;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{run_json, subset};

const EXE: &str = env!("CARGO_BIN_EXE_saescope");

fn cmd(args: &[&str], ws: &Path) -> Command {
    let mut c = Command::new(EXE);
    c.arg(args[0]).arg("--workspace").arg(ws).args(&args[1..]);
    c
}

#[test]
fn intervene_attribute_measures_class_pushes_beside_random_directions_and_saves_them() {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    subset("data/cifar10/train", &["cat", "ship", "frog"], 12, &images);
    let ws = tmp.path().join("ws");
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/models/vit-cifar10.json");
    run_json(
        Command::new(EXE)
            .args(["extract", "--layer", "3", "--model"])
            .arg(shared_path("models/vit-cifar10/vit_cifar10.pth"))
            .arg("--model-config")
            .arg(&config)
            .arg("--images")
            .arg(&images)
            .arg("--workspace")
            .arg(&ws),
    );
    run_json(&mut cmd(
        &[
            "train", "--d-sae", "64", "--k", "4", "--tokens", "20000", "--batch", "512",
        ],
        &ws,
    ));
    let home = ws.join("saes/topk-64-k4");
    // Without the index there is no typical activation to scale by: the fix is named.
    let out = cmd(&["intervene", "--attribute", "--features", "3"], &ws)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("saescope index") && err.contains("--value"),
        "{err}"
    );
    run_json(&mut cmd(&["index", "--top-n", "8"], &ws));
    let index = saescope_core::analysis::index::load_index(&home).unwrap();
    let live: Vec<usize> = (0..64).filter(|&j| index.token_count[j] > 0).collect();
    let f = live[0];

    let r = run_json(
        cmd(
            &[
                "intervene",
                "--attribute",
                "--sample",
                "9",
                "--random",
                "4",
                "--features",
            ],
            &ws,
        )
        .arg(f.to_string()),
    );
    let a = &r["attributions"][0];
    assert_eq!(a["feature"], f as u64, "{r}");
    assert_eq!(a["images"], 9, "{r}");
    assert_eq!(a["tokens_per_image"], 64);
    assert_eq!(a["random_directions"], 4);
    // Scaled by its mean activation where it fires, from the index.
    let mean = index.mean_active(f) as f32;
    assert!(
        (a["activation"].as_f64().unwrap() as f32 - mean).abs() < 1e-5,
        "{a}"
    );
    let classes = a["classes"].as_array().unwrap();
    assert_eq!(classes.len(), 10, "every logit of the head");
    assert_eq!(classes[8]["class"], "ship");
    for c in classes {
        assert_eq!(c["random_dlogits"].as_array().unwrap().len(), 4);
        assert!(c["se_dlogit"].as_f64().unwrap() >= 0.0);
        let z = c["z"].as_f64().unwrap();
        assert_eq!(c["beyond_random"].as_bool().unwrap(), z.abs() > 3.0, "{c}");
    }
    assert!(
        classes
            .iter()
            .any(|c| c["mean_dlogit"].as_f64().unwrap() != 0.0),
        "the edit moved no logit"
    );

    // A second feature at a given activation is added; the first stays, keyed by feature.
    let g = live[1];
    let r2 = run_json(
        cmd(
            &[
                "intervene",
                "--attribute",
                "--sample",
                "6",
                "--value",
                "2.5",
                "--features",
            ],
            &ws,
        )
        .arg(g.to_string()),
    );
    assert_eq!(r2["attributions"][0]["activation"], 2.5);
    assert_eq!(r2["attributions"][0]["activation_from"], "--value");
    assert_eq!(r2["attributions"][0]["random_directions"], 8, "default");
    let saved: Value =
        serde_json::from_slice(&std::fs::read(home.join("attribution.json")).unwrap()).unwrap();
    let keys: Vec<&String> = saved.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(saved[f.to_string()]["classes"], a["classes"]);

    // Options that belong to the other forms are refused, not ignored.
    let out = cmd(
        &[
            "intervene",
            "--attribute",
            "--features",
            "1",
            "--mode",
            "scale",
            "--value",
            "2",
        ],
        &ws,
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("drop --mode"));
}
