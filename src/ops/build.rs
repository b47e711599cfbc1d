//! The stages that build a workspace: extract a layer's activations over an image folder, and
//! train an SAE on them. Each stage takes the workspace's writer lock itself and resumes what an
//! interrupted run left.

use super::device_of;
use crate::backbone::{ModelSpec, load_backbone};
use crate::device::DeviceChoice;
use crate::error::Result;
use crate::job::Job;
use crate::sae::workflow::{self, TrainOptions, TrainReport};
use crate::store::Workspace;
use crate::store::extract::{self, ExtractOptions, ExtractReport};
use std::path::PathBuf;

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
    extract::extract(&r.workspace, &r.model, &b, &r.images, &r.options, job)
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
    workflow::train(&ws, &options, job)
}
