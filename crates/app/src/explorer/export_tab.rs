//! The Export tab: write features (JSON, CSV, PNGs) to share.

use super::*;

impl Explorer {
    pub(super) fn export_ui(&mut self, ui: &mut egui::Ui) {
        ui.label("Export features with their labels, statistics, top examples and PNGs (format: docs/FORMATS.md).");
        ui.horizontal(|ui| {
            ui.label("Features:");
            ui.selectable_value(
                &mut self.export_what,
                ExportWhat::Labelled,
                format!("labelled ({})", self.labels.labels.len()),
            )
            .on_hover_text("every labelled feature: class, manual, imported and CLIP labels");
            let significant = self
                .labels
                .labels
                .values()
                .filter(|l| l.is_significant())
                .count();
            ui.selectable_value(
                &mut self.export_what,
                ExportWhat::Significant,
                format!("significant class labels ({significant})"),
            )
            .on_hover_text(
                "only class labels whose class is over-represented among the feature's top images \
                 beyond chance and beyond every random direction of this layer",
            );
            ui.selectable_value(&mut self.export_what, ExportWhat::All, "all that fire");
            ui.selectable_value(
                &mut self.export_what,
                ExportWhat::SearchResult,
                format!("search result ({})", self.order.len()),
            );
        });
        ui.horizontal(|ui| {
            let l = ui.label("Output folder");
            ui.add(
                egui::TextEdit::singleline(&mut self.form.export_dir)
                    .hint_text("folder to write")
                    .desired_width(320.0),
            )
            .labelled_by(l.id);
            self.picker.button(ui, "output folder", Pick::Folder);
            if let Some(p) = self.picker.take("output folder") {
                self.form.export_dir = p.display().to_string();
            }
        });
        let ready = !self.form.export_dir.trim().is_empty() && self.sae.is_some();
        if ui
            .add_enabled(ready, egui::Button::new("Export"))
            .on_hover_text("Write features.json, features.csv and png/")
            .clicked()
        {
            use crate::analysis::export::Selection;
            self.save_label_now();
            let selection = match self.export_what {
                ExportWhat::All => Selection::Alive,
                ExportWhat::Labelled => Selection::Labelled,
                ExportWhat::Significant => Selection::Significant,
                ExportWhat::SearchResult => Selection::Ids(self.order.clone()),
            };
            let request = crate::ops::share::ExportRequest {
                workspace: self.ws.dir.clone(),
                sae: self.home.clone(),
                selection,
                out: std::path::PathBuf::from(self.form.export_dir.trim()),
                pngs: true,
            };
            self.push_job(BackgroundJob::spawn("Export", ui.ctx(), move |job| {
                let r = crate::ops::share::export(&request, job)?;
                // The folder's name: short, and the full path is in the form above.
                let name = r
                    .out
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                Ok(format!("{} features written to {name}/", r.features))
            }));
        }
    }
}
