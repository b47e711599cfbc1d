//! Extraction split into tasks and merged, through the CLI on real CIFAR-10 images and the
//! CIFAR ViT, without a cluster (tasks run one after another here; tests/slurm.rs runs them
//! on a real Slurm). The merged workspace must equal one machine's byte for byte, and every
//! fault must be refused with an error naming it, losing no finished task's work.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)] // tests make fixtures and fail loudly

use saescope_core::shared::shared_path;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{run_json, subset};

const EXE: &str = env!("CARGO_BIN_EXE_saescope");

/// `saescope extract` on the CIFAR ViT's layer 3 into `ws`, in shards of 8 images.
fn extract(images: &Path, ws: &Path, layer: &str) -> Command {
    let mut c = Command::new(EXE);
    c.arg("extract")
        .arg("--model")
        .arg(shared_path("models/vit-cifar10/vit_cifar10.pth"))
        .arg("--model-config")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models/vit-cifar10.json"))
        .args(["--layer", layer, "--shard-images", "8", "--batch", "4"])
        .arg("--images")
        .arg(images)
        .arg("--workspace")
        .arg(ws)
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("JOB_COMPLETION_INDEX");
    c
}

fn failed(mut c: Command) -> (Value, String) {
    let out: Output = c.arg("--json").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let msg = v["error"].as_str().unwrap().to_string();
    (v, msg)
}

fn merge(ws: &Path) -> Command {
    let mut c = Command::new(EXE);
    c.arg("merge").arg("--workspace").arg(ws);
    c
}

