//! Train SAEs (TopK, BatchTopK with a crash and resume, ReLU + L1 with normalisation) on real
//! CIFAR-10 ViT activations through the CLI, then evaluate them with the tapped layer replaced
//! by the reconstruction.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)] // tests make fixtures and fail loudly

use saescope_core::shared::shared_path;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

mod common;
use common::run_json;

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
    let topk = || {
        let mut c = Command::new(exe);
        c.args([
            "train", "--d-sae", "256", "--k", "8", "--tokens", "300000", "--batch", "1024",
        ])
        .arg("--workspace")
        .arg(&ws);
        c
    };
    let t = run_json(&mut topk());
    assert_eq!(t["final_l0"], 8.0);
    assert_eq!(t["name"], "topk-256-k8");
    let first = ws.join("saes/topk-256-k8");
    assert!(first.join("cfg.json").is_file() && first.join("metrics.jsonl").is_file());
    let weights = std::fs::read(first.join("sae_weights.safetensors")).unwrap();
    // The same run again is reported as trained, not run again; the same name with other
    // settings is refused; neither touches the SAE.
    let again = run_json(&mut topk());
    assert_eq!(again["already_trained"], true, "{again}");
    assert_eq!(again["final_fve"], t["final_fve"]);
    let other = Command::new(exe)
        .args([
            "train",
            "--json",
            "--name",
            "topk-256-k8",
            "--d-sae",
            "256",
            "--k",
            "4",
            "--tokens",
            "300000",
            "--workspace",
        ])
        .arg(&ws)
        .output()
        .unwrap();
    assert!(!other.status.success());
    let err = String::from_utf8_lossy(&other.stdout);
    assert!(err.contains("another --name"), "{err}");
    assert_eq!(
        std::fs::read(first.join("sae_weights.safetensors")).unwrap(),
        weights
    );
    // A damaged training report is said as such (not taken for "other settings"), and kept.
    let report = std::fs::read(first.join("train.json")).unwrap();
    std::fs::write(first.join("train.json"), &report[..report.len() / 2]).unwrap();
    let out = topk().arg("--json").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stdout);
    assert!(
        err.contains("train.json") && err.contains("damaged") && !err.contains("other settings"),
        "{err}"
    );
    std::fs::write(first.join("train.json"), &report).unwrap();
    // Trained on a subset (links to 30 of the workspace's images): only those count, the name
    // says so, and a folder of none of its images is refused with the fix.
    let some = tmp.path().join("some");
    common::subset("data/cifar10/train", &["cat", "ship", "frog"], 10, &some);
    let on = |dir: &std::path::Path| {
        let mut c = topk();
        c.arg("--images").arg(dir);
        c
    };
    let sub = run_json(&mut on(&some));
    assert_eq!(sub["images"], 30, "{sub}");
    assert_eq!(sub["name"], "topk-256-k8-on-some");
    assert_eq!(t["images"], 200);
    let out = on(&shared_path("data/mnist/test"))
        .arg("--json")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stdout);
    assert!(
        err.contains("none of its") && err.contains("links to them"),
        "{err}"
    );
    // Training made the subset SAE active; the checks below are on the first one.
    run_json(
        Command::new(exe)
            .args(["use-sae", "topk-256-k8", "--workspace"])
            .arg(&ws),
    );
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

    // BatchTopK, killed after its third checkpoint, resumes where it stopped.
    let btk = |extra: &[&str]| {
        let mut c = Command::new(exe);
        c.args([
            "train",
            "--arch",
            "batchtopk",
            "--d-sae",
            "256",
            "--k",
            "8",
            "--tokens",
            "300000",
            "--batch",
            "1024",
            "--checkpoint-every",
            "20",
            "--workspace",
        ])
        .arg(&ws)
        .args(extra);
        c
    };
    let crashed = btk(&["--json"])
        .env("SAESCOPE_CRASH_AFTER_CHECKPOINT", "3")
        .output()
        .unwrap();
    assert!(
        !crashed.status.success(),
        "the fault injection should abort"
    );
    let btk_home = ws.join("saes/batchtopk-256-k8");
    assert!(btk_home.join("checkpoint/checkpoint.json").is_file());
    // Other settings under its name do not silently throw the unfinished run away.
    let out = Command::new(exe)
        .args([
            "train",
            "--json",
            "--name",
            "batchtopk-256-k8",
            "--d-sae",
            "128",
            "--k",
            "8",
            "--workspace",
        ])
        .arg(&ws)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stdout);
    assert!(err.contains("--restart"), "{err}");
    let r = run_json(&mut btk(&[]));
    assert_eq!(r["resumed_from_step"], 60);
    assert_eq!(r["steps"], 293);
    assert!(
        !btk_home.join("checkpoint").exists(),
        "checkpoint left behind"
    );
    let threshold = r["threshold"].as_f64().unwrap();
    assert!(threshold > 0.0, "learned threshold {threshold}");
    // The metrics log runs once through the steps, with no repeats from the resumed part.
    let steps: Vec<u64> = std::fs::read_to_string(btk_home.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(steps.windows(2).all(|w| w[0] < w[1]) && steps.first() == Some(&0));
    assert_eq!(steps.last(), Some(&292));
    let e = run_json(
        Command::new(exe)
            .args(["eval-sae", "--workspace"])
            .arg(&ws)
            .arg("--images")
            .arg(&images),
    );
    let l0 = e["l0"].as_f64().unwrap();
    assert!((4.0..16.0).contains(&l0), "BatchTopK inference L0 {l0}");
    assert!(e["fve"].as_f64().unwrap() > 0.6, "{e}");

    // ReLU + L1 with input normalisation: the scale is folded into the saved weights.
    let r = run_json(
        Command::new(exe)
            .args([
                "train",
                "--arch",
                "relu",
                "--l1",
                "1",
                "--normalize",
                "--d-sae",
                "256",
                "--tokens",
                "200000",
                "--batch",
                "1024",
                "--restart",
                "--workspace",
            ])
            .arg(&ws),
    );
    let scale = r["input_scale"].as_f64().unwrap();
    let cfg: Value =
        serde_json::from_slice(&std::fs::read(ws.join("saes/relu-256/cfg.json")).unwrap()).unwrap();
    assert_eq!(cfg["architecture"], "standard");
    assert_eq!(cfg["normalize_activations"], "none");
    assert!(
        (cfg["metadata"]["saescope_input_scale_folded"]
            .as_f64()
            .unwrap()
            - scale)
            .abs()
            < 1e-6
    );
    let e = run_json(
        Command::new(exe)
            .args(["eval-sae", "--workspace"])
            .arg(&ws)
            .arg("--images")
            .arg(&images),
    );
    assert!(e["fve"].as_f64().unwrap() > 0.5, "ReLU SAE: {e}");
}
