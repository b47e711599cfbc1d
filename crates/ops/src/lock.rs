//! The one lock policy. Only ops takes a workspace's writer lock (the front ends cannot name the
//! store's lock module): a job that runs for minutes is refused at once when another process
//! writes the workspace, and a short edit (labels, the active SAE, an import) waits up to
//! [`EDIT_WAIT`] for it first. Either way the error names the holder.

use crate::error::{Error, Result};
use saescope_core::store::lock::{WriterLock, lock_writer};
use std::path::Path;
use std::time::Duration;

/// How long a short edit waits for another writer before it is refused.
pub const EDIT_WAIT: Duration = Duration::from_secs(10);

/// What the lock is held for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    /// Extraction, training, an index, OOD…: refused at once when the workspace is busy.
    Job,
    /// A few file writes: waits up to [`EDIT_WAIT`].
    Edit,
}

/// Takes `ws_dir`'s writer lock for `what` (named to the next writer while held).
pub fn writer(ws_dir: &Path, what: &str, hold: Hold) -> Result<WriterLock> {
    #[allow(clippy::disallowed_methods)] // this is the one place
    lock_writer(ws_dir, what, (hold == Hold::Edit).then_some(EDIT_WAIT))
}

/// Creates `ws_dir` when missing and takes its lock for a job; says whether it was created.
pub fn create_and_lock(ws_dir: &Path, what: &str) -> Result<(WriterLock, bool)> {
    let created = !ws_dir.exists();
    std::fs::create_dir_all(ws_dir).map_err(|e| Error::io(ws_dir, e))?;
    Ok((writer(ws_dir, what, Hold::Job)?, created))
}
