//! No panic is reachable from the CLI: every numeric or free-text option of every command, set
//! to each edge value (0, -1, huge, NaN, ±inf, empty, garbage) with the others valid, on a tiny
//! workspace, plus random combinations of them. Each run must end with a JSON object on its last
//! stdout line and an ordinary exit (0, 1, or 2 for a usage error): never a panic (exit 101) or
//! an abort (a signal).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)] // tests make fixtures and fail loudly

use saescope_core::shared::shared_path;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

const EDGES: [&str; 10] = [
    "0",
    "-1",
    "1",
    "18446744073709551616",
    "4294967297",
    "nan",
    "inf",
    "-inf",
    "",
    "x=1",
];

/// A run that is still going after this long is doing real work on a valid value: it is stopped
/// and counted as no panic (the options it got were accepted, which is not what is tested).
const PATIENCE: Duration = Duration::from_secs(20);

struct Fixture {
    ws: PathBuf,
    images: PathBuf,
    model: Vec<String>,
    tmp: PathBuf,
}

/// Runs `args` with `--json`; returns a description of the failure, if any.
fn run(args: &[String]) -> Option<String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_saescope"))
        .args(args)
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > PATIENCE {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code();
    let json_last = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .is_some_and(|v| v.is_object());
    let bad = match code {
        None => Some("killed by a signal (abort?)".to_string()),
        Some(101) => Some("panicked".to_string()),
        _ if stderr.contains("panicked") => Some("panic message".to_string()),
        _ if !json_last => Some("last stdout line is not a JSON object".to_string()),
        Some(0..=2) => None,
        Some(c) => Some(format!("exit code {c}")),
    };
    bad.map(|why| {
        format!(
            "{why}: saescope {}\n  stdout: {}\n  stderr: {}",
            args.join(" "),
            stdout.lines().last().unwrap_or(""),
            stderr.lines().last().unwrap_or("")
        )
    })
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn fixture(tmp: &Path) -> Fixture {
    let images = tmp.join("images");
    common::subset("data/cifar10/test", &["cat", "ship"], 8, &images);
    let model = vec![
        "--model".to_string(),
        shared_path("models/vit-cifar10/vit_cifar10.pth")
            .display()
            .to_string(),
        "--model-config".to_string(),
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("assets/models/vit-cifar10.json")
            .display()
            .to_string(),
    ];
    let ws = tmp.join("ws");
    let p = |x: &Path| x.display().to_string();
    let setup: Vec<Vec<String>> = vec![
        [
            s(&[
                "extract",
                "--layer",
                "3",
                "--images",
                &p(&images),
                "--workspace",
                &p(&ws),
            ]),
            model.clone(),
        ]
        .concat(),
        s(&[
            "train",
            "--workspace",
            &p(&ws),
            "--d-sae",
            "32",
            "--k",
            "4",
            "--tokens",
            "4000",
            "--batch",
            "256",
        ]),
        s(&["index", "--workspace", &p(&ws), "--top-n", "4"]),
    ];
    for a in &setup {
        let out = Command::new(env!("CARGO_BIN_EXE_saescope"))
            .args(a)
            .arg("--json")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "setup {a:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Fixture {
        ws,
        images,
        model,
        tmp: tmp.to_path_buf(),
    }
}

/// Each command with valid options, and the names of the options to vary.
fn commands(f: &Fixture) -> Vec<(Vec<String>, Vec<&'static str>)> {
    let p = |x: &Path| x.display().to_string();
    let ws = p(&f.ws);
    let img = p(&f.images);
    let one_image = p(&f.images.join("cat").join(
        std::fs::read_dir(f.images.join("cat"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .file_name(),
    ));
    let fresh = p(&f.tmp.join("fresh"));
    let out = p(&f.tmp.join("out"));
    vec![
        (
            [
                s(&[
                    "extract",
                    "--layer",
                    "3",
                    "--images",
                    &img,
                    "--workspace",
                    &fresh,
                ]),
                f.model.clone(),
            ]
            .concat(),
            vec![
                "--layer",
                "--batch",
                "--shard-images",
                "--tokens",
                "--dtype",
            ],
        ),
        (
            [s(&["classify", "--images", &img]), f.model.clone()].concat(),
            vec!["--batch"],
        ),
        (
            s(&[
                "train",
                "--workspace",
                &ws,
                "--d-sae",
                "16",
                "--k",
                "2",
                "--tokens",
                "2000",
                "--batch",
                "128",
            ]),
            vec![
                "--d-sae",
                "--k",
                "--tokens",
                "--batch",
                "--lr",
                "--l1",
                "--cls-weight",
                "--checkpoint-every",
                "--name",
                "--arch",
                "--seed",
                "--max-hours",
            ],
        ),
        (s(&["index", "--workspace", &ws]), vec!["--top-n", "--sae"]),
        (
            s(&["eval-sae", "--workspace", &ws, "--images", &img]),
            vec!["--batch", "--sae"],
        ),
        (
            s(&[
                "ood",
                "--workspace",
                &ws,
                "--fit",
                &img,
                "--id",
                &img,
                "--ood",
                &img,
            ]),
            vec!["--batch", "--ridge"],
        ),
        (
            [
                s(&[
                    "probe",
                    "--fit",
                    &img,
                    "--eval",
                    &img,
                    "--workspace",
                    &ws,
                    "--spliced",
                ]),
                f.model.clone(),
            ]
            .concat(),
            vec!["--batch", "--l2"],
        ),
        (s(&["tree", "--workspace", &ws]), vec!["--sae"]),
        (s(&["label", "--workspace", &ws]), vec!["--set", "--sae"]),
        (
            s(&[
                "heatmap",
                "--workspace",
                &ws,
                "--image",
                &one_image,
                "--features",
                "0",
            ]),
            vec!["--features", "--image"],
        ),
        (
            s(&["nearest", "--workspace", &ws, "--feature", "0"]),
            vec!["--feature", "--n"],
        ),
        (s(&["summary", "--workspace", &ws]), vec![]),
        (
            s(&[
                "intervene",
                "--workspace",
                &ws,
                "--image",
                &one_image,
                "--features",
                "0-3",
                "--mode",
                "scale",
                "--value",
                "2",
            ]),
            vec!["--features", "--value", "--tokens", "--top", "--mode"],
        ),
        (
            s(&[
                "intervene",
                "--workspace",
                &ws,
                "--class",
                "ship",
                "--top-lift",
                "2",
                "--random",
                "2",
                "--min-images",
                "1",
            ]),
            vec![
                "--class",
                "--features",
                "--top-lift",
                "--min-images",
                "--random",
                "--seed",
                "--batch",
            ],
        ),
        (
            s(&["export", "--workspace", &ws, "--out", &out, "--no-png"]),
            vec!["--features"],
        ),
        (s(&["use-sae", "--workspace", &ws, "topk-32-k4"]), vec![]),
        (s(&["saes", "--workspace", &ws]), vec![]),
        (
            s(&[
                "sweep",
                "--workspace",
                &ws,
                "--name",
                "sw",
                "--arch",
                "topk,matryoshka,jumprelu",
                "--d-sae",
                "16",
                "--k",
                "2",
                "--tokens",
                "2000",
                "--batch",
                "128",
            ]),
            vec![
                "--d-sae",
                "--k",
                "--tokens",
                "--batch",
                "--lr",
                "--l1",
                "--l0-coeff",
                "--prefixes",
                "--cls-weight",
                "--checkpoint-every",
                "--seed",
                "--group",
                "--groups",
                "--max-hours",
            ],
        ),
        (
            s(&[
                "encode",
                "--workspace",
                &ws,
                "--rows",
                "8",
                "--out",
                &f.tmp.join("codes.safetensors").to_string_lossy(),
            ]),
            vec!["--rows"],
        ),
        (s(&["info", "--devices"]), vec![]),
        // Only its base form: an edge value of --out would be a folder name (made in the cwd).
        (
            s(&["example", "--out", &f.tmp.join("example").to_string_lossy()]),
            vec![],
        ),
        (
            s(&[
                "bench",
                "sae-train",
                "--d-in",
                "8",
                "--d-sae",
                "16",
                "--k",
                "2",
                "--batch",
                "16",
                "--steps",
                "2",
            ]),
            vec!["--d-in", "--d-sae", "--k", "--batch", "--steps"],
        ),
        (
            [
                s(&[
                    "bench", "extract", "--images", &img, "--limit", "4", "--batch", "2",
                ]),
                f.model.clone(),
            ]
            .concat(),
            vec!["--limit", "--batch", "--layer", "--rounds"],
        ),
        (s(&["bench", "index", "--workspace", &ws]), vec!["--rows"]),
    ]
}

/// `base` with `opt` set to `value` (replacing its value when present, else appended).
fn with(base: &[String], opt: &str, value: &str) -> Vec<String> {
    let mut a = base.to_vec();
    match a.iter().position(|x| x == opt) {
        Some(i) if i + 1 < a.len() && !a[i + 1].starts_with("--") => a[i + 1] = value.to_string(),
        _ => {
            a.push(opt.to_string());
            a.push(value.to_string());
        }
    }
    a
}

#[test]
fn no_option_value_makes_the_cli_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fixture(tmp.path());
    let mut failures = Vec::new();
    let mut runs = 0;
    for (base, opts) in commands(&f) {
        runs += 1;
        failures.extend(run(&base));
        for opt in &opts {
            for v in EDGES {
                runs += 1;
                failures.extend(run(&with(&base, opt, v)));
            }
        }
    }
    // Random combinations: two options of one command set to edge values at once.
    let mut rng = saescope_core::rng::Rng::new(2026);
    let cmds = commands(&f);
    for _ in 0..40 {
        let (base, opts) = &cmds[rng.below(cmds.len())];
        if opts.is_empty() {
            continue;
        }
        let mut a = base.clone();
        for _ in 0..2 {
            a = with(
                &a,
                opts[rng.below(opts.len())],
                EDGES[rng.below(EDGES.len())],
            );
        }
        runs += 1;
        failures.extend(run(&a));
    }
    assert!(
        failures.is_empty(),
        "{} of {runs} runs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The shape of a JSON value: object keys (sorted, recursively), `[shape of the first item]` for
/// arrays, and the type of a scalar.
fn shape(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(a) => Value::Array(a.first().map(shape).into_iter().collect()),
        Value::String(_) => "string".into(),
        Value::Number(_) => "number".into(),
        Value::Bool(_) => "bool".into(),
        Value::Null => "null".into(),
    }
}

/// Every command's JSON keeps its shape for the same inputs: the keys (and value types) of each
/// command's report are compared with `tests/fixtures/cli-json-shapes.json`. A deliberate change
/// is recorded with `UPDATE_JSON_SHAPES=1 cargo test --test cli_edges json_shapes` and shows in
/// the diff. (Fields that are null on one run and a number on another are written as found.)
#[test]
fn every_command_keeps_its_json_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fixture(tmp.path());
    let mut shapes = serde_json::Map::new();
    for (args, _) in commands(&f) {
        let out = Command::new(env!("CARGO_BIN_EXE_saescope"))
            .args(&args)
            .arg("--json")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let v: serde_json::Value =
            serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap();
        assert!(out.status.success(), "{args:?}: {v}");
        let name = args
            .iter()
            .take_while(|a| !a.starts_with("--"))
            .cloned()
            .collect::<Vec<_>>()
            .join(" ");
        // A command with two forms (intervene --image / --class) is recorded once per form.
        let name = match args.iter().find(|a| *a == "--class") {
            Some(form) if name == "intervene" => format!("{name} {form}"),
            _ => name,
        };
        shapes.insert(name, shape(&v));
    }
    let got = serde_json::Value::Object(shapes);
    let file =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cli-json-shapes.json");
    if std::env::var("UPDATE_JSON_SHAPES").is_ok() {
        std::fs::write(&file, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
        return;
    }
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    for (cmd, w) in want.as_object().unwrap() {
        assert_eq!(
            got.get(cmd),
            Some(w),
            "`saescope {cmd} --json` changed shape (record a deliberate change with UPDATE_JSON_SHAPES=1)"
        );
    }
    assert_eq!(
        got.as_object().unwrap().len(),
        want.as_object().unwrap().len()
    );
}

/// D1: arguments that are not UTF-8 get a clear error (a usage error for a text option, "no such
/// workspace" for a path), never a panic.
#[test]
fn non_utf8_arguments_do_not_panic() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    let bad_text = std::ffi::OsStr::from_bytes(b"9=\xff\xfe");
    let bad_dir = tmp.path().join(std::ffi::OsStr::from_bytes(b"ws\xff"));
    for args in [
        vec![
            std::ffi::OsStr::new("label").to_os_string(),
            "--workspace".into(),
            tmp.path().into(),
            "--set".into(),
            bad_text.to_os_string(),
        ],
        vec![
            "saes".into(),
            "--workspace".into(),
            bad_dir.into_os_string(),
        ],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_saescope"))
            .args(&args)
            .arg("--json")
            .output()
            .unwrap();
        let code = out.status.code();
        assert!(matches!(code, Some(1 | 2)), "{args:?}: exit {code:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let last: serde_json::Value =
            serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap();
        assert!(last["error"].is_string(), "{args:?}: {stdout}");
    }
}

/// D2, D3, D18: a `dataset.json` changed after extraction (a class id out of range, the list
/// cut short, a path out of the image folder) is refused by every command that reads it, with
/// an error naming the file; nothing panics and nothing reads outside the image folder.
#[test]
fn a_damaged_image_listing_is_refused_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fixture(tmp.path());
    let listing = f.ws.join("dataset.json");
    let good = std::fs::read_to_string(&listing).unwrap();
    let v: serde_json::Value = serde_json::from_str(&good).unwrap();
    let damage = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut d = v.clone();
        edit(&mut d);
        std::fs::write(&listing, d.to_string()).unwrap();
    };
    let p = |x: &Path| x.display().to_string();
    type Edit = dyn Fn(&mut serde_json::Value);
    let cases: [(&str, &Edit); 3] = [
        ("class id 999", &|d| d["images"][3]["class"] = 999.into()),
        (
            "lists 10 images but the activations were extracted over 16",
            &|d| d["images"].as_array_mut().unwrap().truncate(10),
        ),
        ("not inside the image folder", &|d| {
            d["images"][0]["path"] = "../../../../etc/passwd".into()
        }),
    ];
    for (want, edit) in cases {
        damage(edit);
        for args in [
            s(&["index", "--workspace", &p(&f.ws), "--rebuild"]),
            s(&["label", "--workspace", &p(&f.ws), "--from-classes"]),
            s(&[
                "export",
                "--workspace",
                &p(&f.ws),
                "--out",
                &p(&f.tmp.join("out")),
            ]),
        ] {
            let out = Command::new(env!("CARGO_BIN_EXE_saescope"))
                .args(&args)
                .arg("--json")
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(1), "{args:?} ({want})");
            let stdout = String::from_utf8_lossy(&out.stdout);
            let last: serde_json::Value =
                serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap();
            let e = last["error"].as_str().unwrap_or_default();
            assert!(
                e.contains("dataset.json") && e.contains(want),
                "{args:?}: {e}"
            );
        }
    }
    std::fs::write(&listing, good).unwrap();

    // D14: a shard whose values were overwritten with 0xFF bytes (f16 NaN), same size.
    let shard = f.ws.join("activations/shard-00000.safetensors");
    let mut bytes = std::fs::read(&shard).unwrap();
    let n = bytes.len();
    bytes[n - 4096..].iter_mut().for_each(|b| *b = 0xFF);
    std::fs::write(&shard, bytes).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_saescope"))
        .args(["index", "--rebuild", "--json", "--workspace"])
        .arg(&f.ws)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("corrupt activation shard") && stdout.contains("NaN"),
        "{stdout}"
    );
}

