//! The Compare tab: the workspace's SAEs side by side (training settings and the figures of
//! `saescope eval`), Pareto plots whose points switch the explorer to the SAE clicked, the
//! selected feature's closest features in the other SAEs (decoder cosine) with their top images,
//! and training or loading another SAE.

use super::*;
use crate::jobs::{Ended, JobOutput};
use crate::ops::compare::{CompareRow, Match, OtherSae, closest, compare_rows, load_others};
use egui_plot::{Plot, PlotPoint, PlotPoints, Points};
use std::sync::Arc;

/// Closest features listed per other SAE, and top images shown per match.
const MATCHES_PER_SAE: usize = 2;
const MATCH_IMAGES: usize = 6;
/// A click this close (in points) to an SAE's dot picks it.
const PICK_RADIUS: f32 = 12.0;

type Others = (Vec<OtherSae>, Vec<String>);

#[derive(Default)]
pub struct CompareState {
    rows: Option<Vec<CompareRow>>,
    others: Option<Arc<Others>>,
    loading: Option<(BackgroundJob, JobOutput<Others>)>,
    load_failed: Option<crate::Failure>,
    /// The feature the matches are for, and the matches.
    matches: Option<(u32, Vec<Match>)>,
    /// Where each SAE's dot was drawn on the first Pareto plot in the last frame.
    dots: Vec<(String, egui::Pos2)>,
}

impl Explorer {
    pub(super) fn compare_ui(&mut self, ui: &mut egui::Ui) {
        let rows = self
            .compare
            .rows
            .get_or_insert_with(|| compare_rows(&self.ws))
            .clone();
        // Figures scored on other images do not compare: say where they come from.
        let mut folders: Vec<&std::path::Path> = rows
            .iter()
            .filter_map(|r| r.eval_images.as_deref())
            .collect();
        folders.sort();
        folders.dedup();
        ui.horizontal(|ui| {
            let head = ui.label(format!(
                "{} SAEs. Figures come from `saescope eval`{} (probes and controls are in each \
                 SAE's benchmark.json).",
                rows.len(),
                match folders.as_slice() {
                    [one] => format!(
                        ", scored on {}",
                        one.file_name().unwrap_or(one.as_os_str()).to_string_lossy()
                    ),
                    _ => String::new(),
                }
            ));
            if let [one] = folders.as_slice() {
                head.on_hover_text(one.display().to_string());
            }
            if ui
                .button("Refresh")
                .on_hover_text("Read the SAEs and their figures again")
                .clicked()
            {
                self.compare = CompareState::default();
            }
        });
        if folders.len() > 1 {
            ui.colored_label(
                ui.visuals().warn_fg_color,
                format!(
                    "These figures were scored on {} different image folders: compare only SAEs \
                     scored on the same images (hover an SAE's name for its folder).",
                    folders.len()
                ),
            );
        }
        egui::ScrollArea::vertical()
            .id_salt("compare_scroll")
            .show(ui, |ui| {
                self.compare_table_ui(ui, &rows);
                ui.separator();
                self.pareto_ui(ui, &rows);
                ui.separator();
                self.closest_ui(ui);
                ui.separator();
                egui::CollapsingHeader::new("Train or load another SAE")
                    .id_salt("another_sae")
                    .show(ui, |ui| self.sae_form_ui(ui));
                egui::CollapsingHeader::new("Measure SAEs on labelled images")
                    .id_salt("measure_saes")
                    .show(ui, |ui| self.measure_ui(ui));
            });
    }

    /// Whether the tab shows all it will: the other SAEs loaded (or failed to load).
    pub fn compare_ready(&self) -> bool {
        self.selected.is_none()
            || self.compare.others.is_some()
            || self.compare.load_failed.is_some()
    }

    /// Each SAE's dot on the L0–FVE plot, as last drawn (screen points).
    pub fn compare_dots(&self) -> &[(String, egui::Pos2)] {
        &self.compare.dots
    }

