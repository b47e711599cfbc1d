//! One file per CLI command: its arguments (`…Args`) and `run`, a thin layer over the library
//! (`ops::ops` and the modules below it). Shared helpers (`emit`, `progress_job`, `ModelArgs`)
//! live in `main.rs`.

use super::*;

pub mod bench;
pub mod classify;
pub mod encode;
pub mod eval;
pub mod eval_sae;
pub mod example;
pub mod export;
pub mod extract;
pub mod heatmap;
pub mod import_labels;
pub mod index;
pub mod info;
pub mod intervene;
pub mod label;
pub mod merge;
pub mod nearest;
pub mod ood;
pub mod probe;
pub mod saes;
pub mod status;
pub mod steer;
pub mod submit;
pub mod summary;
pub mod sweep;
pub mod train;
pub mod tree;
pub mod use_sae;

/// A flag whose values are the names of a core enum (parsed by its `FromStr`), listed in
/// `--help` as clap lists a `ValueEnum`'s.
pub fn choices<T>() -> impl clap::builder::TypedValueParser<Value = T>
where
    T: ops::Choices + Clone + Send + Sync + 'static,
{
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(T::NAMES).try_map(|s| s.parse::<T>())
}

/// The workspace and the SAE in it that a command works on.
#[derive(Args)]
pub struct SaeArgs {
    #[arg(long)]
    pub workspace: PathBuf,
    /// The SAE: a name under WS/saes/ or an SAE folder/file (one from elsewhere is imported
    /// into WS/saes/ when analyses are written for it). Default: the workspace's active SAE.
    #[arg(long)]
    pub sae: Option<PathBuf>,
}
