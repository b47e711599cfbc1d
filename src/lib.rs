//! saescope: look inside vision models with sparse autoencoders.
//!
//! The library holds everything; the desktop app (`app`) and the CLI (`src/main.rs`) are thin
//! layers over it. See `docs/ARCHITECTURE.md` for the module map.

pub mod analysis;
#[cfg(feature = "gui")]
pub mod app;
pub mod backbone;
pub mod bench;
pub mod device;
pub mod error;
pub mod fsutil;
pub mod job;
pub mod linalg;
pub mod memory;
pub mod ops;
pub mod rng;
pub mod sae;
pub mod shared;
pub mod steer;
pub mod store;

pub use error::{Error, Result};
