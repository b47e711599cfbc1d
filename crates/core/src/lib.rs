//! saescope's core: vision backbones, the workspace store, SAEs, analyses and diffusion steering.
//!
//! No front end lives here (no clap, egui or indicatif): the use cases are in `saescope-ops`,
//! which the CLI and the app call. See `docs/ARCHITECTURE.md` for the crates and module map.
#![cfg_attr(test, allow(clippy::disallowed_methods))] // unit tests write fixtures directly

pub mod analysis;
pub mod backbone;
pub mod device;
pub mod error;
pub mod fingerprint;
pub mod fix;
pub mod fsutil;
pub mod job;
pub mod linalg;
pub mod memory;
pub mod pod;
pub mod rng;
pub mod sae;
pub mod shared;
pub mod steer;
pub mod store;

pub use error::{Error, Result};

/// A unit enum whose values flags and files name: its names, in order.
pub trait Choices: std::str::FromStr<Err = String> {
    const NAMES: &'static [&'static str];
}

/// `FromStr` and [`Choices`] for a unit enum from its names as flags and files spell them (the
/// serde names), so the CLI parses and lists them without the core depending on clap.
#[macro_export]
macro_rules! str_choices {
    ($t:ty: $($name:literal => $v:expr),+ $(,)?) => {
        impl std::str::FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> std::result::Result<Self, String> {
                match s {
                    $($name => Ok($v),)+
                    _ => Err(format!("expected one of: {}", [$($name),+].join(", "))),
                }
            }
        }
        impl $crate::Choices for $t {
            const NAMES: &'static [&'static str] = &[$($name),+];
        }
    };
}