    fn compare_table_ui(&mut self, ui: &mut egui::Ui, rows: &[CompareRow]) {
        let active = self.active_name();
        let f = |e: Option<f64>, digits: usize| e.map_or("–".into(), |v| format!("{v:.digits$}"));
        egui::ScrollArea::horizontal()
            .id_salt("compare_table_scroll")
            .show(ui, |ui| {
                egui::Grid::new("compare_table")
                    .striped(true)
                    .num_columns(14)
                    .show(ui, |ui| {
                        for (h, tip) in [
                            ("", ""),
                            ("SAE", ""),
                            ("Type", "How it was trained"),
                            ("Latents", ""),
                            ("k", "k, or JumpReLU's L0 target"),
                            ("Tokens", "Training tokens"),
                            ("FVE", "Fraction of variance explained on the evaluation images"),
                            ("L0", "Active latents per token on the evaluation images"),
                            ("Dead", "Latents that never fired on the evaluation images"),
                            ("Probe drop", "Linear-probe accuracy lost when the layer is replaced by the reconstruction (points)"),
                            ("Sparse probe", "Accuracy from the top latents alone"),
                            ("Mono", "Monosemanticity (Pach et al.)"),
                            ("Moran's I", "Spatial coherence of the latents' patch maps"),
                            (
                                "Not above controls on",
                                "Metrics on which it is not better than both the untrained SAE \
                                 and PCA at the same sparsity by two standard errors",
                            ),
                        ] {
                            ui.strong(h).on_hover_text(tip);
                        }
                        ui.end_row();
                        for r in rows {
                            let s = &r.summary;
                            if active.as_deref() == Some(s.name.as_str()) {
                                ui.label("active");
                            } else if ui.button("Use").on_hover_text(format!("Explore {} instead", s.name)).clicked() {
                                self.switch_to = Some(s.name.clone());
                            }
                            let name = ui.label(&s.name);
                            if let Some(folder) = &r.eval_images {
                                name.on_hover_text(format!("Figures scored on {}", folder.display()));
                            }
                            ui.label(&s.architecture);
                            ui.label(s.d_sae.to_string());
                            ui.label(f(s.k, 0));
                            ui.label(s.tokens.map_or("–".into(), |t| format!("{:.2} M", t as f64 / 1e6)));
                            let b = r.benchmark.as_ref().map(|b| &b.trained);
                            let rec = b.map(|v| &v.reconstruction);
                            ui.label(f(rec.map(|r| r.fve.value), 3));
                            ui.label(f(rec.map(|r| r.l0.value), 1));
                            ui.label(rec.map_or("–".into(), |r| format!("{:.1}%", r.dead_fraction * 100.0)));
                            ui.label(f(b.and_then(|v| v.spliced_drop).map(|d| d * 100.0), 2));
                            ui.label(f(b.map(|v| v.sparse_probe.value), 3));
                            ui.label(f(b.and_then(|v| v.monosemanticity).map(|e| e.value), 3));
                            ui.label(f(b.and_then(|v| v.morans_i).map(|e| e.value), 3));
                            let failing = r
                                .benchmark
                                .as_ref()
                                .map_or(Vec::new(), |b| b.not_separating());
                            // One per line, named as the column headers name them: the table
                            // stays narrow enough for a laptop.
                            let failing: Vec<&str> = failing.into_iter().map(metric_name).collect();
                            ui.label(egui::RichText::new(failing.join("\n")).weak());
                            ui.end_row();
                            if let Some(e) = &r.problem {
                                ui.label("");
                                ui.colored_label(ui.visuals().error_fg_color, crate::words::shown(e));
                                ui.end_row();
                            }
                        }
                    });
            });
        if rows.iter().all(|r| r.benchmark.is_none()) {
            ui.label(
                egui::RichText::new(
                    "No benchmark figures yet: run the benchmark under \"Measure SAEs on \
                     labelled images\" below (or saescope eval).",
                )
                .weak(),
            );
        }
    }

