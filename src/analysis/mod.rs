//! Analyses over models, activations and SAEs. Each is a library function with a CLI command.

pub mod classify;
pub mod index;
pub mod ontology;
pub mod ood;
pub mod tree;
