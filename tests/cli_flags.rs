//! Every CLI flag that a message of the library or the CLI names exists on the command line:
//! the flags are read from the binary's own `--help` (clap's definitions), the messages from the
//! string literals of the non-test code. Messages of a module that serves known commands must
//! name those commands' flags; the others any command's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)] // tests make fixtures and fail loudly

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_saescope"))
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

/// The `Commands:` section's names.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

/// `--long` names in a help text's option lines.
fn long_flags(help: &str) -> BTreeSet<String> {
    help.lines()
        .filter(|l| l.trim_start().starts_with('-'))
        .flat_map(|l| flag_names(l.split("  ").find(|s| !s.is_empty()).unwrap_or("")))
        .collect()
}

fn flag_names(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 2 < b.len() {
        let starts = b[i] == b'-'
            && b[i + 1] == b'-'
            && b[i + 2].is_ascii_lowercase()
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'-'));
        if starts {
            let name: String = text[i + 2..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
                .collect();
            i += 2 + name.len();
            out.push(name.trim_end_matches('-').to_string());
        } else {
            i += 1;
        }
    }
    out
}

/// Each command path ("train", "steer generate", …) with its flags (global ones included).
fn cli_flags() -> BTreeMap<String, BTreeSet<String>> {
    let mut all = BTreeMap::new();
    let mut todo: Vec<Vec<String>> = subcommands(&help(&[]))
        .into_iter()
        .map(|c| vec![c])
        .collect();
    while let Some(path) = todo.pop() {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        let text = help(&args);
        for sub in subcommands(&text) {
            let mut p = path.clone();
            p.push(sub);
            todo.push(p);
        }
        all.insert(path.join(" "), long_flags(&text));
    }
    all
}

/// (file:line, flag) for every `--flag` inside a string literal of non-test code under `dir`.
fn named_flags(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            named_flags(&p, root, out);
            continue;
        }
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".rs") || name.contains("tests") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        for (n, line) in code.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            // String literals: the text between quote pairs. One that tells how to rebuild
            // names cargo's flags, not ours.
            for (k, lit) in line.split('"').enumerate() {
                if k % 2 == 1 && !lit.contains("cargo build") && !lit.contains("rebuild with") {
                    for f in flag_names(lit) {
                        let rel = p.strip_prefix(root).unwrap().display().to_string();
                        out.push((format!("{rel}:{}", n + 1), f));
                    }
                }
            }
        }
    }
}

/// The commands whose flags a module's messages may name (None: any command's).
fn commands_of(file: &str) -> Option<&'static [&'static str]> {
    let m: &[(&str, &[&str])] = &[
        ("crates/ops/src/intervene.rs", &["intervene"]),
        (
            "crates/ops/src/analyse.rs",
            &["index", "ood", "tree", "label"],
        ),
        ("crates/ops/src/share.rs", &["export", "import-labels"]),
        (
            "crates/ops/src/measure.rs",
            &["classify", "eval-sae", "probe", "heatmap"],
        ),
        ("crates/ops/src/build.rs", &["extract", "train"]),
        ("src/cli/intervene.rs", &["intervene"]),
        ("src/cli/label.rs", &["label"]),
        ("src/cli/steer.rs", &["steer"]),
        ("crates/core/src/steer/", &["steer"]),
    ];
    m.iter().find(|(f, _)| file.starts_with(f)).map(|(_, c)| *c)
}

#[test]
fn every_flag_named_in_a_message_exists() {
    let flags = cli_flags();
    assert!(flags["train"].contains("d-sae") && flags["steer generate"].contains("feature"));
    let any: BTreeSet<&String> = flags.values().flatten().collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut named = Vec::new();
    for dir in ["crates/core/src", "crates/ops/src", "crates/app/src", "src"] {
        named_flags(&root.join(dir), root, &mut named);
    }
    assert!(
        named.len() > 20,
        "the scan found too few messages: {named:?}"
    );
    // sbatch's own flags, which the cluster module writes into scripts and passes to sbatch.
    let sbatch = [
        "partition",
        "parsable",
        "dependency",
        "job-name",
        "output",
        "array",
    ];
    let mut bad = Vec::new();
    for (at, flag) in &named {
        if at.starts_with("crates/ops/src/cluster.rs") && sbatch.contains(&flag.as_str()) {
            continue;
        }
        let ok = match commands_of(at) {
            Some(commands) => flags
                .iter()
                .filter(|(c, _)| commands.iter().any(|x| c.split(' ').next() == Some(*x)))
                .any(|(_, f)| f.contains(flag)),
            None => any.contains(flag),
        };
        if !ok {
            bad.push(format!("{at}: --{flag}"));
        }
    }
    assert!(
        bad.is_empty(),
        "flags named in messages but not defined:\n{}",
        bad.join("\n")
    );
}

/// The typed options and commands that library messages name (`saescope_ops::fix`): each
/// option's flag exists on the commands said to take it (or on some command), and each command
/// line runs commands and flags that exist.
#[test]
fn every_option_and_command_a_message_can_name_exists() {
    use saescope_ops::fix::{Command, Opt};
    let flags = cli_flags();
    let mut bad = Vec::new();
    for &opt in Opt::ALL {
        let name = opt.flag().trim_start_matches("--");
        let ok = if opt.commands().is_empty() {
            flags.values().any(|f| f.contains(name))
        } else {
            opt.commands()
                .iter()
                .all(|c| flags.get(*c).is_some_and(|f| f.contains(name)))
        };
        if !ok {
            bad.push(format!("{opt:?}: {} on {:?}", opt.flag(), opt.commands()));
        }
    }
    for command in Command::examples() {
        let line = command.line();
        let words: Vec<&str> = line.split_whitespace().skip(1).collect();
        let sub = words[0];
        for flag in words.iter().filter_map(|w| w.strip_prefix("--")) {
            if !flags.get(sub).is_some_and(|f| f.contains(flag)) {
                bad.push(format!("{line}: no --{flag} on {sub}"));
            }
        }
        if !flags.contains_key(sub) {
            bad.push(format!("{line}: no command {sub}"));
        }
    }
    assert!(
        bad.is_empty(),
        "options or commands that do not exist:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_flag_scanner_reads_messages_as_meant() {
    assert_eq!(
        flag_names("re-run with --d-sae 64 (or --k)"),
        ["d-sae", "k"]
    );
    assert_eq!(flag_names("a-b --x --"), ["x"]);
    assert!(flag_names("pre--fix").is_empty());
}
