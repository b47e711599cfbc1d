//! Attribute discovery: rank SAE features by how much steering them moves CLIP attributes.

use super::*;

impl SteerView {
    pub(super) fn discovery_labels(&self) -> Vec<(usize, String)> {
        self.discovery
            .as_ref()
            .map(|d| {
                d.ranking
                    .iter()
                    .filter_map(|r| {
                        r.effects.first().map(|e| {
                            (
                                r.feature,
                                format!(
                                    "{} {}",
                                    if e.mean_delta >= 0.0 { "more" } else { "less" },
                                    e.attribute
                                ),
                            )
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(super) fn discovery_ui(&mut self, ui: &mut egui::Ui) {
        egui::CollapsingHeader::new("Attribute discovery")
            .default_open(self.discovery.is_some())
            .show(ui, |ui| {
                let picker = self.picker.clone();
                ui.horizontal(|ui| {
                    let l = ui.label("CLIP model");
                    ui.add(egui::TextEdit::singleline(&mut self.settings.clip).hint_text("CLIP folder or id, e.g. openai/clip-vit-base-patch32").desired_width(320.0))
                        .labelled_by(l.id)
                        .on_hover_text("Scores each image against the attribute vocabulary (zero-shot)");
                    picker.button(ui, "CLIP model", Pick::Folder);
                    let l = ui.label("Candidates");
                    ui.add(egui::DragValue::new(&mut self.discover_candidates).range(1..=64)).labelled_by(l.id);
                });
                let ready = self.loaded.as_ref().is_some_and(|l| l.sae.is_some()) && !self.settings.clip.trim().is_empty();
                let busy = self.jobs.iter().any(|j| j.title == "Discover attributes" && j.state() == JobState::Running);
                if ui
                    .add_enabled(ready && !busy, egui::Button::new("Discover attributes"))
                    .on_hover_text("Generate at −α, 0, +α for the features most active on three prompts × two seeds, score with CLIP, rank")
                    .clicked()
                {
                    self.start_discovery(ui.ctx());
                }
                if let Some(dir) = &self.discovery_dir
                    && self.discovery.is_some() {
                        ui.label(format!("Written to {} (ranking) and {} (labelled-feature export)",
                            dir.join(discover::DISCOVERY_FILE).display(), dir.join(discover::EXPORT_FILE).display()));
                    }
                let Some(d) = &self.discovery else { return };
                let dir = self.discovery_dir.clone().unwrap_or_default();
                let mut add = None;
                for r in &d.ranking {
                    ui.horizontal(|ui| {
                        let best = r.effects.first();
                        ui.label(format!("#{} feature {}", r.feature, r.feature));
                        if let Some(e) = best {
                            ui.label(format!("{} {}  (Δp {:+.3}, consistency {:.0}%)",
                                if e.mean_delta >= 0.0 { "more" } else { "less" }, e.attribute, e.mean_delta, 100.0 * e.consistency));
                        }
                        if let Some(strip) = r.strips.first() {
                            let tex = match self.strip_textures.iter().find(|(n, _)| n == strip) {
                                Some((_, t)) => Some(t.clone()),
                                None => crate::ops::workspace::load_rgb(&dir.join(strip)).ok().map(|img| {
                                    let t = ui.ctx().load_texture(strip.clone(), egui::ColorImage::from_rgb([img.width() as usize, img.height() as usize], img.as_raw()), egui::TextureOptions::LINEAR);
                                    self.strip_textures.push((strip.clone(), t.clone()));
                                    t
                                }),
                            };
                            if let Some(t) = tex {
                                ui.add(egui::Image::new(&t).fit_to_exact_size(egui::vec2(144.0, 48.0)).alt_text(format!("feature {} at −α, 0, +α", r.feature)));
                            }
                        }
                        if ui.button(format!("Use feature {}", r.feature)).on_hover_text("Add a slider for this feature at +α").clicked() {
                            add = Some((r.feature, r.alpha));
                        }
                    });
                }
                if let Some((f, a)) = add {
                    self.settings.sliders.push(Slider { feature: f, value: a.clamp(-20.0, 20.0), clamp: false });
                }
            });
    }

    pub(super) fn start_discovery(&mut self, ctx: &egui::Context) {
        let Some(loaded) = self.loaded.clone() else {
            return;
        };
        let clip = self.settings.clip.trim().to_string();
        let out = PathBuf::from(if self.settings.train_folder.trim().is_empty() {
            format!("{}-discovery", self.settings.pipeline.trim_end_matches('/'))
        } else {
            format!(
                "{}/discovery",
                self.settings.train_folder.trim_end_matches('/')
            )
        });
        self.discovery_dir = Some(out.clone());
        let req = self.request(&loaded.pipe);
        let candidates = self.discover_candidates;
        let (job, output) =
            BackgroundJob::spawn_with_output("Discover attributes", ctx, move |job| {
                let request = crate::ops::steering::DiscoverRequest {
                    clip,
                    clip_tokenizer: None,
                    prompts: None,
                    seeds: vec![0, 1],
                    features: Vec::new(),
                    candidates,
                    alpha: None,
                    vocab: None,
                    generate: req.opts,
                    out,
                };
                let d = crate::ops::steering::discover(
                    &loaded.pipe,
                    loaded.sae.as_ref(),
                    &request,
                    job,
                )?;
                let n = d.ranking.len();
                Ok((d, format!("{n} features ranked")))
            });
        self.jobs.push(job);
        self.discovery_output = Some(output);
    }
}