    /// L0 against FVE and against the probe drop; a click on a dot switches to that SAE.
    fn pareto_ui(&mut self, ui: &mut egui::Ui, rows: &[CompareRow]) {
        let scored: Vec<&CompareRow> = rows.iter().filter(|r| r.benchmark.is_some()).collect();
        if scored.is_empty() {
            return;
        }
        let active = self.active_name();
        type Axis = fn(&crate::analysis::benchmark::VariantScores) -> Option<f64>;
        let plots: [(&str, Axis); 2] = [
            ("FVE", |v| Some(v.reconstruction.fve.value)),
            ("probe drop (points)", |v| v.spliced_drop.map(|d| d * 100.0)),
        ];
        // Side by side when both fit at a readable width, else one under the other; each
        // plot's column (legend included) keeps to its width, so nothing runs past the window.
        let avail = ui.available_width();
        let width = if avail >= 2.0 * 420.0 + 24.0 {
            (avail - 24.0) / 2.0
        } else {
            avail - 8.0
        }
        .max(240.0);
        ui.horizontal_wrapped(|ui| {
            for (title, y_of) in plots {
                if !scored
                    .iter()
                    .any(|r| r.benchmark.as_ref().is_some_and(|b| y_of(&b.trained).is_some()))
                {
                    ui.label(
                        egui::RichText::new(format!(
                            "No {title} figures: the benchmark ran without the spliced probe."
                        ))
                        .weak(),
                    );
                    continue;
                }
                ui.vertical(|ui| {
                    ui.set_width(width);
                    ui.label(format!("L0 vs {title}: click a dot to explore that SAE"));
                    let point = |r: &CompareRow, v: fn(&SaeBenchmarkRef) -> &crate::analysis::benchmark::VariantScores| {
                        let b = r.benchmark.as_ref()?;
                        let s = v(b);
                        Some([s.reconstruction.l0.value, y_of(s)?])
                    };
                    let ring = ui.visuals().strong_text_color();
                    // One colour per architecture, named in a legend under the plot (inside it,
                    // the legend hid a dot that could then not be clicked).
                    let mut archs: Vec<&str> =
                        scored.iter().map(|r| r.summary.architecture.as_str()).collect();
                    archs.sort_unstable();
                    archs.dedup();
                    let resp = Plot::new(format!("pareto-{title}"))
                        .width(width)
                        .height(220.0)
                        .allow_scroll(false)
                        .x_axis_label("L0")
                        .y_axis_label(title)
                        .y_grid_spacer(egui_plot::uniform_grid_spacer(super::plot_axes::linear_steps))
                        .x_grid_spacer(egui_plot::uniform_grid_spacer(super::plot_axes::linear_steps))
                        .show(ui, |p| {
                            for (i, &arch) in archs.iter().enumerate() {
                                let pts: Vec<[f64; 2]> = scored
                                    .iter()
                                    .filter(|r| r.summary.architecture == arch)
                                    .filter_map(|r| point(r, |b| &b.trained))
                                    .collect();
                                p.points(
                                    Points::new(arch, PlotPoints::from(pts))
                                        .radius(4.0)
                                        .color(super::plot_axes::series_colour(i)),
                                );
                            }
                            let controls: Vec<[f64; 2]> = scored
                                .iter()
                                .flat_map(|r| [point(r, |b| &b.untrained), point(r, |b| &b.pca)])
                                .flatten()
                                .collect();
                            p.points(
                                Points::new("controls (untrained, PCA)", PlotPoints::from(controls))
                                    .radius(2.5)
                                    .color(egui::Color32::GRAY),
                            );
                            if let Some(a) = scored
                                .iter()
                                .find(|r| active.as_deref() == Some(r.summary.name.as_str()))
                                .and_then(|r| point(r, |b| &b.trained))
                            {
                                p.points(
                                    Points::new("active", PlotPoints::from(vec![a]))
                                        .radius(7.0)
                                        .filled(false)
                                        .color(ring),
                                );
                            }
                        });
                    ui.horizontal_wrapped(|ui| {
                        let key = |ui: &mut egui::Ui, c: egui::Color32, text: &str| {
                            let (rect, _) =
                                ui.allocate_exact_size(egui::vec2(10.0, 10.0), egui::Sense::hover());
                            ui.painter().circle_filled(rect.center(), 4.0, c);
                            ui.label(text);
                        };
                        for (i, arch) in archs.iter().enumerate() {
                            key(ui, super::plot_axes::series_colour(i), arch);
                        }
                        key(ui, egui::Color32::GRAY, "controls (untrained, PCA)");
                        key(ui, ring, "active (ringed)");
                    });
                    let dots: Vec<(String, egui::Pos2)> = scored
                        .iter()
                        .filter_map(|r| {
                            let [x, y] = point(r, |b| &b.trained)?;
                            let at = resp.transform.position_from_point(&PlotPoint::new(x, y));
                            Some((r.summary.name.clone(), at))
                        })
                        .collect();
                    let nearest = |pos: egui::Pos2| {
                        dots.iter()
                            .map(|(name, at)| (at.distance(pos), name))
                            .min_by(|a, b| a.0.total_cmp(&b.0))
                            .filter(|(d, _)| *d <= PICK_RADIUS)
                            .map(|(_, name)| name.clone())
                    };
                    // The SAE under the pointer, named before the click that switches to it.
                    if let Some(name) = resp.response.hover_pos().and_then(nearest) {
                        resp.response.clone().on_hover_text(format!(
                            "{name}: click to explore it"
                        ));
                    }
                    if resp.response.clicked()
                        && let Some(name) = resp.response.interact_pointer_pos().and_then(nearest)
                        && active.as_deref() != Some(name.as_str())
                    {
                        self.switch_to = Some(name);
                    }
                    if title == "FVE" {
                        self.compare.dots = dots;
                    }
                });
            }
        });
    }

