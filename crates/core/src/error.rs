//! Typed errors for the library. Each message names the thing that is wrong and how to fix it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The cause is part of the message, not also a `source()`: printed with its chain (`{:#}`)
    // it would otherwise appear twice.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },

    #[error("tensor error: {0}")]
    Tensor(candle_core::Error),

    #[error("{path}: invalid JSON: {error}")]
    Json {
        path: PathBuf,
        error: serde_json::Error,
    },

    /// A weight file lacks a tensor the architecture needs.
    #[error("{file}: missing tensor `{key}` ({hint})")]
    MissingWeight {
        file: String,
        key: String,
        hint: String,
    },

    /// A tensor is there but has the wrong shape.
    #[error("{file}: tensor `{key}` has shape {found:?} but {expected} was expected")]
    WeightShape {
        file: String,
        key: String,
        found: Vec<usize>,
        expected: String,
    },

    /// The model source could not be resolved or is not a supported layout.
    #[error("{0}")]
    Model(String),

    /// The user asked for something that does not fit (layer out of range, bad option, …).
    #[error("{0}")]
    Invalid(String),

    /// A workspace on disk is inconsistent with the request.
    #[error("{0}")]
    Workspace(String),

    /// A message naming options, commands or files, typed so each front end names them its own
    /// way (`Display` gives the command line's words).
    #[error("{}", .0.render(&crate::fix::CliWords))]
    Fixable(crate::fix::Advice),

    /// One error met by several callers (a model load that several jobs wait on), shared.
    #[error("{0}")]
    Shared(std::sync::Arc<Error>),

    /// The user cancelled a job.
    #[error("cancelled")]
    Cancelled,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// By hand rather than `#[from]`, which would also make the cause a `source()` and print it twice.
impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Tensor(e)
    }
}

impl Error {
    /// The message in a front end's words: its options, commands and files named its way.
    pub fn render(&self, words: &dyn crate::fix::Words) -> String {
        match self {
            Error::Fixable(advice) => advice.render(words),
            Error::Shared(e) => e.render(words),
            other => other.to_string(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error: source,
        }
    }
}

/// Attaches the path to an `std::io::Error`.
pub trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::result::Result<T, std::io::Error> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
