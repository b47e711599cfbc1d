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
    /// k (TopK, BatchTopK, Matryoshka), or JumpReLU's L0 target.
    pub k: Option<f64>,
    /// From its training run (absent for imported SAEs).
    pub tokens: Option<u64>,
    pub final_fve: Option<f64>,
    pub final_l0: Option<f64>,
    pub dead_fraction: Option<f64>,
    /// Where FVE, L0 and dead come from: "training run", "training log", or (an SAE loaded from
    /// elsewhere) "N stored rows of this workspace".
    pub figures_from: Option<String>,
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
            // Without either (an SAE loaded from elsewhere), the figures measured on the
            // workspace's stored rows when it was indexed.
            let fit = (r.is_none() && last.is_none())
                .then(|| noted(read_fit(&home), &mut problems).flatten())
                .flatten();
            let figures_from = if r.is_some() {
                Some("training run".to_string())
            } else if last.is_some() {
                Some("training log".to_string())
            } else {
                fit.as_ref()
                    .map(|f| format!("{} stored rows of this workspace", f.rows))
            };
            SaeSummary {
                active: active.as_deref() == Some(name.as_str()),
                // How saescope trained it (a BatchTopK or Matryoshka SAE is stored as jumprelu).
                architecture: cfg
                    .pointer("/metadata/saescope_architecture")
                    .or_else(|| cfg.get("architecture"))
                    .and_then(|v| v.as_str())
                    .unwrap_or("?")
                    .to_string(),
                d_sae: cfg["d_sae"].as_u64().unwrap_or(0) as usize,
                k: cfg["k"]
                    .as_f64()
                    .or_else(|| cfg.pointer("/metadata/saescope_k").and_then(|v| v.as_f64()))
                    // JumpReLU has no k: its L0 target stands in the column.
                    .or_else(|| match r.as_ref().map(|r| &r.arch) {
                        Some(crate::sae::train::TrainArch::JumpRelu {
                            l0_target: Some(t), ..
                        }) => Some(*t as f64),
                        _ => None,
                    }),
                tokens: r
                    .as_ref()
                    .map(|r| r.tokens)
                    .or(from_log("tokens").map(|t| t as u64)),
                final_fve: r
                    .as_ref()
                    .map(|r| r.final_fve)
                    .or(from_log("fve"))
                    .or(fit.as_ref().map(|f| f.fve)),
                final_l0: r
                    .as_ref()
                    .map(|r| r.final_l0)
                    .or(from_log("l0"))
                    .or(fit.as_ref().map(|f| f.l0)),
                dead_fraction: r
                    .as_ref()
                    .map(|r| r.dead_fraction)
                    .or(from_log("dead_fraction"))
                    .or(fit.as_ref().map(|f| f.dead_fraction)),
                figures_from,
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

/// Where an SAE loaded from elsewhere keeps the figures measured on this workspace.
pub const FIT_FILE: &str = "fit.json";
/// Stored rows an SAE's figures are measured on.
const FIT_ROWS: usize = 65_536;

/// FVE, L0 and dead share of an SAE without a training report, on the workspace's stored rows.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct StoreFit {
    pub rows: usize,
    pub fve: f64,
    pub l0: f64,
    pub dead_fraction: f64,
}

fn read_fit(home: &Path) -> Result<Option<StoreFit>> {
    let p = home.join(FIT_FILE);
    if !p.is_file() {
        return Ok(None);
    }
    crate::fsutil::read_json(&p).map(Some)
}

/// Measures and saves the figures of an SAE that has no training report (loaded from
/// elsewhere), so the SAE table shows them instead of "–". Does nothing for a trained SAE.
/// The caller holds the writer lock.
pub fn measure_loaded_sae(ws: &Workspace, home: &Path, sae: &crate::sae::Sae) -> Result<()> {
    let trained = crate::sae::workflow::finished_report(home)?.is_some()
        || home.join("metrics.jsonl").is_file();
    if trained {
        return Ok(());
    }
    let (s, rows) = crate::analysis::benchmark::store_fit(ws, sae, FIT_ROWS)?;
    let fit = StoreFit {
        rows,
        fve: s.fve.value,
        l0: s.l0.value,
        dead_fraction: s.dead_fraction,
    };
    crate::fsutil::write_json_atomic(&home.join(FIT_FILE), &fit)
}

/// The last entry of an SAE's training log (`metrics.jsonl`), if it has one.
fn last_metrics(home: &std::path::Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(home.join("metrics.jsonl")).ok()?;
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?;
    serde_json::from_str(line).ok()
}

/// What `encode` wrote.
#[derive(Serialize)]
pub struct EncodeReport {
    pub sae: String,
    pub rows: usize,
    pub d_in: usize,
    pub d_sae: usize,
    /// Active latents per row, on average.
    pub l0: f64,
    pub out: PathBuf,
}

/// The first `rows` stored activation rows and the SAE's codes for them, as a safetensors file
/// (`x` [rows, d_in] and `codes` [rows, d_sae], f32): what other tools (SAELens) are compared on.
pub fn encode_rows(
    workspace: &Path,
    sae: Option<&Path>,
    rows: usize,
    out: &Path,
) -> Result<EncodeReport> {
    use crate::error::Error;
    use crate::store::activations::ActivationStore;
    let ws = Workspace::open(workspace)?;
    let model = crate::sae::workflow::workspace_sae(&ws, sae)?;
    let store = ActivationStore::open(&ws.activations_dir())?;
    let d_in = store.manifest.d_model;
    if model.d_in != d_in {
        return Err(Error::Invalid(format!(
            "the SAE reads {} values per row but the workspace stores {d_in}",
            model.d_in
        )));
    }
    let rows = rows.min(store.manifest.rows()).min(1 << 16);
    let mut x = Vec::with_capacity(rows * d_in);
    for shard in 0..store.manifest.shards.len() {
        if x.len() >= rows * d_in {
            break;
        }
        let data = store.read_shard(shard)?;
        let take = (rows * d_in - x.len()).min(data.activations.len());
        x.extend_from_slice(&data.activations[..take]);
    }
    let codes = model.encode(&x);
    let l0 = codes.iter().filter(|&&v| v != 0.0).count() as f64 / rows.max(1) as f64;
    let bytes = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|f| f.to_le_bytes()).collect() };
    let (xb, cb) = (bytes(&x), bytes(&codes));
    let bad = |e: safetensors::SafeTensorError| Error::Invalid(format!("cannot encode: {e}"));
    use safetensors::tensor::{Dtype, TensorView};
    let views = vec![
        (
            "x".to_string(),
            TensorView::new(Dtype::F32, vec![rows, d_in], &xb).map_err(bad)?,
        ),
        (
            "codes".to_string(),
            TensorView::new(Dtype::F32, vec![rows, model.d_sae], &cb).map_err(bad)?,
        ),
    ];
    let data = safetensors::serialize(views, None).map_err(bad)?;
    crate::fsutil::write_atomic(out, &data)?;
    Ok(EncodeReport {
        sae: sae
            .map(|p| p.display().to_string())
            .or_else(|| ws.active_sae().ok())
            .unwrap_or_default(),
        rows,
        d_in,
        d_sae: model.d_sae,
        l0,
        out: out.to_path_buf(),
    })
}
