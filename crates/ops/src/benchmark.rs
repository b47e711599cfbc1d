//! `eval`: the SAE benchmark over some or all of a workspace's SAEs, each beside its controls
//! (see `analysis::benchmark`). Reading and scoring take no lock (minutes, and nothing is
//! written); the results are written at the end under a short edit lock: each SAE's own in
//! `WS/saes/<name>/benchmark.json` (what the app's compare page reads), and all of them in
//! `WS/benchmark.json` and `WS/benchmark.csv`, each replacing the previous run's.

use super::device_of;
use crate::analysis::benchmark::{self, BenchmarkOptions, BenchmarkReport, Inputs};
use crate::backbone::load_backbone;
use crate::device::DeviceChoice;
use crate::error::{Error, Result};
use crate::fix::Opt;
use crate::fsutil::{write_atomic, write_json_atomic};
use crate::job::Job;
use crate::lock::{Hold, writer};
use crate::store::Workspace;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The per-SAE result file, in the SAE's folder.
pub const SAE_FILE: &str = "benchmark.json";
pub const JSON_FILE: &str = "benchmark.json";
pub const CSV_FILE: &str = "benchmark.csv";

#[derive(Clone, Debug)]
pub struct BenchmarkRequest {
    pub workspace: PathBuf,
    /// SAE names; empty for every SAE of the workspace.
    pub saes: Vec<String>,
    pub device: DeviceChoice,
    /// Labelled images the probes are fit on.
    pub fit: PathBuf,
    /// Images everything is scored on.
    pub eval: PathBuf,
    /// Other workspaces whose stores hold these images' activations.
    pub stores: Vec<PathBuf>,
    pub options: BenchmarkOptions,
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchmarkOutcome {
    #[serde(flatten)]
    pub report: BenchmarkReport,
    pub json: PathBuf,
    pub csv: PathBuf,
}

pub fn benchmark(r: &BenchmarkRequest, job: &Job) -> Result<BenchmarkOutcome> {
    let o = &r.options;
    for (value, opt) in [(o.batch, Opt::Batch), (o.probe_latents, Opt::ProbeLatents)] {
        if value == 0 {
            return Err(crate::fix::at_least_one(opt));
        }
    }
    if o.sample_rows < 2 {
        return Err(crate::fixable!([
            Opt::SampleRows,
            format!(" must be at least 2 (got {})", o.sample_rows)
        ]));
    }
    let ws = Workspace::open(&r.workspace)?;
    let names = if r.saes.is_empty() {
        ws.sae_names()
    } else {
        r.saes.clone()
    };
    if names.is_empty() {
        return Err(crate::fixable!(
            [&r.workspace, ": no SAE to benchmark"],
            [
                "train one first (",
                crate::fix::Command::Train(r.workspace.clone()),
                ")"
            ]
        ));
    }
    let device = device_of(r.device)?;
    let saes = names
        .iter()
        .map(|name| Ok((name.clone(), sae_named(&ws, name)?.on_device(&device)?)))
        .collect::<Result<Vec<_>>>()?;
    let backbone = load_backbone(&ws.config.model, &device)?;
    let report = benchmark::benchmark(
        &Inputs {
            ws: &ws,
            backbone: &backbone,
            saes,
            fit: &r.fit,
            eval: &r.eval,
            stores: r.stores.clone(),
        },
        o,
        job,
    )?;
    let _lock = writer(&ws.dir, "saving benchmark results", Hold::Edit)?;
    for s in &report.saes {
        let home = ws.sae_dir(&s.name);
        // The SAE may have been deleted while the benchmark ran: its figures stay in the
        // workspace's files.
        if home.is_dir() {
            let own = BenchmarkReport {
                saes: vec![s.clone()],
                ..report.clone()
            };
            write_json_atomic(&home.join(SAE_FILE), &own)?;
        }
    }
    let (json, csv) = (ws.dir.join(JSON_FILE), ws.dir.join(CSV_FILE));
    write_json_atomic(&json, &report)?;
    write_atomic(&csv, benchmark::csv(&report).as_bytes())?;
    Ok(BenchmarkOutcome { report, json, csv })
}

/// A workspace SAE by name (never an import: the benchmark only reads the workspace).
fn sae_named(ws: &Workspace, name: &str) -> Result<crate::sae::Sae> {
    let home = ws.sae_dir(name);
    if !home.join("cfg.json").is_file() {
        return Err(Error::Invalid(format!(
            "no SAE named `{name}` in {}; the workspace has: {}",
            ws.dir.display(),
            ws.sae_names().join(", ")
        )));
    }
    crate::sae::workflow::workspace_sae(ws, Some(Path::new(&home)))
}

/// The benchmark results saved beside an SAE, if it has been benchmarked.
pub fn saved(sae_home: &Path) -> Result<Option<BenchmarkReport>> {
    let p = sae_home.join(SAE_FILE);
    if !p.is_file() {
        return Ok(None);
    }
    crate::fsutil::read_json(&p).map(Some)
}
