//! Train a TopK SAE on real CIFAR-10 ViT activations through the CLI, then evaluate it with the
//! tapped layer replaced by the reconstruction.

use saescope::shared::shared_path;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn run_json(cmd: &mut Command) -> Value {
    let out = cmd.arg("--json").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(stdout.lines().last().unwrap_or("{}")).unwrap();
    assert!(
        out.status.success(),
        "{v}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    v
}

#[test]
fn train_and_evaluate_a_topk_sae_on_vit_cifar10() {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("train");
    for class in ["airplane", "cat", "ship", "frog"] {
        std::fs::create_dir_all(images.join(class)).unwrap();
        for i in 0..50 {
            let name = format!("{i:04}.jpg");
            std::os::unix::fs::symlink(
                shared_path("data/cifar10/train").join(class).join(&name),
                images.join(class).join(&name),
            )
            .unwrap();
        }
    }
    let ws = tmp.path().join("ws");
    let exe = env!("CARGO_BIN_EXE_saescope");
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/models/vit-cifar10.json");
    run_json(
        Command::new(exe)
            .args(["extract", "--layer", "3", "--model"])
            .arg(shared_path("models/vit-cifar10/vit_cifar10.pth"))
            .arg("--model-config")
            .arg(&config)
            .arg("--images")
            .arg(&images)
            .arg("--workspace")
            .arg(&ws),
    );
    let t = run_json(
        Command::new(exe)
            .args([
                "train",
                "--d-sae",
                "256",
                "--k",
                "8",
                "--tokens",
                "300000",
                "--batch",
                "1024",
                "--workspace",
            ])
            .arg(&ws),
    );
    assert_eq!(t["final_l0"], 8.0);
    assert!(ws.join("sae/cfg.json").is_file() && ws.join("sae/metrics.jsonl").is_file());
    let e = run_json(
        Command::new(exe)
            .args(["eval-sae", "--workspace"])
            .arg(&ws)
            .arg("--images")
            .arg(&images),
    );
    let fve = e["fve"].as_f64().unwrap();
    assert!(fve > 0.6, "FVE {fve}");
    assert_eq!(e["l0"], 8.0);
    let (acc, spliced) = (
        e["accuracy"].as_f64().unwrap(),
        e["spliced_accuracy"].as_f64().unwrap(),
    );
    assert!(
        spliced > 0.5 * acc,
        "spliced accuracy {spliced} vs clean {acc}"
    );
    // An SAE of the wrong width is refused with the fix.
    let out = Command::new(exe)
        .args(["eval-sae", "--json", "--workspace"])
        .arg(&ws)
        .arg("--images")
        .arg(&images)
        .arg("--sae")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sae/sparsify"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stdout);
    assert!(err.contains("d_in=6") && err.contains("width 128"), "{err}");
}
