//! The Dataset tab: the workspace's images as thumbnails, filtered by class and file name; a
//! click opens one in the image view.

use super::*;

/// Thumbnail cell size (image and caption).
const CELL: egui::Vec2 = egui::vec2(96.0, 118.0);

/// The browser's filter (not remembered between runs).
#[derive(Default)]
pub struct BrowseState {
    /// Only images of this class.
    pub class: Option<usize>,
    /// Only images whose path contains this (case-insensitive), or the image of this number.
    pub query: String,
    /// The distance between two cells as last drawn (button frames and spacing included).
    pitch: Option<f32>,
}

impl Explorer {
    /// The images the filter keeps, in dataset order.
    fn browsed(&self) -> Vec<usize> {
        let q = self.browse.query.trim().to_lowercase();
        let number = q.parse::<usize>().ok();
        (0..self.ds.len())
            .filter(|&i| {
                let e = &self.ds.images[i];
                let class_ok = self.browse.class.is_none_or(|c| e.class == Some(c as u32));
                let query_ok =
                    q.is_empty() || number == Some(i) || e.path.to_lowercase().contains(&q);
                class_ok && query_ok
            })
            .collect()
    }

    pub(super) fn dataset_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal_wrapped(|ui| {
            let l = ui.label("Class");
            let shown = self
                .browse
                .class
                .and_then(|c| self.ds.classes.get(c).cloned())
                .unwrap_or_else(|| "all classes".into());
            egui::ComboBox::from_id_salt("browse_class")
                .selected_text(shown)
                .height(320.0)
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut self.browse.class, None, "all classes");
                    for (c, name) in self.ds.classes.iter().enumerate() {
                        ui.selectable_value(&mut self.browse.class, Some(c), name);
                    }
                })
                .response
                .labelled_by(l.id);
            let l = ui.label("Find image");
            ui.add(
                egui::TextEdit::singleline(&mut self.browse.query)
                    .hint_text("number or part of the file name")
                    .desired_width(220.0),
            )
            .labelled_by(l.id);
        });
        let picks = self.browsed();
        ui.label(
            egui::RichText::new(format!("{} of {} images", picks.len(), self.ds.len())).weak(),
        );
        // Columns by the pitch the cells were last drawn at (by their nominal width an 18th
        // column was cut at 1920 px).
        let pitch = self
            .browse
            .pitch
            .unwrap_or(CELL.x + ui.spacing().item_spacing.x);
        let cols = ((ui.available_width() / pitch).floor() as usize).max(1);
        let mut lefts: Vec<f32> = Vec::new();
        let rows = picks.len().div_ceil(cols);
        let ctx = ui.ctx().clone();
        let mut open = None;
        egui::ScrollArea::vertical()
            .id_salt(("dataset", self.browse.class, self.browse.query.clone()))
            .auto_shrink([false, false])
            .show_rows(ui, CELL.y + 8.0, rows, |ui, range| {
                for r in range {
                    ui.horizontal(|ui| {
                        for &i in picks.iter().skip(r * cols).take(cols) {
                            let path = self.ds.abs_path(i);
                            let name = &self.ds.images[i].path;
                            let tex = self.thumbs.file(&ctx, &path);
                            let cell = ui.allocate_ui(CELL, |ui| {
                                ui.set_max_width(CELL.x);
                                ui.vertical(|ui| {
                                    let clicked = match tex {
                                        Some(t) => ui
                                            .add(egui::Button::image(
                                                egui::Image::new(&t)
                                                    .fit_to_exact_size(egui::vec2(88.0, 88.0))
                                                    .alt_text(format!("dataset image {i}")),
                                            ))
                                            .on_hover_text(format!("{i}: {name}"))
                                            .clicked(),
                                        None => ui
                                            .button(format!("{i}"))
                                            .on_hover_text(
                                                self.thumbs
                                                    .file_problem(&path)
                                                    .unwrap_or(name)
                                                    .to_string(),
                                            )
                                            .clicked(),
                                    };
                                    // Its number and file name (the class is the filter),
                                    // cut at the cell's edge with an ellipsis.
                                    let file = std::path::Path::new(name)
                                        .file_name()
                                        .map_or(name.clone(), |f| f.to_string_lossy().into_owned());
                                    ui.add(
                                        egui::Label::new(
                                            egui::RichText::new(format!("{i} {file}")).small(),
                                        )
                                        .truncate(),
                                    )
                                    .on_hover_text(format!("{i}: {name}"));
                                    if clicked {
                                        open = Some(i);
                                    }
                                });
                            });
                            if lefts.len() < 2 {
                                lefts.push(cell.response.rect.left());
                            }
                        }
                    });
                }
            });
        if let [a, b] = lefts[..]
            && b > a
        {
            self.browse.pitch = Some(b - a);
        }
        if let Some(i) = open {
            self.image_pick = i;
            match ImageView::load_dataset(&self.ds, i) {
                Ok(img) => {
                    let title = self.ds.images[i].path.clone();
                    self.open_image(ui.ctx(), title, img, self.selected)
                }
                Err(e) => self.error = Some(crate::Failure::new(e)),
            }
        }
    }
}