/// D4, D13: ids beyond what exists are refused before any memory is taken for them or any file
/// written: huge ranges of features or tokens, and labels for features the SAE lacks.
#[test]
fn ids_beyond_what_exists_are_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fixture(tmp.path());
    let ws = f.ws.display().to_string();
    let image = std::fs::read_dir(f.images.join("cat"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .display()
        .to_string();
    let labels_before = std::fs::read(f.ws.join("saes/topk-32-k4/labels.json")).ok();
    for (args, want) in [
        (
            s(&[
                "heatmap",
                "--workspace",
                &ws,
                "--image",
                &image,
                "--features",
                "0-4294967295",
            ]),
            "--features `0-4294967295` names 4294967296 or more ids",
        ),
        (
            s(&[
                "intervene",
                "--workspace",
                &ws,
                "--image",
                &image,
                "--features",
                "0-4294967295",
            ]),
            "--features `0-4294967295` names",
        ),
        (
            s(&[
                "intervene",
                "--workspace",
                &ws,
                "--image",
                &image,
                "--features",
                "0",
                "--tokens",
                "0-4294967295",
            ]),
            "--tokens `0-4294967295` names",
        ),
        (
            s(&["label", "--workspace", &ws, "--set", "32=x"]),
            "feature 32 does not exist",
        ),
        // D10: not an id, but the same rule: a value that cannot be is refused up front.
        (
            s(&[
                "train",
                "--workspace",
                &ws,
                "--d-sae",
                "32",
                "--arch",
                "relu",
                "--l1",
                "NaN",
                "--name",
                "r",
            ]),
            "--l1 must be a finite number of at least 0 (got NaN)",
        ),
        (
            s(&[
                "train",
                "--workspace",
                &ws,
                "--d-sae",
                "32",
                "--arch",
                "relu",
                "--l1",
                "inf",
                "--name",
                "r",
            ]),
            "--l1 must be a finite number of at least 0 (got inf)",
        ),
        (
            s(&["label", "--workspace", &ws, "--set", "4000000000=x"]),
            "feature 4000000000 does not exist",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_saescope"))
            .args(&args)
            .arg("--json")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(want), "{args:?}: {stdout}");
    }
    assert_eq!(
        std::fs::read(f.ws.join("saes/topk-32-k4/labels.json")).ok(),
        labels_before
    );
}
