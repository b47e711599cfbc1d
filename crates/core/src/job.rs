//! Long-running work (extract, train, index, …) reports progress through a [`Job`] and checks it
//! for cancellation, so the same library call serves the CLI's progress bar and the GUI's jobs.

use crate::error::{Error, Result};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
    /// What is being counted ("images", "tokens", …).
    pub unit: &'static str,
    /// Short live status (e.g. "shard 3/12" or "loss 0.12 · L0 16").
    pub message: String,
}

type Sink = Arc<dyn Fn(&Progress) + Send + Sync>;

#[derive(Clone)]
pub struct Job {
    cancel: Arc<AtomicBool>,
    sink: Sink,
}

impl Default for Job {
    fn default() -> Self {
        Job {
            cancel: Arc::new(AtomicBool::new(false)),
            sink: Arc::new(|_| {}),
        }
    }
}

impl Job {
    pub fn new(cancel: Arc<AtomicBool>, sink: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        Job {
            cancel,
            sink: Arc::new(sink),
        }
    }

    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// Returns `Err(Cancelled)` once cancellation was requested.
    pub fn check(&self) -> Result<()> {
        if self.cancel.load(Ordering::Relaxed) {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }

    pub fn report(&self, p: Progress) {
        (self.sink)(&p)
    }
}
