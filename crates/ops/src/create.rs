//! A workspace from nothing: extract a layer over an image folder, train an SAE (or import one),
//! and index it; the app's "new workspace" form runs this.

use crate::backbone::{ModelSpec, TokenSelection, load_backbone};
use crate::error::Result;
use crate::job::Job;
use crate::lock::{Hold, writer};
use crate::sae::workflow::{TrainOptions, sae_home, train, workspace_sae};
use crate::store::Workspace;
use crate::store::extract::ExtractOptions;
use crate::store::workspace::StoreDType;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Clone, Debug)]
pub struct CreateRequest {
    pub model: ModelSpec,
    /// Where the backbone, the training and the index run (`train.device` is replaced by it).
    pub device: crate::device::DeviceChoice,
    pub layer: usize,
    pub images: PathBuf,
    pub workspace: PathBuf,
    /// An SAE to import instead of training one.
    pub sae_file: Option<PathBuf>,
    pub train: TrainOptions,
}

#[derive(Debug, Serialize)]
pub struct CreateReport {
    pub extracted_images: usize,
    pub skipped_images: usize,
    pub sae: String,
    pub features: usize,
    /// Features labelled with their most precise class (class sub-folders only), so search by
    /// class name works from the start.
    pub labelled_from_classes: usize,
}

pub fn create(r: &CreateRequest, job: &Job) -> Result<CreateReport> {
    let device = super::device_of(r.device)?;
    let backbone = load_backbone(&r.model, &device)?;
    let opts = ExtractOptions {
        layer: r.layer,
        tokens: TokenSelection::All,
        dtype: StoreDType::F16,
        batch_size: 64,
        images_per_shard: None,
    };
    let ex =
        crate::build::extract_locked(&r.workspace, &r.model, &backbone, &r.images, &opts, job)?;
    drop(backbone);
    let s = add_sae(
        &SaeRequest {
            device: r.device,
            workspace: r.workspace.clone(),
            sae_file: r.sae_file.clone(),
            train: r.train.clone(),
        },
        job,
    )?;
    Ok(CreateReport {
        labelled_from_classes: s.labelled_from_classes,
        extracted_images: ex.extracted_images,
        skipped_images: ex.skipped.len(),
        sae: s.sae,
        features: s.features,
    })
}

/// The SAE half of a new workspace, also offered by the explorer for a workspace that has
/// activations but no SAE yet (e.g. made by `saescope extract` alone).
#[derive(Clone, Debug)]
pub struct SaeRequest {
    pub device: crate::device::DeviceChoice,
    pub workspace: PathBuf,
    /// An SAE to import instead of training one.
    pub sae_file: Option<PathBuf>,
    pub train: TrainOptions,
}

#[derive(Debug, Serialize)]
pub struct SaeReport {
    pub sae: String,
    pub features: usize,
    pub labelled_from_classes: usize,
}

/// Trains (or imports) the workspace's SAE, makes it active, indexes it and labels its features
/// with their most precise class.
pub fn add_sae(r: &SaeRequest, job: &Job) -> Result<SaeReport> {
    let device = super::device_of(r.device)?;
    let ws = Workspace::open(&r.workspace)?;
    let home = match &r.sae_file {
        // A finished SAE of these settings is reported, not trained again.
        None => {
            let options = TrainOptions {
                device: device.clone(),
                ..r.train.clone()
            };
            let lock = writer(&ws.dir, "train", Hold::Job)?;
            ws.sae_dir(&train(&ws, &lock, &options, job)?.name)
        }
        Some(from) => {
            // Kept as a copy in the workspace (SAELens layout) so it is self-contained.
            let _lock = writer(&ws.dir, "import SAE", Hold::Edit)?;
            let home = sae_home(&ws, Some(from))?;
            let name = home
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            ws.set_active_sae(&name)?;
            home
        }
    };
    let sae = workspace_sae(&ws, Some(&home))?.on_device(&device)?;
    let _lock = writer(&ws.dir, "index", Hold::Job)?;
    let ix = crate::analysis::index::build_index(
        &ws,
        &home,
        &sae,
        &crate::analysis::index::IndexOptions::default(),
        job,
    )?;
    let ds = ws.dataset()?;
    let labelled_from_classes = if ds.classes.is_empty() {
        0
    } else {
        let idx = crate::analysis::index::load_index(&home)?;
        let null = crate::analysis::label_null::class_null(&ws, idx.top_n, job)?;
        let mut l = crate::analysis::labels::Labels::load(&home)?;
        let n = crate::analysis::labels::label_from_classes(&mut l, &idx, &ds, &null)?;
        l.save(&home)?;
        n
    };
    Ok(SaeReport {
        labelled_from_classes,
        sae: home
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        features: ix.features,
    })
}