/// Every file of `a/activations` (manifest and shards) equals `b`'s.
fn assert_same_store(a: &Path, b: &Path) {
    let files = |ws: &Path| -> Vec<PathBuf> {
        let mut f: Vec<PathBuf> = std::fs::read_dir(ws.join("activations"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .map(|p| PathBuf::from(p.file_name().unwrap()))
            .collect();
        f.sort();
        f
    };
    assert_eq!(files(a), files(b));
    assert!(files(a).len() > 5);
    for f in files(a) {
        let (x, y) = (
            std::fs::read(a.join("activations").join(&f)).unwrap(),
            std::fs::read(b.join("activations").join(&f)).unwrap(),
        );
        assert!(x == y, "{} differs", f.display());
    }
}

#[test]
fn split_extraction_merges_to_exactly_the_one_machine_store() {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    subset("data/cifar10/test", &["cat", "ship", "frog"], 25, &images);
    let one = tmp.path().join("one");
    run_json(&mut extract(&images, &one, "3"));

    // Three tasks (from flags, and one from a job array's environment), one killed after
    // writing a shard but before listing it, then resumed.
    let split = tmp.path().join("split");
    let r = run_json(extract(&images, &split, "3").args(["--task", "0", "--tasks", "3"]));
    assert_eq!(r["task"], serde_json::json!({"task": 0, "tasks": 3}));
    assert_eq!(r["complete"], true);
    let crashed = extract(&images, &split, "3")
        .args(["--task", "1", "--tasks", "3"])
        .env("SAESCOPE_CRASH_AFTER_SHARD", "4")
        .output()
        .unwrap();
    assert!(!crashed.status.success());
    // Merging now names the unfinished and the missing task; task 0's work is kept.
    let (_, e) = failed(merge(&split));
    assert!(
        e.contains("not finished: tasks 1") && e.contains("never ran: tasks [2]"),
        "{e}"
    );
    assert!(
        e.contains("--task") && e.contains("saescope submit --resume"),
        "{e}"
    );
    let r = run_json(extract(&images, &split, "3").args(["--task", "1", "--tasks", "3"]));
    assert_eq!(r["shards_reused"], 1, "{r}");
    let r = run_json(
        extract(&images, &split, "3")
            .env("SLURM_ARRAY_TASK_ID", "12")
            .env("SLURM_ARRAY_TASK_MIN", "10")
            .env("SLURM_ARRAY_TASK_COUNT", "3"),
    );
    assert_eq!(r["task"], serde_json::json!({"task": 2, "tasks": 3}));

    let status = run_json(
        Command::new(EXE)
            .args(["status", "--workspace"])
            .arg(&split),
    );
    let states: Vec<&str> = status["stages"][0]["states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["done", "done", "done"], "{status}");

    let m = run_json(&mut merge(&split));
    assert_eq!(m["activations"]["already_merged"], false);
    assert_same_store(&one, &split);
    // Merging again changes nothing.
    let again = run_json(&mut merge(&split));
    assert_eq!(again["activations"]["already_merged"], true);
    assert_same_store(&one, &split);
    // The merged store is a workspace like any other.
    let s = run_json(
        Command::new(EXE)
            .args(["summary", "--workspace"])
            .arg(&split),
    );
    assert_eq!(s["activations"]["shards"], 10, "{s}");
}

#[test]
fn split_extraction_refuses_foreign_tasks_twins_and_impossible_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    subset("data/cifar10/test", &["dog", "truck"], 12, &images);
    let ws = tmp.path().join("ws");
    for task in ["0", "1"] {
        run_json(extract(&images, &ws, "3").args(["--task", task, "--tasks", "2"]));
    }
    // A task of another layer, its file put among this workspace's tasks.
    let other = tmp.path().join("other");
    run_json(extract(&images, &other, "5").args(["--task", "1", "--tasks", "2"]));
    let ours = ws.join("activations/tasks/2-tasks/task-0001.json");
    let kept = std::fs::read(&ours).unwrap();
    std::fs::copy(
        other.join("activations/tasks/2-tasks/task-0001.json"),
        &ours,
    )
    .unwrap();
    let (_, e) = failed(merge(&ws));
    assert!(
        e.contains("tasks 1 (") && e.contains("layer 5") && e.contains("layer 3"),
        "{e}"
    );
    assert!(!ws.join("activations/manifest.json").exists());
    std::fs::write(&ours, kept).unwrap();
    run_json(&mut merge(&ws));

    // The same task twice at once: a live run's claim (this test process) refuses a second.
    let claim = ws.join("activations/tasks/2-tasks/task-0000.claim");
    let holder = serde_json::json!({
        "host": saescope_core::store::tasks::host_name(),
        "pid": std::process::id(),
        "started": 0,
        "what": "extract task 0 of 2",
    });
    std::fs::write(&claim, holder.to_string()).unwrap();
    let (_, e) = failed({
        let mut c = extract(&images, &ws, "3");
        c.args(["--task", "0", "--tasks", "2"]);
        c
    });
    assert!(
        e.contains("already running") && e.contains("extract task 0 of 2"),
        "{e}"
    );
    std::fs::remove_file(&claim).unwrap();

    for (args, want) in [
        (
            &["--task", "7", "--tasks", "4"][..],
            "--task 7 does not exist with --tasks 4",
        ),
        (
            &["--task", "0", "--tasks", "0"][..],
            "--tasks must be at least 1",
        ),
        (
            &["--tasks", "4"][..],
            "--tasks was given without a task number",
        ),
    ] {
        let (_, e) = failed({
            let mut c = extract(&images, &ws, "3");
            c.args(args);
            c
        });
        assert!(e.contains(want), "{args:?}: {e}");
    }
    let (_, e) = failed({
        let mut c = merge(&ws);
        c.args(["--tasks", "0"]);
        c
    });
    assert!(e.contains("--tasks must be at least 1"), "{e}");
}

/// A sweep is submitted as an array of groups, each `--group $SLURM_ARRAY_TASK_ID --groups N`,
/// with no merge job.
#[test]
fn submit_splits_a_sweep_into_groups() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    let r = run_json(
        Command::new(EXE)
            .args(["submit", "--tasks", "3", "--dry-run", "--"])
            .args([
                "sweep",
                "--d-sae",
                "64,128",
                "--arch",
                "topk,jumprelu",
                "--workspace",
            ])
            .arg(&ws),
    );
    let texts = r["script_texts"].as_array().unwrap();
    assert_eq!(texts.len(), 1, "{r}");
    let array = texts[0].as_str().unwrap();
    for want in [
        "#SBATCH --array=0,1,2",
        "sweep --d-sae '64,128' --arch 'topk,jumprelu'",
        "--group \"$SLURM_ARRAY_TASK_ID\" --groups 3",
    ] {
        assert!(array.contains(want), "missing {want}:\n{array}");
    }
}

#[test]
fn submit_writes_an_array_and_a_merge_that_waits_for_it() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("my ws");
    let r = run_json(
        Command::new(EXE)
            .args(["submit", "--tasks", "4", "--dry-run"])
            .args([
                "--sbatch=--partition=gpu",
                "--sbatch",
                "--time=1:00:00",
                "--",
            ])
            .args([
                "extract",
                "--model",
                "facebook/dinov2-small",
                "--layer",
                "9",
            ])
            .args(["--images", "/data/imagenet/train", "--workspace"])
            .arg(&ws),
    );
    let texts = r["script_texts"].as_array().unwrap();
    assert_eq!(texts.len(), 2, "{r}");
    let (array, merge) = (texts[0].as_str().unwrap(), texts[1].as_str().unwrap());
    for want in [
        "#SBATCH --array=0,1,2,3",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=1:00:00",
        "--task \"$SLURM_ARRAY_TASK_ID\" --tasks 4",
        "extract --model facebook/dinov2-small",
        "my ws'",
    ] {
        assert!(array.contains(want), "missing {want}:\n{array}");
    }
    assert!(
        merge.contains("merge --workspace") && merge.contains("--tasks 4"),
        "{merge}"
    );
    assert!(!merge.contains("--array"), "{merge}");
    // Nothing written on a dry run.
    assert!(!ws.exists());

    let single = run_json(
        Command::new(EXE)
            .args(["submit", "--dry-run", "--sbatch=--gres=gpu:1", "--"])
            .args(["train", "--d-sae", "1536", "--k", "32", "--workspace"])
            .arg(&ws),
    );
    let texts = single["script_texts"].as_array().unwrap();
    assert_eq!(texts.len(), 1);
    assert!(texts[0].as_str().unwrap().contains("#SBATCH --gres=gpu:1"));

    for (args, want) in [
        (
            &["--tasks", "4", "--", "train", "--workspace", "w"][..],
            "cannot be split",
        ),
        (
            &["--", "extract", "--workspace", "w"][..],
            "say how many with --tasks",
        ),
        (
            &["--tasks", "2", "--", "extract", "--layer", "3"][..],
            "without a workspace",
        ),
        (
            &[
                "--tasks",
                "2",
                "--",
                "extract",
                "--workspace",
                "w",
                "--task",
                "1",
            ][..],
            "submit instead",
        ),
    ] {
        let (_, e) = failed({
            let mut c = Command::new(EXE);
            c.arg("submit").arg("--dry-run").args(args);
            c
        });
        assert!(e.contains(want), "{args:?}: {e}");
    }
}

