//! Sharing an SAE's features: export them (JSON + CSV + PNGs) and import an export's labels.

use super::sae_of;
use crate::analysis::export::{self, ExportReport, ImportReport, Selection};
use crate::analysis::{index, labels};
use crate::error::Result;
use crate::lock::{Hold, writer};
use crate::store::Workspace;
use std::path::PathBuf;

#[derive(Clone, Debug)]
pub struct ExportRequest {
    pub workspace: PathBuf,
    pub sae: Option<PathBuf>,
    pub selection: Selection,
    pub out: PathBuf,
    pub pngs: bool,
}

/// Writes the selected features of the SAE, with their saved labels, to `out`.
pub fn export(r: &ExportRequest, job: &crate::job::Job) -> Result<ExportReport> {
    let ws = Workspace::open(&r.workspace)?;
    // Export reads. Only an SAE folder from elsewhere is imported into the workspace first, a
    // write under the lock; the workspace's own SAEs export from a read-only workspace too.
    let own = crate::sae::catalog::own_sae_dir(&ws, r.sae.as_deref())?;
    let (home, sae) = match own {
        Some(home) => {
            let sae = crate::sae::workflow::workspace_sae(&ws, Some(&home))?;
            (home, sae)
        }
        None => {
            let _lock = writer(&ws.dir, "export", Hold::Edit)?;
            sae_of(&ws, r.sae.as_deref())?
        }
    };
    let idx = index::load_index(&home)?;
    let l = labels::Labels::load(&home)?;
    export::export(&ws, &sae, &idx, &l, &r.selection, &r.out, r.pngs, job)
}

#[derive(Clone, Debug)]
pub struct ImportLabelsRequest {
    pub workspace: PathBuf,
    pub sae: Option<PathBuf>,
    /// An export's `features.json` or its folder.
    pub from: PathBuf,
    /// Import even when the export was made with another SAE.
    pub force: bool,
}

/// Applies an export's labels to the SAE's labels (manual labels already there win).
pub fn import_labels(r: &ImportLabelsRequest) -> Result<ImportReport> {
    let ws = Workspace::open(&r.workspace)?;
    let _lock = writer(&ws.dir, "import-labels", Hold::Edit)?;
    let (home, sae) = sae_of(&ws, r.sae.as_deref())?;
    export::import_labels(&home, &sae, &r.from, r.force)
}
