//! The feature grid: cards in the chosen sort and search order.

use super::*;

impl Explorer {
    pub(super) fn refresh_order(&mut self) {
        let Some(index) = &self.index else {
            self.order.clear();
            return;
        };
        let key = (self.sort, self.form.reverse, self.search.clone());
        if self.order_key.as_ref() == Some(&key) {
            return;
        }
        let q = self.search.trim().to_lowercase();
        let label = |j: u32| self.labels.labels.get(&j).map(|l| l.text.to_lowercase());
        let mut v: Vec<u32> = (0..index.d_sae as u32)
            .filter(|&j| {
                q.is_empty() || j.to_string() == q || label(j).is_some_and(|l| l.contains(&q))
            })
            .collect();
        match self.sort {
            SortBy::Frequency => v.sort_by(|&a, &b| {
                index.token_count[b as usize]
                    .cmp(&index.token_count[a as usize])
                    .then(a.cmp(&b))
            }),
            SortBy::MaxActivation => v.sort_by(|&a, &b| {
                index.max_act[b as usize]
                    .total_cmp(&index.max_act[a as usize])
                    .then(a.cmp(&b))
            }),
            SortBy::ClassLift => {
                let lift: Vec<f64> = (0..index.d_sae)
                    .map(|j| index.best_lift(j).map_or(0.0, |b| b.1))
                    .collect();
                v.sort_by(|&a, &b| {
                    lift[b as usize]
                        .total_cmp(&lift[a as usize])
                        .then(a.cmp(&b))
                })
            }
            SortBy::Label => {
                v.sort_by_key(|&j| (label(j).is_none(), label(j).unwrap_or_default(), j))
            }
            SortBy::Id => {}
        }
        if self.form.reverse {
            v.reverse();
        }
        self.order = v;
        if self.scroll_order.0.as_ref() != Some(&key) {
            let fresh = GRIDS_OPENED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.scroll_order = (Some(key.clone()), fresh);
        }
        self.order_key = Some(key);
    }

    pub(super) fn grid_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.label("Search:");
            ui.add(
                egui::TextEdit::singleline(&mut self.search)
                    .hint_text("label or id")
                    .desired_width(180.0),
            );
            let sort_label = ui.label("Sort by");
            egui::ComboBox::from_id_salt("grid_sort")
                .selected_text(self.sort.name())
                .show_ui(ui, |ui| {
                    for s in [
                        SortBy::Frequency,
                        SortBy::MaxActivation,
                        SortBy::ClassLift,
                        SortBy::Label,
                        SortBy::Id,
                    ] {
                        ui.selectable_value(&mut self.sort, s, s.name());
                    }
                })
                .response
                .labelled_by(sort_label.id);
            ui.checkbox(&mut self.form.reverse, "Reverse")
                .on_hover_text("Lowest first (Z to A for labels)");
        });
        self.refresh_order();
        ui.label(egui::RichText::new(format!("{} features", self.order.len())).weak());
        let clicked = self.features_grid(ui);
        if let Some(f) = clicked {
            self.select(f);
        }
    }

    /// The virtualised grid: only visible rows are laid out. Returns a clicked feature.
    pub fn features_grid(&mut self, ui: &mut egui::Ui) -> Option<u32> {
        let cols = ((ui.available_width() / (CARD.x + 6.0)).floor() as usize).max(1);
        let rows = self.order.len().div_ceil(cols);
        let mut clicked = None;
        let ctx = ui.ctx().clone();
        egui::ScrollArea::vertical()
            .id_salt(("grid", &self.home, self.scroll_order.1))
            .auto_shrink([false, false])
            .show_rows(ui, CARD.y + 6.0, rows, |ui, range| {
                for r in range {
                    ui.horizontal(|ui| {
                        for c in 0..cols {
                            let Some(&f) = self.order.get(r * cols + c) else {
                                break;
                            };
                            if self.card(ui, &ctx, f) {
                                clicked = Some(f);
                            }
                        }
                    });
                }
            });
        clicked
    }

    pub(super) fn card(&mut self, ui: &mut egui::Ui, ctx: &egui::Context, f: u32) -> bool {
        let label = self.labels.labels.get(&f).map(|l| l.text.clone());
        // A class label's evidence in brief on the card, in full in the hover.
        let (evidence_short, evidence) = match self.labels.labels.get(&f) {
            Some(l) => (
                l.evidence
                    .as_ref()
                    .map(|e| format!("\n{}/{} top ×{:.1}", e.k, e.n, e.lift))
                    .unwrap_or_default(),
                format!("\n{}", l.evidence_line()),
            ),
            None => Default::default(),
        };
        let freq = self
            .index
            .as_ref()
            .map_or(0.0, |i| i.token_frequency(f as usize));
        let tex = self.thumb(ctx, f, ThumbKind::Card);
        // Long labels are shortened on the card (the full one is on the feature page).
        let mut short: String = label.as_deref().unwrap_or("").chars().take(14).collect();
        if label.as_ref().is_some_and(|l| l.chars().count() > 14) {
            short.push_str("..");
        }
        // The card shows the value the grid is sorted by (frequency for label and id order).
        let value = match (self.sort, &self.index) {
            (SortBy::MaxActivation, Some(i)) => format!("max {:.3}", i.max_act[f as usize]),
            // "lift 4.1x ship", cut to the card's width (the page has the full figures).
            (SortBy::ClassLift, Some(i)) => match i.best_lift(f as usize) {
                Some((c, l)) => {
                    let v = format!(
                        "lift {l:.1}x {}",
                        self.ds.classes.get(c).map_or("", String::as_str)
                    );
                    let mut short: String = v.chars().take(15).collect();
                    if v.chars().count() > 15 {
                        short.push_str("..");
                    }
                    short
                }
                None => "no classes".into(),
            },
            _ => format!("{:.3}%", freq * 100.0),
        };
        let text = format!("#{f}\n{short}{evidence_short}\n{value}");
        let button = match tex {
            Some(t) => egui::Button::image_and_text(
                egui::Image::new(&t).fit_to_exact_size(egui::vec2(64.0, 64.0)),
                text,
            ),
            None => egui::Button::new(text),
        };
        let problem = self
            .thumbs
            .problem(f, ThumbKind::Card)
            .map(|p| format!("\n{p}"))
            .unwrap_or_default();
        ui.add_sized(CARD, button)
            .on_hover_text(format!(
                "Feature {f}: open its page\n{}{evidence}\n{}{problem}",
                label.as_deref().unwrap_or("(no label)"),
                match self.sort {
                    SortBy::MaxActivation => "its largest activation on the indexed images",
                    SortBy::ClassLift =>
                        "its most selective class and lift: how much more often that class is among the images it fires on",
                    _ => "the share of tokens it fires on",
                },
            ))
            .clicked()
    }
}
