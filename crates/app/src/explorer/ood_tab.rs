//! The OOD tab: the form that scores folders, and the results.

use super::*;

/// The OOD form's multi-line folder field (its Browse... adds a line).
const OTHER_FOLDERS: &str = "other folders";

impl Explorer {
    /// Fit on in-distribution images, score another in-distribution folder and OOD folders.
    pub(super) fn ood_form(&mut self, ui: &mut egui::Ui) {
        if self.form.ood_fit.is_empty() {
            self.form.ood_fit = self.ws.config.images.display().to_string();
        }
        egui::CollapsingHeader::new("Score folders")
            .default_open(self.ood.is_none())
            .show(ui, |ui| {
                egui::Grid::new("ood_form").num_columns(2).show(ui, |ui| {
                    for (caption, value, hint) in [
                        (
                            "Fit on (in-distribution)",
                            &mut self.form.ood_fit,
                            "e.g. the training images",
                        ),
                        (
                            "In-distribution to score",
                            &mut self.form.ood_id,
                            "e.g. the test images",
                        ),
                    ] {
                        labelled_path_row(ui, &self.picker, Pick::Folder, caption, value, hint);
                    }
                    let l = ui.label("Other folders (one per line)");
                    ui.horizontal(|ui| {
                        ui.add(
                            egui::TextEdit::multiline(&mut self.form.ood_other)
                                .desired_rows(2)
                                .desired_width(360.0),
                        )
                        .labelled_by(l.id);
                        self.picker.button(ui, OTHER_FOLDERS, Pick::Folder);
                    });
                    // A chosen folder is added as another line.
                    if let Some(p) = self.picker.take(OTHER_FOLDERS) {
                        let other = &mut self.form.ood_other;
                        if !other.trim().is_empty() && !other.ends_with('\n') {
                            other.push('\n');
                        }
                        other.push_str(&p.display().to_string());
                    }
                    ui.end_row();
                });
                let ready = self.sae.is_some()
                    && !self.running()
                    && [&self.form.ood_fit, &self.form.ood_id, &self.form.ood_other]
                        .iter()
                        .all(|s| !s.trim().is_empty());
                if ui
                    .add_enabled(ready, egui::Button::new("Score"))
                    .on_hover_text("Fit, score every folder, compute AUROC / FPR95")
                    .clicked()
                {
                    let request = crate::ops::analyse::OodRequest {
                        device: self.device,
                        workspace: self.ws.dir.clone(),
                        sae: self.home.clone(),
                        fit: std::path::PathBuf::from(self.form.ood_fit.trim()),
                        id: std::path::PathBuf::from(self.form.ood_id.trim()),
                        ood: self
                            .form
                            .ood_other
                            .lines()
                            .map(str::trim)
                            .filter(|l| !l.is_empty())
                            .map(std::path::PathBuf::from)
                            .collect(),
                        options: Default::default(),
                    };
                    self.push_job(BackgroundJob::spawn("OOD", ui.ctx(), move |job| {
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
            ui.label("No OOD results yet: fill in the folders above and press Score.");
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
                    ui.label(&m.method).on_hover_text(method_help(&m.method));
                    ui.label(&m.ood_set);
                    ui.label(format!("{:.4}", m.auroc));
                    ui.label(format!("{:.4}", m.fpr95));
                    ui.end_row();
                }
            });
        ui.label(egui::RichText::new("ROC curves").strong());
        // The legend sits beside the plot, never over the curves.
        ui.horizontal_top(|ui| {
            egui_plot::Plot::new("roc")
                .height(240.0)
                .width(380.0)
                .default_x_bounds(0.0, 1.0)
                .default_y_bounds(0.0, 1.0)
                // Ticks every 0.1: egui_plot's default spacing for x labels (60 points) hides
                // all but 0 on a plot this narrow.
                .custom_x_axes(vec![
                    egui_plot::AxisHints::new_x()
                        .label("false positive rate")
                        .label_spacing(24.0..=32.0),
                ])
                .y_axis_label("true positive rate")
                .allow_scroll(false)
                .show(ui, |p| {
                    for (i, m) in r.results.iter().enumerate() {
                        let pts: Vec<[f64; 2]> = m.roc.iter().map(|&(x, y)| [x, y]).collect();
                        p.line(
                            egui_plot::Line::new(
                                format!("{} · {}", m.method, m.ood_set),
                                egui_plot::PlotPoints::from(pts),
                            )
                            .color(super::plot_axes::series_colour(i)),
                        );
                    }
                });
            ui.vertical(|ui| {
                for (i, m) in r.results.iter().enumerate() {
                    ui.horizontal(|ui| {
                        let (rect, _) =
                            ui.allocate_exact_size(egui::vec2(14.0, 4.0), egui::Sense::hover());
                        ui.painter()
                            .rect_filled(rect, 1.0, super::plot_axes::series_colour(i));
                        ui.label(format!("{} · {} ({:.3})", m.method, m.ood_set, m.auroc))
                            .on_hover_text(method_help(&m.method));
                    });
                }
            });
        });
        // The most unusual images of each OOD set by SAE Mahalanobis, with their features.
        let mi = crate::analysis::ood::sae_method_index("sae_mahalanobis").unwrap_or(2);
        ui.label(
            egui::RichText::new(
                "SAE Mahalanobis score per folder (each folder's bars are shares of its own images)",
            )
            .strong(),
        );
        let logs: Vec<(String, Vec<f64>)> = (0..r.sets.len())
            .map(|si| {
                let v: Vec<f64> = r
                    .scores(si, mi)
                    .iter()
                    .map(|x| x.max(1e-12).log10())
                    .collect();
                (r.sets[si].name.clone(), v)
            })
            .collect();
        // One set of bins for every folder, so their bars line up and compare.
        let (lo, hi) = logs
            .iter()
            .flat_map(|(_, v)| v)
            .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
        let hists: Vec<(String, Vec<(f64, f64)>)> = logs
            .iter()
            .map(|(name, v)| (name.clone(), histogram(v, lo, hi, 40)))
            .collect();
        // The x axis is log10 of the score, labelled with the scores themselves; the y axis
        // name is short enough to stand beside the plot's height uncut.
        egui_plot::Plot::new("ood_hist")
            .height(200.0)
            .allow_scroll(false)
            .x_axis_label("SAE Mahalanobis score (log scale)")
            .y_axis_label("share of images")
            .x_grid_spacer(super::plot_axes::log_value_marks)
            .x_axis_formatter(super::plot_axes::log_value_label)
            .include_y(0.0)
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
        let mut open: Option<(std::path::PathBuf, Option<u32>)> = None;
        let sets: Vec<_> = r
            .sets
            .iter()
            .filter(|s| !s.in_distribution)
            .map(|s| {
                let mut imgs: Vec<_> = s.images.iter().collect();
                imgs.sort_by(|a, b| {
                    b.scores[mi]
                        .unwrap_or(f64::MIN)
                        .total_cmp(&a.scores[mi].unwrap_or(f64::MIN))
                });
                let top: Vec<_> = imgs
                    .into_iter()
                    .take(8)
                    .map(|i| {
                        (
                            s.dir.join(&i.path),
                            i.path.clone(),
                            i.scores[mi].unwrap_or(f64::NAN),
                            i.contributions[mi].clone(),
                        )
                    })
                    .collect();
                (s.name.clone(), top)
            })
            .collect();
        for (name, top) in sets {
            ui.label(egui::RichText::new(format!("Most unusual in {name}")).strong())
                .on_hover_text(
                    "By SAE Mahalanobis; click an image to open it with the heatmap of the \
                     feature that contributed most",
                );
            // A grid as wide as the page (vertical cells do not wrap in a wrapped row).
            let cols = ((ui.available_width() / 190.0).floor() as usize).max(1);
            egui::Grid::new(("unusual", name.clone())).show(ui, |ui| {
                for (k, (file, path, score, contributions)) in top.into_iter().enumerate() {
                    if k > 0 && k % cols == 0 {
                        ui.end_row();
                    }
                    ui.vertical(|ui| {
                        let tip = format!(
                            "{path}\nscore {score:.1}\ncontributions: {}",
                            contributions
                                .iter()
                                .map(|(f, c)| format!("#{f} {c:.1}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        );
                        let tex = self.thumbs.file(ui.ctx(), &file);
                        let tip = match self.thumbs.file_problem(&file) {
                            Some(p) => format!("{tip}\n{p}"),
                            None => tip,
                        };
                        let clicked = match tex {
                            Some(t) => ui
                                .add(egui::Button::image(
                                    egui::Image::new(&t)
                                        .fit_to_exact_size(egui::vec2(64.0, 64.0))
                                        .alt_text(format!("unusual image {path}")),
                                ))
                                .on_hover_text(&tip)
                                .clicked(),
                            None => ui.button(&path).on_hover_text(&tip).clicked(),
                        };
                        if clicked {
                            open = Some((file.clone(), contributions.first().map(|c| c.0)));
                        }
                        ui.horizontal(|ui| {
                            for &(fid, c) in contributions.iter().take(3) {
                                if ui
                                    .small_button(format!("#{fid}"))
                                    .on_hover_text(format!(
                                        "contribution {c:.1}: open feature {fid}"
                                    ))
                                    .clicked()
                                {
                                    go = Some(fid);
                                }
                            }
                        });
                    });
                }
            });
        }
        ui.separator();
        self.ood_ranked_ui(ui, mi);
        if let Some((file, feature)) = open {
            match super::ImageView::load_file(&file) {
                Ok(img) => self.open_image(ui.ctx(), file.display().to_string(), img, feature),
                Err(e) => self.error = Some(crate::Failure::new(e)),
            }
        }
        if let Some(g) = go {
            self.select(g);
        }
    }
}

/// What each OOD method scores, for its tooltip.
fn method_help(method: &str) -> &'static str {
    match method {
        "sae_reconstruction" => {
            "Share of the image's activations the SAE cannot reconstruct: unfamiliar inputs are explained worse"
        }
        "sae_rarity" => {
            "Activation-weighted surprise of the features the image fires, by how rarely each fired on the fit images"
        }
        "sae_mahalanobis" => {
            "Mahalanobis distance of the image's mean SAE code from the fit images' (covariance ridge chosen on held-out fit images)"
        }
        "sae_cls_mahalanobis" => {
            "Mahalanobis distance of the CLS token's SAE code: the SAE counterpart of the raw CLS baseline"
        }
        "msp" => {
            "Baseline: one minus the classifier's top softmax probability (models with a head)"
        }
        "raw_cls_mahalanobis" => {
            "Baseline: Mahalanobis distance of the raw CLS activation at the tapped layer (token mean without CLS)"
        }
        _ => "",
    }
}
