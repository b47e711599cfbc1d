//! Native file dialogs (rfd) without blocking the UI: the dialog runs on its own thread and its
//! answer is picked up by a later frame, tagged with the field it belongs to.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    Folder,
    File,
}

#[derive(Clone, Default)]
pub struct Picker {
    answer: Arc<Mutex<Option<(&'static str, PathBuf)>>>,
    /// A field whose dialog could not open, shown beside its Browse button until the next try.
    failed: Arc<Mutex<Option<&'static str>>>,
}

/// A dialog that comes back empty sooner than this never showed (no desktop portal or GTK):
/// nobody can pick or cancel in that time.
const NO_DIALOG: std::time::Duration = std::time::Duration::from_millis(400);

impl Picker {
    /// Opens a dialog for `field`; the chosen path arrives through [`Picker::take`].
    pub fn open(&self, field: &'static str, kind: Pick, ctx: &egui::Context) {
        let (slot, failed, ctx) = (self.answer.clone(), self.failed.clone(), ctx.clone());
        if let Ok(mut f) = failed.lock() {
            *f = None;
        }
        crate::jobs::run_detached(move || {
            let start = std::time::Instant::now();
            let d = rfd::FileDialog::new();
            let chosen = match kind {
                Pick::Folder => d.pick_folder(),
                Pick::File => d.pick_file(),
            };
            match chosen {
                Some(p) => {
                    if let Ok(mut g) = slot.lock() {
                        *g = Some((field, p));
                    }
                }
                None if start.elapsed() < NO_DIALOG => {
                    if let Ok(mut f) = failed.lock() {
                        *f = Some(field);
                    }
                }
                None => {}
            }
            ctx.request_repaint();
        });
    }

    /// The path chosen for `field`, once.
    pub fn take(&self, field: &str) -> Option<PathBuf> {
        let mut g = self.answer.lock().ok()?;
        if g.as_ref().is_some_and(|(f, _)| *f == field) {
            return g.take().map(|(_, p)| p);
        }
        None
    }

    /// A "Browse..." button for `field`.
    pub fn button(&self, ui: &mut egui::Ui, field: &'static str, kind: Pick) {
        if ui
            .button("Browse...")
            .on_hover_text(format!("Choose the {field} in a file dialog"))
            .clicked()
        {
            self.open(field, kind, ui.ctx());
        }
        if self.failed.lock().is_ok_and(|f| *f == Some(field)) {
            ui.colored_label(
                ui.visuals().warn_fg_color,
                "no file dialog can open here (no desktop portal): type the path",
            );
        }
    }
}
