//! The feature page: top images with heatmaps, statistics, histogram, class figures, label.

use super::*;

/// Nearest features listed on a feature page.
const NEAREST: usize = 8;
use super::plot_axes::{count_label, log_value_label, log_value_marks, value_text};
use crate::analysis::attribution::{BEYOND_SDS, FeatureAttribution};
use crate::analysis::causal::EffectOptions;
use crate::ops::intervene::{AttributionRequest, EffectRequest};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The SAE's saved class attributions as last read (its folder, the finished-job count it was
/// read at, and what reading gave), kept in egui's memory under this id: reread when a job
/// finishes or another SAE is shown, never every frame.
type SavedAttributions = (
    std::path::PathBuf,
    usize,
    Arc<std::result::Result<BTreeMap<u32, FeatureAttribution>, String>>,
);
const ATTRIBUTIONS_ID: &str = "saved class attributions";

/// A feature firing on at least this share of tokens is flagged as dense (SAE evaluations
/// commonly call features above 10% token frequency dense).
const DENSE_TOKEN_FREQUENCY: f64 = 0.10;

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
        let hist: Vec<u64> = index
            .hist
            .get(j * HIST_BINS..(j + 1) * HIST_BINS)
            .map(<[u64]>::to_vec)
            .unwrap_or_default();
        // Per class: lift over the base rate, share of the class's images it fires on, and
        // its mean (per-image max) activation there; highest lift first.
        let nc = index.n_classes;
        let classes: Vec<(String, f64, f64, f64)> = {
            let mut v: Vec<_> = (0..nc.min(self.ds.classes.len()))
                .filter(|&c| index.class_sizes[c] > 0)
                .map(|c| {
                    let fired = index.class_images[j * nc + c];
                    (
                        self.ds.classes[c].clone(),
                        index.lift(j, c),
                        fired as f64 / index.class_sizes[c] as f64,
                        index.class_act.get(j * nc + c) / fired.max(1) as f64,
                    )
                })
                .collect();
            v.sort_by(|a, b| b.1.total_cmp(&a.1));
            v.truncate(6);
            v
        };
        let n_top = index.top[j].len();
        let token_freq = index.token_frequency(j);
        let zero_images = 1.0 - index.image_frequency(j);
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
                // A class label says its evidence; other labels their source.
                let text = match &l.evidence {
                    Some(_) if l.is_significant() => {
                        format!("significant class label: {}", l.evidence_line())
                    }
                    Some(_) => format!(
                        "class label NOT statistically supported (made by an older rule): {}",
                        l.evidence_line()
                    ),
                    None => l.evidence_line(),
                };
                ui.add(egui::Label::new(egui::RichText::new(text).weak()).wrap());
            }
        });
        // Each feature's page scrolls on its own (it shared the grid's position), from the top.
        egui::ScrollArea::vertical()
            .id_salt(("feature_page", &self.home, f))
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
                if token_freq >= DENSE_TOKEN_FREQUENCY {
                    ui.colored_label(
                        ui.visuals().warn_fg_color,
                        format!(
                            "Dense feature: fires on {:.1}% of tokens (at least {:.0}%). Dense features \
                             rarely stand for one concept; read its images with care.",
                            token_freq * 100.0,
                            DENSE_TOKEN_FREQUENCY * 100.0
                        ),
                    );
                }
                ui.label(
                    egui::RichText::new(format!(
                        "Top images ({n_top} stored; heatmap of this feature; activation and class under each)"
                    ))
                    .strong(),
                );
                if self.form.heatmap.controls_ui(ui) {
                    self.thumbs.forget_overlays();
                }
                let side_by_side = self.form.heatmap.side_by_side;
                let mut open_image: Option<u32> = None;
                let ctx = ui.ctx().clone();
                self.prefetch_page(&ctx, f);
                // A grid as wide as the page: every stored image reachable by scrolling down.
                let tile = if side_by_side { 206.0 } else { 114.0 };
                let cols = ((ui.available_width() / tile).floor() as usize).max(1);
                egui::Grid::new(("top_images", f)).show(ui, |ui| {
                    for rank in 0..n_top {
                        if rank > 0 && rank % cols == 0 {
                            ui.end_row();
                        }
                        let tex = self.thumb(&ctx, f, ThumbKind::Overlay(rank as u16));
                        let plain = side_by_side
                            .then(|| self.thumb(&ctx, f, ThumbKind::Plain(rank as u16)));
                        let e = &self.index.as_ref().map(|i| i.top[j][rank].clone());
                        let Some(e) = e else { continue };
                        let (name, class) = self.image_facts(e.image);
                        let problem = self
                            .thumbs
                            .problem(f, ThumbKind::Overlay(rank as u16))
                            .map(|p| format!("\n{p}"))
                            .unwrap_or_default();
                        if image_tile(
                            ui,
                            tex,
                            plain,
                            format!("top image {}", rank + 1),
                            format!("{name}: activation {:.3} (click to open){problem}", e.value),
                            format!("{:.2} {class}", e.value),
                        ) {
                            open_image = Some(e.image);
                        }
                    }
                });
                if let Some(i) = self.quantiles_ui(ui, f) {
                    open_image = Some(i);
                }
                if let Some(i) = open_image {
                    match ImageView::load_dataset(&self.ds, i as usize) {
                        Ok(img) => {
                            self.image_pick = i as usize;
                            let title = self.ds.images[i as usize].path.clone();
                            self.open_image(ui.ctx(), title, img, Some(f));
                        }
                        Err(e) => self.error = Some(crate::Failure::new(e)),
                    }
                }
                ui.label(egui::RichText::new("Activation histogram").strong());
                ui.label(format!(
                    "Zero on {:.1}% of images and {:.2}% of tokens; the bars count the tokens where it fires.",
                    zero_images * 100.0,
                    (1.0 - token_freq) * 100.0
                ));
                activation_histogram_ui(ui, f, &hist);
                ui.label(egui::RichText::new("Classes it fires on").strong());
                egui::Grid::new("classes")
                    .num_columns(4)
                    .striped(true)
                    .show(ui, |ui| {
                        ui.label("class").on_hover_text("highest lift first");
                        ui.label("lift").on_hover_text(
                            "P(class | fires) / P(class): how much more often the class is among the images it fires on than among all",
                        );
                        ui.label("fires on (class images)");
                        ui.label("mean max activation there");
                        ui.end_row();
                        for (c, lift, share, act) in &classes {
                            ui.label(c);
                            ui.label(format!("{lift:.2}×"));
                            ui.label(format!("{:.1}%", share * 100.0));
                            ui.label(format!("{act:.3}"));
                            ui.end_row();
                        }
                    });
                self.effect_ui(ui, f);
                self.attribution_ui(ui, f);
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

    /// The features whose decoder directions are closest to `f`'s (cached per feature).
    pub(super) fn nearest(&mut self, f: u32) -> Vec<(u32, f32)> {
        if let Some((g, v)) = &self.nearest
            && *g == f
        {
            return v.clone();
        }
        let Some(sae) = &self.sae else {
            return Vec::new();
        };
        let v = match sae.nearest_features(f, NEAREST) {
            Ok(v) => v,
            Err(e) => {
                self.error = Some(crate::Failure::new(e));
                Vec::new()
            }
        };
        self.nearest = Some((f, v.clone()));
        v
    }

    /// The causal effects measured for `f` (ablated on every token of a class's images, beside
    /// random features of matching frequency) and a button to measure one.
    /// Examples across the activation range: images of the feature's random sample at evenly
    /// spaced quantiles of its activation, weakest first (the top images show only the peak).
    /// Returns an image the user clicked.
    fn quantiles_ui(&mut self, ui: &mut egui::Ui, f: u32) -> Option<u32> {
        let ix = self.index.as_ref()?;
        let j = f as usize;
        ui.label(egui::RichText::new("Across the activation range").strong())
            .on_hover_text(
                "Images where the feature fires, at evenly spaced quantiles of its strongest \
                 activation in the image, from a uniform random sample of those images kept by \
                 the index: what it responds to at typical strengths, not only at its peak",
            );
        if !ix.has_samples {
            ui.label(
                egui::RichText::new(
                    "This index predates these examples: rebuild it (saescope index --rebuild) to see them.",
                )
                .weak(),
            );
            return None;
        }
        let picks = ix.quantile_examples(j, QUANTILE_EXAMPLES);
        if picks.is_empty() {
            ui.label(egui::RichText::new("It fires on no image.").weak());
            return None;
        }
        ui.label(
            egui::RichText::new(format!(
                "Quantiles of a random sample of {} of the {} images where it fires; its strongest patch outlined, activation and class under each",
                ix.samples[j].len(),
                ix.image_count[j]
            ))
            .weak(),
        );
        let entries: Vec<(f64, crate::analysis::index::SampleEntry, usize)> = picks
            .iter()
            .map(|&(q, i)| (q, ix.samples[j][i], i))
            .collect();
        let ctx = ui.ctx().clone();
        let mut clicked = None;
        ui.horizontal_wrapped(|ui| {
            for (q, e, i) in entries {
                let tex = self.thumb(&ctx, f, ThumbKind::Sample(i as u16));
                let (name, class) = self.image_facts(e.image);
                if image_tile(
                    ui,
                    tex,
                    None,
                    format!("quantile {:.0}% example", q * 100.0),
                    format!(
                        "{name}: activation {:.3}, at about the {:.0}% quantile of the images where it fires (click to open)",
                        e.value,
                        q * 100.0
                    ),
                    format!("{:.0}% · {:.2}\n{class}", q * 100.0, e.value),
                ) {
                    clicked = Some(e.image);
                }
            }
        });
        clicked
    }

    fn effect_ui(&mut self, ui: &mut egui::Ui, f: u32) {
        ui.label(egui::RichText::new("Causal effect (ablation)").strong())
            .on_hover_text(
                "Ablate this feature on every token of each image of a class and measure how the \
             class's probability moves, beside random features of about the same frequency",
            );
        let mine: Vec<_> = self
            .effects
            .iter()
            .filter(|e| e.feature == f)
            .cloned()
            .collect();
        for e in &mine {
            ui.label(format!(
                "on {} ({} images, {} where it fires): ΔP {:+.4} (Δ logit {:+.3}); random features of its frequency: {:+.4} ± {:.4}; it lowers P({}) more than {} of {} of them",
                e.class,
                e.images,
                e.ablated.images_changed,
                e.ablated.mean_dprob,
                e.ablated.mean_dlogit,
                e.random_mean_dprob,
                e.random_std_dprob,
                e.class,
                (e.beats_random * e.random.len() as f64).round() as usize,
                e.random.len()
            ));
        }
        if self.ds.classes.is_empty() {
            ui.label(
                egui::RichText::new("The images have no class folders to measure against.").weak(),
            );
            return;
        }
        let busy = self
            .jobs
            .iter()
            .any(|j| j.title == "Causal effect" && j.state() == JobState::Running);
        ui.horizontal(|ui| {
            let c = self.effect_class.min(self.ds.classes.len() - 1);
            let l = ui.label("Measure on class");
            egui::ComboBox::from_id_salt("effect_class")
                .height(320.0)
                .selected_text(self.ds.classes[c].clone())
                .show_ui(ui, |ui| {
                    for (i, name) in self.ds.classes.iter().enumerate() {
                        ui.selectable_value(&mut self.effect_class, i, name);
                    }
                })
                .response
                .labelled_by(l.id);
            if ui
                .add_enabled(!busy, egui::Button::new("Measure causal effect"))
                .on_hover_text("Runs the model from the tapped layer on the class's images (the workspace's stored activations are reused)")
                .clicked()
            {
                let r = EffectRequest {
                    device: self.device,
                    workspace: self.ws.dir.clone(),
                    sae: self.home.clone(),
                    class: self.ds.classes[c].clone(),
                    features: vec![f],
                    top_lift: 0,
                    min_images: 0,
                    options: EffectOptions::default(),
                };
                self.push_job(BackgroundJob::spawn("Causal effect", ui.ctx(), move |job| {
                    let rep = crate::ops::intervene::effects(&r, job)?;
                    Ok(format!(
                        "feature {f} on {}: ΔP {:+.4}, random {:+.4}",
                        rep.class, rep.mean_dprob, rep.random_mean_dprob
                    ))
                }));
            }
        });
    }
}

