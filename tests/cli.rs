//! The CLI on real data: classifier accuracy, resumable extraction, skipped images, JSON errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)] // tests make fixtures and fail loudly

use saescope_core::shared::shared_path;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn saescope() -> Command {
    Command::new(env!("CARGO_BIN_EXE_saescope"))
}

fn vit_args() -> Vec<String> {
    vec![
        "--model".into(),
        shared_path("models/vit-cifar10/vit_cifar10.pth")
            .display()
            .to_string(),
        "--model-config".into(),
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("assets/models/vit-cifar10.json")
            .display()
            .to_string(),
    ]
}

/// Runs a command and parses the last stdout line as JSON.
fn run_json(cmd: &mut Command) -> (bool, Value) {
    let out = cmd.arg("--json").output().expect("run saescope");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_else(|| {
        panic!(
            "no output; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (
        out.status.success(),
        serde_json::from_str(last)
            .unwrap_or_else(|e| panic!("last line is not JSON ({e}): {last}")),
    )
}

#[test]
fn classify_cifar10_test_matches_pytorch_accuracy() {
    let (ok, v) = run_json(
        saescope()
            .arg("classify")
            .args(vit_args())
            .arg("--images")
            .arg(shared_path("data/cifar10/test")),
    );
    assert!(ok, "{v}");
    assert_eq!(v["n"], 10_000);
    // Pixels equal Pillow's and the forward pass PyTorch's, so the count of correct images is
    // PyTorch's exactly: 7,172 of 10,000.
    let acc = v["accuracy"].as_f64().unwrap();
    assert_eq!(
        (acc * 10_000.0).round(),
        7172.0,
        "accuracy {acc} vs PyTorch 0.7172"
    );
    assert_eq!(v["per_class"].as_object().unwrap().len(), 10);
}

/// A folder of `per_class` real CIFAR-10 test images per class (symlinks), plus a corrupt JPEG
/// and a zero-byte file.
fn small_dataset(dir: &Path, per_class: usize) {
    let src = shared_path("data/cifar10/test");
    let mut classes: Vec<_> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    classes.sort();
    for c in &classes {
        let mut files: Vec<_> = std::fs::read_dir(src.join(c))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        std::fs::create_dir_all(dir.join(c)).unwrap();
        for f in files.iter().take(per_class) {
            std::os::unix::fs::symlink(f, dir.join(c).join(f.file_name().unwrap())).unwrap();
        }
    }
    let real = std::fs::read(src.join("cat/0000.jpg")).unwrap_or_else(|_| {
        std::fs::read(
            std::fs::read_dir(src.join("cat"))
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .path(),
        )
        .unwrap()
    });
    std::fs::write(dir.join("cat/zz-truncated.jpg"), &real[..real.len() / 3]).unwrap();
    std::fs::write(dir.join("dog/zz-empty.jpg"), b"").unwrap();
}

#[test]
fn extract_resumes_after_a_crash_and_skips_bad_images() {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    small_dataset(&images, 30);
    let ws = tmp.path().join("ws");
    let extract = |crash: Option<usize>| {
        let mut c = saescope();
        c.arg("extract").args(vit_args()).args([
            "--layer",
            "3",
            "--dtype",
            "f32",
            "--batch",
            "16",
            "--shard-images",
            "40",
        ]);
        c.arg("--images").arg(&images).arg("--workspace").arg(&ws);
        if let Some(k) = crash {
            c.env("SAESCOPE_CRASH_AFTER_SHARD", k.to_string());
        }
        c
    };
    // 302 images → 8 shards of 40; die right after shard 3's file is written.
    let out = extract(Some(3)).output().unwrap();
    assert!(
        !out.status.success(),
        "the injected crash must kill the run"
    );
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(ws.join("activations/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(
        manifest["shards"].as_array().unwrap().len(),
        3,
        "shards 0..=2 are complete, shard 3 is not listed"
    );
    let shard0_mtime = std::fs::metadata(ws.join("activations/shard-00000.safetensors"))
        .unwrap()
        .modified()
        .unwrap();

    let (ok, v) = run_json(&mut extract(None));
    assert!(ok, "{v}");
    assert_eq!(v["shards_reused"], 3);
    assert_eq!(v["shards"], 8);
    assert_eq!(v["complete"], true);
    assert_eq!(v["dataset_images"], 302);
    assert_eq!(v["extracted_images"], 300);
    assert_eq!(v["rows"], 300 * 65);
    let mut skipped: Vec<String> = v["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_str().unwrap().to_string())
        .collect();
    skipped.sort();
    assert_eq!(skipped, ["cat/zz-truncated.jpg", "dog/zz-empty.jpg"]);
    assert_eq!(
        std::fs::metadata(ws.join("activations/shard-00000.safetensors"))
            .unwrap()
            .modified()
            .unwrap(),
        shard0_mtime,
        "finished shards are not redone"
    );
    let leftovers: Vec<_> = std::fs::read_dir(ws.join("activations"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // The stored rows are the model's layer-3 activations of the right images.
    let store =
        saescope_core::store::activations::ActivationStore::open(&ws.join("activations")).unwrap();
    let ws_open = saescope_core::store::Workspace::open(&ws).unwrap();
    let ds = ws_open.dataset().unwrap();
    let shard = store.read_shard(5).unwrap();
    let image = shard.image_ids[7] as usize;
    let model =
        saescope_core::backbone::load_backbone(&ws_open.config.model, &candle_core::Device::Cpu)
            .unwrap();
    let img = ds.load(image).unwrap();
    let direct = saescope_core::store::extract::activations_for(
        &model,
        &[img],
        3,
        &(0..65).collect::<Vec<_>>(),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let direct: Vec<f32> = direct.flatten_all().unwrap().to_vec1().unwrap();
    let stored = &shard.activations[7 * 65 * 128..8 * 65 * 128];
    let diff = direct
        .iter()
        .zip(stored)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        diff < 1e-5,
        "stored activations differ from a direct forward by {diff}"
    );

    // A second writer is refused while another holds the workspace, and is told who.
    {
        let _held = saescope_core::store::lock::lock_writer(&ws, "held by the test", None).unwrap();
        let (ok, v) = run_json(&mut extract(None));
        let msg = v["error"].as_str().unwrap_or_default();
        assert!(
            !ok && msg.contains("workspace busy") && msg.contains("held by the test"),
            "{v}"
        );
    }

    // Re-running a finished workspace does nothing; asking for another layer is refused.
    let (ok, v) = run_json(&mut extract(None));
    assert!(ok && v["shards_reused"] == 8, "{v}");
    let (ok, v) = run_json(
        saescope()
            .arg("extract")
            .args(vit_args())
            .args(["--layer", "2", "--dtype", "f32"])
            .arg("--images")
            .arg(&images)
            .arg("--workspace")
            .arg(&ws),
    );
    assert!(!ok);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("already holds activations"),
        "{v}"
    );

    // Out-of-range training options are refused before anything is written (these panicked or
    // wrote a NaN SAE before): the error names the option and its range.
    for (args, says) in [
        (&["--d-sae", "0"][..], "--d-sae must be at least 1"),
        (
            &["--d-sae", "64", "--batch", "0"][..],
            "--batch must be at least 1",
        ),
        (
            &["--d-sae", "64", "--k", "0"][..],
            "--k must be between 1 and --d-sae",
        ),
        (
            &["--d-sae", "64", "--k", "65"][..],
            "--k must be between 1 and --d-sae",
        ),
        (
            &["--d-sae", "64", "--lr", "nan"][..],
            "--lr must be a finite number above 0",
        ),
        (
            &["--d-sae", "64", "--lr", "inf"][..],
            "--lr must be a finite number above 0",
        ),
        (
            &["--d-sae", "64", "--tokens", "0"][..],
            "--tokens must be at least 1",
        ),
        (&["--d-sae", "100000000"][..], "of memory is available"),
    ] {
        let (ok, v) = run_json(
            saescope()
                .args(["train", "--workspace"])
                .arg(&ws)
                .args(args),
        );
        assert!(!ok, "{args:?} was accepted");
        assert!(v["error"].as_str().unwrap().contains(says), "{args:?}: {v}");
        assert!(!ws.join("saes").exists(), "{args:?} left an SAE folder");
    }
}

#[test]
fn errors_come_as_json_and_name_the_fix() {
    let (ok, v) = run_json(
        saescope()
            .arg("extract")
            .args(vit_args())
            .args(["--layer", "9", "--workspace", "/tmp/never-made"])
            .arg("--images")
            .arg(shared_path("data/mnist/test")),
    );
    assert!(!ok);
    assert!(v["error"].as_str().unwrap().contains("0..=5"), "{v}");
    for (flag, says) in [
        ("--batch", "--batch must be at least 1"),
        ("--shard-images", "--shard-images must be at least 1"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let ws = tmp.path().join("ws");
        let (ok, v) = run_json(
            saescope()
                .arg("extract")
                .args(vit_args())
                .args(["--layer", "3", flag, "0", "--workspace"])
                .arg(&ws)
                .arg("--images")
                .arg(shared_path("data/mnist/test")),
        );
        assert!(!ok && v["error"].as_str().unwrap().contains(says), "{v}");
        assert!(!ws.exists(), "a refused extract created {}", ws.display());
    }
    // A cause is printed once, not once in the message and again as its source.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("workspace.json"), "{").unwrap();
    let (ok, v) = run_json(saescope().arg("index").arg("--workspace").arg(tmp.path()));
    let msg = v["error"].as_str().unwrap();
    assert!(
        !ok && msg.matches("EOF while parsing").count() == 1,
        "{msg}"
    );
    // A failed first run (an empty image folder) leaves no workspace behind, so the corrected
    // run is not refused.
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let ws = tmp.path().join("ws");
    let (ok, _) = run_json(
        saescope()
            .arg("extract")
            .args(vit_args())
            .args(["--layer", "3", "--workspace"])
            .arg(&ws)
            .arg("--images")
            .arg(&empty),
    );
    assert!(!ok);
    assert!(!ws.exists(), "the failed run left {}", ws.display());
    let (ok, v) = run_json(
        saescope()
            .arg("info")
            .args(["--model", "/no/such/model.pth"]),
    );
    assert!(!ok);
    assert!(v["error"].as_str().unwrap().contains("not found"), "{v}");
}

#[test]
fn info_describes_every_family() {
    for m in ["clip", "dinov2", "siglip"] {
        let (ok, v) = run_json(
            saescope()
                .arg("info")
                .arg("--model")
                .arg(shared_path(&format!("models/tiny-random/{m}"))),
        );
        assert!(ok, "{m}: {v}");
        assert_eq!(v["model"]["n_layers"], 3, "{m}");
        assert_eq!(v["model"]["d_model"], 64, "{m}");
    }
}
