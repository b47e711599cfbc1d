//! Regression tests for defects of the hostile run (issue H) that the CLI shows: each ran the
//! command that failed and checks the clear error or the right result.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)] // tests make fixtures and fail loudly

mod common;

use common::run_json;
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_saescope");

fn saescope(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args);
    c
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The built-in example (a workspace with an indexed SAE, `topk-256-k8`, at layer 2), in `dir`.
fn example(dir: &Path) -> std::path::PathBuf {
    let ex = dir.join("ex");
    run_json(&mut saescope(&["example", "--out", s(&ex)]));
    ex
}

/// D8: `heatmap --sae DIR` with an SAE folder from elsewhere reads it in place: nothing is
/// imported into the workspace (the import ran without the lock, and a training under that
/// name overwrote it).
#[test]
fn heatmap_reads_an_outside_sae_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let ex = example(dir.path());
    let ws = ex.join("workspace");
    let outside = dir.path().join("mine");
    let home = ws.join("saes").join("topk-256-k8");
    std::fs::create_dir_all(&outside).unwrap();
    for f in ["cfg.json", "sae_weights.safetensors"] {
        std::fs::copy(home.join(f), outside.join(f)).unwrap();
    }
    let image = std::fs::read_dir(ex.join("images").join("discs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let before = std::fs::read_dir(ws.join("saes")).unwrap().count();
    let v = run_json(&mut saescope(&[
        "heatmap",
        "--workspace",
        s(&ws),
        "--sae",
        s(&outside),
        "--image",
        s(&image),
        "--features",
        "1,2",
    ]));
    assert!(v["heatmaps"].is_array() || v.is_object(), "{v}");
    assert_eq!(std::fs::read_dir(ws.join("saes")).unwrap().count(), before);
    assert!(!ws.join("saes").join("mine").exists());
}

/// D7: an SAE whose SAELens hook names another block than the workspace's layer is refused with
/// both named, instead of reading the wrong layer's activations.
#[test]
fn an_sae_of_another_block_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ws = example(dir.path()).join("workspace");
    let home = ws.join("saes").join("topk-256-k8");
    let cfg_path = home.join("cfg.json");
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    assert_eq!(cfg["metadata"]["hook_name"], "blocks.2.hook_resid_post");
    run_json(&mut saescope(&[
        "nearest",
        "--workspace",
        s(&ws),
        "--feature",
        "1",
    ]));
    cfg["metadata"]["hook_name"] = "blocks.5.hook_resid_post".into();
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let out = saescope(&["nearest", "--workspace", s(&ws), "--feature", "1", "--json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("taps block 5") && stdout.contains("layer 2"),
        "{stdout}"
    );
}

/// Ctrl-C (SIGINT) and SIGTERM during `train` stop it with a checkpoint (the hostile run found
/// none written) and exit 1 with one JSON line saying how to resume.
#[test]
fn a_signal_stops_training_with_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let ws = example(dir.path()).join("workspace");
    for sig in ["INT", "TERM"] {
        let name = format!("sig-{}", sig.to_lowercase());
        let child = saescope(&[
            "train",
            "--workspace",
            s(&ws),
            "--name",
            &name,
            "--d-sae",
            "512",
            "--k",
            "8",
            "--tokens",
            "20000000",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
        // Signalled once training has logged its first step.
        let metrics = ws.join("saes").join(&name).join("metrics.jsonl");
        let start = std::time::Instant::now();
        while std::fs::metadata(&metrics).map_or(true, |m| m.len() == 0) {
            assert!(start.elapsed().as_secs() < 120, "training did not start");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let killed = Command::new("kill")
            .args([format!("-{sig}"), child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "SIG{sig}: {stdout}");
        let last: serde_json::Value =
            serde_json::from_str(stdout.lines().last().unwrap_or("{}")).unwrap();
        assert!(
            last["error"]
                .as_str()
                .unwrap_or("")
                .contains("run the same command again"),
            "SIG{sig}: {last}"
        );
        let checkpoint = ws.join("saes").join(&name).join("checkpoint");
        assert!(
            std::fs::read_dir(&checkpoint).is_ok_and(|mut d| d.next().is_some()),
            "SIG{sig}: no checkpoint in {}",
            checkpoint.display()
        );
    }
}

/// A dangling link and a file name that is not UTF-8 (D19) are skipped with their reasons, and
/// the other images are extracted: one dangling link used to abort the whole extract, and the
/// other name was reported as "No such file or directory".
#[test]
fn dangling_links_and_non_utf8_names_are_skipped_with_their_reasons() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let ex = example(dir.path());
    let images = dir.path().join("images");
    std::fs::create_dir_all(images.join("a")).unwrap();
    let mut originals = std::fs::read_dir(ex.join("images").join("discs")).unwrap();
    for name in ["one.png", "two.png"] {
        let src = originals.next().unwrap().unwrap().path();
        std::fs::copy(src, images.join("a").join(name)).unwrap();
    }
    std::os::unix::fs::symlink("/nonexistent/x.png", images.join("a").join("broken.png")).unwrap();
    let odd = std::ffi::OsStr::from_bytes(b"bad\xffname.png");
    std::fs::copy(images.join("a").join("one.png"), images.join("a").join(odd)).unwrap();
    let v = run_json(&mut saescope(&[
        "extract",
        "--model",
        s(&ex.join("model")),
        "--layer",
        "1",
        "--images",
        s(&images),
        "--workspace",
        s(&dir.path().join("ws")),
    ]));
    assert_eq!(v["extracted_images"], 2, "{v}");
    let skipped = v["skipped"].as_array().unwrap();
    let reason = |p: &str| {
        skipped
            .iter()
            .find(|x| x["path"].as_str().unwrap().starts_with(p))
            .map(|x| x["reason"].as_str().unwrap().to_string())
            .unwrap_or_default()
    };
    assert!(
        reason("a/broken.png").contains("link to a file that does not exist"),
        "{v}"
    );
    assert!(reason("a/bad").contains("not valid UTF-8"), "{v}");
}

/// D14: a shard whose activations were overwritten (0xFF bytes, read as NaN) is named by the
/// next extract run and extracted again; the store then reads back whole.
#[test]
fn an_extract_rerun_repairs_a_damaged_shard() {
    let dir = tempfile::tempdir().unwrap();
    let ex = example(dir.path());
    let ws = ex.join("workspace");
    let shard = ws.join("activations").join("shard-00000.safetensors");
    let mut bytes = std::fs::read(&shard).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let span = header["activations"]["data_offsets"].as_array().unwrap();
    let (a, b) = (
        span[0].as_u64().unwrap() as usize,
        span[1].as_u64().unwrap() as usize,
    );
    bytes[8 + n + a..8 + n + b].fill(0xFF);
    std::fs::write(&shard, &bytes).unwrap();
    let rerun = || {
        run_json(&mut saescope(&[
            "extract",
            "--model",
            s(&ex.join("model")),
            "--layer",
            "2",
            "--images",
            s(&ex.join("images")),
            "--workspace",
            s(&ws),
        ]))
    };
    let v = rerun();
    let repaired = v["repaired"].as_array().cloned().unwrap_or_default();
    assert_eq!(repaired.len(), 1, "{v}");
    assert!(
        repaired[0].as_str().unwrap().starts_with("shard-00000"),
        "{v}"
    );
    assert_eq!(v["complete"], true);
    // Read back whole: a second run finds nothing to repair, and the index builds.
    assert!(rerun().get("repaired").is_none());
    run_json(&mut saescope(&[
        "index",
        "--workspace",
        s(&ws),
        "--rebuild",
    ]));
}
