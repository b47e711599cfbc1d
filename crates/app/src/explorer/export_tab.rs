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
        // One export at a time (a second click started a second export into the same folder).
        let exporting = self
            .jobs
            .iter()
            .any(|j| j.title == "Export" && j.is_running());
        let ready = !self.form.export_dir.trim().is_empty() && self.sae.is_some() && !exporting;
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
        ui.separator();
        self.import_ui(ui);
    }

    /// Import the labels of an export (another workspace's, or a colleague's) into this SAE.
    fn import_ui(&mut self, ui: &mut egui::Ui) {
        ui.label(egui::RichText::new("Import labels").strong())
            .on_hover_text(
                "Labels from an export's features.json; manual labels already here are kept",
            );
        egui::Grid::new("import_labels")
            .num_columns(2)
            .show(ui, |ui| {
                labelled_path_row(
                    ui,
                    &self.picker,
                    Pick::Folder,
                    "Export to import",
                    &mut self.form.import_from,
                    "an export folder or its features.json",
                );
                ui.end_row();
            });
        ui.checkbox(
            &mut self.form.import_force,
            "Even if it was made with another SAE",
        )
        .on_hover_text(
            "Feature ids only mean the same thing for the same SAE: import another SAE's \
                 labels only if you know they match",
        );
        let ready = !self.form.import_from.trim().is_empty() && self.sae.is_some();
        if ui
            .add_enabled(ready, egui::Button::new("Import labels"))
            .clicked()
        {
            self.save_label_now();
            let request = crate::ops::share::ImportLabelsRequest {
                workspace: self.ws.dir.clone(),
                sae: self.home.clone(),
                from: std::path::PathBuf::from(self.form.import_from.trim()),
                force: self.form.import_force,
            };
            self.push_job(BackgroundJob::spawn("Import labels", ui.ctx(), move |_| {
                let r = crate::ops::share::import_labels(&request)?;
                Ok(format!(
                    "{} labels imported, {} manual labels kept",
                    r.imported, r.kept_manual
                ))
            }));
        }
    }
}
