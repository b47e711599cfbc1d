//! The workspace explorer: feature grid, feature page, OOD and ontology views, and the jobs that
//! build what they show. Everything shown comes from library types loaded from the workspace.

use super::image_view::{ImageView, SharedBackbone};
use super::jobs::{BackgroundJob, JobState};
use super::thumbs::{ThumbKind, ThumbSource, Thumbs};
use crate::analysis::index::{FeatureIndex, HIST_BINS, IndexOptions, hist_edge, load_index};
use crate::analysis::labels::{Labels, class_scores};
use crate::analysis::ontology::Ontology;
use crate::analysis::ood::OodResults;
use crate::analysis::tree::Dendrogram;
use crate::sae::Sae;
use crate::sae::workflow::workspace_sae;
use crate::store::{Dataset, Workspace};
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Tab {
    Features,
    Feature,
    Image,
    Ood,
    Ontology,
    Export,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SortBy {
    Frequency,
    MaxActivation,
    Label,
    Id,
}

pub struct Explorer {
    /// The folder of the SAE shown (`WS/saes/<name>/`), None while the workspace has none.
    pub home: Option<std::path::PathBuf>,
    pub ws: Workspace,
    /// The image view's chooser: a dataset image number, or a file path.
    pub image_pick: usize,
    pub image_path: String,
    pub ds: Dataset,
    pub sae: Option<Sae>,
    pub index: Option<FeatureIndex>,
    pub labels: Labels,
    pub ood: Option<OodResults>,
    pub ontology: Option<Ontology>,
    pub tab: Tab,
    pub selected: Option<u32>,
    pub sort: SortBy,
    pub search: String,
    /// Features shown in the grid, in order (recomputed when sort/search/labels change).
    pub order: Vec<u32>,
    /// What `order` was computed for; None when labels changed since.
    order_key: Option<(SortBy, String)>,
    pub label_edit: String,
    label_changed: Option<Instant>,
    nearest: Option<(u32, Vec<(u32, f32)>)>,
    token_indices: Vec<usize>,
    thumbs: Thumbs,
    pub jobs: Vec<BackgroundJob>,
    pub error: Option<String>,
    pub image_view: Option<ImageView>,
    backbone: SharedBackbone,
    pub export_dir: String,
    pub export_what: ExportWhat,
    jobs_reloaded: usize,
    /// OOD form: fit folder, in-distribution folder, OOD folders (one per line).
    pub ood_fit: String,
    pub ood_id: String,
    pub ood_other: String,
    /// Ontology form: taxonomy file and class-id file (both optional).
    pub tree_taxonomy: String,
    pub tree_class_ids: String,
    pub tree_search: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportWhat {
    All,
    Labelled,
    SearchResult,
}

/// Labels are saved this long after the last keystroke.
const AUTOSAVE_AFTER: Duration = Duration::from_millis(600);
/// Every card has this exact size, so the grid's column count is exact.
const CARD: egui::Vec2 = egui::vec2(172.0, 92.0);

impl Explorer {
    /// Loads what exists in the workspace; missing parts (SAE, index, OOD, ontology) are offered
    /// as jobs or CLI hints in the UI rather than failing.
    pub fn open(dir: &Path) -> crate::Result<Explorer> {
        let ws = Workspace::open(dir)?;
        let ds = ws.dataset()?;
        // No SAE yet is a state the page offers to fix; a broken one is an error shown on it.
        let home = ws.sae_home(None).ok();
        let mut error = None;
        let mut shown = |e: crate::Error| error.get_or_insert(e.to_string()).clone();
        let sae = home
            .as_ref()
            .and_then(|h| workspace_sae(&ws, Some(h)).map_err(&mut shown).ok());
        let index = home.as_ref().and_then(|h| {
            crate::analysis::index::index_dir(h)
                .exists()
                .then(|| load_index(h).map_err(&mut shown).ok())
                .flatten()
        });
        let labels = match &home {
            Some(h) => Labels::load(h)?,
            None => Labels::default(),
        };
        let token_indices = ws.config.backbone.geometry.select(ws.config.tokens)?;
        let mut x = Explorer {
            ws,
            ds,
            home,
            sae,
            index,
            labels,
            ood: None,
            ontology: None,
            image_pick: 0,
            image_path: String::new(),
            tab: Tab::Features,
            selected: None,
            sort: SortBy::Frequency,
            search: String::new(),
            order: Vec::new(),
            order_key: None,
            label_edit: String::new(),
            label_changed: None,
            nearest: None,
            token_indices,
            thumbs: Thumbs::default(),
            jobs: Vec::new(),
            error,
            image_view: None,
            backbone: Default::default(),
            export_dir: String::new(),
            export_what: ExportWhat::Labelled,
            jobs_reloaded: 0,
            ood_fit: String::new(),
            ood_id: String::new(),
            ood_other: String::new(),
            tree_taxonomy: String::new(),
            tree_class_ids: String::new(),
            tree_search: String::new(),
        };
        x.load_results();
        Ok(x)
    }

    /// (Re)reads the OOD results and ontology the workspace holds, if any.
    fn load_results(&mut self) {
        let Some(home) = &self.home else { return };
        self.ood = crate::fsutil::read_json(&crate::analysis::ood::results_path(home)).ok();
        self.ontology =
            crate::fsutil::read_json(&crate::analysis::ontology::ontology_path(home)).ok();
    }

    pub fn select(&mut self, feature: u32) {
        self.save_label_now();
        self.selected = Some(feature);
        self.label_edit = self
            .labels
            .labels
            .get(&feature)
            .map(|l| l.text.clone())
            .unwrap_or_default();
        self.tab = Tab::Feature;
    }

    fn save_label_now(&mut self) {
        if self.label_changed.take().is_some()
            && let Some(f) = self.selected
        {
            self.labels.set_manual(f, &self.label_edit);
            self.order_key = None; // label sort and search see the new text
            let saved = match &self.home {
                Some(h) => crate::store::lock::lock_writer(
                    &self.ws.dir,
                    "explorer (labels)",
                    Some(Duration::from_secs(5)),
                )
                .and_then(|_lock| self.labels.save(h)),
                None => Err(crate::Error::Workspace(
                    "labels belong to an SAE: train or import one first".into(),
                )),
            };
            if let Err(e) = saved {
                self.error = Some(e.to_string());
            }
        }
    }

    fn refresh_order(&mut self) {
        let Some(index) = &self.index else {
            self.order.clear();
            return;
        };
        let key = (self.sort, self.search.clone());
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
            SortBy::Label => {
                v.sort_by_key(|&j| (label(j).is_none(), label(j).unwrap_or_default(), j))
            }
            SortBy::Id => {}
        }
        self.order = v;
        self.order_key = Some(key);
    }

    pub fn ui(&mut self, ui: &mut egui::Ui) {
        self.thumbs.begin_frame();
        if self
            .label_changed
            .is_some_and(|t| t.elapsed() >= AUTOSAVE_AFTER)
        {
            self.save_label_now();
        } else if self.label_changed.is_some() {
            ui.ctx().request_repaint_after(AUTOSAVE_AFTER);
        }
        // Reload what newly finished jobs produced.
        let done = self
            .jobs
            .iter()
            .filter(|j| matches!(j.state(), JobState::Done(_)))
            .count();
        if done > self.jobs_reloaded {
            self.jobs_reloaded = done;
            if self.index.is_none()
                && let Some(h) = &self.home
            {
                self.index = load_index(h).ok();
            }
            self.load_results();
        }
        let dropped: Option<std::path::PathBuf> = ui.ctx().input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .find(|p| p.is_file())
        });
        if let Some(p) = dropped {
            match ImageView::load_file(&p) {
                Ok(img) => self.open_image(ui.ctx(), p.display().to_string(), img, self.selected),
                Err(e) => self.error = Some(e),
            }
        }
        ui.horizontal(|ui| {
            for (tab, name, tip) in [
                (
                    Tab::Features,
                    "Features",
                    "All features, sorted and searchable",
                ),
                (Tab::Feature, "Feature", "The selected feature's page"),
                (
                    Tab::Image,
                    "Image",
                    "One image with feature heatmaps (drop any image on the window)",
                ),
                (Tab::Ood, "OOD", "Out-of-distribution scores"),
                (Tab::Ontology, "Ontology", "Feature and class trees"),
                (
                    Tab::Export,
                    "Export",
                    "Share labelled features (JSON, CSV, PNGs)",
                ),
            ] {
                if ui
                    .selectable_label(self.tab == tab, name)
                    .on_hover_text(tip)
                    .clicked()
                {
                    self.tab = tab;
                }
            }
        });
        for j in &self.jobs {
            j.ui(ui);
        }
        if let Some(e) = &self.error {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
        ui.separator();
        if self.index.is_none() {
            self.no_index_ui(ui);
            return;
        }
        match self.tab {
            Tab::Features => self.grid_ui(ui),
            Tab::Feature => self.feature_ui(ui),
            Tab::Image => self.image_ui(ui),
            Tab::Ood => self.ood_ui(ui),
            Tab::Ontology => self.ontology_ui(ui),
            Tab::Export => self.export_ui(ui),
        }
    }

    fn no_index_ui(&mut self, ui: &mut egui::Ui) {
        if self.sae.is_none() {
            ui.label("This workspace has no SAE yet. Train one: saescope train --workspace <this folder> --d-sae 2048 --k 16");
            return;
        }
        ui.label("No feature index yet: it lists every feature's top images and statistics.");
        let running = self.jobs.iter().any(|j| j.state() == JobState::Running);
        if !running
            && ui
                .button("Build index")
                .on_hover_text("Stream the activations through the SAE (resumable)")
                .clicked()
        {
            let request = crate::ops::analyse::IndexRequest {
                workspace: self.ws.dir.clone(),
                sae: self.home.clone(),
                options: IndexOptions::default(),
            };
            self.jobs
                .push(BackgroundJob::spawn("Index", ui.ctx(), move |job| {
                    let r = crate::ops::analyse::build_index(&request, job)?;
                    Ok(format!("{} images, {} features", r.images, r.features))
                }));
        }
    }

    fn thumb(
        &mut self,
        ctx: &egui::Context,
        f: u32,
        kind: ThumbKind,
    ) -> Option<egui::TextureHandle> {
        let Explorer {
            index,
            ds,
            ws,
            token_indices,
            thumbs,
            ..
        } = self;
        let src = ThumbSource {
            index: index.as_ref()?,
            ds,
            geometry: &ws.config.backbone.geometry,
            token_indices,
            preprocessor: ws.config.preprocessor.as_ref(),
        };
        thumbs.get(ctx, &src, f, kind)
    }

    fn grid_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.label("Search:");
            ui.add(
                egui::TextEdit::singleline(&mut self.search)
                    .hint_text("label or id")
                    .desired_width(180.0),
            );
            let sort_label = ui.label("Sort by");
            egui::ComboBox::from_id_salt("grid_sort")
                .selected_text(format!("{:?}", self.sort))
                .show_ui(ui, |ui| {
                    for s in [
                        SortBy::Frequency,
                        SortBy::MaxActivation,
                        SortBy::Label,
                        SortBy::Id,
                    ] {
                        ui.selectable_value(&mut self.sort, s, format!("{s:?}"));
                    }
                })
                .response
                .labelled_by(sort_label.id);
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

    fn card(&mut self, ui: &mut egui::Ui, ctx: &egui::Context, f: u32) -> bool {
        let label = self.labels.labels.get(&f).map(|l| l.text.clone());
        let freq = self
            .index
            .as_ref()
            .map_or(0.0, |i| i.token_frequency(f as usize));
        let tex = self.thumb(ctx, f, ThumbKind::Crop);
        // Long labels are shortened on the card (the full one is on the feature page).
        let mut short: String = label.as_deref().unwrap_or("").chars().take(14).collect();
        if label.as_ref().is_some_and(|l| l.chars().count() > 14) {
            short.push_str("..");
        }
        let text = format!("#{f}\n{short}\n{:.3}%", freq * 100.0);
        let button = match tex {
            Some(t) => egui::Button::image_and_text(
                egui::Image::new(&t).fit_to_exact_size(egui::vec2(64.0, 64.0)),
                text,
            ),
            None => egui::Button::new(text),
        };
        ui.add_sized(CARD, button)
            .on_hover_text(format!("Feature {f}: open its page"))
            .clicked()
    }

    fn feature_ui(&mut self, ui: &mut egui::Ui) {
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
        let d_sae = index.d_sae;
        // Left/right arrows step through features (when no text field has the keyboard).
        if !ui.ctx().egui_wants_keyboard_input() {
            let (left, right) = ui.input(|i| {
                (
                    i.key_pressed(egui::Key::ArrowLeft),
                    i.key_pressed(egui::Key::ArrowRight),
                )
            });
            if left && f > 0 {
                self.select(f - 1);
                return;
            }
            if right && (f as usize + 1) < d_sae {
                self.select(f + 1);
                return;
            }
        }
        ui.horizontal(|ui| {
            ui.heading(format!("Feature {f}"));
            if ui
                .button("< Previous")
                .on_hover_text("Previous feature")
                .clicked()
                && f > 0
            {
                self.select(f - 1);
            }
            if ui.button("Next >").on_hover_text("Next feature").clicked()
                && (f as usize + 1) < d_sae
            {
                self.select(f + 1);
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

    fn export_ui(&mut self, ui: &mut egui::Ui) {
        ui.label("Export features with their labels, statistics, top examples and PNGs (format: docs/FORMATS.md).");
        ui.horizontal(|ui| {
            ui.label("Features:");
            ui.selectable_value(
                &mut self.export_what,
                ExportWhat::Labelled,
                format!("labelled ({})", self.labels.labels.len()),
            );
            ui.selectable_value(&mut self.export_what, ExportWhat::All, "all that fire");
            ui.selectable_value(
                &mut self.export_what,
                ExportWhat::SearchResult,
                format!("search result ({})", self.order.len()),
            );
        });
        ui.horizontal(|ui| {
            let l = ui.label("Output folder");
            ui.add(
                egui::TextEdit::singleline(&mut self.export_dir)
                    .hint_text("folder to write")
                    .desired_width(320.0),
            )
            .labelled_by(l.id);
        });
        let ready = !self.export_dir.trim().is_empty() && self.sae.is_some();
        if ui
            .add_enabled(ready, egui::Button::new("Export"))
            .on_hover_text("Write features.json, features.csv and png/")
            .clicked()
        {
            use crate::analysis::export::Selection;
            self.save_label_now();
            let selection = match self.export_what {
                ExportWhat::All => Selection::Alive,
                ExportWhat::Labelled => Selection::Labelled,
                ExportWhat::SearchResult => Selection::Ids(self.order.clone()),
            };
            let request = crate::ops::share::ExportRequest {
                workspace: self.ws.dir.clone(),
                sae: self.home.clone(),
                selection,
                out: std::path::PathBuf::from(self.export_dir.trim()),
                pngs: true,
            };
            self.jobs
                .push(BackgroundJob::spawn("Export", ui.ctx(), move |_job| {
                    let r = crate::ops::share::export(&request)?;
                    // The folder's name: short, and the full path is in the form above.
                    let name = r
                        .out
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    Ok(format!("{} features written to {name}/", r.features))
                }));
        }
    }

    fn open_image(
        &mut self,
        ctx: &egui::Context,
        title: String,
        img: image::RgbImage,
        feature: Option<u32>,
    ) {
        let Some(sae) = self.sae.clone() else {
            self.error = Some("this workspace has no SAE to encode images with".into());
            return;
        };
        self.image_view = Some(ImageView::open(
            title,
            img,
            feature,
            &self.ws,
            sae,
            self.backbone.clone(),
            ctx,
        ));
        self.tab = Tab::Image;
    }

    fn image_ui(&mut self, ui: &mut egui::Ui) {
        // Choose any dataset image by number, or any image file by path (or drop one).
        let n = self.ds.len();
        let mut open: Option<(String, Result<image::RgbImage, String>)> = None;
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
                        self.ds.load(self.image_pick),
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
                open = Some((self.ds.images[i].path.clone(), self.ds.load(i)));
            }
            ui.separator();
            let l = ui.label("Image file");
            ui.add(
                egui::TextEdit::singleline(&mut self.image_path)
                    .hint_text("/path/to/image.png")
                    .desired_width(260.0),
            )
            .labelled_by(l.id);
            if ui
                .button("Open file")
                .on_hover_text("Show any image file (or drop one on the window)")
                .clicked()
            {
                let p = std::path::PathBuf::from(self.image_path.trim());
                open = Some((p.display().to_string(), ImageView::load_file(&p)));
            }
        });
        if let Some((title, img)) = open {
            match img {
                Ok(img) => self.open_image(ui.ctx(), title, img, self.selected),
                Err(e) => self.error = Some(e),
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
        let picked = v.ui(ui, &geometry, &label_of, &mut |f| {
            self.thumb(&ctx, f, ThumbKind::Crop)
        });
        self.image_view = Some(v);
        if let Some(f) = picked {
            self.select(f);
        }
    }

    /// The 8 features whose decoder directions are closest to `f`'s (cached per feature).
    fn nearest(&mut self, f: u32) -> Vec<(u32, f32)> {
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

    fn running(&self) -> bool {
        self.jobs.iter().any(|j| j.state() == JobState::Running)
    }

    /// Fit on in-distribution images, score another in-distribution folder and OOD folders.
    fn ood_form(&mut self, ui: &mut egui::Ui) {
        if self.ood_fit.is_empty() {
            self.ood_fit = self.ws.config.images.display().to_string();
        }
        egui::CollapsingHeader::new("Score folders")
            .default_open(self.ood.is_none())
            .show(ui, |ui| {
                egui::Grid::new("ood_form").num_columns(2).show(ui, |ui| {
                    for (caption, value, hint) in [
                        (
                            "Fit on (in-distribution)",
                            &mut self.ood_fit,
                            "e.g. the training images",
                        ),
                        (
                            "In-distribution to score",
                            &mut self.ood_id,
                            "e.g. the test images",
                        ),
                    ] {
                        labelled_text_row(ui, caption, value, hint);
                    }
                    let l = ui.label("Other folders (one per line)");
                    ui.add(
                        egui::TextEdit::multiline(&mut self.ood_other)
                            .desired_rows(2)
                            .desired_width(360.0),
                    )
                    .labelled_by(l.id);
                    ui.end_row();
                });
                let ready = self.sae.is_some()
                    && !self.running()
                    && [&self.ood_fit, &self.ood_id, &self.ood_other]
                        .iter()
                        .all(|s| !s.trim().is_empty());
                if ui
                    .add_enabled(ready, egui::Button::new("Score"))
                    .on_hover_text("Fit, score every folder, compute AUROC / FPR95")
                    .clicked()
                {
                    let request = crate::ops::analyse::OodRequest {
                        workspace: self.ws.dir.clone(),
                        sae: self.home.clone(),
                        fit: std::path::PathBuf::from(self.ood_fit.trim()),
                        id: std::path::PathBuf::from(self.ood_id.trim()),
                        ood: self
                            .ood_other
                            .lines()
                            .map(str::trim)
                            .filter(|l| !l.is_empty())
                            .map(std::path::PathBuf::from)
                            .collect(),
                        options: Default::default(),
                    };
                    self.jobs
                        .push(BackgroundJob::spawn("OOD", ui.ctx(), move |job| {
                            let (r, _) = crate::ops::analyse::ood(&request, job)?;
                            let best = r
                                .results
                                .iter()
                                .filter(|m| m.method.starts_with("sae_"))
                                .map(|m| m.auroc)
                                .fold(0.0, f64::max);
                            Ok(format!("best SAE AUROC {best:.3}"))
                        }));
                }
            });
    }

    fn ood_ui(&mut self, ui: &mut egui::Ui) {
        self.ood_form(ui);
        let Some(r) = &self.ood else {
            ui.label("No OOD results yet: fill in the folders above.");
            return;
        };
        egui::Grid::new("ood_table")
            .num_columns(4)
            .striped(true)
            .show(ui, |ui| {
                for h in ["method", "OOD set", "AUROC", "FPR at 95% TPR"] {
                    ui.label(egui::RichText::new(h).strong());
                }
                ui.end_row();
                for m in &r.results {
                    ui.label(&m.method);
                    ui.label(&m.ood_set);
                    ui.label(format!("{:.4}", m.auroc));
                    ui.label(format!("{:.4}", m.fpr95));
                    ui.end_row();
                }
            });
        ui.label(egui::RichText::new("ROC curves").strong());
        egui_plot::Plot::new("roc")
            .height(240.0)
            .width(520.0)
            .default_x_bounds(0.0, 1.0)
            .default_y_bounds(0.0, 1.0)
            .x_axis_label("false positive rate")
            .y_axis_label("true positive rate")
            .legend(egui_plot::Legend::default())
            .show(ui, |p| {
                for m in &r.results {
                    let pts: Vec<[f64; 2]> = m.roc.iter().map(|&(x, y)| [x, y]).collect();
                    p.line(egui_plot::Line::new(
                        format!("{} · {}", m.method, m.ood_set),
                        egui_plot::PlotPoints::from(pts),
                    ));
                }
            });
        // The most unusual images of each OOD set by SAE Mahalanobis, with their features.
        let mi = crate::analysis::ood::sae_method_index("sae_mahalanobis").unwrap_or(2);
        ui.label(
            egui::RichText::new("SAE Mahalanobis score per folder (log10, share of images)")
                .strong(),
        );
        let hists: Vec<(String, Vec<(f64, f64)>)> = (0..r.sets.len())
            .map(|si| {
                let v: Vec<f64> = r
                    .scores(si, mi)
                    .iter()
                    .map(|x| x.max(1e-12).log10())
                    .collect();
                (r.sets[si].name.clone(), histogram(&v, 40))
            })
            .collect();
        egui_plot::Plot::new("ood_hist")
            .height(160.0)
            .allow_scroll(false)
            .legend(egui_plot::Legend::default())
            .show(ui, |p| {
                for (name, h) in &hists {
                    let w = h.get(1).map_or(0.1, |b| b.0 - h[0].0);
                    let bars = h
                        .iter()
                        .map(|&(x, y)| egui_plot::Bar::new(x, y).width(w))
                        .collect();
                    p.bar_chart(egui_plot::BarChart::new(name.clone(), bars));
                }
            });
        let mut go = None;
        for s in r.sets.iter().filter(|s| !s.in_distribution) {
            ui.label(egui::RichText::new(format!("Most unusual in {}", s.name)).strong());
            let mut imgs: Vec<_> = s.images.iter().collect();
            imgs.sort_by(|a, b| {
                b.scores[mi]
                    .unwrap_or(f64::MIN)
                    .total_cmp(&a.scores[mi].unwrap_or(f64::MIN))
            });
            for i in imgs.into_iter().take(8) {
                ui.horizontal(|ui| {
                    ui.label(format!(
                        "{}  score {:.1}",
                        i.path,
                        i.scores[mi].unwrap_or(f64::NAN)
                    ));
                    for &(fid, c) in &i.contributions[mi] {
                        if ui
                            .small_button(format!("#{fid}"))
                            .on_hover_text(format!("contribution {c:.1}: open feature {fid}"))
                            .clicked()
                        {
                            go = Some(fid);
                        }
                    }
                });
            }
        }
        if let Some(g) = go {
            self.select(g);
        }
    }

    /// Build the trees, optionally against a taxonomy (e.g. WordNet).
    fn tree_form(&mut self, ui: &mut egui::Ui) {
        egui::CollapsingHeader::new("Build trees")
            .default_open(self.ontology.is_none())
            .show(ui, |ui| {
                egui::Grid::new("tree_form").num_columns(2).show(ui, |ui| {
                    for (caption, value, hint) in [
                        (
                            "Taxonomy (optional)",
                            &mut self.tree_taxonomy,
                            "WordNet node-link .json or parent/child lines",
                        ),
                        (
                            "Class ids (optional)",
                            &mut self.tree_class_ids,
                            "one taxonomy id per class, sorted class order",
                        ),
                    ] {
                        labelled_text_row(ui, caption, value, hint);
                    }
                });
                let tax = (!self.tree_taxonomy.trim().is_empty()
                    && !self.tree_class_ids.trim().is_empty())
                .then(|| crate::analysis::ontology::TaxonomyInput {
                    taxonomy: self.tree_taxonomy.trim().into(),
                    class_ids: self.tree_class_ids.trim().into(),
                });
                let ready = self.sae.is_some() && self.index.is_some() && !self.running();
                if ui
                    .add_enabled(ready, egui::Button::new("Build trees"))
                    .on_hover_text(
                        "Feature tree and class trees (compared with the taxonomy when given)",
                    )
                    .clicked()
                {
                    let request = crate::ops::analyse::TreeRequest {
                        workspace: self.ws.dir.clone(),
                        sae: self.home.clone(),
                        taxonomy: tax,
                    };
                    self.jobs
                        .push(BackgroundJob::spawn("Ontology", ui.ctx(), move |job| {
                            let (o, _) = crate::ops::analyse::tree(&request, job)?;
                            Ok(format!("{} features in the tree", o.features.len()))
                        }));
                }
            });
    }

    fn ontology_ui(&mut self, ui: &mut egui::Ui) {
        self.tree_form(ui);
        let Some(o) = self.ontology.clone() else {
            ui.label("No trees yet: build them above.");
            return;
        };
        if let Some((a, b)) = &o.taxonomy_top_split {
            ui.label(format!(
                "Taxonomy's top split: {{{}}} / {{{}}}",
                a.join(", "),
                b.join(", ")
            ));
        }
        // Class trees side by side: SAE profiles, raw activations, and the taxonomy itself.
        let trees: Vec<(&str, &crate::analysis::ontology::ClassTree)> = [
            ("Class tree (SAE features)", &o.class_tree_sae),
            ("Class tree (raw activations)", &o.class_tree_raw),
            ("Taxonomy", &o.taxonomy_tree),
        ]
        .into_iter()
        .filter_map(|(n, t)| t.as_ref().map(|t| (n, t)))
        .collect();
        ui.columns(trees.len().max(1), |cols| {
            for (ui, (name, t)) in cols.iter_mut().zip(&trees) {
                ui.label(egui::RichText::new(*name).strong());
                if let Some(c) = &t.comparison {
                    ui.label(format!(
                        "cophenetic correlation with the taxonomy {:.3} · top-split purity {:.2}",
                        c.cophenetic_correlation, c.top_split_purity
                    ));
                }
                let names = t.classes.clone();
                let mut style = TreeStyle {
                    leaf_text: &|i| names[i].clone(),
                    leaf_thumb: &mut |_| None,
                    leaf_rank: &|_| 0.0,
                    matches: None,
                    salt: name,
                };
                tree_node(ui, &t.tree, t.tree.root(), &mut style, &mut None);
            }
        });
        ui.separator();
        ui.horizontal(|ui| {
            ui.label(
                egui::RichText::new(format!("Feature tree ({} features)", o.features.len()))
                    .strong(),
            );
            let l = ui.label("Search tree:");
            ui.add(
                egui::TextEdit::singleline(&mut self.tree_search)
                    .hint_text("label or id")
                    .desired_width(160.0),
            )
            .labelled_by(l.id);
        });
        let feats = o.features.clone();
        let q = self.tree_search.trim().to_lowercase();
        let label_of = |f: u32| {
            self.labels
                .labels
                .get(&f)
                .map(|l| l.text.clone())
                .unwrap_or_default()
        };
        let matches: Option<std::collections::HashSet<usize>> = (!q.is_empty()).then(|| {
            (0..feats.len())
                .filter(|&i| {
                    feats[i].to_string() == q || label_of(feats[i]).to_lowercase().contains(&q)
                })
                .collect()
        });
        let texts: Vec<String> = feats
            .iter()
            .map(|&f| format!("#{f} {}", label_of(f)))
            .collect();
        let ctx = ui.ctx().clone();
        let mut go = None;
        // A node's thumbnails are its most frequent features.
        let counts: Vec<f64> = feats
            .iter()
            .map(|&f| {
                self.index
                    .as_ref()
                    .and_then(|ix| ix.token_count.get(f as usize))
                    .map_or(0.0, |&c| c as f64)
            })
            .collect();
        egui::ScrollArea::vertical()
            .auto_shrink([false, false])
            .show(ui, |ui| {
                let mut thumb = |i: usize| self.thumb(&ctx, feats[i], ThumbKind::Crop);
                let mut style = TreeStyle {
                    leaf_text: &|i| texts[i].clone(),
                    leaf_thumb: &mut thumb,
                    leaf_rank: &|i| counts[i],
                    matches: matches.as_ref(),
                    salt: "features",
                };
                tree_node(
                    ui,
                    &o.feature_tree,
                    o.feature_tree.root(),
                    &mut style,
                    &mut go,
                );
            });
        if let Some(i) = go {
            self.select(feats[i]);
        }
    }
}

/// A grid row: a caption and the single-line text field it names.
fn labelled_text_row(ui: &mut egui::Ui, caption: &str, value: &mut String, hint: &str) {
    let l = ui.label(caption);
    ui.add(
        egui::TextEdit::singleline(value)
            .hint_text(hint)
            .desired_width(360.0),
    )
    .labelled_by(l.id);
    ui.end_row();
}

/// Equal-width histogram of `v` as (bin centre, share of values).
fn histogram(v: &[f64], bins: usize) -> Vec<(f64, f64)> {
    let (lo, hi) = v
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    if v.is_empty() || hi <= lo {
        return Vec::new();
    }
    let w = (hi - lo) / bins as f64;
    let mut counts = vec![0usize; bins];
    for &x in v {
        counts[(((x - lo) / w) as usize).min(bins - 1)] += 1;
    }
    counts
        .iter()
        .enumerate()
        .map(|(i, &c)| (lo + (i as f64 + 0.5) * w, c as f64 / v.len() as f64))
        .collect()
}

/// How a dendrogram is drawn: leaf captions and thumbnails, and an optional search filter.
struct TreeStyle<'a> {
    leaf_text: &'a dyn Fn(usize) -> String,
    leaf_thumb: &'a mut dyn FnMut(usize) -> Option<egui::TextureHandle>,
    /// Which leaves represent an internal node in its header (highest first).
    leaf_rank: &'a dyn Fn(usize) -> f64,
    /// Only subtrees holding one of these leaves are shown (and opened).
    matches: Option<&'a std::collections::HashSet<usize>>,
    salt: &'a str,
}

/// A collapsible dendrogram node; leaves are buttons (clicking one sets `clicked`).
fn tree_node(
    ui: &mut egui::Ui,
    d: &Dendrogram,
    node: usize,
    style: &mut TreeStyle,
    clicked: &mut Option<usize>,
) {
    match d.children(node) {
        None => {
            let text = (style.leaf_text)(node);
            let button = match (style.leaf_thumb)(node) {
                Some(t) => egui::Button::image_and_text(
                    egui::Image::new(&t).fit_to_exact_size(egui::vec2(28.0, 28.0)),
                    text,
                ),
                None => egui::Button::new(text),
            };
            if ui.add(button).on_hover_text("Open").clicked() {
                *clicked = Some(node);
            }
        }
        Some((a, b)) => {
            let leaves = d.leaves(node);
            if let Some(m) = style.matches
                && !leaves.iter().any(|l| m.contains(l))
            {
                return;
            }
            let h = d.merges[node - d.n].height;
            let id = ui.make_persistent_id((style.salt, node));
            let mut state = egui::collapsing_header::CollapsingState::load_with_default_open(
                ui.ctx(),
                id,
                leaves.len() <= 12,
            );
            if style.matches.is_some() {
                state.set_open(true);
            }
            // The header shows the node's most representative leaves (up to 4 thumbnails).
            let mut reps = leaves.clone();
            reps.sort_by(|x, y| (style.leaf_rank)(*y).total_cmp(&(style.leaf_rank)(*x)));
            reps.truncate(4);
            state
                .show_header(ui, |ui| {
                    for r in reps {
                        if let Some(t) = (style.leaf_thumb)(r) {
                            ui.add(
                                egui::Image::new(&t)
                                    .fit_to_exact_size(egui::vec2(20.0, 20.0))
                                    .alt_text(format!(
                                        "representative {}",
                                        (style.leaf_text)(r).trim_start_matches('#')
                                    )),
                            );
                        }
                    }
                    ui.label(format!("{} leaves · height {h:.3}", leaves.len()));
                })
                .body(|ui| {
                    tree_node(ui, d, a, style, clicked);
                    tree_node(ui, d, b, style, clicked);
                });
        }
    }
}
