//! Feature analysis end to end on real CIFAR-10 ViT activations through the CLI: index (killed
//! mid-build and resumed), labels (a crash mid-write never corrupts them), export → import
//! round trip, heatmaps for an image outside the dataset, OOD against MNIST, ontology tree.
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

#[test]
fn index_labels_export_heatmap_ood_and_tree_on_vit_cifar10() {
    let tmp = tempfile::tempdir().unwrap();
    let classes = [
        "airplane",
        "automobile",
        "cat",
        "dog",
        "ship",
        "truck",
        "frog",
        "horse",
    ];
    let train = tmp.path().join("train");
    subset("data/cifar10/train", &classes, 30, &train);
    let test = tmp.path().join("test");
    subset("data/cifar10/test", &classes, 15, &test);
    let mnist = tmp.path().join("mnist");
    subset("data/mnist/test", &["0", "1", "2", "3", "7"], 24, &mnist);
    let ws = tmp.path().join("ws");
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/models/vit-cifar10.json");
    run_json(
        Command::new(EXE)
            .args(["extract", "--layer", "3", "--shard-images", "64", "--model"])
            .arg(shared_path("models/vit-cifar10/vit_cifar10.pth"))
            .arg("--model-config")
            .arg(&config)
            .arg("--images")
            .arg(&train)
            .arg("--workspace")
            .arg(&ws),
    );
    run_json(&mut cmd(
        &[
            "train", "--d-sae", "256", "--k", "8", "--tokens", "200000", "--batch", "1024",
        ],
        &ws,
    ));
    // The SAE and everything computed from it live in its own folder.
    let home = ws.join("saes/topk-256-k8");

    // Index: killed after 2 of 4 shards, then resumed; the result equals a clean rebuild.
    let crashed = cmd(&["index", "--top-n", "16", "--json"], &ws)
        .env("SAESCOPE_CRASH_AFTER_INDEX_SHARD", "2")
        .output()
        .unwrap();
    assert!(!crashed.status.success());
    let r = run_json(&mut cmd(&["index", "--top-n", "16"], &ws));
    assert_eq!(r["resumed_at_shard"], 2, "{r}");
    assert_eq!(r["images"], 240);
    assert_eq!(r["tokens"], 240 * 65);
    let resumed = std::fs::read(home.join("index/state-00003.safetensors")).unwrap();
    let r2 = run_json(&mut cmd(&["index", "--top-n", "16", "--rebuild"], &ws));
    assert_eq!(r2["resumed_at_shard"], 0);
    let rebuilt = std::fs::read(home.join("index/state-00003.safetensors")).unwrap();
    assert!(
        resumed == rebuilt,
        "resumed index differs from a clean build"
    );

    // Labels from classes; a manual label; a crash halfway through writing labels.json leaves
    // the previous file whole.
    let l = run_json(&mut cmd(
        &["label", "--from-classes", "--set", "7=test label"],
        &ws,
    ));
    // Only significantly class-specific features get a class: beyond chance and beyond every
    // random direction of the layer (3 of 256 here; every feature that fired, over 100, got one
    // before significance, 34 with the binomial test alone); each says its evidence.
    let labelled = l["from_classes"].as_u64().unwrap();
    assert!((1..=16).contains(&labelled), "{l}");
    let null: Value =
        serde_json::from_slice(&std::fs::read(ws.join("label-null-16.json")).unwrap()).unwrap();
    let null_min = null["best_p"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap())
        .fold(1.0, f64::min);
    assert_eq!(null["best_p"].as_array().unwrap().len(), 256);
    let before = std::fs::read(home.join("labels.json")).unwrap();
    let all: Value = serde_json::from_slice(&before).unwrap();
    for (_, label) in all["labels"].as_object().unwrap() {
        if label["source"] == "class" {
            let e = &label["evidence"];
            assert!(
                e["p_value"].as_f64().unwrap() <= e["threshold"].as_f64().unwrap(),
                "{label}"
            );
            assert!(
                e["k"].as_u64().unwrap() >= 5 && e["n"].as_u64().unwrap() >= 10,
                "{label}"
            );
            assert_eq!(e["null_p"].as_f64(), Some(null_min), "{label}");
            assert!(e["p_value"].as_f64().unwrap() < null_min, "{label}");
        }
    }
    let crashed = cmd(&["label", "--set", "7=never written", "--json"], &ws)
        .env("SAESCOPE_CRASH_MID_WRITE", "labels.json")
        .output()
        .unwrap();
    assert!(!crashed.status.success());
    assert_eq!(std::fs::read(home.join("labels.json")).unwrap(), before);
    let labels: Value = serde_json::from_slice(&before).unwrap();
    assert_eq!(labels["labels"]["7"]["text"], "test label");
    assert_eq!(labels["labels"]["7"]["source"], "manual");

    // Twenty concurrent label edits all survive (each waits for the workspace's writer lock),
    // and a writer that finds the workspace busy is told who holds it.
    let editors: Vec<_> = (200..220)
        .map(|f| {
            cmd(
                &["label", "--set", &format!("{f}=concurrent {f}"), "--json"],
                &ws,
            )
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
        })
        .collect();
    for mut e in editors {
        assert!(e.wait().unwrap().success());
    }
    let edited: Value =
        serde_json::from_slice(&std::fs::read(home.join("labels.json")).unwrap()).unwrap();
    for f in 200..220 {
        assert_eq!(
            edited["labels"][f.to_string()]["text"],
            format!("concurrent {f}")
        );
    }
    // Put the labels back as they were for the export checks below.
    std::fs::write(home.join("labels.json"), &before).unwrap();
    for (args, says) in [
        (&["index", "--top-n", "0"][..], "--top-n must be at least 1"),
        (&["index", "--top-n", "100000000"][..], "lower --top-n"),
    ] {
        let out = cmd(args, &ws).arg("--json").output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            !out.status.success() && stdout.contains(says),
            "{args:?}: {stdout}"
        );
    }
    {
        let _held = saescope_core::store::lock::lock_writer(&ws, "held by the test", None).unwrap();
        for args in [
            &["train", "--d-sae", "64"][..],
            &["index"][..],
            &["tree"][..],
        ] {
            let out = cmd(args, &ws).arg("--json").output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                !out.status.success(),
                "{args:?} ran while the workspace was locked"
            );
            assert!(
                stdout.contains("workspace busy") && stdout.contains("held by the test"),
                "{args:?}: {stdout}"
            );
        }
        // Export only reads the workspace's own SAE: it runs while another process writes.
        let out = cmd(&["export"], &ws)
            .arg("--out")
            .arg(tmp.path().join("export-while-busy"))
            .arg("--json")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    // Export → import into a copy without labels → identical labels; export again → same JSON.
    let out = tmp.path().join("export");
    let e = run_json(cmd(&["export", "--out"], &ws).arg(&out));
    assert!(e["pngs"].as_u64().unwrap() > 100);
    let exported: Value =
        serde_json::from_slice(&std::fs::read(out.join("features.json")).unwrap()).unwrap();
    assert_eq!(exported["format"], "saescope-features");
    // The first labelled feature (most features have no class label: none is significant).
    let f0 = exported["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["label"].is_object())
        .unwrap();
    assert!(f0["top_examples"][0]["patch_box"].is_array() || f0["top_examples"][0]["token"] == 0);
    assert!(out.join(f0["png"].as_str().unwrap()).is_file());
    // Each PNG says which feature it shows and its label, in its text chunks.
    let reader = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(out.join(f0["png"].as_str().unwrap())).unwrap(),
    ))
    .read_info()
    .unwrap();
    let text: std::collections::HashMap<String, String> = reader
        .info()
        .utf8_text
        .iter()
        .map(|c| (c.keyword.clone(), c.get_text().unwrap()))
        .collect();
    assert_eq!(text["saescope:feature"], f0["id"].to_string());
    assert_eq!(
        text["saescope:label"],
        f0["label"]["text"].as_str().unwrap()
    );
    assert!(text["Title"].starts_with(&format!("saescope feature {}: ", f0["id"])));
    std::fs::rename(
        home.join("labels.json"),
        tmp.path().join("labels.orig.json"),
    )
    .unwrap();
    let i = run_json(cmd(&["import-labels", "--from"], &ws).arg(&out));
    assert_eq!(
        i["imported"].as_u64(),
        labels["labels"].as_object().map(|m| m.len() as u64)
    );
    let back: Value =
        serde_json::from_slice(&std::fs::read(home.join("labels.json")).unwrap()).unwrap();
    assert_eq!(back, labels, "labels changed through export → import");
    let out2 = tmp.path().join("export2");
    // D15: a killed export's temporary file (its process gone) is removed by the next export.
    std::fs::create_dir_all(out2.join("png")).unwrap();
    let stale = out2.join("png").join(format!(
        ".feature-3.png.tmp-4194000-{}",
        saescope_core::fsutil::host_name()
    ));
    std::fs::write(&stale, b"half a png").unwrap();
    run_json(cmd(&["export", "--no-png", "--out"], &ws).arg(&out2));
    assert!(!stale.exists(), "the stale temporary file stayed");
    let mut again: Value =
        serde_json::from_slice(&std::fs::read(out2.join("features.json")).unwrap()).unwrap();
    let mut first = exported.clone();
    for v in [&mut again, &mut first] {
        for f in v["features"].as_array_mut().unwrap() {
            f["png"] = Value::Null;
        }
    }
    assert_eq!(again, first);
    // Export limited to significant labels: exactly the class labels, each with its evidence
    // in the CSV.
    let out3 = tmp.path().join("export3");
    let e3 = run_json(cmd(&["export", "--no-png", "--significant", "--out"], &ws).arg(&out3));
    assert_eq!(e3["features"].as_u64(), Some(labelled), "{e3}");
    let csv = std::fs::read_to_string(out3.join("features.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    for row in csv.lines().skip(1) {
        let cells: Vec<&str> = row.split(',').collect();
        assert_eq!(cells[col("source")], "class", "{row}");
        assert_eq!(cells[col("significant")], "true", "{row}");
        let p: f64 = cells[col("label_p")].parse().unwrap();
        let null_p: f64 = cells[col("label_null_p")].parse().unwrap();
        assert!(p < null_p, "{row}");
    }
    // D6: a manual label in the workspace is never replaced by an import, even by the
    // export's own manual label for that feature.
    run_json(&mut cmd(&["label", "--set", "5=exported by hand"], &ws));
    let out4 = tmp.path().join("export4");
    run_json(cmd(&["export", "--no-png", "--labelled", "--out"], &ws).arg(&out4));
    run_json(&mut cmd(
        &["label", "--set", "5=changed by hand since"],
        &ws,
    ));
    let i = run_json(cmd(&["import-labels", "--from"], &ws).arg(&out4));
    assert!(i["kept_manual"].as_u64().unwrap() >= 1, "{i}");
    let back: Value =
        serde_json::from_slice(&std::fs::read(home.join("labels.json")).unwrap()).unwrap();
    assert_eq!(
        back["labels"]["5"]["text"], "changed by hand since",
        "{back}"
    );
    // D10: an export whose label claims a confidence of 1e308 is refused, naming it.
    let mut doctored: Value =
        serde_json::from_slice(&std::fs::read(out4.join("features.json")).unwrap()).unwrap();
    let first = doctored["features"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|f| f["label"].is_object())
        .unwrap();
    first["label"]["confidence"] = serde_json::json!(1e308);
    std::fs::write(out4.join("features.json"), doctored.to_string()).unwrap();
    let out = cmd(&["import-labels", "--json", "--from"], &ws)
        .arg(&out4)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("has confidence") && said.contains("between 0 and 1"),
        "{said}"
    );
    // Export counts its progress in features (the app's job line shows it; it read "0/0").
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let job = saescope_ops::job::Job::new(Default::default(), move |p| {
        record.lock().unwrap().push((p.done, p.total, p.unit));
    });
    let r = saescope_ops::share::export(
        &saescope_ops::share::ExportRequest {
            workspace: ws.clone(),
            sae: None,
            selection: saescope_ops::analysis::export::Selection::Alive,
            out: tmp.path().join("export3"),
            pngs: false,
        },
        &job,
    )
    .unwrap();
    let seen = seen.lock().unwrap();
    let n = r.features as u64;
    assert!(
        n > 100 && seen.len() as u64 == n,
        "{} reports for {n} features",
        seen.len()
    );
    assert!(
        seen.iter()
            .all(|&(_, total, unit)| total == n && unit == "features")
    );
    assert_eq!(seen.iter().map(|s| s.0).max(), Some(n));

    // Heatmap of the strongest feature of an image outside the dataset (an MNIST digit).
    let digit = shared_path("data/mnist/test/3").join("00528.png");
    let h = run_json(
        cmd(&["heatmap", "--features", "0-3", "--out"], &ws)
            .arg(tmp.path().join("hm"))
            .arg("--image")
            .arg(&digit),
    );
    let maps = h["heatmaps"].as_array().unwrap();
    assert_eq!(maps.len(), 4);
    assert_eq!(maps[0]["values"].as_array().unwrap().len(), 64);
    assert!(tmp.path().join("hm/heatmap-0.png").is_file());

    // OOD: CIFAR test vs MNIST; the best SAE method separates them well even at this size.
    let o = run_json(
        cmd(&["ood", "--fit"], &ws)
            .arg(&train)
            .arg("--id")
            .arg(&test)
            .arg("--ood")
            .arg(&mnist),
    );
    let table = o["table"].as_array().unwrap();
    assert_eq!(table.len(), 6, "{o}");
    assert!(o["best_sae_auroc"].as_f64().unwrap() > 0.9, "{o}");
    assert!(
        !o["most_unusual"][0]["features"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(home.join("ood/results.json").is_file());
    // The ridges came from the fit folder alone.
    assert_eq!(o["ridges_chosen_on_held_out_fit"], true, "{o}");

    // Linear probe on the pooled output, clean and with layer 3 replaced by the SAE's
    // reconstruction. The fit images are the workspace's own, so their layer-3 activations are
    // read from its store; the eval images are computed.
    let probe = |first: &[&str]| {
        let mut c = cmd(first, &ws);
        c.arg("--model")
            .arg(shared_path("models/vit-cifar10/vit_cifar10.pth"))
            .arg("--model-config")
            .arg(&config)
            .arg("--fit")
            .arg(&train)
            .arg("--eval")
            .arg(&test);
        run_json(&mut c)
    };
    let p = probe(&["probe", "--spliced"]);
    assert_eq!(p["n_fit"], 240, "{p}");
    assert_eq!(p["n_eval"], 120, "{p}");
    assert_eq!(p["images_read_from_store"], 240, "{p}");
    let clean = p["clean"]["accuracy"].as_f64().unwrap();
    let spliced = p["spliced"]["accuracy"].as_f64().unwrap();
    // 8 classes (chance 0.125); 30 training images per class.
    assert!(clean > 0.4 && spliced > 0.3, "{p}");
    assert_eq!(p["clean"]["l2_search"].as_array().unwrap().len(), 6, "{p}");

    // Ontology with WordNet: both class trees are scored and split vehicles from animals.
    let t = run_json(
        cmd(&["tree", "--taxonomy"], &ws)
            .arg(shared_path("data/wordnet/cifar10-graph-wordnet.json"))
            .arg("--class-ids")
            .arg(write_wnids(tmp.path(), &classes)),
    );
    for which in ["class_tree_sae", "class_tree_raw"] {
        let c = &t[which];
        assert!(
            c["cophenetic_correlation"].as_f64().unwrap().is_finite(),
            "{t}"
        );
        assert!(c["top_split_purity"].as_f64().unwrap() >= 0.5, "{t}");
    }
    assert_eq!(
        t["features_in_tree"].as_u64(),
        Some(256 - r2["dead_features"].as_u64().unwrap())
    );

    // A second SAE goes beside the first (and becomes the active one); labels stay with their
    // own SAE, and either can be chosen by name.
    let first_labels = std::fs::read(home.join("labels.json")).unwrap();
    let second = run_json(&mut cmd(
        &[
            "train", "--d-sae", "64", "--k", "4", "--tokens", "50000", "--batch", "1024",
        ],
        &ws,
    ));
    assert_eq!(second["name"], "topk-64-k4");
    run_json(&mut cmd(&["label", "--set", "3=second SAE's label"], &ws));
    assert_eq!(
        std::fs::read(home.join("labels.json")).unwrap(),
        first_labels
    );
    let l2: Value =
        serde_json::from_slice(&std::fs::read(ws.join("saes/topk-64-k4/labels.json")).unwrap())
            .unwrap();
    assert_eq!(l2["labels"]["3"]["text"], "second SAE's label");
    assert_eq!(l2["labels"].as_object().unwrap().len(), 1);
    let list = run_json(&mut cmd(&["saes"], &ws));
    let names: Vec<(&str, bool)> = list["saes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["active"].as_bool().unwrap()))
        .collect();
    assert_eq!(names, [("topk-256-k8", false), ("topk-64-k4", true)]);
    // The spliced probe of a named SAE rather than the active one: the first SAE's figure again.
    let named = probe(&["probe", "--spliced", "--sae", "topk-256-k8"]);
    assert_eq!(
        named["spliced"]["accuracy"].as_f64(),
        Some(spliced),
        "{named}"
    );
    // The same SAE loaded from elsewhere (its SAELens files alone, no training report): once
    // indexed, its FVE, L0 and dead share are measured on this workspace's stored rows, and
    // match the figures its training run reported.
    let outside = tmp.path().join("outside-sae");
    std::fs::create_dir_all(&outside).unwrap();
    for f in ["cfg.json", "sae_weights.safetensors"] {
        std::fs::copy(ws.join("saes/topk-64-k4").join(f), outside.join(f)).unwrap();
    }
    run_json(cmd(&["index", "--sae"], &ws).arg(&outside));
    let list = run_json(&mut cmd(&["saes"], &ws));
    let of = |name: &str| {
        list["saes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in {list}"))
            .clone()
    };
    let loaded = of("outside-sae");
    let trained = of("topk-64-k4");
    assert!(
        loaded["figures_from"]
            .as_str()
            .is_some_and(|f| f.ends_with("stored rows of this workspace")),
        "{loaded}"
    );
    assert_eq!(trained["figures_from"], "training run");
    let (a, b) = (
        loaded["final_fve"].as_f64().unwrap(),
        trained["final_fve"].as_f64().unwrap(),
    );
    assert!((a - b).abs() < 0.1, "measured FVE {a} vs trained {b}");
    assert!(
        loaded["final_l0"].as_f64().unwrap() <= 4.0 + 1e-9,
        "{loaded}"
    );
    assert!(loaded["dead_fraction"].as_f64().is_some(), "{loaded}");
    run_json(&mut cmd(&["use-sae", "topk-64-k4"], &ws));
    run_json(&mut cmd(
        &["label", "--sae", "topk-256-k8", "--set", "5=by name"],
        &ws,
    ));
    run_json(&mut cmd(&["use-sae", "topk-256-k8"], &ws));
    let l1: Value =
        serde_json::from_slice(&std::fs::read(home.join("labels.json")).unwrap()).unwrap();
    assert_eq!(l1["labels"]["5"]["text"], "by name");
    let bad = cmd(&["label", "--sae", "nope", "--set", "1=x", "--json"], &ws)
        .output()
        .unwrap();
    let says = String::from_utf8_lossy(&bad.stdout);
    assert!(
        !bad.status.success()
            && says.contains("no SAE called `nope`")
            && says.contains("topk-64-k4"),
        "{says}"
    );

    // A workspace from before SAEs were versioned (WS/sae, analyses at the top) is moved to
    // WS/saes/<name>/ on first open, with its index and labels, and works as before.
    let legacy = tmp.path().join("legacy");
    std::fs::create_dir_all(&legacy).unwrap();
    for f in ["workspace.json", "dataset.json"] {
        std::fs::copy(ws.join(f), legacy.join(f)).unwrap();
    }
    std::os::unix::fs::symlink(ws.join("activations"), legacy.join("activations")).unwrap();
    let old = legacy.join("sae");
    std::fs::create_dir_all(&old).unwrap();
    // Legacy SAEs had a training log but no train.json.
    for f in ["cfg.json", "sae_weights.safetensors", "metrics.jsonl"] {
        std::fs::copy(home.join(f), old.join(f)).unwrap();
    }
    std::fs::copy(home.join("labels.json"), legacy.join("labels.json")).unwrap();
    std::fs::create_dir_all(legacy.join("index")).unwrap();
    for e in std::fs::read_dir(home.join("index")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), legacy.join("index").join(e.file_name())).unwrap();
    }
    std::fs::write(legacy.join(".labels.json.tmp-999999999"), "torn").unwrap();
    let list = run_json(&mut cmd(&["saes"], &legacy));
    assert_eq!(list["saes"][0]["name"], "topk-256-k8", "{list}");
    assert_eq!(list["saes"][0]["index"], true, "{list}");
    // Its figures come from the training log's last line.
    let log = std::fs::read_to_string(home.join("metrics.jsonl")).unwrap();
    let last: Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(list["saes"][0]["final_fve"], last["fve"], "{list}");
    assert_eq!(list["saes"][0]["tokens"], last["tokens"], "{list}");
    assert!(!legacy.join("sae").exists() && !legacy.join("labels.json").exists());
    assert!(
        !legacy.join(".labels.json.tmp-999999999").exists(),
        "crash leftover kept"
    );
    let moved: Value = serde_json::from_slice(
        &std::fs::read(legacy.join("saes/topk-256-k8/labels.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(moved, l1);
    run_json(cmd(&["export", "--no-png", "--out"], &legacy).arg(tmp.path().join("e3")));

    // Interventions on a ship image: a clamp to 0 of a feature that is off on every token
    // changes nothing, bit for bit (the rest of the model is run and compared); ablating its
    // strongest feature moves the output.
    let ship = std::fs::read_dir(test.join("ship"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let maps = run_json(cmd(&["heatmap", "--features", "0-255", "--image"], &ws).arg(&ship));
    let peak = |m: &Value| {
        m["values"]
            .as_array()
            .unwrap()
            .iter()
            .chain(std::iter::once(&m["cls"]))
            .filter_map(Value::as_f64)
            .fold(0.0f64, f64::max)
    };
    let maps = maps["heatmaps"].as_array().unwrap();
    let off = maps.iter().find(|m| peak(m) == 0.0).unwrap()["feature"].clone();
    let strongest = maps
        .iter()
        .max_by(|a, b| peak(a).total_cmp(&peak(b)))
        .unwrap()["feature"]
        .clone();
    let iv = |features: &Value, extra: &[&str]| {
        run_json(
            cmd(&["intervene", "--image"], &ws)
                .arg(&ship)
                .arg("--features")
                .arg(features.to_string())
                .args(extra),
        )
    };
    let same = iv(&off, &["--mode", "clamp", "--value", "0"]);
    assert_eq!(same["codes_changed"], 0, "{same}");
    assert_eq!(same["identical"], true, "{same}");
    assert_eq!(same["pooled_cosine"], 1.0);
    let moved = iv(&strongest, &[]);
    assert!(moved["codes_changed"].as_u64().unwrap() > 0, "{moved}");
    assert_eq!(moved["identical"], false);
    let probs: f64 = moved["class_probs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["edited"].as_f64().unwrap())
        .sum();
    assert!((probs - 1.0).abs() < 1e-4, "{probs}");

    // Causal effects of the top-lift ship features over the workspace's ship images, beside
    // random features of matching frequency (never the measured ones), saved beside the SAE.
    let fx = run_json(&mut cmd(
        &[
            "intervene",
            "--class",
            "ship",
            "--top-lift",
            "3",
            "--random",
            "4",
            "--min-images",
            "5",
        ],
        &ws,
    ));
    let effects = fx["effects"].as_array().unwrap();
    assert_eq!(effects.len(), 3, "{fx}");
    assert_eq!(fx["images"], 30);
    let measured: Vec<u64> = effects
        .iter()
        .map(|e| e["feature"].as_u64().unwrap())
        .collect();
    for e in effects {
        let random = e["random"].as_array().unwrap();
        assert_eq!(random.len(), 4);
        assert!(
            random
                .iter()
                .all(|r| !measured.contains(&r["feature"].as_u64().unwrap()))
        );
        assert!(e["lift"].as_f64().unwrap() > 1.0, "{e}");
    }
    let saved: Vec<Value> =
        serde_json::from_slice(&std::fs::read(home.join("effects.json")).unwrap()).unwrap();
    assert_eq!(saved.len(), 3);
    // Re-measuring one feature replaces its entry instead of adding a second.
    run_json(
        cmd(
            &[
                "intervene",
                "--class",
                "ship",
                "--random",
                "2",
                "--features",
            ],
            &ws,
        )
        .arg(measured[0].to_string()),
    );
    let saved: Vec<Value> =
        serde_json::from_slice(&std::fs::read(home.join("effects.json")).unwrap()).unwrap();
    assert_eq!(saved.len(), 3);
}

/// WordNet ids of the chosen classes, in sorted class order.
fn write_wnids(dir: &Path, classes: &[&str]) -> PathBuf {
    let all = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ];
    let wnids: Vec<String> = std::fs::read_to_string(shared_path("data/wordnet/cifar10-wnids.txt"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let mut sorted: Vec<&str> = classes.to_vec();
    sorted.sort();
    let ids: Vec<String> = sorted
        .iter()
        .map(|c| wnids[all.iter().position(|a| a == c).unwrap()].clone())
        .collect();
    let p = dir.join("wnids.txt");
    std::fs::write(&p, ids.join("\n")).unwrap();
    p
}
