//! The stages that build a workspace: extract a layer's activations over an image folder, and
//! train an SAE on them. Each stage takes the workspace's writer lock and resumes what an
//! interrupted run left.

use super::device_of;
use crate::backbone::{Backbone, ModelSpec, load_backbone};
use crate::device::DeviceChoice;
use crate::error::{Error, Result};
use crate::job::Job;
use crate::lock::{Hold, create_and_lock, writer};
use crate::sae::workflow::{self, TrainOptions, TrainReport};
use crate::store::Workspace;
use crate::store::extract::{self, ExtractOptions, ExtractReport};
use crate::store::tasks::TaskSpec;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct ExtractRequest {
    pub model: ModelSpec,
    pub device: DeviceChoice,
    pub images: PathBuf,
    pub workspace: PathBuf,
    pub options: ExtractOptions,
    /// One task of a split extraction (`saescope merge` folds them), or None for all of it.
    pub task: Option<TaskSpec>,
}

/// Extracts (or resumes extracting) the layer's activations into the workspace store, or one
/// task's part of them. The options are checked before the model is loaded.
pub fn extract(r: &ExtractRequest, job: &Job) -> Result<ExtractReport> {
    r.options.validate()?;
    let b = load_backbone(&r.model, &device_of(r.device)?)?;
    match r.task {
        // A task takes its own claim, not the workspace lock (which may not work across the
        // machines of a cluster; see `store::tasks`).
        Some(task) => {
            std::fs::create_dir_all(&r.workspace).map_err(|e| Error::io(&r.workspace, e))?;
            let writer = extract::Writer::Task(task);
            extract::extract(
                &r.workspace,
                writer,
                &r.model,
                &b,
                &r.images,
                &r.options,
                job,
            )
        }
        None => extract_locked(&r.workspace, &r.model, &b, &r.images, &r.options, job),
    }
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
    let writer = extract::Writer::Lock(&lock);
    let result = extract::extract(ws_dir, writer, model, backbone, images, options, job);
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
