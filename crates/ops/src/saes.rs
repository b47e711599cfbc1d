//! A workspace's SAEs side by side, as `saescope saes` and the app's SAE table list them.

use crate::analysis::{index, labels, ontology, ood};
use crate::error::Result;
use crate::lock::{Hold, writer};
use crate::noted;
use crate::store::Workspace;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize)]
pub struct SaeSummary {
    pub name: String,
    pub active: bool,
    pub architecture: String,
    pub d_sae: usize,
    pub k: Option<f64>,
    /// From its training run (absent for imported SAEs).
    pub tokens: Option<u64>,
    pub final_fve: Option<f64>,
    pub final_l0: Option<f64>,
    pub dead_fraction: Option<f64>,
    pub cls_weight: Option<u32>,
    /// Which analyses exist beside it.
    pub index: bool,
    pub labels: usize,
    pub ontology: bool,
    pub ood: bool,
    /// Files beside it that are there but cannot be read, each with its error.
    #[serde(serialize_with = "crate::as_messages")]
    pub problems: Vec<std::sync::Arc<crate::Error>>,
}

/// Makes the SAE `name` (under `WS/saes/`) the workspace's active one; returns its folder. A
/// short edit: a busy workspace is waited for, then refused naming its writer.
pub fn use_sae(workspace: &Path, name: &str) -> Result<PathBuf> {
    let ws = Workspace::open(workspace)?;
    let _lock = writer(&ws.dir, "use-sae", Hold::Edit)?;
    let home = ws.sae_home(Some(name))?;
    ws.set_active_sae(name)?;
    Ok(home)
}

/// Every finished SAE of the workspace, by name.
pub fn list_saes(ws: &Workspace) -> Vec<SaeSummary> {
    let active = ws.active_sae().ok();
    ws.sae_names()
        .into_iter()
        .map(|name| {
            let home = ws.sae_dir(&name);
            let mut problems = Vec::new();
            let cfg: serde_json::Value = noted(
                crate::fsutil::read_json(&home.join("cfg.json")),
                &mut problems,
            )
            .unwrap_or_default();
            let r = noted(crate::sae::workflow::finished_report(&home), &mut problems).flatten();
            let labels =
                noted(labels::Labels::load(&home), &mut problems).map_or(0, |l| l.labels.len());
            // Without a report (SAEs trained before train.json existed), the training log's
            // last line has the same figures.
            let last = r.is_none().then(|| last_metrics(&home)).flatten();
            let from_log = |k: &str| last.as_ref().and_then(|m| m[k].as_f64());
            SaeSummary {
                active: active.as_deref() == Some(name.as_str()),
                architecture: cfg["architecture"].as_str().unwrap_or("?").to_string(),
                d_sae: cfg["d_sae"].as_u64().unwrap_or(0) as usize,
                k: cfg["k"].as_f64(),
                tokens: r
                    .as_ref()
                    .map(|r| r.tokens)
                    .or(from_log("tokens").map(|t| t as u64)),
                final_fve: r.as_ref().map(|r| r.final_fve).or(from_log("fve")),
                final_l0: r.as_ref().map(|r| r.final_l0).or(from_log("l0")),
                dead_fraction: r
                    .as_ref()
                    .map(|r| r.dead_fraction)
                    .or(from_log("dead_fraction")),
                cls_weight: r.as_ref().map(|r| r.cls_weight),
                index: index::is_complete(&home),
                labels,
                ontology: ontology::ontology_path(&home).is_file(),
                ood: ood::results_path(&home).is_file(),
                problems: problems.into_iter().map(std::sync::Arc::new).collect(),
                name,
            }
        })
        .collect()
}

/// The last entry of an SAE's training log (`metrics.jsonl`), if it has one.
fn last_metrics(home: &std::path::Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(home.join("metrics.jsonl")).ok()?;
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?;
    serde_json::from_str(line).ok()
}
