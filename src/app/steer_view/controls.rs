//! Prompt, seed, steps and the feature sliders; the chosen tokens; the two images.

use super::*;

impl SteerView {
    pub(super) fn controls_ui(&mut self, ui: &mut egui::Ui) {
        let Some(loaded) = self.loaded.clone() else {
            ui.label("Load a pipeline to generate.");
            return;
        };
        let l = ui.label("Prompt");
        ui.add(egui::TextEdit::singleline(&mut self.settings.prompt).desired_width(f32::INFINITY))
            .labelled_by(l.id)
            .on_hover_text("The text the image is generated from");
        ui.horizontal(|ui| {
            let l = ui.label("Seed");
            ui.add(egui::DragValue::new(&mut self.settings.seed))
                .labelled_by(l.id)
                .on_hover_text("Same seed, same noise: steered and unsteered share it");
            let l = ui.label("Size");
            egui::ComboBox::from_id_salt("steer_size")
                .selected_text(format!("{} px", self.settings.size))
                .show_ui(ui, |ui| {
                    let native = loaded.pipe.native_size;
                    let mut sizes = vec![128, 256, 384, 512];
                    if !sizes.contains(&native) {
                        sizes.push(native);
                    }
                    for s in sizes {
                        ui.selectable_value(&mut self.settings.size, s, format!("{s} px"));
                    }
                })
                .response
                .labelled_by(l.id)
                .on_hover_text("Smaller is much faster on a CPU");
            let l = ui.label("Steps");
            ui.add(
                egui::DragValue::new(&mut self.settings.steps)
                    .range(0..=50)
                    .custom_formatter(|v, _| {
                        if v == 0.0 {
                            "model default".into()
                        } else {
                            format!("{v}")
                        }
                    }),
            )
            .labelled_by(l.id)
            .on_hover_text("0: the model's default (1 for Turbo models)");
        });
        self.tokens_ui(ui, &loaded.pipe);
        let d_sae = loaded.sae.as_ref().map_or(0, |s| s.d_sae);
        let mut remove = None;
        let labels = self.discovery_labels();
        for (i, s) in self.settings.sliders.iter_mut().enumerate() {
            ui.horizontal(|ui| {
                let l = ui.label("Feature");
                ui.add(egui::DragValue::new(&mut s.feature).range(0..=d_sae.saturating_sub(1)))
                    .labelled_by(l.id)
                    .on_hover_text("SAE feature id");
                let caption = ui.label(format!("Strength of slider {}", i + 1));
                ui.add(egui::Slider::new(&mut s.value, -20.0..=20.0).step_by(0.25))
                    .labelled_by(caption.id)
                    .on_hover_text(if s.clamp {
                        "Clamp the feature to this activation"
                    } else {
                        "Add this multiple of the feature's decoder direction"
                    });
                ui.checkbox(&mut s.clamp, "Clamp")
                    .on_hover_text("Set the feature's activation instead of adding its direction");
                if ui
                    .button("0")
                    .on_hover_text("Reset this slider to zero")
                    .clicked()
                {
                    s.value = 0.0;
                }
                if ui
                    .button("Remove")
                    .on_hover_text("Remove this slider")
                    .clicked()
                {
                    remove = Some(i);
                }
                if let Some(t) = labels.iter().find(|(f, _)| *f == s.feature).map(|(_, t)| t) {
                    ui.label(egui::RichText::new(t).weak());
                }
            });
        }
        if let Some(i) = remove {
            self.settings.sliders.remove(i);
        }
        ui.horizontal(|ui| {
            if ui
                .add_enabled(d_sae > 0, egui::Button::new("Add slider"))
                .on_hover_text("Steer with another SAE feature")
                .clicked()
            {
                let next = self
                    .settings
                    .sliders
                    .last()
                    .map_or(0, |s| (s.feature + 1) % d_sae.max(1));
                self.settings.sliders.push(Slider {
                    feature: next,
                    value: 0.0,
                    clamp: false,
                });
            }
            if self.busy() {
                let (done, total, what) = self
                    .task
                    .as_ref()
                    .and_then(|t| t.job.progress())
                    .map(|p| (p.done, p.total, p.message))
                    .unwrap_or_default();
                ui.add(
                    egui::ProgressBar::new(if total > 0 {
                        done as f32 / total as f32
                    } else {
                        0.0
                    })
                    .desired_width(160.0)
                    .text(format!("{what} {done}/{total}")),
                );
                if ui
                    .button("Cancel")
                    .on_hover_text("Stop this generation")
                    .clicked()
                {
                    if let Some(t) = &self.task {
                        t.job.cancel();
                    }
                    self.cancelled = self.running.clone();
                }
            } else if self.cancelled.is_some() {
                ui.label("Cancelled.");
                if ui
                    .button("Generate")
                    .on_hover_text("Run the cancelled generation")
                    .clicked()
                {
                    self.cancelled = None;
                }
            }
        });
    }

