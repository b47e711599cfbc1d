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
}

impl Picker {
    /// Opens a dialog for `field`; the chosen path arrives through [`Picker::take`].
    pub fn open(&self, field: &'static str, kind: Pick, ctx: &egui::Context) {
        let (slot, ctx) = (self.answer.clone(), ctx.clone());
        std::thread::spawn(move || {
            let d = rfd::FileDialog::new();
            let chosen = match kind {
                Pick::Folder => d.pick_folder(),
                Pick::File => d.pick_file(),
            };
            if let (Some(p), Ok(mut g)) = (chosen, slot.lock()) {
                *g = Some((field, p));
                ctx.request_repaint();
            }
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
    }
}