/// One image tile of a feature page: the thumbnail as a button (a spinner until it is made),
/// with the plain image beside it when `plain` is given (side by side), `caption` under it.
/// Returns whether it was clicked.
fn image_tile(
    ui: &mut egui::Ui,
    tex: Option<egui::TextureHandle>,
    plain: Option<Option<egui::TextureHandle>>,
    alt: String,
    hover: String,
    caption: String,
) -> bool {
    let mut clicked = false;
    ui.vertical(|ui| {
        ui.set_width(if plain.is_some() { 188.0 } else { 96.0 });
        ui.horizontal(|ui| {
            if let Some(plain) = &plain {
                match plain {
                    Some(t) => {
                        ui.add(
                            egui::Image::new(t)
                                .fit_to_exact_size(egui::vec2(88.0, 88.0))
                                .alt_text(format!("{alt} without heatmap")),
                        );
                    }
                    None => {
                        ui.add_sized([88.0, 88.0], egui::Spinner::new());
                    }
                }
            }
            match tex {
                Some(t) => {
                    let img = egui::Image::new(&t)
                        .fit_to_exact_size(egui::vec2(88.0, 88.0))
                        .alt_text(alt);
                    clicked = ui
                        .add(egui::Button::image(img))
                        .on_hover_text(hover)
                        .clicked();
                }
                None => {
                    ui.add_sized([96.0, 96.0], egui::Spinner::new());
                }
            }
        });
        ui.label(egui::RichText::new(caption).small());
    });
    clicked
}

