//! The image view: one image (from the dataset or dropped on the window) with the heatmap of a
//! chosen feature over it, the features active under the pointer, the image's top features and
//! the intervention panel. Encoding runs on a background thread (the backbone is loaded once and
//! kept).

use crate::analysis::heatmap::{Heatmap, model_view, overlay};
use crate::analysis::intervene::{Prepared, is_patch};
use crate::backbone::{TokenGeometry, load_backbone};
use crate::intervene_panel::InterventionPanel;
use crate::jobs::{BackgroundJob, JobOutput, JobState};
use crate::ops::workspace::Workspace;
use crate::sae::Sae;
use crate::view_state::{HeatmapView, SharedBackbone};
use std::sync::Arc;

pub struct ImageView {
    pub title: String,
    pub image: image::RgbImage,
    /// Encoding the image: the stream at the tapped layer, its codes (all tokens) and the
    /// unedited output, handed over to `prepared` when done.
    encoding: BackgroundJob,
    encoded: JobOutput<Arc<Prepared>>,
    prepared: Option<Arc<Prepared>>,
    pub feature: Option<u32>,
    /// The shown feature's heatmap over the image, at the opacity it was made with.
    overlay: Option<(u32, f32, egui::TextureHandle)>,
    /// The image alone, for side by side.
    plain: Option<egui::TextureHandle>,
    sae: Arc<Sae>,
    backbone: SharedBackbone,
    pub intervene: InterventionPanel,
    /// The patch right-clicked last (its features fill the context menu).
    menu_token: Option<usize>,
    /// While a paint stroke lasts: whether it paints (true) or erases, and where it was last.
    stroke_paints: Option<bool>,
    last_paint: Option<egui::Pos2>,
}

