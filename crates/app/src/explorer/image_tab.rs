//! The Image tab: any image with the features active on it and their heatmaps.

use super::*;

impl Explorer {
    pub(super) fn open_image(
        &mut self,
        ctx: &egui::Context,
        title: String,
        img: image::RgbImage,
        feature: Option<u32>,
    ) {
        let Some(sae) = self.sae.clone() else {
            self.error = Some(crate::failure(
                "this workspace has no SAE to encode images with",
            ));
            return;
        };
        // The chosen intervention features and their edits stay for the next image.
        let carried = self.image_view.as_ref().map(|v| v.intervene.carried_over());
        let mut view = ImageView::open(
            title,
            img,
            feature,
            &self.ws,
            sae,
            self.backbone.clone(),
            self.device,
            ctx,
        );
        if let Some(c) = carried {
            view.intervene = c;
        }
        self.image_view = Some(view);
        self.tab = Tab::Image;
        // An image opened: an earlier failure to open one no longer holds.
        self.error = None;
    }

    pub(super) fn image_ui(&mut self, ui: &mut egui::Ui) {
        // Choose any dataset image by number, or any image file by path (or drop one).
        let n = self.ds.len();
        let mut open: Option<(String, crate::Result<image::RgbImage>)> = None;
        ui.horizontal(|ui| {
            let l = ui.label("Dataset image");
            ui.add(egui::DragValue::new(&mut self.image_pick).range(0..=n.saturating_sub(1)))
                .labelled_by(l.id)
                .on_hover_text(format!("0 to {}", n.saturating_sub(1)));
            for (text, step) in [("<", -1i64), (">", 1)] {
                if ui
                    .button(text)
                    .on_hover_text("Previous / next image")
                    .clicked()
                    && n > 0
                {
                    self.image_pick = (self.image_pick as i64 + step).rem_euclid(n as i64) as usize;
                    open = Some((
                        self.ds.images[self.image_pick].path.clone(),
                        ImageView::load_dataset(&self.ds, self.image_pick),
                    ));
                }
            }
            if ui
                .button("Open image")
                .on_hover_text("Show this dataset image")
                .clicked()
                && n > 0
            {
                let i = self.image_pick.min(n - 1);
                open = Some((
                    self.ds.images[i].path.clone(),
                    ImageView::load_dataset(&self.ds, i),
                ));
            }
            ui.separator();
            let l = ui.label("Image file");
            ui.add(
                egui::TextEdit::singleline(&mut self.form.image_path)
                    .hint_text("/path/to/image.png")
                    .desired_width(260.0),
            )
            .labelled_by(l.id);
            self.picker.button(ui, "image file", Pick::File);
            if let Some(p) = self.picker.take("image file") {
                self.form.image_path = p.display().to_string();
            }
            if ui
                .button("Open file")
                .on_hover_text("Show any image file (or drop one on the window)")
                .clicked()
            {
                let p = std::path::PathBuf::from(self.form.image_path.trim());
                open = Some((p.display().to_string(), ImageView::load_file(&p)));
            }
        });
        if let Some((title, img)) = open {
            match img {
                Ok(img) => self.open_image(ui.ctx(), title, img, self.selected),
                Err(e) => self.error = Some(crate::Failure::new(e)),
            }
        }
        let geometry = self.ws.config.backbone.geometry;
        let labels = self.labels.clone();
        let label_of = |f: u32| {
            labels
                .labels
                .get(&f)
                .map(|l| l.text.clone())
                .unwrap_or_default()
        };
        // Out of `self` while drawn, so its top features can fetch thumbnails.
        let Some(mut v) = self.image_view.take() else {
            ui.label("Open an image above, click a top image on a feature page, or drop any image file on the window.");
            return;
        };
        let ctx = ui.ctx().clone();
        if self.form.heatmap.controls_ui(ui) {
            self.thumbs.forget_overlays();
        }
        self.save_heatmaps_ui(ui, &v);
        let heat = self.form.heatmap;
        // The view and its intervention panel are taller than a laptop window.
        let picked = egui::ScrollArea::vertical()
            .id_salt("image_scroll")
            .auto_shrink([false, false])
            .show(ui, |ui| {
                v.ui(
                    ui,
                    &geometry,
                    &label_of,
                    &mut |f| self.thumb(&ctx, f, ThumbKind::Card),
                    heat,
                )
            })
            .inner;
        self.image_view = Some(v);
        if let Some(f) = picked {
            self.select(f);
        }
    }

    /// Saves the image's heatmaps (the shown feature's and the chosen intervention features')
    /// as overlay PNGs, as `saescope heatmap --png` writes them.
    fn save_heatmaps_ui(&mut self, ui: &mut egui::Ui, v: &ImageView) {
        // A dataset image is named relative to the image folder; a file by its own path.
        let image = {
            let p = std::path::PathBuf::from(&v.title);
            if p.is_absolute() {
                p
            } else {
                self.ds.root.join(p)
            }
        };
        let mut features: Vec<u32> = v.feature.into_iter().collect();
        for c in &v.intervene.features {
            if !features.contains(&c.feature) {
                features.push(c.feature);
            }
        }
        ui.horizontal(|ui| {
            let l = ui.label("Save heatmaps to");
            ui.add(
                egui::TextEdit::singleline(&mut self.form.heatmap_dir)
                    .hint_text("folder for the PNGs")
                    .desired_width(260.0),
            )
            .labelled_by(l.id);
            self.picker.button(ui, "heatmap folder", Pick::Folder);
            if let Some(p) = self.picker.take("heatmap folder") {
                self.form.heatmap_dir = p.display().to_string();
            }
            let ready = !self.form.heatmap_dir.trim().is_empty() && !features.is_empty();
            if ui
                .add_enabled(ready, egui::Button::new("Save heatmap PNGs"))
                .on_hover_text(format!(
                    "One overlay PNG per feature (heatmap-<feature>.png): {}",
                    features
                        .iter()
                        .map(|f| format!("#{f}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .clicked()
            {
                let request = crate::ops::measure::HeatmapRequest {
                    workspace: self.ws.dir.clone(),
                    sae: self.home.clone(),
                    device: self.device,
                    image,
                    features,
                    png_dir: Some(std::path::PathBuf::from(self.form.heatmap_dir.trim())),
                };
                self.push_job(BackgroundJob::spawn("Save heatmaps", ui.ctx(), move |_| {
                    let r = crate::ops::measure::heatmap(&request)?;
                    Ok(format!("{} heatmap PNGs written", r.png.len()))
                }));
            }
        });
    }
}
