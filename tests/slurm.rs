//! On a real Slurm cluster (the single-node one `scripts/slurm-cluster.sh start` runs, which
//! the test command starts): `saescope submit` runs extraction as a 4-task job array plus a
//! merge job, and the merged workspace equals one machine's byte for byte; a task cancelled
//! mid-run with `scancel` is finished by `submit --resume`, and the result is still equal.
//!
//! Without `sbatch` on PATH the test says so and passes, unless SAESCOPE_SLURM_TESTS=1 (set by
//! the test command after starting the cluster), where a missing cluster fails it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)] // tests make fixtures and fail loudly

use saescope_core::shared::shared_path;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::{run_json, subset};

const EXE: &str = env!("CARGO_BIN_EXE_saescope");

fn slurm_available() -> bool {
    let found = Command::new("sinfo")
        .arg("-h")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found && std::env::var("SAESCOPE_SLURM_TESTS").is_ok_and(|v| v == "1") {
        panic!(
            "SAESCOPE_SLURM_TESTS=1 but no Slurm cluster answers: run scripts/slurm-cluster.sh start"
        );
    }
    if !found {
        eprintln!("no Slurm cluster here (sinfo): the cluster test did not run");
    }
    found
}

fn extract_args(images: &Path, ws: &Path) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "extract".into(),
        "--model".into(),
        shared_path("models/vit-cifar10/vit_cifar10.pth")
            .display()
            .to_string(),
        "--model-config".into(),
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("assets/models/vit-cifar10.json")
            .display()
            .to_string(),
        "--layer".into(),
        "3".into(),
        "--shard-images".into(),
        "16".into(),
        "--batch".into(),
        "8".into(),
        "--images".into(),
        images.display().to_string(),
    ];
    a.extend(["--workspace".into(), ws.display().to_string()]);
    a
}

