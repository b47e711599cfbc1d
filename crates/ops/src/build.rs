//! The stages that build a workspace: extract a layer's activations over an image folder, and
//! train an SAE on them. Each stage takes the workspace's writer lock and resumes what an
//! interrupted run left.

use super::device_of;
use crate::backbone::{Backbone, ModelSpec, load_backbone};
use crate::device::DeviceChoice;
use crate::error::Result;
use crate::job::Job;
use crate::lock::{Hold, create_and_lock, writer};
use crate::sae::workflow::{self, TrainOptions, TrainReport};
use crate::store::Workspace;
use crate::store::extract::{self, ExtractOptions, ExtractReport};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct ExtractRequest {
    pub model: ModelSpec,
    pub device: DeviceChoice,
    pub images: PathBuf,
    pub workspace: PathBuf,
    pub options: ExtractOptions,
}

/// Extracts (or resumes extracting) the layer's activations into the workspace store. The
/// options are checked before the model is loaded.
pub fn extract(r: &ExtractRequest, job: &Job) -> Result<ExtractReport> {
    r.options.validate()?;
    let b = load_backbone(&r.model, &device_of(r.device)?)?;
    extract_locked(&r.workspace, &r.model, &b, &r.images, &r.options, job)
}

/// Extraction under the workspace's writer lock. A run that creates the workspace and fails
/// before its first shard removes it again, so the corrected run is not refused by a half-made
/// `workspace.json`.
pub(crate) fn extract_locked(
    ws_dir: &Path,
    model: &ModelSpec,
    backbone: &dyn Backbone,
    images: &Path,
    options: &ExtractOptions,
    job: &Job,
) -> Result<ExtractReport> {
    let (lock, created) = create_and_lock(ws_dir, "extract")?;
    let result = extract::extract(ws_dir, &lock, model, backbone, images, options, job);
    if result.is_err() && created && !extract::has_shards(ws_dir) {
        drop(lock);
        // Best effort: the error that matters is the one returned.
        let _ = std::fs::remove_dir_all(ws_dir);
    }
    result
}

#[derive(Clone, Debug)]
pub struct TrainRequest {
    pub workspace: PathBuf,
    pub device: DeviceChoice,
    pub options: TrainOptions,
}

/// Trains (or resumes, or reports as finished) an SAE on the workspace's activations.
pub fn train(r: &TrainRequest, job: &Job) -> Result<TrainReport> {
    let ws = Workspace::open(&r.workspace)?;
    let options = TrainOptions {
        device: device_of(r.device)?,
        ..r.options.clone()
    };
    let lock = writer(&ws.dir, "train", Hold::Job)?;
    workflow::train(&ws, &lock, &options, job)
}
