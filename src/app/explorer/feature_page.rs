//! The feature page: top images with heatmaps, statistics, histogram, class figures, label.

use super::*;

impl Explorer {
    pub(super) fn feature_ui(&mut self, ui: &mut egui::Ui) {
        let Some(f) = self.selected else {
            ui.label("Pick a feature in the Features tab.");
            return;
        };
        let Some(index) = self.index.as_ref() else {
            return;
        };
        let j = f as usize;
        let stats = [
            (
                "Token frequency",
                format!("{:.4}%", index.token_frequency(j) * 100.0),
            ),
            (
                "Image frequency",
                format!("{:.3}%", index.image_frequency(j) * 100.0),
            ),
            ("Mean when active", format!("{:.3}", index.mean_active(j))),
            ("Max activation", format!("{:.3}", index.max_act[j])),
        ];
        let hist: Vec<(f64, f64)> = (1..HIST_BINS)
            .map(|b| {
                (
                    (hist_edge(b) as f64).log10(),
                    index.hist[j * HIST_BINS + b] as f64,
                )
            })
            .filter(|p| p.1 > 0.0)
            .collect();
        let classes: Vec<(String, f64, f64)> = {
            let mut v: Vec<_> = class_scores(index, &self.ds, j)
                .into_iter()
                .map(|(c, p, r)| (self.ds.classes[c].clone(), p, r))
                .collect();
            v.sort_by(|a, b| b.1.total_cmp(&a.1));
            v.truncate(5);
            v
        };
        let n_top = index.top[j].len().min(16);
        // Left/right arrows step through the grid's order (when no text field has the keyboard).
        if !ui.ctx().egui_wants_keyboard_input() {
            let (left, right) = ui.input(|i| {
                (
                    i.key_pressed(egui::Key::ArrowLeft),
                    i.key_pressed(egui::Key::ArrowRight),
                )
            });
            let step = if left {
                -1
            } else if right {
                1
            } else {
                0
            };
            if step != 0
                && let Some(g) = self.neighbour(f, step)
            {
                self.select(g);
                return;
            }
        }
        let (prev, next) = (self.neighbour(f, -1), self.neighbour(f, 1));
        ui.horizontal(|ui| {
            if ui
                .add_enabled(!self.back.is_empty(), egui::Button::new("Back"))
                .on_hover_text("The feature page shown before this one")
                .clicked()
            {
                self.go(false);
            }
            if ui
                .add_enabled(!self.forward.is_empty(), egui::Button::new("Forward"))
                .clicked()
            {
                self.go(true);
            }
            ui.heading(format!("Feature {f}"));
            if ui
                .add_enabled(prev.is_some(), egui::Button::new("< Previous"))
                .on_hover_text("The feature before this one in the grid (its sort and search)")
                .clicked()
                && let Some(g) = prev
            {
                self.select(g);
            }
            if ui
                .add_enabled(next.is_some(), egui::Button::new("Next >"))
                .on_hover_text("The feature after this one in the grid (its sort and search)")
                .clicked()
                && let Some(g) = next
            {
                self.select(g);
            }
        });
        ui.horizontal(|ui| {
            ui.label("Label:");
            let r = ui.add(
                egui::TextEdit::singleline(&mut self.label_edit)
                    .hint_text("describe this feature")
                    .desired_width(240.0),
            );
            if r.changed() {
                self.label_changed = Some(Instant::now());
            }
            if let Some(l) = self.labels.labels.get(&f) {
                ui.label(
                    egui::RichText::new(format!("{:?} · confidence {:.2}", l.source, l.confidence))
                        .weak(),
                );
            }
        });
        egui::ScrollArea::vertical()
            .auto_shrink([false, false])
            .show(ui, |ui| {
                egui::Grid::new("feature_stats")
                    .num_columns(2)
                    .striped(true)
                    .show(ui, |ui| {
                        for (k, v) in &stats {
                            ui.label(*k);
                            ui.label(v);
                            ui.end_row();
                        }
                    });
                ui.label(egui::RichText::new("Top images (heatmap of this feature)").strong());
                let mut open_image: Option<u32> = None;
                let ctx = ui.ctx().clone();
                ui.horizontal_wrapped(|ui| {
                    for rank in 0..n_top {
                        let tex = self.thumb(&ctx, f, ThumbKind::Overlay(rank as u16));
                        let e = &self.index.as_ref().map(|i| i.top[j][rank].clone());
                        let Some(e) = e else { continue };
                        let name = self.ds.images[e.image as usize].path.clone();
                        match tex {
                            Some(t) => {
                                let img = egui::Image::new(&t)
                                    .fit_to_exact_size(egui::vec2(96.0, 96.0))
                                    .alt_text(format!("top image {}", rank + 1));
                                if ui
                                    .add(egui::Button::image(img))
                                    .on_hover_text(format!(
                                        "{name}: activation {:.3} (click to open)",
                                        e.value
                                    ))
                                    .clicked()
                                {
                                    open_image = Some(e.image);
                                }
                            }
                            None => {
                                ui.add_sized([96.0, 96.0], egui::Spinner::new());
                            }
                        }
                    }
                });
                if let Some(i) = open_image {
                    match self.ds.load(i as usize) {
                        Ok(img) => {
                            let title = self.ds.images[i as usize].path.clone();
                            self.open_image(ui.ctx(), title, img, Some(f));
                        }
                        Err(e) => self.error = Some(e),
                    }
                }
                ui.label(egui::RichText::new("Activation histogram (log10 activation)").strong());
                egui_plot::Plot::new("hist")
                    .height(140.0)
                    .allow_scroll(false)
                    .show(ui, |p| {
                        let bars: Vec<egui_plot::Bar> = hist
                            .iter()
                            .map(|&(x, y)| egui_plot::Bar::new(x, y).width(0.09))
                            .collect();
                        p.bar_chart(egui_plot::BarChart::new("tokens", bars));
                    });
                ui.label(egui::RichText::new("Classes it fires on").strong());
                egui::Grid::new("classes")
                    .num_columns(3)
                    .striped(true)
                    .show(ui, |ui| {
                        ui.label("class");
                        ui.label("precision (top images)");
                        ui.label("recall (class images)");
                        ui.end_row();
                        for (c, p, r) in &classes {
                            ui.label(c);
                            ui.label(format!("{p:.2}"));
                            ui.label(format!("{r:.3}"));
                            ui.end_row();
                        }
                    });
                ui.label(egui::RichText::new("Nearest features (decoder cosine)").strong());
                let near = self.nearest(f);
                let mut go = None;
                ui.horizontal_wrapped(|ui| {
                    for (g, cos) in near {
                        let l = self
                            .labels
                            .labels
                            .get(&g)
                            .map(|l| l.text.clone())
                            .unwrap_or_default();
                        if ui
                            .button(format!("#{g} {l} ({cos:.2})"))
                            .on_hover_text("Open this feature")
                            .clicked()
                        {
                            go = Some(g);
                        }
                    }
                });
                if let Some(g) = go {
                    self.select(g);
                }
            });
    }

    /// The 8 features whose decoder directions are closest to `f`'s (cached per feature).
    pub(super) fn nearest(&mut self, f: u32) -> Vec<(u32, f32)> {
        if let Some((g, v)) = &self.nearest
            && *g == f
        {
            return v.clone();
        }
        let Some(sae) = &self.sae else {
            return Vec::new();
        };
        let d = sae.d_in;
        let row = |j: usize| &sae.w_dec[j * d..(j + 1) * d];
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        let a = row(f as usize);
        let na = norm(a);
        let mut v: Vec<(u32, f32)> = (0..sae.d_sae)
            .filter(|&j| j != f as usize)
            .map(|j| {
                let b = row(j);
                (
                    j as u32,
                    a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>() / (na * norm(b)),
                )
            })
            .collect();
        v.sort_by(|x, y| y.1.total_cmp(&x.1));
        v.truncate(8);
        self.nearest = Some((f, v.clone()));
        v
    }
}