/// Slurm's state of job `id` (any of its array tasks), or None once it left the queue.
fn queued(id: &str) -> Option<String> {
    let out = Command::new("squeue")
        .args(["-h", "-o", "%T %r", "-j", id])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// The job ids `saescope submit` printed.
fn jobs_of(r: &Value) -> Vec<String> {
    r["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j.as_str().unwrap().to_string())
        .collect()
}

/// Waits (up to 5 minutes) until every job has left the queue.
fn wait_for_jobs(what: &str, jobs: &[String]) {
    wait_until(what, Duration::from_secs(300), || {
        jobs.iter().all(|j| queued(j).is_none())
    });
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn same_store(a: &Path, b: &Path) {
    let manifest = |ws: &Path| std::fs::read(ws.join("activations/manifest.json")).unwrap();
    assert!(manifest(a) == manifest(b), "manifests differ");
    let m: Value = serde_json::from_slice(&manifest(a)).unwrap();
    let shards = m["shards"].as_array().unwrap();
    assert!(shards.len() >= 8);
    for s in shards {
        let f = s["file"].as_str().unwrap();
        let (x, y) = (
            std::fs::read(a.join("activations").join(f)).unwrap(),
            std::fs::read(b.join("activations").join(f)).unwrap(),
        );
        assert!(x == y, "{f} differs");
    }
}

#[test]
fn extraction_as_a_slurm_array_merges_to_one_machines_store_even_after_scancel() {
    if !slurm_available() {
        return;
    }
    // Under the target folder, which every node of this one-node cluster sees.
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let images = tmp.path().join("images");
    subset(
        "data/cifar10/train",
        &["airplane", "cat", "dog", "ship", "truck"],
        40,
        &images,
    );
    let one = tmp.path().join("one");
    let mut c = Command::new(EXE);
    c.args(extract_args(&images, &one));
    run_json(&mut c);

    // The array and its merge.
    let ws = tmp.path().join("array");
    let r = run_json(
        Command::new(EXE)
            .args(["submit", "--tasks", "4", "--"])
            .args(extract_args(&images, &ws)),
    );
    let jobs = jobs_of(&r);
    assert_eq!(jobs.len(), 2, "{r}");
    wait_for_jobs("the array and its merge", &jobs);
    let log = std::fs::read_to_string(ws.join(format!("slurm/merge-{}.out", jobs[1])))
        .unwrap_or_default();
    assert!(log.contains("4 tasks → 13 shards"), "merge log: {log}");
    same_store(&one, &ws);

    // The index as an array too: the same SAE (trained once, copied), indexed in one pass
    // here and as 4 tasks plus a merge on the cluster, gives the same files.
    run_json(
        Command::new(EXE)
            .args([
                "train", "--d-sae", "128", "--k", "8", "--tokens", "60000", "--batch", "512",
            ])
            .arg("--workspace")
            .arg(&one),
    );
    let cp = Command::new("cp")
        .arg("-a")
        .arg(one.join("saes"))
        .arg(&ws)
        .status()
        .unwrap();
    assert!(cp.success());
    run_json(
        Command::new(EXE)
            .args(["index", "--top-n", "6", "--workspace"])
            .arg(&one),
    );
    let r = run_json(
        Command::new(EXE)
            .args([
                "submit",
                "--tasks",
                "4",
                "--",
                "index",
                "--top-n",
                "6",
                "--workspace",
            ])
            .arg(&ws),
    );
    let jobs = jobs_of(&r);
    wait_for_jobs("the index array and its merge", &jobs);
    let files = |ws: &Path| -> Vec<(String, Vec<u8>)> {
        let dir = ws.join("saes/topk-128-k8/index");
        let mut f: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&p).unwrap(),
                )
            })
            .collect();
        f.sort();
        f
    };
    let (a, b) = (files(&one), files(&ws));
    assert_eq!(a.len(), 14, "state + 13 per-shard files");
    assert!(a == b, "the merged index differs from the one-pass index");

    // OOD scoring as an array too: fit on the extracted images, score them against MNIST.
    let mnist = tmp.path().join("mnist");
    subset("data/mnist/test", &["0", "1", "2", "3"], 10, &mnist);
    let ood_args = |ws: &Path| -> Vec<String> {
        let p = |x: &Path| x.display().to_string();
        [
            "ood",
            "--batch",
            "16",
            "--fit",
            &p(&images),
            "--id",
            &p(&images),
            "--ood",
            &p(&mnist),
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(["--workspace".to_string(), p(ws)])
        .collect()
    };
    run_json(Command::new(EXE).args(ood_args(&one)));
    let r = run_json(
        Command::new(EXE)
            .args(["submit", "--tasks", "4", "--"])
            .args(ood_args(&ws)),
    );
    let jobs = jobs_of(&r);
    wait_for_jobs("the OOD array and its merge", &jobs);
    let results = |ws: &Path| std::fs::read(ws.join("saes/topk-128-k8/ood/results.json")).ok();
    assert!(results(&one).is_some());
    assert!(
        results(&one) == results(&ws),
        "the merged OOD results differ from one machine's"
    );

    // Task 2 pauses after its first shard; it is cancelled there. The merge then can never
    // run (afterok): cancel it too, and let `submit --resume` finish the job.
    let ws = tmp.path().join("cancelled");
    let r = run_json(
        Command::new(EXE)
            .args(["submit", "--tasks", "4"])
            .arg("--sbatch=--export=ALL,SAESCOPE_PAUSE_AFTER_SHARD=6")
            .arg("--")
            .args(extract_args(&images, &ws)),
    );
    let array = r["jobs"][0].as_str().unwrap().to_string();
    let merge = r["jobs"][1].as_str().unwrap().to_string();
    let task2 = ws.join("activations/tasks/4-tasks/task-0002.json");
    wait_until("task 2's first shard", Duration::from_secs(300), || {
        std::fs::read(&task2)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .is_some_and(|m| {
                m["manifest"]["shards"]
                    .as_array()
                    .is_some_and(|s| !s.is_empty())
            })
    });
    let status = Command::new("scancel")
        .arg(format!("{array}_2"))
        .status()
        .unwrap();
    assert!(status.success());
    wait_until("the other tasks", Duration::from_secs(300), || {
        queued(&array).is_none()
    });
    let st = run_json(Command::new(EXE).args(["status", "--workspace"]).arg(&ws));
    let states: Vec<&str> = st["stages"][0]["states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["done", "done", "failed", "done"], "{st}");
    assert!(
        queued(&merge).is_some_and(|s| s.contains("Dependency")),
        "merge job: {:?}",
        queued(&merge)
    );
    Command::new("scancel").arg(&merge).status().unwrap();
    let r = run_json(
        Command::new(EXE)
            .args(["submit", "--tasks", "4", "--resume", "--"])
            .args(extract_args(&images, &ws)),
    );
    assert_eq!(r["tasks"], serde_json::json!([2]), "{r}");
    let jobs = jobs_of(&r);
    wait_for_jobs("the resumed task and the merge", &jobs);
    same_store(&one, &ws);
}
