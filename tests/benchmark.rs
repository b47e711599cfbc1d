//! `saescope eval` on the built-in example: every SAE is scored beside its two controls, the
//! results land per SAE and in one JSON and one CSV, and bad requests are refused by name.
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

#[test]
fn eval_scores_every_sae_beside_its_controls() {
    let dir = tempfile::tempdir().unwrap();
    let ex = dir.path().join("ex");
    run_json(&mut saescope(&["example", "--out", s(&ex)]));
    let ws = ex.join("workspace");
    let images = ex.join("images");
    // A second SAE of another architecture.
    run_json(&mut saescope(&[
        "train",
        "--workspace",
        s(&ws),
        "--arch",
        "batchtopk",
        "--d-sae",
        "128",
        "--k",
        "4",
        "--tokens",
        "50000",
    ]));
    let v = run_json(&mut saescope(&[
        "eval",
        "--workspace",
        s(&ws),
        "--fit",
        s(&images),
        "--images",
        s(&images),
        "--sample-rows",
        "2000",
    ]));
    let saes = v["saes"].as_array().unwrap();
    assert_eq!(saes.len(), 2, "{v}");
    for sae in saes {
        let name = sae["name"].as_str().unwrap();
        let fve = |variant: &str| {
            sae[variant]["reconstruction"]["fve"]["value"]
                .as_f64()
                .unwrap()
        };
        // Training beats its own initialisation on reconstruction, whatever the model.
        assert!(fve("trained") > fve("untrained"), "{name}: {sae}");
        let k = sae["matched_k"].as_u64().unwrap();
        for control in ["untrained", "pca"] {
            let l0 = sae[control]["reconstruction"]["l0"]["value"]
                .as_f64()
                .unwrap();
            assert!(
                (l0 - k as f64).abs() < 1e-9,
                "{name} {control}: L0 {l0} vs k {k}"
            );
            assert!(sae[control]["spliced_accuracy"]["value"].is_f64());
        }
        assert_eq!(
            sae["pca"]["width"], 128,
            "2·d_in signed principal directions"
        );
        let fve_verdict = sae["verdicts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["metric"] == "fve")
            .unwrap();
        // The example's own SAE (FVE 0.88, its initialisation 0.28) separates on FVE; the short
        // BatchTopK run need not.
        if name.starts_with("topk") {
            assert_eq!(fve_verdict["separates"], true, "{name}: {fve_verdict}");
        }
        for metric in ["monosemanticity", "morans_i", "sparse_probe"] {
            assert!(sae["trained"][metric]["value"].is_f64(), "{name}: {metric}");
        }
        // The app reads each SAE's own file.
        let own: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(ws.join("saes").join(name).join("benchmark.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(own["saes"][0]["name"], name);
    }
    let csv = std::fs::read_to_string(ws.join("benchmark.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 2 * 3, "{csv}");
    assert!(csv.lines().nth(1).unwrap().contains(",trained,"));

    // Refused with the option named.
    let bad = saescope(&[
        "eval",
        "--workspace",
        s(&ws),
        "--fit",
        s(&images),
        "--images",
        s(&images),
        "--probe-latents",
        "0",
        "--json",
    ])
    .output()
    .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stdout).contains("--probe-latents"));
    // A fit folder without classes cannot train a probe.
    let flat = dir.path().join("flat");
    std::fs::create_dir_all(&flat).unwrap();
    let out = saescope(&[
        "eval",
        "--workspace",
        s(&ws),
        "--fit",
        s(&flat),
        "--images",
        s(&images),
        "--sae",
        "nope",
        "--json",
    ])
    .output()
    .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no SAE named `nope`"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
