//! Prompt, seed, steps and the feature sliders; the chosen tokens; the two images.

use super::*;

/// Features listed for the prompt being typed.
const PROMPT_FEATURES: usize = 12;

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
        self.prompt_features_ui(ui, &loaded);
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
                // Before the task's first report there is no count to show: say so, not "0/0".
                let (fraction, text) = match self.task.as_ref().and_then(|t| t.job.progress()) {
                    Some(p) if p.total > 0 => (
                        p.done as f32 / p.total as f32,
                        format!("{}: {}/{} {}", p.message, p.done, p.total, p.unit),
                    ),
                    _ => (0.0, "starting…".to_string()),
                };
                ui.add(
                    egui::ProgressBar::new(fraction)
                        .desired_width(220.0)
                        .text(text),
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
        ui.checkbox(&mut self.settings.show_difference, "Show the difference")
            .on_hover_text(
                "Where the steered image differs from the unsteered one (both through the same \
                 decoder), ×4, in heatmap colours",
            );
        let columns = if self.settings.show_difference {
            3.0
        } else {
            2.0
        };
        let side = ((ui.available_width() - 12.0 * columns) / columns).clamp(96.0, 360.0);
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
            if self.settings.show_difference
                && let Some((tex, mean)) = &self.difference
            {
                ui.vertical(|ui| {
                    ui.label(egui::RichText::new("Difference").strong());
                    ui.add(
                        egui::Image::new(tex)
                            .fit_to_exact_size(egui::vec2(side, side))
                            .alt_text("difference image"),
                    );
                    ui.label(egui::RichText::new(format!("mean |Δ| {mean:.1} of 255 · ×4")).weak());
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

    /// The SAE features active on the prompt (worked out in the background when the prompt
    /// changes): strongest first, the token each fires on most, its discovery label when there
    /// is one, and a button that adds a slider for it.
    fn prompt_features_ui(&mut self, ui: &mut egui::Ui, loaded: &Arc<Loaded>) {
        let Some(sae) = &loaded.sae else { return };
        let prompt = self.settings.prompt.clone();
        let ended = self
            .prompt_features_job
            .as_ref()
            .and_then(|(_, job, output)| output.ended(job));
        if let Some(ended) = ended
            && let Some((p, _, _)) = self.prompt_features_job.take()
        {
            match ended {
                Ended::Done(found) => self.prompt_features = Some((p, found)),
                Ended::Failed(e) => self.error = Some(e),
                Ended::Cancelled => {}
            }
        }
        let current = self
            .prompt_features
            .as_ref()
            .is_some_and(|(p, _)| *p == prompt);
        // One job at a time: a prompt typed meanwhile is looked at when it ends.
        if !current && self.prompt_features_job.is_none() {
            let (l, p) = (loaded.clone(), prompt.clone());
            let (job, output) =
                BackgroundJob::spawn_with_output("Prompt features", ui.ctx(), move |_| {
                    Ok((
                        crate::ops::steering::prompt_features(&l, &p, PROMPT_FEATURES)?,
                        String::new(),
                    ))
                });
            self.prompt_features_job = Some((prompt.clone(), job, output));
        }
        let Some((_, found)) = self.prompt_features.as_ref().filter(|(p, _)| *p == prompt) else {
            ui.label(egui::RichText::new("Finding the SAE features on this prompt…").weak());
            return;
        };
        let tokens = loaded.pipe.prompt_tokens(&prompt);
        let labels = self.discovery_labels();
        let mut add = None;
        egui::CollapsingHeader::new(format!("SAE features on this prompt ({})", found.len()))
            .default_open(true)
            .show(ui, |ui| {
                if found.is_empty() {
                    ui.label(egui::RichText::new("None fires on this prompt.").weak());
                }
                // Wrapped, a few to a row: the list must not push the images off the window.
                ui.horizontal_wrapped(|ui| {
                    for f in found {
                        if ui
                            .small_button("+")
                            .on_hover_text("Add a slider for this feature")
                            .clicked()
                        {
                            add = Some(f.feature);
                        }
                        let token = tokens
                            .iter()
                            .find(|(pos, _)| *pos == f.position)
                            .map_or("(end)", |(_, t)| t.as_str());
                        let label = labels
                            .iter()
                            .find(|(j, _)| *j == f.feature as usize)
                            .map(|(_, t)| format!(" · {t}"))
                            .unwrap_or_default();
                        // The feature's strongest corpus prompts, when its folder has them.
                        let top: String = loaded
                            .top_prompts
                            .as_ref()
                            .and_then(|t| t.features.get(f.feature as usize))
                            .map(|list| {
                                list.iter()
                                    .take(3)
                                    .map(|p| format!("\n  {:.2}  {}", p.activation, p.prompt))
                                    .collect()
                            })
                            .unwrap_or_default();
                        let top = if top.is_empty() {
                            top
                        } else {
                            format!("\nStrongest corpus prompts:{top}")
                        };
                        ui.label(format!(
                            "#{} · {:.2} on \"{token}\"{label}",
                            f.feature, f.max
                        ))
                        .on_hover_text(format!(
                            "fires on {} token{} of the prompt{top}",
                            f.tokens,
                            if f.tokens == 1 { "" } else { "s" }
                        ));
                        ui.add_space(10.0);
                    }
                });
            });
        if let Some(feature) = add.filter(|&f| (f as usize) < sae.d_sae) {
            self.settings.sliders.push(Slider {
                feature: feature as usize,
                value: 0.0,
                clamp: false,
            });
        }
    }
}
