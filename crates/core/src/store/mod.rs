//! Everything saescope keeps on disk: datasets (image folders), workspaces and their activation
//! shards. Every file is written atomically (see [`crate::fsutil`]).

pub mod activations;
pub mod dataset;
pub mod extract;
pub mod lock;
pub mod reuse;
pub mod split;
pub mod tasks;
pub mod workspace;

pub use dataset::{Dataset, Skipped};
pub use workspace::Workspace;
