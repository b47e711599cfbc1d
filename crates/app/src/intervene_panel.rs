//! The Image view's intervention panel: pick features (from the image's top features, a patch's
//! right-click menu, or by id/label), ablate, clamp or scale them on all patches or on painted
//! ones, and see the prediction and where the output changed, live. The image's stream at the
//! tapped layer is kept ([`Prepared`]), so each change re-runs only the blocks after the layer,
//! on a background thread.

use crate::analysis::heatmap::overlay;
use crate::analysis::intervene::{
    EditMode, FeatureEdit, Intervention, Outcome, Prepared, TokenScope,
};
use crate::backbone::TokenGeometry;
use crate::jobs::{BackgroundJob, Ended, JobOutput};
use crate::sae::Sae;
use crate::view_state::SharedBackbone;
use std::collections::BTreeSet;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Ablate,
    Clamp,
    Scale,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Ablate => "Ablate",
            Mode::Clamp => "Clamp",
            Mode::Scale => "Scale",
        }
    }
}

/// A chosen feature and its own edit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Chosen {
    pub feature: u32,
    pub mode: Mode,
    /// Clamp value or scale factor.
    pub value: f32,
}

pub struct InterventionPanel {
    /// The chosen features, each with its edit; kept when another image is opened.
    pub features: Vec<Chosen>,
    /// The edit for features added next; changing it sets every chosen feature's.
    pub mode: Mode,
    /// Clamp value or scale factor.
    pub value: f32,
    /// Edit only the painted patches (else every patch).
    pub painted_only: bool,
    /// Painted patches, as sequence positions.
    pub painted: BTreeSet<usize>,
    /// The "add a feature" field: an id or words of a label.
    pub find: String,
    pub find_error: Option<String>,
    /// The run in progress: the intervention it computes and its job.
    run: Option<(Intervention, BackgroundJob, JobOutput<Outcome>)>,
    /// The last finished run: what it computed and its outcome, or why it failed.
    result: Option<(Intervention, Result<Outcome, crate::Failure>)>,
    /// The intervention last sent to run (a new run starts only when the form differs).
    sent: Option<Intervention>,
    /// The effect map's texture and the intervention it shows.
    effect_tex: Option<(Intervention, egui::TextureHandle)>,
}

impl Default for InterventionPanel {
    fn default() -> Self {
        InterventionPanel {
            features: Vec::new(),
            mode: Mode::Ablate,
            value: 0.0,
            painted_only: false,
            painted: BTreeSet::new(),
            find: String::new(),
            find_error: None,
            run: None,
            result: None,
            sent: None,
            effect_tex: None,
        }
    }
}

impl InterventionPanel {
    /// The edit the form describes (None: nothing chosen, or painting chosen with no patch).
    pub fn intervention(&self) -> Option<Intervention> {
        if self.features.is_empty() || (self.painted_only && self.painted.is_empty()) {
            return None;
        }
        Some(Intervention {
            edits: self
                .features
                .iter()
                .map(|c| FeatureEdit {
                    feature: c.feature,
                    mode: match c.mode {
                        Mode::Ablate => EditMode::Ablate,
                        Mode::Clamp => EditMode::Clamp(c.value),
                        Mode::Scale => EditMode::Scale(c.value),
                    },
                })
                .collect(),
            scope: if self.painted_only {
                TokenScope::Tokens(self.painted.iter().copied().collect())
            } else {
                TokenScope::Patches
            },
        })
    }

    /// Adds `f` with the current default edit (once).
    pub fn add(&mut self, f: u32) {
        if !self.has(f) {
            self.features.push(Chosen {
                feature: f,
                mode: self.mode,
                value: self.value,
            });
        }
    }

    pub fn has(&self, f: u32) -> bool {
        self.features.iter().any(|c| c.feature == f)
    }

    /// The chosen features and their edits for another image: what was chosen stays, painted
    /// patches (which belong to this image) and results go.
    pub fn carried_over(&self) -> InterventionPanel {
        InterventionPanel {
            features: self.features.clone(),
            mode: self.mode,
            value: self.value,
            painted_only: self.painted_only,
            ..Default::default()
        }
    }

