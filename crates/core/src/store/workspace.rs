//! A workspace is a folder holding one model + layer + image folder combination and everything
//! computed from it: `workspace.json`, `dataset.json`, `activations/`, later the SAE and analyses.

use super::dataset::Dataset;
use crate::backbone::{BackboneInfo, ModelSpec, TokenSelection};
use crate::error::{Error, Result};
use crate::fix::{Command, Opt};
use crate::fsutil;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const WORKSPACE_FILE: &str = "workspace.json";
pub const DATASET_FILE: &str = "dataset.json";
/// The activation store's folder inside a workspace.
pub const ACTIVATIONS_DIR: &str = "activations";
pub const FORMAT_VERSION: u32 = 1;
/// One folder per SAE (`saes/<name>/`): its SAELens files, training checkpoint and metrics, and
/// every analysis of it (index, labels, ontology, OOD results), so they never mix across SAEs.
pub const SAES_DIR: &str = "saes";
/// Which SAE commands and the explorer use when none is named (`saes/active.json`).
const ACTIVE_FILE: &str = "active.json";
/// Before SAEs were versioned a workspace held one SAE in `sae/` and its analyses at the top.
const LEGACY_SAE_DIR: &str = "sae";
const LEGACY_ANALYSES: [&str; 4] = ["index", "labels.json", "ontology.json", "ood"];

#[derive(Serialize, Deserialize)]
struct ActiveSae {
    name: String,
}

/// Checks an SAE name: letters, digits, `.`, `_` and `-`, not starting with `.`, 1–64 long.
pub fn check_sae_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "SAE name `{name}`: use 1 to 64 letters, digits, `.`, `_` or `-`, not starting with `.`"
        )))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreDType {
    F16,
    F32,
}

