//! One function per use case over a workspace. Each takes its options, validates them, opens the
//! workspace, takes the writer lock when it writes, resolves the SAE (`--sae` or the active one),
//! runs the analysis with progress and cancel through [`Job`](crate::job::Job), saves the result
//! beside its SAE and returns a report. The CLI (`src/main.rs`) and the app (`saescope-app`) call
//! these instead of the analysis modules, so a use case is written once.
//!
//! The front ends depend on this crate only. It re-exports the core's models, SAEs, analyses and
//! steering types, but of the store only what reads ([`workspace`]): shard writing, the writer
//! lock and the other persistence stay behind these functions.
#![cfg_attr(test, allow(clippy::disallowed_methods))] // unit tests write fixtures directly

pub mod analyse;
pub mod bench;
pub mod benchmark;
pub mod build;
pub mod cluster;
pub mod compare;
pub mod create;
pub mod estimate;
pub mod example;
pub mod intervene;
mod lock;
pub mod measure;
pub mod saes;
pub mod session;
pub mod share;
pub mod steering;
pub mod sweep;

/// The whole store, for the use cases here; front ends see [`workspace`].
pub(crate) use saescope_core::store;
pub use saescope_core::{
    Choices, Error, Result, analysis, backbone, device, error, fix, fixable, fsutil, job, linalg,
    memory, rng, sae, shared, steer,
};

/// What the front ends may use of the store: opening and reading a workspace, never writing it.
pub mod workspace {
    pub use saescope_core::store::Workspace;
    pub use saescope_core::store::activations::{ActivationStore, ShardData};
    pub use saescope_core::store::dataset::{Dataset, load_rgb};
    pub use saescope_core::store::extract::{ExtractOptions, for_each_decoded};
    pub use saescope_core::store::workspace::{SAES_DIR, StoreDType};
}

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

/// The value, or None with its error added to `problems` (for views that show what loaded and
/// say what did not).
/// Errors in a report, written to JSON as their messages (the command line's words).
pub(crate) fn as_messages<S: serde::Serializer, E: std::fmt::Display>(
    errors: &[E],
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_seq(errors.iter().map(ToString::to_string))
}

pub(crate) fn noted<T>(r: Result<T>, problems: &mut Vec<Error>) -> Option<T> {
    r.map_err(|e| problems.push(e)).ok()
}
