//! The OOD tab: the form that scores folders, and the results.

use super::*;

impl Explorer {
    /// Fit on in-distribution images, score another in-distribution folder and OOD folders.
    pub(super) fn ood_form(&mut self, ui: &mut egui::Ui) {
        if self.ood_fit.is_empty() {
            self.ood_fit = self.ws.config.images.display().to_string();
        }
        egui::CollapsingHeader::new("Score folders")
            .default_open(self.ood.is_none())
            .show(ui, |ui| {
                egui::Grid::new("ood_form").num_columns(2).show(ui, |ui| {
                    for (caption, value, hint) in [
                        (
                            "Fit on (in-distribution)",
                            &mut self.ood_fit,
                            "e.g. the training images",
                        ),
                        (
                            "In-distribution to score",
                            &mut self.ood_id,
                            "e.g. the test images",
                        ),
                    ] {
                        labelled_text_row(ui, caption, value, hint);
                    }
                    let l = ui.label("Other folders (one per line)");
                    ui.add(
                        egui::TextEdit::multiline(&mut self.ood_other)
                            .desired_rows(2)
                            .desired_width(360.0),
                    )
                    .labelled_by(l.id);
                    ui.end_row();
                });
                let ready = self.sae.is_some()
                    && !self.running()
                    && [&self.ood_fit, &self.ood_id, &self.ood_other]
                        .iter()
                        .all(|s| !s.trim().is_empty());
                if ui
                    .add_enabled(ready, egui::Button::new("Score"))
                    .on_hover_text("Fit, score every folder, compute AUROC / FPR95")
                    .clicked()
                {
                    let request = crate::ops::analyse::OodRequest {
                        workspace: self.ws.dir.clone(),
                        sae: self.home.clone(),
                        fit: std::path::PathBuf::from(self.ood_fit.trim()),
                        id: std::path::PathBuf::from(self.ood_id.trim()),
                        ood: self
                            .ood_other
                            .lines()
                            .map(str::trim)
                            .filter(|l| !l.is_empty())
                            .map(std::path::PathBuf::from)
                            .collect(),
                        options: Default::default(),
                    };
                    self.jobs
                        .push(BackgroundJob::spawn("OOD", ui.ctx(), move |job| {
                            let (r, _) = crate::ops::analyse::ood(&request, job)?;
                            let best = r
                                .results
                                .iter()
                                .filter(|m| m.method.starts_with("sae_"))
                                .map(|m| m.auroc)
                                .fold(0.0, f64::max);
                            Ok(format!("best SAE AUROC {best:.3}"))
                        }));
                }
            });
    }

    pub(super) fn ood_ui(&mut self, ui: &mut egui::Ui) {
        self.ood_form(ui);
        let Some(r) = &self.ood else {
            ui.label("No OOD results yet: fill in the folders above.");
            return;
        };
        egui::Grid::new("ood_table")
            .num_columns(4)
            .striped(true)
            .show(ui, |ui| {
                for h in ["method", "OOD set", "AUROC", "FPR at 95% TPR"] {
                    ui.label(egui::RichText::new(h).strong());
                }
                ui.end_row();
                for m in &r.results {
                    ui.label(&m.method);
                    ui.label(&m.ood_set);
                    ui.label(format!("{:.4}", m.auroc));
                    ui.label(format!("{:.4}", m.fpr95));
                    ui.end_row();
                }
            });
        ui.label(egui::RichText::new("ROC curves").strong());
        egui_plot::Plot::new("roc")
            .height(240.0)
            .width(520.0)
            .default_x_bounds(0.0, 1.0)
            .default_y_bounds(0.0, 1.0)
            .x_axis_label("false positive rate")
            .y_axis_label("true positive rate")
            .allow_scroll(false)
            // Below the diagonal, where ROC curves of any useful score never go.
            .legend(egui_plot::Legend::default().position(egui_plot::Corner::RightBottom))
            .show(ui, |p| {
                for m in &r.results {
                    let pts: Vec<[f64; 2]> = m.roc.iter().map(|&(x, y)| [x, y]).collect();
                    p.line(egui_plot::Line::new(
                        format!("{} · {}", m.method, m.ood_set),
                        egui_plot::PlotPoints::from(pts),
                    ));
                }
            });
        // The most unusual images of each OOD set by SAE Mahalanobis, with their features.
        let mi = crate::analysis::ood::sae_method_index("sae_mahalanobis").unwrap_or(2);
        ui.label(
            egui::RichText::new("SAE Mahalanobis score per folder (log10, share of images)")
                .strong(),
        );
        let hists: Vec<(String, Vec<(f64, f64)>)> = (0..r.sets.len())
            .map(|si| {
                let v: Vec<f64> = r
                    .scores(si, mi)
                    .iter()
                    .map(|x| x.max(1e-12).log10())
                    .collect();
                (r.sets[si].name.clone(), histogram(&v, 40))
            })
            .collect();
        egui_plot::Plot::new("ood_hist")
            .height(160.0)
            .allow_scroll(false)
            .legend(egui_plot::Legend::default())
            .show(ui, |p| {
                for (name, h) in &hists {
                    let w = h.get(1).map_or(0.1, |b| b.0 - h[0].0);
                    let bars = h
                        .iter()
                        .map(|&(x, y)| egui_plot::Bar::new(x, y).width(w))
                        .collect();
                    p.bar_chart(egui_plot::BarChart::new(name.clone(), bars));
                }
            });
        let mut go = None;
        for s in r.sets.iter().filter(|s| !s.in_distribution) {
            ui.label(egui::RichText::new(format!("Most unusual in {}", s.name)).strong());
            let mut imgs: Vec<_> = s.images.iter().collect();
            imgs.sort_by(|a, b| {
                b.scores[mi]
                    .unwrap_or(f64::MIN)
                    .total_cmp(&a.scores[mi].unwrap_or(f64::MIN))
            });
            for i in imgs.into_iter().take(8) {
                ui.horizontal(|ui| {
                    ui.label(format!(
                        "{}  score {:.1}",
                        i.path,
                        i.scores[mi].unwrap_or(f64::NAN)
                    ));
                    for &(fid, c) in &i.contributions[mi] {
                        if ui
                            .small_button(format!("#{fid}"))
                            .on_hover_text(format!("contribution {c:.1}: open feature {fid}"))
                            .clicked()
                        {
                            go = Some(fid);
                        }
                    }
                });
            }
        }
        if let Some(g) = go {
            self.select(g);
        }
    }
}
