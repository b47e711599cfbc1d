//! The Compare tab's measurements, as the CLI's `eval`, `eval-sae` and `probe` run them: the
//! benchmark of every SAE beside its controls, the explored SAE on a folder, and the linear
//! probe with the layer clean and spliced.

use super::*;

impl Explorer {
    pub(super) fn measure_ui(&mut self, ui: &mut egui::Ui) {
        ui.label(
            "Folders of class sub-folders: probes are fit on the first and everything is \
             scored on the second (never the images the choice of an SAE was made on).",
        );
        egui::Grid::new("measure_form")
            .num_columns(2)
            .show(ui, |ui| {
                for (caption, value, hint) in [
                    (
                        "Fit images",
                        &mut self.form.eval_fit,
                        "labelled folder the probes are fit on",
                    ),
                    (
                        "Eval images",
                        &mut self.form.eval_images,
                        "labelled folder everything is scored on",
                    ),
                ] {
                    labelled_path_row(ui, &self.picker, Pick::Folder, caption, value, hint);
                    ui.end_row();
                }
            });
        let fit = std::path::PathBuf::from(self.form.eval_fit.trim());
        let eval = std::path::PathBuf::from(self.form.eval_images.trim());
        let both =
            !self.form.eval_fit.trim().is_empty() && !self.form.eval_images.trim().is_empty();
        let busy = self.running();
        ui.horizontal_wrapped(|ui| {
            if ui
                .add_enabled(both && !busy, egui::Button::new("Run the benchmark"))
                .on_hover_text(
                    "Every SAE beside its controls (untrained, PCA): FVE, NMSE, L0, dead and \
                     dense, spliced probe, sparse probing, monosemanticity, Moran's I (saescope \
                     eval); the table and plots above show the result",
                )
                .clicked()
            {
                let request = crate::ops::benchmark::BenchmarkRequest {
                    workspace: self.ws.dir.clone(),
                    saes: Vec::new(),
                    device: self.device,
                    fit: fit.clone(),
                    eval: eval.clone(),
                    stores: Vec::new(),
                    options: Default::default(),
                };
                self.push_job(BackgroundJob::spawn("Benchmark", ui.ctx(), move |job| {
                    let r = crate::ops::benchmark::benchmark(&request, job)?;
                    Ok(format!(
                        "{} SAEs scored on {} images (clean probe accuracy {:.3})",
                        r.report.saes.len(),
                        r.report.n_eval,
                        r.report.clean_accuracy.value
                    ))
                }));
            }
            if ui
                .add_enabled(
                    !self.form.eval_images.trim().is_empty() && !busy && self.sae.is_some(),
                    egui::Button::new("Evaluate this SAE"),
                )
                .on_hover_text(
                    "The explored SAE on the eval images: FVE, MSE, L0, dead and dense latents, \
                     and the head's accuracy clean and spliced (saescope eval-sae)",
                )
                .clicked()
            {
                let request = crate::ops::measure::EvalRequest {
                    workspace: self.ws.dir.clone(),
                    sae: self.home.clone(),
                    device: self.device,
                    images: eval.clone(),
                    batch: 32,
                };
                self.push_job(BackgroundJob::spawn("Evaluate SAE", ui.ctx(), move |job| {
                    let r = crate::ops::measure::evaluate(&request, job)?;
                    let acc = match (r.accuracy, r.spliced_accuracy) {
                        (Some(a), Some(s)) => format!("; accuracy {a:.3} clean, {s:.3} spliced"),
                        _ => String::new(),
                    };
                    Ok(format!(
                        "{} images: FVE {:.3}, L0 {:.1}, dead {:.1}%, dense {:.1}%{acc}",
                        r.images,
                        r.fve,
                        r.l0,
                        r.dead_fraction * 100.0,
                        r.dense_fraction * 100.0
                    ))
                }));
            }
            if ui
                .add_enabled(
                    both && !busy && self.sae.is_some(),
                    egui::Button::new("Linear probe"),
                )
                .on_hover_text(
                    "Logistic regression on the pooled output, fit on the fit images and scored \
                     on the eval images, with the layer clean and replaced by the explored SAE's \
                     reconstruction (saescope probe --spliced)",
                )
                .clicked()
            {
                let request = crate::ops::measure::ProbeRequest {
                    model: self.ws.config.model.clone(),
                    device: self.device,
                    fit: fit.clone(),
                    eval: eval.clone(),
                    workspace: Some(self.ws.dir.clone()),
                    spliced: true,
                    // The explored SAE, even if another process made another one active.
                    sae: self.home.clone(),
                    options: Default::default(),
                };
                self.push_job(BackgroundJob::spawn("Linear probe", ui.ctx(), move |job| {
                    let r = crate::ops::measure::probe(&request, job)?;
                    let spliced = r
                        .spliced
                        .as_ref()
                        .map(|s| format!(", spliced {:.3}", s.accuracy))
                        .unwrap_or_default();
                    Ok(format!(
                        "{} classes, fit on {}, scored on {}: accuracy clean {:.3}{spliced} \
                         (chance {:.3})",
                        r.classes.len(),
                        r.n_fit,
                        r.n_eval,
                        r.clean.accuracy,
                        1.0 / r.classes.len().max(1) as f64
                    ))
                }));
            }
        });
    }
}
