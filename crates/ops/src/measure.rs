//! Measurements that run the model over images and write nothing into the workspace: a
//! classifier head's accuracy, an SAE's quality on a folder, a linear probe (clean and spliced),
//! and feature heatmaps over any image.

use super::device_of;
use crate::analysis::classify::{self, ClassifyReport};
use crate::analysis::heatmap::{self, Heatmap};
use crate::analysis::probe::{self, ProbeOptions, ProbeReport};
use crate::backbone::{Backbone, ModelSpec, load_backbone};
use crate::device::DeviceChoice;
use crate::error::{Error, Result};
use crate::fix::Opt;
use crate::job::Job;
use crate::sae::workflow::{self, EvalReport};
use crate::store::{Dataset, Workspace};
use serde::Serialize;
use std::path::PathBuf;

#[derive(Clone, Debug)]
pub struct ClassifyRequest {
    pub model: ModelSpec,
    pub device: DeviceChoice,
    pub images: PathBuf,
    pub batch: usize,
}

/// Accuracy of the model's classifier head on a folder of class sub-folders.
pub fn classify(r: &ClassifyRequest, job: &Job) -> Result<ClassifyReport> {
    if r.batch == 0 {
        return Err(crate::fix::at_least_one(Opt::Batch));
    }
    let b = load_backbone(&r.model, &device_of(r.device)?)?;
    let ds = Dataset::scan(&r.images)?;
    classify::classify(&b, &ds, r.batch, job)
}

#[derive(Clone, Debug)]
pub struct EvalRequest {
    pub workspace: PathBuf,
    pub sae: Option<PathBuf>,
    pub device: DeviceChoice,
    pub images: PathBuf,
    pub batch: usize,
}

/// The SAE's FVE, MSE, L0, dead/dense counts and spliced accuracy on an image folder.
pub fn evaluate(r: &EvalRequest, job: &Job) -> Result<EvalReport> {
    if r.batch == 0 {
        return Err(crate::fix::at_least_one(Opt::Batch));
    }
    let ws = Workspace::open(&r.workspace)?;
    let device = device_of(r.device)?;
    let sae = workflow::workspace_sae(&ws, r.sae.as_deref())?.on_device(&device)?;
    let b = load_backbone(&ws.config.model, &device)?;
    workflow::evaluate(&ws, &b, &sae, &r.images, r.batch, job)
}

#[derive(Clone, Debug)]
pub struct ProbeRequest {
    pub model: ModelSpec,
    pub device: DeviceChoice,
    /// Folder the probe is fit on (its L2 strength chosen on every fifth image of it).
    pub fit: PathBuf,
    /// Folder the probe is scored on.
    pub eval: PathBuf,
    /// A workspace of this model: the probe taps its layer (reading its stored activations),
    /// and with `spliced` also replaces that layer by an SAE's reconstruction (`sae`).
    pub workspace: Option<PathBuf>,
    pub spliced: bool,
    /// The SAE `spliced` uses: a name under WS/saes/ or an SAE folder; `None` for the
    /// workspace's active SAE.
    pub sae: Option<PathBuf>,
    pub options: ProbeOptions,
}

/// A linear probe on the pooled output, clean and (with an SAE) spliced.
pub fn probe(r: &ProbeRequest, job: &Job) -> Result<ProbeReport> {
    if r.options.batch == 0 {
        return Err(crate::fix::at_least_one(Opt::Batch));
    }
    if r.options.l2.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
        return Err(crate::fixable!([
            Opt::L2,
            format!(
                " must be a finite number of at least 0 (got {})",
                r.options.l2.unwrap_or_default()
            )
        ]));
    }
    if r.spliced && r.workspace.is_none() {
        return Err(crate::fixable!(
            [Opt::Spliced, " needs a workspace"],
            [
                "name with ",
                Opt::Workspace,
                " the workspace whose layer and SAE are spliced in"
            ]
        ));
    }
    let device = device_of(r.device)?;
    let b = load_backbone(&r.model, &device)?;
    // With a workspace, the model runs to its layer (or reads it from its store) and finishes
    // from there; the pooled output is the same.
    let (layer, sae) = match &r.workspace {
        Some(dir) => {
            let ws = Workspace::open(dir)?;
            let sae = if r.spliced {
                Some(workflow::workspace_sae(&ws, r.sae.as_deref())?.on_device(&device)?)
            } else {
                None
            };
            (ws.config.layer, sae)
        }
        None => (b.info().n_layers - 1, None),
    };
    let mut options = r.options.clone();
    if let Some(dir) = &r.workspace
        && !options.reuse_stores.contains(dir)
    {
        options.reuse_stores.insert(0, dir.clone());
    }
    probe::probe(&b, sae.as_ref(), layer, &r.fit, &r.eval, &options, job)
}

