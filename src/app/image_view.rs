//! The image view: one image (from the dataset or dropped on the window) with the heatmap of a
//! chosen feature over it, the features active under the pointer, and the image's top features.
//! Encoding runs on a background thread (the backbone is loaded once and kept).

use crate::analysis::heatmap::{Heatmap, encode_image, model_view, overlay};
use crate::backbone::{TokenGeometry, VisionTransformer, load_backbone};
use crate::sae::{Sae, SparseCodes};
use crate::store::Workspace;
use std::sync::{Arc, Mutex, OnceLock};

/// The workspace's backbone, loaded on first use and shared by later encodings.
pub type SharedBackbone = Arc<OnceLock<std::result::Result<VisionTransformer, String>>>;

pub struct ImageView {
    pub title: String,
    pub image: image::RgbImage,
    /// Per token (all tokens of the sequence) once encoded.
    codes: Arc<Mutex<Option<Result<SparseCodes, String>>>>,
    pub feature: Option<u32>,
    overlay: Option<(u32, egui::TextureHandle)>,
}

impl ImageView {
    /// Starts encoding `image` in the background.
    pub fn open(
        title: String,
        image: image::RgbImage,
        feature: Option<u32>,
        ws: &Workspace,
        sae: Sae,
        backbone: SharedBackbone,
        ctx: &egui::Context,
    ) -> ImageView {
        let codes = Arc::new(Mutex::new(None));
        let (slot, img, spec, layer, ctx) = (
            codes.clone(),
            image.clone(),
            ws.config.model.clone(),
            ws.config.layer,
            ctx.clone(),
        );
        std::thread::spawn(move || {
            let b = backbone.get_or_init(|| {
                load_backbone(&spec, &candle_core::Device::Cpu).map_err(|e| e.to_string())
            });
            let r = match b {
                Ok(b) => encode_image(b, &sae, layer, &img).map_err(|e| e.to_string()),
                Err(e) => Err(e.clone()),
            };
            if let Ok(mut g) = slot.lock() {
                *g = Some(r);
            }
            ctx.request_repaint();
        });
        let g = ws.config.backbone.geometry;
        let input = (g.grid_w * g.patch_size, g.grid_h * g.patch_size);
        ImageView {
            title,
            // Shown as the model saw it, so heatmap cells sit on the pixels each patch covered.
            image: model_view(&image, ws.config.preprocessor.as_ref(), input),
            codes,
            feature,
            overlay: None,
        }
    }

    /// Loads an image file for the view (errors name the file).
    pub fn load_file(path: &std::path::Path) -> Result<image::RgbImage, String> {
        crate::store::dataset::load_rgb(path).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Draws the view; returns a feature the user asked to open.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        geometry: &TokenGeometry,
        label_of: &dyn Fn(u32) -> String,
        thumb_of: &mut dyn FnMut(u32) -> Option<egui::TextureHandle>,
    ) -> Option<u32> {
        ui.heading(&self.title);
        let guard = self.codes.lock().ok()?;
        let codes = match &*guard {
            None => {
                ui.horizontal(|ui| {
                    ui.add(egui::Spinner::new());
                    ui.label("encoding the image…");
                });
                return None;
            }
            Some(Err(e)) => {
                ui.colored_label(ui.visuals().error_fg_color, e);
                return None;
            }
            Some(Ok(c)) => c.clone(),
        };
        drop(guard);
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
        if self.overlay.as_ref().is_none_or(|o| o.0 != f) {
            let heat = Heatmap::from_tokens(f, geometry, &tokens, &codes.feature_column(f));
            let img = overlay(&self.image, &heat, heat.zoom_for(320), 0.0, 0.75);
            let tex = ui.ctx().load_texture(
                format!("image-view-{f}"),
                egui::ColorImage::from_rgb(
                    [img.width() as usize, img.height() as usize],
                    img.as_raw(),
                ),
                egui::TextureOptions::LINEAR,
            );
            self.overlay = Some((f, tex));
        }
        ui.horizontal_top(|ui| {
            let Some((_, tex)) = &self.overlay else {
                return;
            };
            let resp = ui.add(
                egui::Image::new(tex)
                    .fit_to_exact_size(egui::vec2(320.0, 320.0))
                    .sense(egui::Sense::hover()),
            );
            // Hover: which patch, and what fires there.
            if let Some(p) = resp.hover_pos() {
                let u = ((p - resp.rect.min) / resp.rect.size())
                    .clamp(egui::vec2(0.0, 0.0), egui::vec2(0.999, 0.999));
                let (col, row) = (
                    (u.x * geometry.grid_w as f32) as usize,
                    (u.y * geometry.grid_h as f32) as usize,
                );
                let token = geometry.prefix_tokens() + row * geometry.grid_w + col;
                if token < codes.rows() {
                    let mut here: Vec<(u32, f32)> = codes.row(token).collect();
                    here.sort_by(|a, b| b.1.total_cmp(&a.1));
                    let text = here
                        .iter()
                        .take(6)
                        .map(|&(j, v)| format!("#{j} {} {v:.2}", label_of(j)))
                        .collect::<Vec<_>>()
                        .join("\n");
                    resp.on_hover_text(format!("patch ({row}, {col})\n{text}"));
                }
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
                    if ui.add(button).on_hover_text("Show its heatmap").clicked() {
                        self.feature = Some(j);
                    }
                }
            });
        });
        open
    }
}
