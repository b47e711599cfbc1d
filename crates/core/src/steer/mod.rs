//! Diffusion steering (arXiv 2508.11277): a text-to-image pipeline whose text conditioning is
//! edited through the features of an SAE trained on the text encoder's outputs.
//!
//! - `taesd`: the TAESD-family tiny autoencoder used as the fast preview decoder.

pub mod bench;
pub mod config;
pub mod conv;
pub mod corpus;
pub mod discover;
pub mod edit;
pub mod pipeline;
pub mod scheduler;
pub mod session;
pub mod taesd;
pub mod tiny;