    /// Which tokens the sliders edit: all, the prompt's, or ones picked from the prompt.
    pub(super) fn tokens_ui(&mut self, ui: &mut egui::Ui, pipe: &Pipeline) {
        if self
            .prompt_tokens
            .as_ref()
            .is_none_or(|(p, _)| *p != self.settings.prompt)
        {
            let t = pipe.prompt_tokens(&self.settings.prompt);
            self.prompt_tokens = Some((self.settings.prompt.clone(), t));
        }
        ui.horizontal_wrapped(|ui| {
            let l = ui.label("Steer tokens");
            egui::ComboBox::from_id_salt("steer_scope")
                .selected_text(match self.settings.scope {
                    ScopeChoice::All => "all 77 positions",
                    ScopeChoice::Prompt => "the prompt's tokens",
                    ScopeChoice::Chosen => "chosen tokens",
                })
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut self.settings.scope, ScopeChoice::All, "all 77 positions");
                    ui.selectable_value(&mut self.settings.scope, ScopeChoice::Prompt, "the prompt's tokens");
                    ui.selectable_value(&mut self.settings.scope, ScopeChoice::Chosen, "chosen tokens");
                })
                .response
                .labelled_by(l.id)
                .on_hover_text("Positions the sliders edit: every one (padding too: the UNet attends to all), the prompt's own tokens and EOS, or the ones you pick");
            if self.settings.scope == ScopeChoice::Chosen {
                let tokens = self.prompt_tokens.as_ref().map(|(_, t)| t.clone()).unwrap_or_default();
                for (pos, text) in tokens {
                    let on = self.settings.chosen_tokens.contains(&pos);
                    if ui
                        .selectable_label(on, text.to_string())
                        .on_hover_text(format!("token {pos}: click to steer it or not"))
                        .clicked()
                    {
                        if on {
                            self.settings.chosen_tokens.retain(|&p| p != pos);
                        } else {
                            self.settings.chosen_tokens.push(pos);
                            self.settings.chosen_tokens.sort_unstable();
                        }
                    }
                }
            }
        });
    }

    pub(super) fn images_ui(&mut self, ui: &mut egui::Ui) {
        let (Some(u), Some(s)) = (&self.unsteered, &self.steered) else {
            if self.loaded.is_some() {
                ui.label("Generating…");
            }
            return;
        };
        let side = ((ui.available_width() - 24.0) / 2.0).clamp(96.0, 360.0);
        ui.horizontal(|ui| {
            for (title, shown) in [("Unsteered", u), ("Steered", s)] {
                ui.vertical(|ui| {
                    ui.label(egui::RichText::new(title).strong());
                    let decoder = match shown.decoder {
                        Decoder::Preview => "preview decoder",
                        Decoder::Full => "full decoder",
                    };
                    // Timings go in the tooltip: they vary run to run.
                    ui.add(
                        egui::Image::new(&shown.texture)
                            .fit_to_exact_size(egui::vec2(side, side))
                            .alt_text(title),
                    )
                    .on_hover_text(format!("{decoder}: {:.2} s", shown.seconds));
                    ui.label(egui::RichText::new(decoder).weak());
                });
            }
        });
        if self.identical {
            ui.label(
                egui::RichText::new(
                    "No slider is active: the steered image is the unsteered one, bit for bit.",
                )
                .weak(),
            );
        }
    }
}
