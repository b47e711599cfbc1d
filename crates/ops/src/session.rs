//! Opening a workspace to browse it (the explorer, `saescope summary`): the workspace, its
//! active SAE and the analyses beside it, each loaded or with the error that stopped it, so one
//! broken file is reported while the rest still loads. Read-only.

use crate::analysis::causal::{self, FeatureEffect};
use crate::analysis::index::{self, FeatureIndex};
use crate::analysis::labels::Labels;
use crate::analysis::ontology::{self, Ontology};
use crate::analysis::ood::{self, OodResults};
use crate::error::{Error, Result};
use crate::noted;
use crate::sae::Sae;
use crate::store::activations::ActivationStore;
use crate::store::{Dataset, Workspace};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What a browsing session shows of a workspace.
pub struct Session {
    pub ws: Workspace,
    pub ds: Dataset,
    /// The active SAE's folder (None: no SAE yet, or several and none chosen).
    pub home: Option<PathBuf>,
    pub sae: Option<Sae>,
    pub index: Option<FeatureIndex>,
    pub labels: Labels,
    pub analyses: Analyses,
    /// Indices of the stored tokens in the model's token sequence.
    pub token_indices: Vec<usize>,
    /// What could not be loaded, each with its file and fix; the rest loaded.
    pub problems: Vec<Error>,
}

/// The analyses saved beside an SAE (absent files are "not computed yet").
#[derive(Default)]
pub struct Analyses {
    pub ood: Option<OodResults>,
    pub ontology: Option<Ontology>,
    pub effects: Vec<FeatureEffect>,
}

/// Opens the workspace in `dir` with its active SAE, index, labels and analyses.
pub fn open(dir: &Path) -> Result<Session> {
    let ws = Workspace::open(dir)?;
    let ds = ws.dataset()?;
    let mut problems = Vec::new();
    // No SAE yet is a state to offer a fix for; several SAEs and none active is a choice to
    // make; a broken SAE is a problem.
    let home = match ws.sae_home(None) {
        Ok(h) => Some(h),
        Err(e) if !ws.sae_names().is_empty() => {
            problems.push(e);
            None
        }
        Err(_) => None,
    };
    let sae = home.as_ref().and_then(|h| {
        noted(
            crate::sae::workflow::workspace_sae(&ws, Some(h)),
            &mut problems,
        )
    });
    let index = home
        .as_ref()
        .filter(|h| index::index_dir(h).exists())
        .and_then(|h| noted(index::load_index(h), &mut problems));
    let labels = match &home {
        Some(h) => Labels::load(h)?,
        None => Labels::default(),
    };
    let analyses = match &home {
        Some(h) => read_analyses(h, &mut problems),
        None => Analyses::default(),
    };
    let token_indices = ws.config.backbone.geometry.select(ws.config.tokens)?;
    Ok(Session {
        ws,
        ds,
        home,
        sae,
        index,
        labels,
        analyses,
        token_indices,
        problems,
    })
}

/// The OOD results, ontology and causal effects saved beside the SAE in `home`; unreadable
/// files are added to `problems`.
pub fn read_analyses(home: &Path, problems: &mut Vec<Error>) -> Analyses {
    fn read<T: serde::de::DeserializeOwned>(path: &Path, problems: &mut Vec<Error>) -> Option<T> {
        if !path.exists() {
            return None;
        }
        noted(crate::fsutil::read_json(path), problems)
    }
    Analyses {
        ood: read(&ood::results_path(home), problems),
        ontology: read(&ontology::ontology_path(home), problems),
        effects: read(&causal::effects_path(home), problems).unwrap_or_default(),
    }
}

/// A workspace at a glance (the app's workspace panel, `saescope summary`).
#[derive(Debug, Serialize)]
pub struct Summary {
    pub workspace: PathBuf,
    pub model: String,
    pub layer: usize,
    pub n_layers: usize,
    pub width: usize,
    pub images: PathBuf,
    pub tokens: String,
    /// None: no activations extracted yet.
    pub activations: Option<ActivationsSummary>,
    pub active_sae: Option<String>,
    pub saes: Vec<crate::saes::SaeSummary>,
    /// Files that are there but cannot be read.
    #[serde(serialize_with = "crate::as_messages")]
    pub problems: Vec<Error>,
}

#[derive(Debug, Serialize)]
pub struct ActivationsSummary {
    pub rows: usize,
    pub shards: usize,
    pub planned_shards: usize,
    pub dtype: String,
    pub skipped_images: usize,
}

/// Describes the workspace in `dir`: model, layer, activations, SAEs, and what cannot be read.
pub fn summary(dir: &Path) -> Result<Summary> {
    let ws = Workspace::open(dir)?;
    let c = &ws.config;
    let mut problems = Vec::new();
    let manifest = ws
        .activations_dir()
        .join(crate::store::activations::MANIFEST_FILE);
    let activations = if manifest.exists() {
        match ActivationStore::open(&ws.activations_dir()) {
            Ok(store) => {
                let m = &store.manifest;
                Some(ActivationsSummary {
                    rows: m.rows(),
                    shards: m.shards.len(),
                    planned_shards: m.planned_shards(),
                    dtype: format!("{:?}", m.dtype).to_lowercase(),
                    skipped_images: m.skipped().len(),
                })
            }
            Err(e) => {
                problems.push(e);
                None
            }
        }
    } else {
        None
    };
    let active_sae = ws.active_sae().ok();
    let saes = crate::saes::list_saes(&ws);
    Ok(Summary {
        workspace: ws.dir.clone(),
        model: c.model.source.clone(),
        layer: c.layer,
        n_layers: c.backbone.n_layers,
        width: c.backbone.d_model,
        images: c.images.clone(),
        tokens: format!("{:?}", c.tokens).to_lowercase(),
        activations,
        active_sae,
        saes,
        problems,
    })
}