    /// Starts a run of the current form when it changed and no run is going.
    pub fn update(
        &mut self,
        prepared: &Arc<Prepared>,
        sae: &Arc<Sae>,
        backbone: &SharedBackbone,
        ctx: &egui::Context,
    ) {
        let Some(iv) = self.intervention() else {
            self.sent = None;
            return;
        };
        if self.sent.as_ref() == Some(&iv) {
            return;
        }
        self.poll();
        if self.run.is_some() {
            ctx.request_repaint_after(std::time::Duration::from_millis(30));
            return;
        }
        self.sent = Some(iv.clone());
        let (p, s, b, edit) = (prepared.clone(), sae.clone(), backbone.clone(), iv.clone());
        let (job, output) = BackgroundJob::spawn_with_output("Intervention", ctx, move |_| {
            let b = match b.get() {
                Some(Ok(b)) => b,
                Some(Err(e)) => return Err(crate::Error::Shared(e.clone())),
                None => {
                    return Err(crate::Error::Invalid(
                        "the model is still loading; try again".into(),
                    ));
                }
            };
            Ok((p.run(b, &s, &edit, 5)?, String::new()))
        });
        self.run = Some((iv, job, output));
    }

    /// Moves a finished run's outcome (or why it failed) into `result`.
    fn poll(&mut self) {
        let ended = self
            .run
            .as_ref()
            .and_then(|(_, job, output)| output.ended(job));
        if let Some(ended) = ended
            && let Some((iv, _, _)) = self.run.take()
        {
            let out = match ended {
                Ended::Done(outcome) => Ok(outcome),
                Ended::Failed(e) => Err(e),
                Ended::Cancelled => Err(crate::failure("the run stopped before it finished")),
            };
            self.result = Some((iv, out));
        }
    }

    /// The feature that `find` names: an id, or a feature whose label contains the words — the
    /// strongest on this image (`on_image`, strongest first) when one is, else the lowest id.
    fn resolve(
        &self,
        d_sae: usize,
        on_image: &[u32],
        labels: &dyn Fn(u32) -> String,
    ) -> Result<u32, String> {
        let q = self.find.trim();
        if q.is_empty() {
            return Err("type a feature id or words of its label".into());
        }
        if let Ok(id) = q.parse::<u32>() {
            return if (id as usize) < d_sae {
                Ok(id)
            } else {
                Err(format!(
                    "feature {id} does not exist: ids run 0 to {}",
                    d_sae - 1
                ))
            };
        }
        let q = q.to_lowercase();
        let matches = |j: &u32| labels(*j).to_lowercase().contains(&q);
        on_image
            .iter()
            .copied()
            .find(matches)
            .or_else(|| (0..d_sae as u32).find(matches))
            .ok_or_else(|| format!("no feature's label contains '{}'", self.find.trim()))
    }

