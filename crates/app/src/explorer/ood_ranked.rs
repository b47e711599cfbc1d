//! The OOD tab's ranked list: every scored image of every folder by score, the
//! in-distribution images a 95%-TPR threshold would flag, and the picked image's feature
//! contributions as a bar chart.

use super::*;
use crate::analysis::ood::OodResults;

/// One image in the ranked list.
#[derive(Clone, Debug)]
pub struct Ranked {
    pub set: usize,
    pub image: usize,
    pub score: f64,
    /// An in-distribution image at or above the 95%-TPR threshold.
    pub false_positive: bool,
}

/// What the ranked list keeps between frames (sorted once per result and method).
#[derive(Default)]
pub struct OodView {
    /// (method, ranking, threshold at 95% TPR) for the loaded results.
    ranked: Option<(usize, Vec<Ranked>, Option<f64>)>,
    /// The image whose contributions are shown: (set, image).
    pick: Option<(usize, usize)>,
}

/// The score above which 95% of the OOD images lie (the FPR-at-95%-TPR threshold), when
/// there are OOD images.
fn threshold_95(r: &OodResults, method: usize) -> Option<f64> {
    let mut ood: Vec<f64> = (0..r.sets.len())
        .filter(|&s| !r.sets[s].in_distribution)
        .flat_map(|s| r.scores(s, method))
        .filter(|x| x.is_finite())
        .collect();
    if ood.is_empty() {
        return None;
    }
    ood.sort_by(f64::total_cmp);
    // The largest t with at least 95% of OOD scores ≥ t.
    let i = ((ood.len() as f64) * 0.05).floor() as usize;
    ood.get(i.min(ood.len() - 1)).copied()
}

/// Every scored image, highest score first.
pub fn rank(r: &OodResults, method: usize) -> (Vec<Ranked>, Option<f64>) {
    let t = threshold_95(r, method);
    let mut all: Vec<Ranked> = r
        .sets
        .iter()
        .enumerate()
        .flat_map(|(si, s)| {
            s.images.iter().enumerate().filter_map(move |(ii, img)| {
                let score = img.scores.get(method).copied().flatten()?;
                Some(Ranked {
                    set: si,
                    image: ii,
                    score,
                    false_positive: s.in_distribution && t.is_some_and(|t| score >= t),
                })
            })
        })
        .collect();
    all.sort_by(|a, b| b.score.total_cmp(&a.score));
    (all, t)
}

impl Explorer {
    /// The ranked list and the picked image's contributions (method `mi`).
    pub(super) fn ood_ranked_ui(&mut self, ui: &mut egui::Ui, mi: usize) {
        let Some(r) = &self.ood else { return };
        if self
            .ood_view
            .ranked
            .as_ref()
            .is_none_or(|(m, _, _)| *m != mi)
        {
            let (list, t) = rank(r, mi);
            self.ood_view.ranked = Some((mi, list, t));
        }
        let Some((_, list, t)) = &self.ood_view.ranked else {
            return;
        };
        let method = r.methods.get(mi).map_or("", String::as_str);
        ui.label(egui::RichText::new(format!("All images by {method}")).strong());
        let id_total = r
            .sets
            .iter()
            .filter(|s| s.in_distribution)
            .map(|s| s.images.len())
            .sum::<usize>();
        let fps = list.iter().filter(|x| x.false_positive).count();
        match t {
            Some(t) => ui.label(format!(
                "At the threshold that flags 95% of the OOD images (score ≥ {t:.3}), {fps} of \
                 {id_total} in-distribution images are flagged too (marked false positive); \
                 click a rank for the image's features"
            )),
            None => ui.label("No OOD folder was scored, so there is no threshold."),
        };
        let row_h = ui.spacing().interact_size.y;
        let mut pick = self.ood_view.pick;
        egui::ScrollArea::vertical()
            .id_salt("ood_ranked")
            .max_height((ui.ctx().content_rect().height() * 0.4).max(4.0 * row_h))
            // Ten rows at least (inside the scrolling page it shrank to three).
            .min_scrolled_height(10.0 * row_h)
            .auto_shrink([false, true])
            .show_rows(ui, row_h, list.len(), |ui, rows| {
                egui::Grid::new("ood_ranked_rows")
                    .num_columns(5)
                    .striped(true)
                    .min_row_height(row_h)
                    .show(ui, |ui| {
                        for k in rows {
                            let x = &list[k];
                            let s = &r.sets[x.set];
                            let img = &s.images[x.image];
                            let chosen = pick == Some((x.set, x.image));
                            if ui
                                .selectable_label(chosen, format!("rank {}", k + 1))
                                .on_hover_text("show this image's features below")
                                .clicked()
                            {
                                pick = Some((x.set, x.image));
                            }
                            ui.label(if s.in_distribution {
                                format!("{} (in-dist.)", s.name)
                            } else {
                                s.name.clone()
                            });
                            ui.label(&img.path);
                            ui.label(format!("{:.3}", x.score));
                            ui.label(if x.false_positive {
                                "false positive"
                            } else {
                                ""
                            })
                            .on_hover_text("an in-distribution image scored as OOD");
                            ui.end_row();
                        }
                    });
            });
        self.ood_view.pick = pick;
        let shown = pick.or_else(|| list.first().map(|x| (x.set, x.image)));
        let Some((si, ii)) = shown else { return };
        let (set, img) = (&r.sets[si], &r.sets[si].images[ii]);
        let contributions = img.contributions.get(mi).cloned().unwrap_or_default();
        let file = set.dir.join(&img.path);
        let title = format!(
            "Features behind {} ({}), score {:.3}",
            img.path,
            set.name,
            img.scores.get(mi).copied().flatten().unwrap_or(f64::NAN)
        );
        let mut open = false;
        ui.horizontal(|ui| {
            ui.label(egui::RichText::new(title).strong());
            open = ui
                .button("Open image")
                .on_hover_text("in the image view, with the top feature's heatmap")
                .clicked();
        });
        let go = contribution_bars(ui, &contributions, &self.labels);
        if open {
            match super::ImageView::load_file(&file) {
                Ok(im) => self.open_image(
                    ui.ctx(),
                    file.display().to_string(),
                    im,
                    contributions.first().map(|c| c.0),
                ),
                Err(e) => self.error = Some(crate::Failure::new(e)),
            }
        }
        if let Some(f) = go {
            self.select(f);
        }
    }
}

