//! Analyses over models, activations and SAEs. Each is a library function with a CLI command.

pub mod attribution;
pub mod benchmark;
pub mod causal;
pub mod classify;
pub mod export;
pub mod heatmap;
pub mod index;
pub mod intervene;
pub mod label_null;
pub mod labels;
pub mod ontology;
pub mod ood;
pub mod probe;
pub mod tree;
pub mod zero_shot;