#[derive(Clone, Debug)]
pub struct HeatmapRequest {
    pub workspace: PathBuf,
    pub sae: Option<PathBuf>,
    pub device: DeviceChoice,
    /// Any image file, in the dataset or not.
    pub image: PathBuf,
    pub features: Vec<u32>,
    /// Write one overlay PNG per feature here (`heatmap-<feature>.png`).
    pub png_dir: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
pub struct HeatmapReport {
    pub image: PathBuf,
    pub heatmaps: Vec<Heatmap>,
    pub png: Vec<PathBuf>,
}

/// Heatmaps of features over one image, and overlays as PNGs when asked.
pub fn heatmap(r: &HeatmapRequest) -> Result<HeatmapReport> {
    let ws = Workspace::open(&r.workspace)?;
    let device = device_of(r.device)?;
    // Heatmaps write nothing into the workspace: an SAE folder from elsewhere is read in place,
    // never imported (D8: the import ran without the lock and was overwritten by a training).
    let sae = workflow::workspace_sae(&ws, r.sae.as_deref())?.on_device(&device)?;
    let b = load_backbone(&ws.config.model, &device)?;
    let heatmaps = heatmap::heatmaps_for_image(&b, &sae, ws.config.layer, &r.image, &r.features)?;
    let mut png = Vec::new();
    if let Some(out) = &r.png_dir {
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        let img = crate::store::dataset::load_rgb(&r.image)
            .map_err(|e| Error::Invalid(format!("{}: {e}", r.image.display())))?;
        let view = b.preprocessor().view(&img).0;
        for m in &heatmaps {
            let o = heatmap::overlay(&view, m, m.zoom_for(256), 0.0, 0.75);
            let p = out.join(format!("heatmap-{}.png", m.feature));
            o.save(&p)
                .map_err(|e| Error::Invalid(format!("{}: cannot write PNG: {e}", p.display())))?;
            png.push(p);
        }
    }
    Ok(HeatmapReport {
        image: r.image.clone(),
        heatmaps,
        png,
    })
}

#[derive(Clone, Debug)]
pub struct NearestRequest {
    pub workspace: PathBuf,
    pub sae: Option<PathBuf>,
    pub feature: u32,
    pub n: usize,
}

#[derive(Debug, Serialize)]
pub struct NearestReport {
    pub sae: PathBuf,
    pub feature: u32,
    /// Closest first.
    pub nearest: Vec<Neighbour>,
}

#[derive(Debug, Serialize)]
pub struct Neighbour {
    pub feature: u32,
    /// Cosine of the two decoder directions.
    pub cosine: f32,
    /// Its label, when it has one.
    pub label: Option<String>,
}

/// The features of a workspace SAE whose decoder directions are closest to `feature`'s (cosine),
/// with their labels (`saescope nearest`; the feature page calls `Sae::nearest_features`).
/// Read-only: an SAE from elsewhere is read in place.
pub fn nearest(r: &NearestRequest) -> Result<NearestReport> {
    let ws = Workspace::open(&r.workspace)?;
    // The workspace's own SAE by name, or a folder from elsewhere read in place (not imported).
    let home = match crate::sae::catalog::own_sae_dir(&ws, r.sae.as_deref())? {
        Some(home) => home,
        None => r.sae.clone().unwrap_or_default(),
    };
    let sae = crate::sae::workflow::workspace_sae(&ws, Some(&home))?;
    let labels = crate::analysis::labels::Labels::load(&home)?;
    let nearest = sae
        .nearest_features(r.feature, r.n)?
        .into_iter()
        .map(|(feature, cosine)| Neighbour {
            feature,
            cosine,
            label: labels.labels.get(&feature).map(|l| l.text.clone()),
        })
        .collect();
    Ok(NearestReport {
        nearest,
        sae: home,
        feature: r.feature,
    })
}