impl Explorer {
    /// The SAE's saved class attributions, read from disk when the page first needs them and
    /// again after any job finishes (a measurement here, or anything else that wrote).
    fn saved_attributions(
        &self,
        ctx: &egui::Context,
    ) -> Option<Arc<std::result::Result<BTreeMap<u32, FeatureAttribution>, String>>> {
        let home = self.home.as_ref()?;
        let id = egui::Id::unique(ATTRIBUTIONS_ID);
        if let Some((h, n, saved)) = ctx.data(|d| d.get_temp::<SavedAttributions>(id))
            && &h == home
            && n == self.jobs_finished
        {
            return Some(saved);
        }
        let saved =
            Arc::new(crate::ops::intervene::load_attributions(home).map_err(|e| e.to_string()));
        ctx.data_mut(|d| {
            d.insert_temp::<SavedAttributions>(
                id,
                (home.clone(), self.jobs_finished, saved.clone()),
            )
        });
        Some(saved)
    }

    /// Which classes' logits the feature's decoder direction pushes, measured by running the
    /// model on the edited stream (beside random directions of the same norm), and the button
    /// that measures it.
    fn attribution_ui(&mut self, ui: &mut egui::Ui, f: u32) {
        ui.label(
            egui::RichText::new("Class attribution: the logits its decoder direction pushes")
                .strong(),
        )
        .on_hover_text(
            "Add this feature's decoder direction, at its mean activation where it fires, to \
                 every patch token of a fixed sample of the workspace's images and run the rest \
                 of the model: how each class's logit moves, beside random directions of the same \
                 size (any push of that size moves logits somewhat)",
        );
        if self.ws.config.backbone.class_names.is_none() {
            ui.label(
                egui::RichText::new(
                    "Only a model with a classifier head has logits; this model's config names no \
                     classes, so it likely has none (measuring will say).",
                )
                .weak(),
            );
        }
        let saved = self.saved_attributions(ui.ctx());
        match saved.as_deref() {
            Some(Err(e)) => {
                ui.colored_label(ui.visuals().error_fg_color, e);
            }
            Some(Ok(all)) => {
                if let Some(a) = all.get(&f) {
                    attribution_table_ui(ui, a);
                }
            }
            None => {}
        }
        let busy = self
            .jobs
            .iter()
            .any(|j| j.title == "Class attribution" && j.state() == JobState::Running);
        if ui
            .add_enabled(
                !busy && self.home.is_some(),
                egui::Button::new("Measure class attribution"),
            )
            .on_hover_text(
                "Runs the model from the tapped layer on up to 64 of the workspace's images, \
                 stratified over its classes, once with this feature's direction and once with \
                 each of 8 random directions (the stored activations are reused)",
            )
            .clicked()
        {
            let r = AttributionRequest {
                device: self.device,
                workspace: self.ws.dir.clone(),
                sae: self.home.clone(),
                features: vec![f],
                activation: None,
                options: Default::default(),
            };
            self.push_job(BackgroundJob::spawn(
                "Class attribution",
                ui.ctx(),
                move |job| {
                    let rep = crate::ops::intervene::attribute(&r, job)?;
                    let beyond = rep
                        .attributions
                        .first()
                        .map_or(0, |a| a.classes.iter().filter(|c| c.beyond_random).count());
                    Ok(format!(
                        "feature {f}: classes pushed beyond random directions: {beyond}"
                    ))
                },
            ));
        }
    }
}