    /// The selected feature's closest features in the other SAEs, with their top images.
    fn closest_ui(&mut self, ui: &mut egui::Ui) {
        ui.strong("Closest features in the other SAEs");
        let Some(f) = self.selected else {
            ui.label(
                "Open a feature (Features tab) to see its closest features in the other SAEs.",
            );
            return;
        };
        if self.compare.others.is_none()
            && self.compare.loading.is_none()
            && self.compare.load_failed.is_none()
        {
            let (ws, except) = (self.ws.dir.clone(), self.active_name().unwrap_or_default());
            self.compare.loading = Some(BackgroundJob::spawn_with_output(
                "Load SAEs to compare",
                ui.ctx(),
                move |job| {
                    let ws = Workspace::open(&ws)?;
                    let others = load_others(&ws, &except, job)?;
                    let msg = format!("{} SAEs", others.0.len());
                    Ok((others, msg))
                },
            ));
        }
        if let Some((job, out)) = &self.compare.loading {
            match out.ended(job) {
                None => {
                    job.ui(ui);
                    return;
                }
                Some(Ended::Done(o)) => self.compare.others = Some(Arc::new(o)),
                Some(Ended::Failed(e)) => self.compare.load_failed = Some(e),
                Some(Ended::Cancelled) => {}
            }
            self.compare.loading = None;
        }
        if let Some(e) = &self.compare.load_failed {
            if crate::error_ui(ui, e) {
                self.compare.load_failed = None;
            }
            return;
        }
        let (Some(others), Some(sae)) = (self.compare.others.clone(), self.sae.as_ref()) else {
            return;
        };
        if others.0.is_empty() {
            ui.label("This workspace has no other SAE: train or load one below.");
            return;
        }
        if self.compare.matches.as_ref().is_none_or(|(g, _)| *g != f) {
            let d = sae.d_in;
            let direction = &sae.w_dec[f as usize * d..(f as usize + 1) * d];
            self.compare.matches = Some((f, closest(direction, &others.0, MATCHES_PER_SAE)));
        }
        for line in &others.1 {
            ui.colored_label(ui.visuals().warn_fg_color, format!("not compared: {line}"));
        }
        ui.label(format!(
            "Feature {f} of {}:",
            self.active_name().unwrap_or_default()
        ));
        let matches = self
            .compare
            .matches
            .as_ref()
            .map(|m| m.1.clone())
            .unwrap_or_default();
        egui::Grid::new("closest_features")
            .num_columns(2)
            .striped(true)
            .show(ui, |ui| {
                for m in &matches {
                    ui.label(format!(
                        "{} · feature {} · cosine {:.3}",
                        m.sae, m.feature, m.cosine
                    ));
                    ui.horizontal(|ui| {
                        if m.top_images.is_empty() {
                            ui.label(
                                egui::RichText::new(format!(
                                    "no index: saescope index --sae {}",
                                    m.sae
                                ))
                                .weak(),
                            );
                        }
                        for &image in m.top_images.iter().take(MATCH_IMAGES) {
                            let path = self.ds.abs_path(image as usize);
                            match self.thumbs.file(ui.ctx(), &path) {
                                Some(t) => {
                                    ui.add(
                                        egui::Image::new(&t)
                                            .fit_to_exact_size(egui::vec2(48.0, 48.0)),
                                    )
                                    .on_hover_text(self.image_facts(image).0);
                                }
                                None => {
                                    ui.add_sized([48.0, 48.0], egui::Spinner::new());
                                }
                            }
                        }
                    });
                    ui.end_row();
                }
            });
    }
}

type SaeBenchmarkRef = crate::analysis::benchmark::SaeBenchmark;

/// A benchmark metric's name as the Compare table's headers show it.
fn metric_name(metric: &str) -> &str {
    match metric {
        "fve" => "FVE",
        "spliced_accuracy" => "Probe drop",
        "sparse_probe" => "Sparse probe",
        "monosemanticity" => "Mono",
        "morans_i" => "Moran's I",
        other => other,
    }
}