/// The files of an index that hold results (state and per-image top features), by name.
fn index_files(index: &Path) -> Vec<(String, Vec<u8>)> {
    let mut f: Vec<(String, Vec<u8>)> = std::fs::read_dir(index)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    f.sort();
    f
}

#[test]
fn split_index_merges_to_exactly_the_one_pass_index() {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    subset(
        "data/cifar10/test",
        &["cat", "ship", "frog", "horse"],
        20,
        &images,
    );
    let one = tmp.path().join("one");
    run_json(&mut extract(&images, &one, "3"));
    run_json(
        Command::new(EXE)
            .args([
                "train", "--d-sae", "128", "--k", "8", "--tokens", "60000", "--batch", "512",
            ])
            .arg("--workspace")
            .arg(&one),
    );
    // The same workspace and SAE, copied before either is indexed.
    let split = tmp.path().join("split");
    let cp = Command::new("cp")
        .arg("-a")
        .arg(&one)
        .arg(&split)
        .status()
        .unwrap();
    assert!(cp.success());
    let index = |ws: &Path, extra: &[&str]| {
        let mut c = Command::new(EXE);
        c.args(["index", "--top-n", "6", "--workspace"])
            .arg(ws)
            .args(extra);
        c
    };
    run_json(&mut index(&one, &[]));
    // Four tasks over 10 shards; task 3 killed after its first shard and resumed.
    for t in ["0", "1", "2"] {
        let r = run_json(&mut index(&split, &["--task", t, "--tasks", "4"]));
        assert_eq!(r["shards"], if t == "1" { 3 } else { 2 }, "{r}");
    }
    let killed = index(&split, &["--task", "3", "--tasks", "4"])
        .env("SAESCOPE_CRASH_AFTER_INDEX_SHARD", "8")
        .output()
        .unwrap();
    assert!(!killed.status.success());
    let (_, e) = failed(merge(&split));
    assert!(
        e.contains("index tasks") && e.contains("3 (failed, 1 of 3 shards)"),
        "{e}"
    );
    let r = run_json(&mut index(&split, &["--task", "3", "--tasks", "4"]));
    assert_eq!(r["resumed_at_shard"], 8, "{r}");

    let m = run_json(&mut merge(&split));
    assert_eq!(m["index"]["already_merged"], false, "{m}");
    let (a, b) = (
        index_files(&one.join("saes/topk-128-k8/index")),
        index_files(&split.join("saes/topk-128-k8/index")),
    );
    assert_eq!(a.len(), 11, "state + 10 per-shard files");
    let names = |f: &[(String, Vec<u8>)]| f.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&a), names(&b));
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(
            x == y,
            "{name} differs between the one-pass and the merged index"
        );
    }
    let again = run_json(&mut merge(&split));
    assert_eq!(again["index"]["already_merged"], true, "{again}");
    // The merged index serves the analyses like any other.
    let s = run_json(Command::new(EXE).args(["saes", "--workspace"]).arg(&split));
    assert_eq!(s["saes"][0]["index"], true, "{s}");
}

