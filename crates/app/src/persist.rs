//! The app's state between runs: kept in eframe's storage, saved as soon as it changes so that
//! an app that is killed loses nothing (eframe itself saves only every 30 s and on exit).

use crate::{LastView, Persisted, STORAGE_KEY, SaescopeApp};

/// The shortest time between two saves of a changing state (typing saves a few times a second).
const SAVE_EVERY: std::time::Duration = std::time::Duration::from_millis(300);

/// Drops a pending creation that got to its end: it may have ended after the last save, or been
/// finished from the command line. Only one that really did not finish is offered again.
pub(crate) fn forget_finished_create(persisted: &mut Persisted) {
    if persisted
        .pending_create
        .as_ref()
        .is_some_and(|p| crate::ops::create::finished(std::path::Path::new(p.workspace.trim())))
    {
        persisted.pending_create = None;
    }
}

impl SaescopeApp {
    /// Brings the remembered state up to date with the views (typed inputs, where the user is).
    pub(crate) fn sync_persisted(&mut self) {
        self.remember_inputs();
        self.persisted.last_view = self.explorer.as_ref().map(|x| LastView {
            workspace: x.ws.dir.clone(),
            tab: x.tab,
            feature: x.selected,
            sort: x.sort,
            search: x.search.clone(),
        });
        self.persisted.steer = self.steer.settings.clone();
    }

    /// Saves the state as soon as it changes (at most every [`SAVE_EVERY`]), so an app that is
    /// killed loses nothing; eframe itself saves only every 30 s and on exit.
    pub(crate) fn save_if_changed(&mut self, ctx: &egui::Context, frame: &mut eframe::Frame) {
        self.sync_persisted();
        let since = match &self.saved {
            Some((saved, _)) if *saved == self.persisted => return,
            Some((_, at)) => at.elapsed(),
            None => SAVE_EVERY,
        };
        if since < SAVE_EVERY {
            ctx.request_repaint_after(SAVE_EVERY - since);
            return;
        }
        let storage = match frame.storage_mut() {
            Some(s) => Some(s),
            None => self.headless_storage.as_deref_mut(),
        };
        if let Some(s) = storage {
            eframe::set_value(s, STORAGE_KEY, &self.persisted);
            s.flush();
        }
        self.saved = Some((self.persisted.clone(), std::time::Instant::now()));
    }
}