/// The contributions as labelled horizontal bars (feature, label, bar, value); a click on a
/// feature opens its page.
fn contribution_bars(
    ui: &mut egui::Ui,
    contributions: &[(u32, f32)],
    labels: &crate::analysis::labels::Labels,
) -> Option<u32> {
    if contributions.is_empty() {
        ui.label("No feature contributions were stored for this method.");
        return None;
    }
    let max = contributions
        .iter()
        .map(|c| c.1.abs())
        .fold(0f32, f32::max)
        .max(f32::MIN_POSITIVE);
    let mut go = None;
    let bar_w = (ui.available_width() - 260.0).clamp(60.0, 360.0);
    egui::Grid::new("ood_contributions")
        .num_columns(3)
        .show(ui, |ui| {
            ui.label(egui::RichText::new("feature").weak());
            ui.label(egui::RichText::new("contribution to the score").weak());
            ui.label(egui::RichText::new("value").weak());
            ui.end_row();
            for &(f, c) in contributions {
                let label = labels.labels.get(&f).map_or("", |l| l.text.as_str());
                let text: String = format!("#{f} {label}").chars().take(28).collect();
                if ui
                    .button(text)
                    .on_hover_text(format!("open feature {f}"))
                    .clicked()
                {
                    go = Some(f);
                }
                let (rect, _) = ui.allocate_exact_size(
                    egui::vec2(bar_w, ui.spacing().interact_size.y * 0.6),
                    egui::Sense::hover(),
                );
                let w = rect.width() * c.abs() / max;
                let bar = egui::Rect::from_min_size(rect.min, egui::vec2(w, rect.height()));
                ui.painter()
                    .rect_filled(bar, 1.0, ui.visuals().selection.bg_fill);
                ui.label(format!("{c:.2}"));
                ui.end_row();
            }
        });
    go
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::ood::{ImageScore, ScoredSet};

    fn set(name: &str, id: bool, scores: &[f64]) -> ScoredSet {
        ScoredSet {
            name: name.into(),
            dir: "/x".into(),
            in_distribution: id,
            images: scores
                .iter()
                .enumerate()
                .map(|(i, &s)| ImageScore {
                    path: format!("{i}.png"),
                    scores: vec![Some(s)],
                    contributions: vec![vec![(1, 0.5)]],
                })
                .collect(),
        }
    }

    #[test]
    fn ranks_every_image_and_marks_in_distribution_false_positives() {
        let mut r: OodResults = serde_json::from_value(serde_json::json!({
            "format": "x", "fit_dir": "/x", "n_fit": 0,
            "methods": ["m"], "sets": [], "results": []
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        // OOD scores 1..=20: 95% of them are ≥ 2. In-distribution: 0.5, 1.5, 2.5, 30.
        r.sets = vec![
            set("id", true, &[0.5, 1.5, 2.5, 30.0]),
            set("ood", false, &(1..=20).map(f64::from).collect::<Vec<_>>()),
        ];
        let (list, t) = rank(&r, 0);
        assert_eq!(t, Some(2.0));
        assert_eq!(list.len(), 24);
        assert_eq!(list[0].score, 30.0);
        assert!(list.windows(2).all(|w| w[0].score >= w[1].score));
        let fps: Vec<f64> = list
            .iter()
            .filter(|x| x.false_positive)
            .map(|x| x.score)
            .collect();
        assert_eq!(fps, vec![30.0, 2.5]);
    }
}