crate::str_choices!(StoreDType: "f16" => StoreDType::F16, "f32" => StoreDType::F32);

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
            let why = if dir.is_dir() {
                format!(" is not a saescope workspace (no {WORKSPACE_FILE})")
            } else {
                " does not exist".to_string()
            };
            return Err(crate::fixable!(
                [dir, why],
                [
                    "create one with ",
                    Command::Extract(Some(dir.to_path_buf()))
                ]
            ));
        }
        let config: WorkspaceConfig = fsutil::read_json(&file)?;
        if config.format_version > FORMAT_VERSION {
            return Err(Error::Workspace(format!(
                "{}: written by a newer saescope (format {}); upgrade saescope",
                file.display(),
                config.format_version
            )));
        }
        let ws = Workspace {
            dir: dir.to_path_buf(),
            config,
        };
        ws.tidy()?;
        Ok(ws)
    }

    /// On open: temporary files of killed writers go, and a workspace from before SAEs were
    /// versioned is moved to the `saes/` layout once (under the writer lock; a busy workspace
    /// is left for its writer, which is a current saescope).
    fn tidy(&self) -> Result<()> {
        let legacy = self.dir.join(LEGACY_SAE_DIR).join("cfg.json").is_file()
            || LEGACY_ANALYSES
                .iter()
                .any(|a| self.dir.join(a).exists() && self.saes_dir().is_dir());
        if !legacy {
            crate::fsutil::remove_stale_temp_files(&self.dir, 3, false);
            return Ok(());
        }
        // The one writer outside ops: a once-only layout move, skipped when the workspace is busy.
        #[allow(clippy::disallowed_methods)]
        let Ok(_lock) = super::lock::lock_writer(&self.dir, "open (moving the SAE to saes/)", None)
        else {
            return Ok(());
        };
        crate::fsutil::remove_stale_temp_files(&self.dir, 3, true);
        self.migrate_legacy()
    }

    /// `sae/` → `saes/<name>/`, then the top-level analyses into it. Each step is one rename, and
    /// a crash between steps is finished by the next open.
    fn migrate_legacy(&self) -> Result<()> {
        let legacy = self.dir.join(LEGACY_SAE_DIR);
        if legacy.join("cfg.json").is_file() {
            let cfg: serde_json::Value = crate::fsutil::read_json(&legacy.join("cfg.json"))?;
            let arch = cfg["architecture"].as_str().unwrap_or("sae");
            let mut name = format!("{arch}-{}", cfg["d_sae"].as_u64().unwrap_or(0));
            if let Some(k) = cfg["k"].as_f64() {
                name.push_str(&format!("-k{k}"));
            }
            let saes = self.saes_dir();
            std::fs::create_dir_all(&saes).map_err(|e| Error::io(&saes, e))?;
            let mut target = saes.join(&name);
            let mut n = 2;
            while target.exists() {
                target = saes.join(format!("{name}-{n}"));
                n += 1;
            }
            std::fs::rename(&legacy, &target).map_err(|e| Error::io(&target, e))?;
            let name = target
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or(name);
            self.set_active_sae(&name)?;
        }
        let Ok(home) = self.sae_home(None) else {
            return Ok(());
        };
        for a in LEGACY_ANALYSES {
            let (from, to) = (self.dir.join(a), home.join(a));
            if from.exists() && !to.exists() {
                std::fs::rename(&from, &to).map_err(|e| Error::io(&to, e))?;
            }
        }
        Ok(())
    }

    /// `saes/`: one folder per SAE.
    pub fn saes_dir(&self) -> PathBuf {
        self.dir.join(SAES_DIR)
    }

    /// The folder of the SAE called `name` (it may not exist yet).
    pub fn sae_dir(&self, name: &str) -> PathBuf {
        self.saes_dir().join(name)
    }

    /// Names of the finished SAEs (folders holding `cfg.json`), sorted.
    pub fn sae_names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.saes_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("cfg.json").is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// The SAE used when none is named: the one last trained, imported or chosen
    /// (`saescope use-sae`), or the only one.
    pub fn active_sae(&self) -> Result<String> {
        let names = self.sae_names();
        let chosen = crate::fsutil::read_json::<ActiveSae>(&self.saes_dir().join(ACTIVE_FILE))
            .ok()
            .map(|a| a.name)
            .filter(|n| names.contains(n));
        match (chosen, names.as_slice()) {
            (Some(n), _) => Ok(n),
            (None, [only]) => Ok(only.clone()),
            (None, []) => Err(crate::fixable!(
                [&self.dir, " has no SAE yet"],
                ["train one with ", Command::Train(self.dir.clone())]
            )),
            (None, many) => Err(crate::fixable!(
                [
                    &self.dir,
                    format!(" holds several SAEs ({})", many.join(", "))
                ],
                [
                    "name one with ",
                    Opt::Sae,
                    " or choose one with ",
                    Command::UseSae
                ]
            )),
        }
    }

    /// Makes `name` the SAE used when none is named.
    pub fn set_active_sae(&self, name: &str) -> Result<()> {
        check_sae_name(name)?;
        crate::fsutil::write_json_atomic(
            &self.saes_dir().join(ACTIVE_FILE),
            &ActiveSae { name: name.into() },
        )
    }

    /// The folder of the SAE called `name` (which must exist), or of the active one.
    pub fn sae_home(&self, name: Option<&str>) -> Result<PathBuf> {
        let name = match name {
            Some(n) => {
                check_sae_name(n)?;
                if !self.sae_dir(n).join("cfg.json").is_file() {
                    let names = self.sae_names();
                    return Err(Error::Workspace(format!(
                        "{} has no SAE called `{n}` (it has: {})",
                        self.dir.display(),
                        if names.is_empty() {
                            "none yet".to_string()
                        } else {
                            names.join(", ")
                        }
                    )));
                }
                n.to_string()
            }
            None => self.active_sae()?,
        };
        Ok(self.sae_dir(&name))
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
                return Err(crate::fixable!(
                    [
                        dir,
                        format!(
                            " already holds activations of {} layer {} over {} ({:?} tokens, {:?}); \
                     this run asks for {} layer {} over {} ({:?} tokens, {:?})",
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
                        )
                    ],
                    ["give another folder with ", Opt::Workspace]
                ));
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
    /// The image listing, checked before use: class ids in range, paths inside the image
    /// folder, and as many images as the activations were extracted over.
    pub fn dataset(&self) -> Result<Dataset> {
        let path = self.dir.join(DATASET_FILE);
        let ds: Dataset = fsutil::read_json(&path)?;
        let damaged = |why: String| {
            Error::Workspace(format!(
                "{}: {why}; the file was changed after extraction: restore it, or extract into \
                 a new workspace",
                path.display()
            ))
        };
        ds.check().map_err(damaged)?;
        let manifest = self
            .activations_dir()
            .join(super::activations::MANIFEST_FILE);
        if let Ok(m) = fsutil::read_json::<super::activations::Manifest>(&manifest)
            && m.dataset_images != ds.images.len()
        {
            return Err(damaged(format!(
                "it lists {} images but the activations were extracted over {}",
                ds.images.len(),
                m.dataset_images
            )));
        }
        Ok(ds)
    }

    pub fn save_dataset(&self, ds: &Dataset) -> Result<()> {
        fsutil::write_json_atomic(&self.dir.join(DATASET_FILE), ds)
    }
}