    /// The form and, once run, the prediction before and after and the effect map.
    #[allow(clippy::too_many_arguments)]
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        image: &image::RgbImage,
        geometry: &TokenGeometry,
        d_sae: usize,
        shown_feature: Option<u32>,
        on_image: &[u32],
        label_of: &dyn Fn(u32) -> String,
    ) {
        ui.separator();
        ui.label(egui::RichText::new("Intervene").strong())
            .on_hover_text(
                "Edit these features' codes at the tapped layer (the SAE's error term is kept) and \
             run the rest of the model on the edited stream",
            );
        ui.horizontal_wrapped(|ui| {
            if self.features.is_empty() {
                ui.label(
                    egui::RichText::new(
                        "No features chosen: add one with + beside a top feature, by right-clicking a patch, or below.",
                    )
                    .weak(),
                );
            }
            let mut remove = None;
            for c in &mut self.features {
                let f = c.feature;
                // A chip per feature: remove, its own edit and value.
                ui.group(|ui| {
                    if ui
                        .button(format!("#{f} {} ×", label_of(f)))
                        .on_hover_text("Remove from the intervention")
                        .clicked()
                    {
                        remove = Some(f);
                    }
                    egui::ComboBox::from_id_salt(("edit_mode", f))
                        .width(64.0)
                        .selected_text(c.mode.name())
                        .show_ui(ui, |ui| {
                            for m in [Mode::Ablate, Mode::Clamp, Mode::Scale] {
                                ui.selectable_value(&mut c.mode, m, m.name());
                            }
                        })
                        .response
                        .on_hover_text(format!("How feature {f} is edited"));
                    if c.mode != Mode::Ablate {
                        ui.add(egui::DragValue::new(&mut c.value).speed(0.05))
                            .on_hover_text(if c.mode == Mode::Clamp {
                                format!("the value feature {f} is set to")
                            } else {
                                format!("the factor feature {f} is multiplied by")
                            });
                    }
                });
            }
            if let Some(f) = remove {
                self.features.retain(|c| c.feature != f);
            }
        });
        ui.horizontal_wrapped(|ui| {
            let l = ui.label("Add feature");
            let r = ui
                .add(
                    egui::TextEdit::singleline(&mut self.find)
                        .hint_text("id or label words")
                        .desired_width(140.0),
                )
                .labelled_by(l.id);
            let enter = r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            if r.changed() {
                self.find_error = None;
            }
            if ui.button("Add").clicked() || enter {
                match self.resolve(d_sae, on_image, label_of) {
                    Ok(f) => {
                        self.add(f);
                        self.find.clear();
                    }
                    Err(e) => self.find_error = Some(e),
                }
            }
            if let Some(f) = shown_feature.filter(|&f| !self.has(f))
                && ui.button(format!("Add #{f} (the heatmap's)")).clicked()
            {
                self.add(f);
            }
        });
        if let Some(e) = &self.find_error {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
        ui.horizontal_wrapped(|ui| {
            ui.label("Edit all").on_hover_text(
                "Sets every chosen feature's edit, and the edit of features added next",
            );
            let before = (self.mode, self.value);
            ui.radio_value(&mut self.mode, Mode::Ablate, "Ablate")
                .on_hover_text("Set the features to 0");
            ui.radio_value(&mut self.mode, Mode::Clamp, "Clamp")
                .on_hover_text("Set the features to the value (also where they were off)");
            ui.radio_value(&mut self.mode, Mode::Scale, "Scale")
                .on_hover_text("Multiply the features by the value");
            if self.mode != Mode::Ablate {
                let l = ui.label(if self.mode == Mode::Clamp { "to" } else { "by" });
                ui.add(egui::DragValue::new(&mut self.value).speed(0.05))
                    .labelled_by(l.id);
            }
            if (self.mode, self.value) != before {
                for c in &mut self.features {
                    (c.mode, c.value) = (self.mode, self.value);
                }
            }
            ui.separator();
            ui.label("On");
            ui.radio_value(&mut self.painted_only, false, "All patches");
            ui.radio_value(&mut self.painted_only, true, "Painted patches")
                .on_hover_text("Drag on the image to paint patches; Shift+drag erases");
            if self.painted_only {
                ui.label(format!("{} painted", self.painted.len()));
                if ui.button("Clear painting").clicked() {
                    self.painted.clear();
                }
            }
        });
        if self.painted_only && self.painted.is_empty() && !self.features.is_empty() {
            ui.label(egui::RichText::new("Paint some patches on the image to edit them.").weak());
        }
        let Some(iv) = self.intervention() else {
            return;
        };
        self.poll();
        let shown = self.result.clone();
        let running = self.run.is_some() || self.sent.as_ref() != Some(&iv);
        if running {
            ui.horizontal(|ui| {
                ui.add(egui::Spinner::new());
                ui.label("running the model on the edited stream…");
            });
        }
        let Some((ran, out)) = shown else { return };
        let out = match out {
            Ok(o) => o,
            Err(e) => {
                ui.colored_label(ui.visuals().error_fg_color, crate::words::shown(&e));
                return;
            }
        };
        // While a run goes, the last result stays up (sliders stay smooth) if it was for the
        // same features; a result for other features is never shown as this one's.
        if ran != iv
            && (!running
                || ran
                    .edits
                    .iter()
                    .map(|e| e.feature)
                    .ne(iv.edits.iter().map(|e| e.feature)))
        {
            return;
        }
        self.outcome_ui(ui, &ran, &out, image, geometry);
    }

    fn outcome_ui(
        &mut self,
        ui: &mut egui::Ui,
        ran: &Intervention,
        out: &Outcome,
        image: &image::RgbImage,
        geometry: &TokenGeometry,
    ) {
        if out.identical {
            ui.label(format!(
                "No feature activation changed ({} features off on the chosen patches, or set to what they were): the output is the original, bit for bit.",
                out.edits.len()
            ));
            return;
        }
        // The table and the effect map side by side when the page is wide enough, else the
        // map below the table (it was cut off at the right edge of a default-size window).
        let side_by_side = ui.available_width() >= 700.0;
        let layout = if side_by_side {
            egui::Layout::left_to_right(egui::Align::TOP)
        } else {
            egui::Layout::top_down(egui::Align::LEFT)
        };
        ui.with_layout(layout, |ui| {
            ui.vertical(|ui| {
                if let (Some(o), Some(e)) = (out.original.first(), out.edited.first()) {
                    ui.label(
                        egui::RichText::new(format!(
                            "Prediction: {} ({:.3}), after the edit: {} ({:.3})",
                            o.class, o.prob, e.class, e.prob
                        ))
                        .strong(),
                    );
                    let mut rows = out.class_probs.clone();
                    rows.sort_by(|a, b| b.original.max(b.edited).total_cmp(&a.original.max(a.edited)));
                    egui::Grid::new("intervention_classes")
                        .num_columns(4)
                        .striped(true)
                        .show(ui, |ui| {
                            for h in ["class", "before", "after", "Δ"] {
                                ui.label(egui::RichText::new(h).weak());
                            }
                            ui.end_row();
                            for r in rows.iter().take(6) {
                                ui.label(&r.class);
                                ui.label(format!("{:.4}", r.original));
                                ui.label(format!("{:.4}", r.edited));
                                let d = r.edited - r.original;
                                let color = if d < 0.0 {
                                    ui.visuals().error_fg_color
                                } else {
                                    ui.visuals().text_color()
                                };
                                ui.colored_label(color, format!("{d:+.4}"));
                                ui.end_row();
                            }
                        });
                } else {
                    ui.label("This model has no classifier head: the pooled output is compared.");
                }
                ui.label(format!(
                    "{} feature activations changed on {} patches · pooled output cosine {:.5}",
                    out.codes_changed, out.tokens_edited, out.pooled_cosine
                ));
            });
            // The effect map: how far the final hidden state moved, per patch.
            let heat = Outcome::heatmap(&out.output_change, geometry);
            let vmax = heat.max();
            if self.effect_tex.as_ref().is_none_or(|(iv, _)| iv != ran) {
                let img = overlay(image, &heat, heat.zoom_for(200), 0.0, 0.75);
                let tex = ui.ctx().load_texture(
                    "intervention-effect",
                    egui::ColorImage::from_rgb(
                        [img.width() as usize, img.height() as usize],
                        img.as_raw(),
                    ),
                    // Crisp patch cells, like the image beside it.
                    egui::TextureOptions::NEAREST,
                );
                self.effect_tex = Some((ran.clone(), tex));
            }
            ui.vertical(|ui| {
                if let Some((_, t)) = &self.effect_tex {
                    let side = ui.available_width().clamp(64.0, 200.0);
                    ui.add(
                        egui::Image::new(t)
                            .fit_to_exact_size(egui::vec2(side, side))
                            .alt_text("effect map"),
                    );
                }
                ui.add(egui::Label::new(
                    egui::RichText::new(format!(
                        "Where the output changed (change of the final hidden state per patch, L2, max {vmax:.3})"
                    ))
                    .weak(),
                ).wrap());
            });
        });
    }
}
