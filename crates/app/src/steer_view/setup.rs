//! The setup panel: pipeline folder, text SAE, decoders and device, and loading them.

use super::*;

impl SteerView {
    pub(super) fn setup_ui(&mut self, ui: &mut egui::Ui) {
        ui.label(egui::RichText::new("Diffusion steering").strong());
        let picker = self.picker.clone();
        egui::Grid::new("steer_setup").num_columns(2).show(ui, |ui| {
            let row = |ui: &mut egui::Ui, caption: &str, value: &mut String, hint: &str, tip: &str, field: &'static str, kind: Pick| {
                let l = ui.label(caption);
                ui.horizontal(|ui| {
                    ui.add(egui::TextEdit::singleline(value).hint_text(hint).desired_width(380.0))
                        .labelled_by(l.id)
                        .on_hover_text(tip);
                    picker.button(ui, field, kind);
                });
                ui.end_row();
            };
            row(ui, "Pipeline folder", &mut self.settings.pipeline, "diffusers folder or id, e.g. stabilityai/sd-turbo",
                "A text-to-image pipeline in diffusers layout (model_index.json, unet/, vae/, text_encoder/, tokenizer/)", "pipeline folder", Pick::Folder);
            row(ui, "Text SAE", &mut self.settings.sae, "SAE folder (e.g. <train folder>/sae)",
                "An SAE trained on this pipeline's text-encoder outputs", "text SAE", Pick::Folder);
            row(ui, "Preview decoder", &mut self.settings.preview_decoder, "optional: TAESD folder or id (madebyollin/taesd)",
                "Fast preview decoder; default: the pipeline's taesd/ folder, else the full VAE", "preview decoder", Pick::Folder);
        });
        ui.horizontal(|ui| {
            let loading = self.jobs.iter().any(|j| j.title == "Load pipeline" && j.state() == JobState::Running);
            if ui
                .add_enabled(!loading && !self.settings.pipeline.trim().is_empty(), egui::Button::new("Load"))
                .on_hover_text("Load the pipeline and the SAE")
                .clicked()
            {
                self.start_load(ui.ctx());
            }
            if let Some(l) = &self.loaded {
                ui.label(format!(
                    "{}: {} text width, {}",
                    l.pipe.name,
                    l.pipe.embedding_width(),
                    l.sae
                        .as_ref()
                        .map(|s| format!("SAE with {} features", s.d_sae))
                        .unwrap_or_else(|| "no SAE (sliders disabled)".into())
                ));
                if l.pipe.missing_added_conditioning {
                    ui.label(egui::RichText::new("SDXL micro-conditioning is not applied (candle's UNet lacks it): images differ from diffusers'").weak());
                }
            }
        });
        if let Some(l) = self.loaded.clone()
            && l.sae.is_none()
        {
            ui.horizontal(|ui| {
                    let cap = ui.label("Train a text SAE into");
                    if self.settings.train_folder.is_empty() {
                        self.settings.train_folder = format!("{}-text-sae", self.settings.pipeline.trim_end_matches('/'));
                    }
                    ui.add(egui::TextEdit::singleline(&mut self.settings.train_folder).desired_width(300.0))
                        .labelled_by(cap.id);
                    let busy = self.jobs.iter().any(|j| j.title == "Train text SAE" && j.state() == JobState::Running);
                    if ui
                        .add_enabled(!busy, egui::Button::new("Train text SAE"))
                        .on_hover_text("Encode ~1,200 built-in prompts and train a TopK SAE on their tokens (4× the text width in features)")
                        .clicked()
                    {
                        let out = PathBuf::from(self.settings.train_folder.trim());
                        let source = self.settings.pipeline.trim().to_string();
                        let (job, output) = BackgroundJob::spawn_with_output("Train text SAE", ui.ctx(), move |job| {
                            let request = crate::ops::steering::TextSaeRequest { pipeline: source, out: out.clone(), ..Default::default() };
                            let r = crate::ops::steering::train_text_sae(&l.pipe, &request, job)?;
                            let msg = format!("{} tokens from {} prompts; FVE {:.3}", r.tokens, r.prompts, r.train.final_fve);
                            Ok((crate::ops::steering::text_sae_dir(&out), msg))
                        });
                        self.jobs.push(job);
                        self.sae_output = Some(output);
                    }
                });
        }
        // Generations show their own progress beside "Add slider": "No jobs yet" read wrong after one.
        crate::jobs::status_area(ui, "steering", "", &self.jobs, &mut self.show_all_jobs);
        if let Some(e) = &self.error {
            ui.colored_label(ui.visuals().error_fg_color, crate::words::shown(e));
        }
    }
}