#[test]
fn split_ood_merges_to_exactly_the_one_machine_results() {
    let tmp = tempfile::tempdir().unwrap();
    let (fit, id, ood) = (
        tmp.path().join("fit"),
        tmp.path().join("id"),
        tmp.path().join("ood"),
    );
    subset("data/cifar10/train", &["cat", "ship", "frog"], 20, &fit);
    subset("data/cifar10/test", &["cat", "ship", "frog"], 10, &id);
    subset("data/mnist/test", &["1", "7"], 15, &ood);
    let one = tmp.path().join("one");
    run_json(&mut extract(&id, &one, "3"));
    run_json(
        Command::new(EXE)
            .args([
                "train", "--d-sae", "64", "--k", "8", "--tokens", "20000", "--batch", "256",
            ])
            .arg("--workspace")
            .arg(&one),
    );
    let split = tmp.path().join("split");
    assert!(
        Command::new("cp")
            .arg("-a")
            .arg(&one)
            .arg(&split)
            .status()
            .unwrap()
            .success()
    );
    let ood_cmd = |ws: &Path, extra: &[&str]| {
        let mut c = Command::new(EXE);
        c.args(["ood", "--batch", "8", "--workspace"])
            .arg(ws)
            .arg("--fit")
            .arg(&fit)
            .arg("--id")
            .arg(&id)
            .arg("--ood")
            .arg(&ood)
            .args(extra);
        c
    };
    run_json(&mut ood_cmd(&one, &[]));
    for t in ["0", "1", "2"] {
        let r = run_json(&mut ood_cmd(&split, &["--task", t, "--tasks", "3"]));
        assert_eq!(r["folders"], 3, "{r}");
    }
    // A task run again finds its work done.
    let r = run_json(&mut ood_cmd(&split, &["--task", "1", "--tasks", "3"]));
    assert_eq!(
        (r["resumed_at_folder"].as_u64(), r["images"].as_u64()),
        (Some(3), Some(0))
    );
    let m = run_json(&mut merge(&split));
    assert_eq!(m["ood"]["already_merged"], false, "{m}");
    let results = |ws: &Path| std::fs::read(ws.join("saes/topk-64-k8/ood/results.json")).unwrap();
    assert!(
        results(&one) == results(&split),
        "the merged OOD results differ from one machine's"
    );
    let again = run_json(&mut merge(&split));
    assert_eq!(again["ood"]["already_merged"], true, "{again}");
    // A missing task is named.
    let lone = tmp.path().join("lone");
    assert!(
        Command::new("cp")
            .arg("-a")
            .arg(&one)
            .arg(&lone)
            .status()
            .unwrap()
            .success()
    );
    run_json(&mut ood_cmd(&lone, &["--task", "0", "--tasks", "2"]));
    let (_, e) = failed({
        let mut c = merge(&lone);
        c.args(["--stage", "ood"]);
        c
    });
    assert!(e.contains("2 OOD tasks; never ran: [1]"), "{e}");
}