/// One feature's measured class attribution: how it was measured, then per class (largest push
/// first) the mean Δ logit ± SE, the random directions' mean ± SD, and whether it is beyond them.
fn attribution_table_ui(ui: &mut egui::Ui, a: &FeatureAttribution) {
    ui.label(
        egui::RichText::new(format!(
            "Decoder direction × {:.3} ({}) added to all {} patch tokens of {} images (stratified \
             over the classes, seed {}) at layer {}; control: {} random directions of the same \
             norm ({:.3}). Beyond random: more than {BEYOND_SDS:.0} SD from the random directions' \
             mean (their spread and this SE together). Every logit moved by {:+.3} on average, \
             which changes no probability.",
            a.activation,
            a.activation_from,
            a.tokens_per_image,
            a.images,
            a.seed,
            a.layer,
            a.random_directions,
            a.edit_norm,
            a.shared_shift
        ))
        .weak(),
    );
    let mut rows: Vec<_> = a.classes.iter().collect();
    rows.sort_by(|x, y| y.mean_dlogit.total_cmp(&x.mean_dlogit));
    egui::Grid::new(("attribution", a.feature))
        .num_columns(4)
        .striped(true)
        .show(ui, |ui| {
            ui.label("class");
            ui.label("Δ logit ± SE")
                .on_hover_text("Mean change of the class's logit over the images, ± its standard error");
            ui.label("random directions: mean ± SD").on_hover_text(
                "The same edit with random directions of the same norm: the mean and spread of their mean Δ logits",
            );
            ui.label("beyond random");
            ui.end_row();
            for c in rows {
                ui.label(&c.class);
                ui.label(format!("{:+.3} ± {:.3}", c.mean_dlogit, c.se_dlogit));
                ui.label(format!(
                    "{:+.3} ± {:.3}",
                    c.random_mean_dlogit, c.random_sd_dlogit
                ));
                let verdict = match (c.beyond_random, c.z > 0.0) {
                    (true, true) => "yes, pushes up",
                    (true, false) => "yes, pushes down",
                    (false, _) => "no",
                };
                let text = egui::RichText::new(verdict);
                ui.label(if c.beyond_random { text.strong() } else { text })
                    .on_hover_text(format!("{:+.1} SD from the random directions", c.z));
                ui.end_row();
            }
        });
}

