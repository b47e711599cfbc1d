//! One file per CLI command: its arguments (`…Args`) and `run`, a thin layer over the library
//! (`saescope::ops` and the modules below it). Shared helpers (`emit`, `progress_job`, `ModelArgs`)
//! live in `main.rs`.

use super::*;

pub mod classify;
pub mod eval_sae;
pub mod export;
pub mod extract;
pub mod heatmap;
pub mod import_labels;
pub mod index;
pub mod info;
pub mod label;
pub mod ood;
pub mod probe;
pub mod saes;
pub mod train;
pub mod tree;
pub mod use_sae;
