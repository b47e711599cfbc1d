//! Imports run one way. Between crates the compiler enforces it (the CLI and the app depend on
//! `saescope-ops`, not on the core; these tests check the manifests and `cargo tree` say so).
//! Inside the core: steer → analysis → sae → store → backbone → utilities; a module that names a
//! layer above its own fails, with the file and line. Inside the app, no two modules import
//! each other in a circle.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)] // tests make fixtures and fail loudly

use std::path::Path;

/// Layer of each top-level module of `src/` (higher may use lower, never the reverse).
fn layer(module: &str) -> Option<u32> {
    Some(match module {
        "error" | "fsutil" | "job" | "linalg" | "memory" | "shared" | "rng" => 0,
        "backbone" => 1,
        "store" => 2,
        "sae" => 3,
        "analysis" => 4,
        "steer" => 5,
        _ => return None,
    })
}

/// Every `crate::x` / `saescope_core::x` a source line names, including `crate::{x, y}` groups.
fn named_modules(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    for prefix in ["crate::", "saescope_core::"] {
        let mut rest = line;
        while let Some(i) = rest.find(prefix) {
            rest = &rest[i + prefix.len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for part in group[..end].split(',') {
                    let name: String = part
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    out.push(name);
                }
            } else {
                out.push(
                    rest.chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect(),
                );
            }
        }
    }
    out
}

fn check_dir(dir: &Path, root: &Path, bad: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            check_dir(&path, root, bad);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let rel = path.strip_prefix(root).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        let Some(own) = layer(&top) else { continue };
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for m in named_modules(code) {
                if let Some(l) = layer(&m)
                    && l > own
                {
                    bad.push(format!("{}:{}: {top} uses {m}", rel.display(), n + 1));
                }
            }
        }
    }
}

#[test]
fn core_modules_import_only_layers_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/core/src");
    let mut bad = Vec::new();
    check_dir(&src, &src, &mut bad);
    assert!(
        bad.is_empty(),
        "imports against the layering:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_checker_sees_grouped_and_qualified_imports() {
    assert_eq!(
        named_modules("use crate::{sae, store::X};"),
        ["sae", "store"]
    );
    assert_eq!(named_modules("let r = crate::app::run();"), ["app"]);
}

fn cargo(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The packages `package` depends on with `kind` ("normal", "dev" or "build"), by name.
fn direct_deps(meta: &serde_json::Value, package: &str, kind: &str) -> Vec<String> {
    let p = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == package)
        .unwrap_or_else(|| panic!("no package {package}"));
    p["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["kind"].as_str().unwrap_or("normal") == kind)
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn front_ends_depend_on_ops_and_never_on_the_core() {
    let meta: serde_json::Value = serde_json::from_str(&cargo(&[
        "metadata",
        "--format-version",
        "1",
        "--no-deps",
        "--locked",
    ]))
    .unwrap();
    for front in ["saescope", "saescope-app"] {
        let deps = direct_deps(&meta, front, "normal");
        assert!(
            deps.contains(&"saescope-ops".to_string()),
            "{front}: {deps:?}"
        );
        assert!(
            !deps.contains(&"saescope-core".to_string()),
            "{front} reaches past ops to the core (store, lock): {deps:?}"
        );
    }
    let ops = direct_deps(&meta, "saescope-ops", "normal");
    assert!(ops.contains(&"saescope-core".to_string()));
    for front in ["saescope", "saescope-app", "saescope-ui-tests"] {
        assert!(
            !ops.contains(&front.to_string()),
            "ops depends on a front end"
        );
    }
    assert!(!direct_deps(&meta, "saescope-app", "normal").contains(&"saescope".to_string()));
}

#[test]
fn the_core_pulls_in_no_cli_or_windowing_crate() {
    // Everything the core compiles against, transitively (its tests' harness excluded), with
    // the CUDA backend. Downloads from the Hub (feature hub-download, which ops turns on) bring
    // hf-hub's own progress bar, indicatif; the core's code never uses it.
    let tree = cargo(&[
        "tree",
        "-p",
        "saescope-core",
        "-e",
        "normal,build",
        "--prefix",
        "none",
        "--locked",
        "--features",
        "cuda",
    ]);
    let names: std::collections::BTreeSet<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(names.contains("candle-core"), "cargo tree said: {tree}");
    for banned in [
        "clap",
        "egui",
        "eframe",
        "wgpu",
        "winit",
        "indicatif",
        "egui_plot",
        "rfd",
    ] {
        assert!(!names.contains(banned), "saescope-core depends on {banned}");
    }
    // The ops layer is no front end either.
    let ops = cargo(&[
        "tree",
        "-p",
        "saescope-ops",
        "-e",
        "normal",
        "--prefix",
        "none",
        "--locked",
    ]);
    // (indicatif is there, through hf-hub's download progress bar: see above.)
    for banned in ["clap", "egui", "eframe", "wgpu", "winit"] {
        assert!(
            !ops.lines()
                .any(|l| l.split_whitespace().next() == Some(banned)),
            "saescope-ops depends on {banned}"
        );
    }
}

/// The app's top-level modules and the other top-level modules each one names
/// (`crate::x`, or `super::x` from a file one folder down).
fn app_module_graph() -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/app/src");
    let mut files = Vec::new();
    let mut dirs = vec![src.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    let top_of = |p: &Path| -> String {
        let rel = p.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        first.trim_end_matches(".rs").to_string()
    };
    let modules: std::collections::BTreeSet<String> = files
        .iter()
        .map(|p| top_of(p))
        .filter(|m| m != "lib")
        .collect();
    let mut graph = std::collections::BTreeMap::new();
    for p in &files {
        let own = top_of(p);
        if own == "lib" {
            continue; // the root declares every module; it is no view
        }
        let nested = p.strip_prefix(&src).unwrap().components().count() == 2;
        let text = std::fs::read_to_string(p).unwrap();
        let uses: &mut std::collections::BTreeSet<String> = graph.entry(own.clone()).or_default();
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or("");
            let mut named = named_modules(code);
            if nested {
                named.extend(named_modules(&code.replace("super::", "crate::")));
            }
            for m in named {
                if m != own && modules.contains(&m) {
                    uses.insert(m);
                }
            }
        }
    }
    graph
}

#[test]
fn app_modules_import_each_other_in_no_circle() {
    let graph = app_module_graph();
    assert!(graph.len() > 5, "{graph:?}");
    // Depth-first search for a back edge; the path is the circle.
    fn visit(
        m: &str,
        graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut circle = path[i..].to_vec();
            circle.push(m.to_string());
            return Some(circle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for next in graph.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = Default::default();
    for m in graph.keys() {
        if let Some(circle) = visit(m, &graph, &mut Vec::new(), &mut done) {
            panic!(
                "app modules import each other in a circle: {}",
                circle.join(" → ")
            );
        }
    }
}

#[test]
fn no_source_file_is_over_800_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut long = Vec::new();
    let mut dirs = vec![root.join("src"), root.join("crates"), root.join("tests")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let n = std::fs::read_to_string(&p).unwrap().lines().count();
                if n > 800 {
                    long.push(format!(
                        "{}: {n} lines",
                        p.strip_prefix(root).unwrap().display()
                    ));
                }
            }
        }
    }
    assert!(long.is_empty(), "split these by job:\n{}", long.join("\n"));
}