fn log_edge(b: usize) -> f64 {
    (hist_edge(b) as f64).log10()
}

/// The index's histogram bins that have tokens and a finite width on a log axis, as (log10 lower
/// edge, log10 upper edge, tokens). Bin 0 holds activations below the first edge and the last
/// bin those from the top edge up: neither has a finite width, so they are counted in words.
fn histogram_bins(counts: &[u64]) -> Vec<(f64, f64, u64)> {
    (1..HIST_BINS - 1)
        .filter_map(|b| {
            let n = *counts.get(b)?;
            (n > 0).then(|| (log_edge(b), log_edge(b + 1), n))
        })
        .collect()
}

/// The feature's token activation histogram: the index's bins as they are (40 per decade, each
/// bar exactly its bin's width on a log axis labelled in activation values), counts on y.
fn activation_histogram_ui(ui: &mut egui::Ui, f: u32, counts: &[u64]) {
    let bars: Vec<egui_plot::Bar> = histogram_bins(counts)
        .into_iter()
        .map(|(lo, hi, n)| {
            egui_plot::Bar::new((lo + hi) / 2.0, n as f64)
                .width(hi - lo)
                .name(format!(
                    "{} to {}: {n} tokens",
                    value_text(lo),
                    value_text(hi)
                ))
        })
        .collect();
    let last = HIST_BINS - 1;
    let (below, above) = (
        counts.first().copied().unwrap_or(0),
        counts.get(last).copied().unwrap_or(0),
    );
    let width = log_edge(2) - log_edge(1);
    let mut caption = format!(
        "Bars are the index's bins: {:.0} per decade, each {width:.3} wide in log10 activation \
         (a bin's upper edge is {:.2}× its lower).",
        1.0 / width,
        10f64.powf(width)
    );
    if below > 0 {
        caption += &format!(
            " {below} tokens below {} are not drawn.",
            value_text(log_edge(1))
        );
    }
    if above > 0 {
        caption += &format!(
            " {above} tokens at or above {} are not drawn.",
            value_text(log_edge(last))
        );
    }
    ui.label(egui::RichText::new(caption).weak());
    let (lo, hi) = bars.iter().fold((f64::MAX, f64::MIN), |(lo, hi), b| {
        (
            lo.min(b.argument - b.bar_width / 2.0),
            hi.max(b.argument + b.bar_width / 2.0),
        )
    });
    // One plot per feature, so each opens fitted to its own bars.
    let mut plot = egui_plot::Plot::new(("hist", f))
        .height(180.0)
        .allow_scroll(false)
        .x_axis_label("activation (log scale)")
        .y_axis_label("tokens")
        .x_grid_spacer(log_value_marks)
        .x_axis_formatter(log_value_label)
        .y_axis_formatter(count_label)
        .include_y(0.0);
    if lo < hi {
        plot = plot.default_x_bounds(lo - 0.1, hi + 0.1);
    }
    plot.show(ui, |p| {
        p.bar_chart(egui_plot::BarChart::new("tokens", bars));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each bar spans exactly its bin, from its lower edge to the next bin's (they were drawn
    /// 0.09 wide and centred on the lower edge, half a bin to the left).
    #[test]
    fn histogram_bars_span_exactly_their_bins() {
        let mut counts = vec![0u64; HIST_BINS];
        counts[0] = 5; // below the first edge: in words, not drawn
        counts[1] = 1;
        // 40 bins per decade from 1e-3: bin 121 holds [10^0, 10^0.025), activations 1 to 1.06.
        let one = 1 + 3 * crate::analysis::index::HIST_PER_DECADE;
        let width = 1.0 / crate::analysis::index::HIST_PER_DECADE as f64;
        counts[one] = 7;
        counts[HIST_BINS - 2] = 2;
        counts[HIST_BINS - 1] = 3; // from the top edge up: in words
        let bins = histogram_bins(&counts);
        assert_eq!(bins.len(), 3);
        for &(lo, hi, _) in &bins {
            assert!((hi - lo - width).abs() < 1e-5, "{lo}..{hi}");
        }
        assert!((bins[0].0 - -3.0).abs() < 1e-6 && bins[0].2 == 1);
        assert!(
            bins[1].0.abs() < 1e-6 && (bins[1].1 - width).abs() < 1e-6 && bins[1].2 == 7,
            "{:?}",
            bins[1]
        );
        assert!(
            (bins[2].1 - 3.0).abs() < 1e-5,
            "the last drawn bin ends at 1000"
        );
    }
}
