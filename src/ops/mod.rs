//! One function per use case over a workspace. Each takes its options, validates them, opens the
//! workspace, takes the writer lock when it writes, resolves the SAE (`--sae` or the active one),
//! runs the analysis with progress and cancel through [`Job`](crate::job::Job), saves the result
//! beside its SAE and returns a report. The CLI (`src/main.rs`) and the app (`app/`) call these
//! instead of the analysis modules, so a use case is written once.

pub mod analyse;
pub mod build;
pub mod create;
pub mod example;
pub mod intervene;
pub mod measure;
pub mod saes;
pub mod share;

use crate::error::Result;
use crate::sae::Sae;
use crate::store::Workspace;
use std::path::{Path, PathBuf};

/// The device a request's choice names (resolved once per process; see [`crate::device`]).
pub fn device_of(choice: crate::device::DeviceChoice) -> Result<candle_core::Device> {
    crate::device::resolve(choice).map(|(d, _)| d)
}

/// The folder and weights of the SAE that `sae` names: a name under `WS/saes/`, an SAE folder
/// (one from elsewhere is imported), or None for the active one. Call under the writer lock when
/// the SAE may be imported.
pub fn sae_of(ws: &Workspace, sae: Option<&Path>) -> Result<(PathBuf, Sae)> {
    let home = crate::sae::workflow::sae_home(ws, sae)?;
    let sae = crate::sae::workflow::workspace_sae(ws, Some(&home))?;
    Ok((home, sae))
}
