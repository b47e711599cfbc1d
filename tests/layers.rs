//! Imports run one way: app / CLI / bench → (ops) → steer → analysis → sae → store → backbone →
//! utilities. A module that names a layer above its own fails this test, with the file and line.

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
        "ops" => 6,
        "app" | "bench" | "main" | "cli" | "cli_steer" => 7,
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
fn modules_import_only_layers_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
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