impl ImageView {
    /// Starts encoding `image` in the background.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        title: String,
        image: image::RgbImage,
        feature: Option<u32>,
        ws: &Workspace,
        sae: Sae,
        backbone: SharedBackbone,
        device: crate::device::DeviceChoice,
        ctx: &egui::Context,
    ) -> ImageView {
        let sae = Arc::new(sae);
        let (img, spec, layer, s, b) = (
            image.clone(),
            ws.config.model.clone(),
            ws.config.layer,
            sae.clone(),
            backbone.clone(),
        );
        let (encoding, encoded) =
            BackgroundJob::spawn_with_output("Encode image", ctx, move |_| {
                let b = b.get_or_init(|| {
                    crate::device::resolve(device)
                        .and_then(|(d, _)| load_backbone(&spec, &d))
                        .map_err(crate::Failure::new)
                });
                let b = b.as_ref().map_err(|e| crate::Error::Shared(e.clone()))?;
                Ok((Arc::new(Prepared::new(b, &s, layer, &img)?), String::new()))
            });
        let g = ws.config.backbone.geometry;
        let input = (g.grid_w * g.patch_size, g.grid_h * g.patch_size);
        ImageView {
            title,
            // Shown as the model saw it, so heatmap cells sit on the pixels each patch covered.
            image: model_view(&image, ws.config.preprocessor.as_ref(), input),
            encoding,
            encoded,
            prepared: None,
            feature,
            overlay: None,
            plain: None,
            sae,
            backbone,
            intervene: InterventionPanel::default(),
            menu_token: None,
            stroke_paints: None,
            last_paint: None,
        }
    }

    /// The image's SAE codes (every token), once encoded.
    pub fn codes(&self) -> Option<crate::sae::SparseCodes> {
        self.prepared.as_ref().map(|p| p.codes.clone())
    }

    /// Loads an image file for the view (errors name the file).
    pub fn load_file(path: &std::path::Path) -> crate::Result<image::RgbImage> {
        crate::ops::workspace::load_rgb(path)
            .map_err(|e| crate::Error::Invalid(format!("{}: {e}", path.display())))
    }

    /// Loads image `i` of the workspace's dataset (errors name the file).
    pub fn load_dataset(
        ds: &crate::ops::workspace::Dataset,
        i: usize,
    ) -> crate::Result<image::RgbImage> {
        ds.load(i)
            .map_err(|e| crate::Error::Invalid(format!("{}: {e}", ds.abs_path(i).display())))
    }

    /// Draws the view; returns a feature the user asked to open.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        geometry: &TokenGeometry,
        label_of: &dyn Fn(u32) -> String,
        thumb_of: &mut dyn FnMut(u32) -> Option<egui::TextureHandle>,
        heat: HeatmapView,
    ) -> Option<u32> {
        ui.heading(&self.title);
        if let Some(p) = self.encoded.take() {
            self.prepared = Some(p);
        }
        let Some(prepared) = self.prepared.clone() else {
            match self.encoding.state() {
                JobState::Failed(e) => {
                    ui.colored_label(ui.visuals().error_fg_color, crate::words::shown(&e));
                }
                _ => {
                    ui.horizontal(|ui| {
                        ui.add(egui::Spinner::new());
                        ui.label("encoding the image…");
                    });
                }
            }
            return None;
        };
        // What the model itself says about the image, before any edit.
        if !prepared.prediction.is_empty() {
            let top: Vec<String> = prepared
                .prediction
                .iter()
                .map(|c| format!("{} {:.3}", c.class, c.prob))
                .collect();
            ui.label(format!("Model's prediction: {}", top.join(" · ")))
                .on_hover_text("The model's top classes and probabilities on this image, unedited");
        }
        let codes = &prepared.codes;
        let tokens: Vec<usize> = (0..codes.rows()).collect();
        // Image-level top features: max over tokens.
        let mut best: std::collections::BTreeMap<u32, f32> = Default::default();
        for r in 0..codes.rows() {
            for (j, v) in codes.row(r) {
                let m = best.entry(j).or_insert(0.0);
                *m = m.max(v);
            }
        }
        let mut top: Vec<(u32, f32)> = best.into_iter().collect();
        top.sort_by(|a, b| b.1.total_cmp(&a.1));
        if self.feature.is_none() {
            self.feature = top.first().map(|t| t.0);
        }
        let mut open = None;
        ui.horizontal(|ui| {
            let l = ui.label("Heatmap of feature");
            egui::ComboBox::from_id_salt("image_feature")
                .selected_text(
                    self.feature
                        .map(|f| format!("#{f} {}", label_of(f)))
                        .unwrap_or_default(),
                )
                .show_ui(ui, |ui| {
                    for &(f, v) in top.iter().take(40) {
                        ui.selectable_value(
                            &mut self.feature,
                            Some(f),
                            format!("#{f} {} ({v:.2})", label_of(f)),
                        );
                    }
                })
                .response
                .labelled_by(l.id);
            if let Some(f) = self.feature
                && ui
                    .button("Open feature")
                    .on_hover_text("Go to this feature's page")
                    .clicked()
            {
                open = Some(f);
            }
        });
        let Some(f) = self.feature else { return open };
        let texture = |name: String, img: &image::RgbImage| {
            ui.ctx().load_texture(
                name,
                egui::ColorImage::from_rgb(
                    [img.width() as usize, img.height() as usize],
                    img.as_raw(),
                ),
                egui::TextureOptions::LINEAR,
            )
        };
        if self
            .overlay
            .as_ref()
            .is_none_or(|o| o.0 != f || o.1 != heat.opacity)
        {
            let map = Heatmap::from_tokens(f, geometry, &tokens, &codes.feature_column(f));
            let img = overlay(&self.image, &map, map.zoom_for(320), 0.0, heat.opacity);
            self.overlay = Some((f, heat.opacity, texture(format!("image-view-{f}"), &img)));
        }
        if heat.side_by_side && self.plain.is_none() {
            self.plain = Some(texture("image-view-plain".into(), &self.image));
        }
        // Side by side, both images are smaller so the panels beside them keep their room.
        let side = if heat.side_by_side { 240.0 } else { 320.0 };
        let mut add = None;
        ui.horizontal_top(|ui| {
            let Some((_, _, tex)) = &self.overlay else {
                return;
            };
            let resp = ui.add(
                egui::Image::new(tex)
                    .fit_to_exact_size(egui::vec2(side, side))
                    .sense(egui::Sense::click_and_drag()),
            );
            let rect = resp.rect;
            // The sequence position of the patch under a screen point.
            let token_at = |p: egui::Pos2| {
                let u = ((p - rect.min) / rect.size())
                    .clamp(egui::vec2(0.0, 0.0), egui::vec2(0.999, 0.999));
                let (col, row) = (
                    (u.x * geometry.grid_w as f32) as usize,
                    (u.y * geometry.grid_h as f32) as usize,
                );
                (
                    row,
                    col,
                    geometry.prefix_tokens() + row * geometry.grid_w + col,
                )
            };
            // Painting patches for the intervention (Shift erases): from where the button went
            // down, along the whole path the pointer took since the last frame.
            let held = resp.is_pointer_button_down_on() || resp.clicked();
            if self.intervene.painted_only
                && held
                && let Some(p) = ui.input(|i| i.pointer.interact_pos())
            {
                let erase = ui.input(|i| i.modifiers.shift);
                let paints = *self.stroke_paints.get_or_insert(!erase);
                let from = self
                    .last_paint
                    .or_else(|| ui.input(|i| i.pointer.press_origin()))
                    .unwrap_or(p);
                let cell = rect.width() / geometry.grid_w.max(1) as f32;
                let steps = ((p - from).length() / (cell / 3.0)).ceil().max(1.0) as usize;
                for s in 0..=steps {
                    let (_, _, t) = token_at(from + (p - from) * (s as f32 / steps as f32));
                    if is_patch(geometry, t) {
                        if paints {
                            self.intervene.painted.insert(t);
                        } else {
                            self.intervene.painted.remove(&t);
                        }
                    }
                }
                self.last_paint = Some(p);
            }
            if !held {
                self.stroke_paints = None;
                self.last_paint = None;
            }
            if self.intervene.painted_only {
                let (cw, ch) = (
                    rect.width() / geometry.grid_w as f32,
                    rect.height() / geometry.grid_h as f32,
                );
                for &t in &self.intervene.painted {
                    let i = t - geometry.prefix_tokens();
                    let (row, col) = (i / geometry.grid_w, i % geometry.grid_w);
                    let min = rect.min + egui::vec2(col as f32 * cw, row as f32 * ch);
                    ui.painter().rect_stroke(
                        egui::Rect::from_min_size(min, egui::vec2(cw, ch)),
                        0.0,
                        egui::Stroke::new(2.0, egui::Color32::WHITE),
                        egui::StrokeKind::Inside,
                    );
                }
            }
            if resp.secondary_clicked()
                && let Some(p) = resp.interact_pointer_pos()
            {
                self.menu_token = Some(token_at(p).2);
            }
            // Hover: which patch, and what fires there.
            let resp = if let Some(p) = resp.hover_pos() {
                let (row, col, token) = token_at(p);
                if token < codes.rows() {
                    let mut here: Vec<(u32, f32)> = codes.row(token).collect();
                    here.sort_by(|a, b| b.1.total_cmp(&a.1));
                    let text = here
                        .iter()
                        .take(6)
                        .map(|&(j, v)| format!("#{j} {} {v:.2}", label_of(j)))
                        .collect::<Vec<_>>()
                        .join("\n");
                    resp.on_hover_text(format!(
                        "patch ({row}, {col})\n{text}\n(right-click to intervene on these)"
                    ))
                } else {
                    resp
                }
            } else {
                resp
            };
            let menu_token = self.menu_token;
            resp.context_menu(|ui| {
                let Some(t) = menu_token.filter(|&t| t < codes.rows()) else {
                    ui.label("no patch here");
                    return;
                };
                let mut here: Vec<(u32, f32)> = codes.row(t).collect();
                here.sort_by(|a, b| b.1.total_cmp(&a.1));
                let i = t.saturating_sub(geometry.prefix_tokens());
                ui.label(
                    egui::RichText::new(format!(
                        "patch ({}, {})",
                        i / geometry.grid_w.max(1),
                        i % geometry.grid_w.max(1)
                    ))
                    .weak(),
                );
                if here.is_empty() {
                    ui.label("no feature fires on this patch");
                }
                for (j, v) in here.into_iter().take(12) {
                    if ui
                        .button(format!("Intervene on #{j} {} ({v:.2})", label_of(j)))
                        .clicked()
                    {
                        add = Some(j);
                        ui.close();
                    }
                }
            });
            if heat.side_by_side
                && let Some(t) = &self.plain
            {
                ui.add(
                    egui::Image::new(t)
                        .fit_to_exact_size(egui::vec2(side, side))
                        .alt_text("the image without heatmap"),
                );
            }
            ui.vertical(|ui| {
                ui.label(egui::RichText::new("Top features of this image").strong());
                for &(j, v) in top.iter().take(12) {
                    let text = format!("#{j} {} — {v:.2}", label_of(j));
                    let selected = self.feature == Some(j);
                    let button = match thumb_of(j) {
                        Some(t) => egui::Button::image_and_text(
                            egui::Image::new(&t).fit_to_exact_size(egui::vec2(24.0, 24.0)),
                            text,
                        ),
                        None => egui::Button::new(text),
                    }
                    .selected(selected);
                    ui.horizontal(|ui| {
                        if ui
                            .small_button("+")
                            .on_hover_text(format!("Intervene on #{j}"))
                            .clicked()
                        {
                            add = Some(j);
                        }
                        if ui.add(button).on_hover_text("Show its heatmap").clicked() {
                            self.feature = Some(j);
                        }
                    });
                }
            });
            // The intervention panel in a third column, so its result shows beside the image.
            ui.vertical(|ui| {
                // Never wider than what is left of the window (at 1024 px it ran off the edge).
                ui.set_max_width(ui.available_width().min(560.0));
                if let Some(j) = add.take() {
                    self.intervene.add(j);
                }
                let ctx = ui.ctx().clone();
                self.intervene
                    .update(&prepared, &self.sae, &self.backbone, &ctx);
                let d_sae = self.sae.d_sae;
                let on_image: Vec<u32> = top.iter().map(|t| t.0).collect();
                self.intervene.ui(
                    ui,
                    &self.image,
                    geometry,
                    d_sae,
                    self.feature,
                    &on_image,
                    label_of,
                );
            });
        });
        open
    }
}
