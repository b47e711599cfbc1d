//! A workspace is a folder holding one model + layer + image folder combination and everything
//! computed from it: `workspace.json`, `dataset.json`, `activations/`, later the SAE and analyses.

use super::dataset::Dataset;
use crate::backbone::{BackboneInfo, ModelSpec, TokenSelection};
use crate::error::{Error, Result};
use crate::fsutil;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const WORKSPACE_FILE: &str = "workspace.json";
pub const DATASET_FILE: &str = "dataset.json";
/// The activation store's folder inside a workspace.
pub const ACTIVATIONS_DIR: &str = "activations";
pub const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum StoreDType {
    F16,
    F32,
}

impl StoreDType {
    pub fn bytes(self) -> usize {
        match self {
            StoreDType::F16 => 2,
            StoreDType::F32 => 4,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceConfig {
    pub format_version: u32,
    pub model: ModelSpec,
    /// Residual stream after this block (0-based).
    pub layer: usize,
    /// The image folder, absolute.
    pub images: PathBuf,
    pub tokens: TokenSelection,
    pub dtype: StoreDType,
    /// What the model looked like when the workspace was made (for display and checks).
    pub backbone: BackboneInfo,
    /// The model's preprocessing, so heatmaps are drawn on exactly the pixels it saw
    /// (workspaces made before it was recorded have none: images are then stretched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preprocessor: Option<crate::backbone::preprocess::Preprocessor>,
}

pub struct Workspace {
    pub dir: PathBuf,
    pub config: WorkspaceConfig,
}

impl Workspace {
    pub fn open(dir: &Path) -> Result<Workspace> {
        let file = dir.join(WORKSPACE_FILE);
        if !file.is_file() {
            return Err(Error::Workspace(format!(
                "{} is not a saescope workspace (no {WORKSPACE_FILE}); create one with `saescope extract --workspace {}`",
                dir.display(),
                dir.display()
            )));
        }
        let config: WorkspaceConfig = fsutil::read_json(&file)?;
        if config.format_version > FORMAT_VERSION {
            return Err(Error::Workspace(format!(
                "{}: written by a newer saescope (format {}); upgrade saescope",
                file.display(),
                config.format_version
            )));
        }
        Ok(Workspace {
            dir: dir.to_path_buf(),
            config,
        })
    }

    /// Opens the workspace at `dir` if it was made with the same settings, or creates it.
    /// Refuses to mix activations of different models, layers, folders or token selections.
    pub fn open_or_create(dir: &Path, config: WorkspaceConfig) -> Result<Workspace> {
        if dir.join(WORKSPACE_FILE).is_file() {
            let ws = Workspace::open(dir)?;
            let old = &ws.config;
            let same = old.model == config.model
                && old.layer == config.layer
                && old.images == config.images
                && old.tokens == config.tokens
                && old.dtype == config.dtype;
            if !same {
                return Err(Error::Workspace(format!(
                    "{} already holds activations of {} layer {} over {} ({:?} tokens, {:?}); \
                     this run asks for {} layer {} over {} ({:?} tokens, {:?}). Use another --workspace folder",
                    dir.display(),
                    old.model.source,
                    old.layer,
                    old.images.display(),
                    old.tokens,
                    old.dtype,
                    config.model.source,
                    config.layer,
                    config.images.display(),
                    config.tokens,
                    config.dtype
                )));
            }
            return Ok(ws);
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        fsutil::write_json_atomic(&dir.join(WORKSPACE_FILE), &config)?;
        Ok(Workspace {
            dir: dir.to_path_buf(),
            config,
        })
    }

    pub fn activations_dir(&self) -> PathBuf {
        self.dir.join(ACTIVATIONS_DIR)
    }

    /// The image listing fixed when extraction started (so resumed runs see the same order).
    pub fn dataset(&self) -> Result<Dataset> {
        fsutil::read_json(&self.dir.join(DATASET_FILE))
    }

    pub fn save_dataset(&self, ds: &Dataset) -> Result<()> {
        fsutil::write_json_atomic(&self.dir.join(DATASET_FILE), ds)
    }
}
