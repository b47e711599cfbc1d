//! The workspace explorer: feature grid, feature page, OOD and ontology views, and the jobs that
//! build what they show. Everything shown comes from library types loaded from the workspace.
//! Each tab has its own file.

mod compare_tab;
mod dataset_tab;
mod export_tab;
mod feature_page;
mod grid;
mod image_tab;
mod measure_form;
mod new_sae;
mod ontology_tab;
mod ood_ranked;
mod ood_tab;
mod plot_axes;

use super::dialogs::{Pick, Picker};
use super::image_view::ImageView;
use super::jobs::{BackgroundJob, JobState};
use super::thumbs::{ThumbKind, ThumbSource, Thumbs};
use crate::analysis::index::{FeatureIndex, HIST_BINS, IndexOptions, hist_edge, load_index};
use crate::analysis::labels::Labels;
use crate::analysis::ontology::Ontology;
use crate::analysis::ood::OodResults;
use crate::analysis::tree::Dendrogram;
use crate::ops::workspace::{Dataset, Workspace};
use crate::sae::Sae;
use crate::sae::workflow::workspace_sae;
pub use crate::view_state::HeatmapView;
use crate::view_state::SharedBackbone;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Tab {
    Features,
    Feature,
    Image,
    Dataset,
    Ood,
    Ontology,
    Export,
    Compare,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SortBy {
    Frequency,
    MaxActivation,
    /// The highest class lift (how class-selective a feature is).
    ClassLift,
    Label,
    Id,
}

impl SortBy {
    /// The name shown in the sort menu.
    pub fn name(self) -> &'static str {
        match self {
            SortBy::Frequency => "Frequency",
            SortBy::MaxActivation => "Max activation",
            SortBy::ClassLift => "Class lift",
            SortBy::Label => "Label",
            SortBy::Id => "Id",
        }
    }
}

pub struct Explorer {
    /// The folder of the SAE shown (`WS/saes/<name>/`), None while the workspace has none.
    pub home: Option<std::path::PathBuf>,
    pub ws: Workspace,
    /// The image view's chooser: a dataset image number (the file path is in `form`).
    pub image_pick: usize,
    pub ds: Dataset,
    pub sae: Option<Sae>,
    pub index: Option<FeatureIndex>,
    pub labels: Labels,
    pub ood: Option<OodResults>,
    /// The OOD tab's ranked list and picked image.
    ood_view: ood_ranked::OodView,
    /// The Dataset tab's filter.
    browse: dataset_tab::BrowseState,
    pub ontology: Option<Ontology>,
    pub tab: Tab,
    pub selected: Option<u32>,
    pub sort: SortBy,
    pub search: String,
    /// Features shown in the grid, in order (recomputed when sort/search/labels change).
    pub order: Vec<u32>,
    /// What `order` was computed for; None when labels changed since.
    order_key: Option<(SortBy, bool, String)>,
    /// The grid's scroll position belongs to one order: a new sort, direction or search starts
    /// at the top (the order the last scroll position was for, and its number).
    scroll_order: (Option<(SortBy, bool, String)>, u64),
    pub label_edit: String,
    label_changed: Option<Instant>,
    nearest: Option<(u32, Vec<(u32, f32)>)>,
    /// Feature pages visited before the current one, and those left by Back.
    pub back: Vec<u32>,
    pub forward: Vec<u32>,
    token_indices: Vec<usize>,
    thumbs: Thumbs,
    /// File dialogs for the tabs' path fields.
    picker: Picker,
    pub jobs: Vec<BackgroundJob>,
    /// The "All jobs" window is open.
    show_all_jobs: bool,
    pub error: Option<crate::Failure>,
    pub image_view: Option<ImageView>,
    backbone: SharedBackbone,
    /// Where models and SAEs run for jobs started here (the app's status-bar choice).
    pub device: crate::device::DeviceChoice,
    pub export_what: ExportWhat,
    /// Everything typed into the explorer's forms (remembered per workspace).
    pub form: FormInputs,
    /// Causal effects measured for this SAE's features, and the feature page's class choice.
    pub effects: Vec<crate::analysis::causal::FeatureEffect>,
    pub effect_class: usize,
    compare: compare_tab::CompareState,
    /// The built-in example, whose model has random weights (said above every tab).
    example: bool,
    /// Counts the explorer's finished jobs: the workspace panel re-reads its SAE table (whose
    /// Analyses column a job may have changed) when this moves.
    pub jobs_finished: usize,
    /// An SAE the user chose here (compare page): the app reopens the workspace with it active.
    pub switch_to: Option<String>,
}

/// The explorer's typed inputs, remembered per workspace between runs.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct FormInputs {
    /// OOD form: fit folder, in-distribution folder, OOD folders (one per line).
    pub ood_fit: String,
    pub ood_id: String,
    pub ood_other: String,
    /// Ontology form: taxonomy file and class-id file (both optional), and the tree search.
    pub tree_taxonomy: String,
    pub tree_class_ids: String,
    pub tree_search: String,
    pub export_dir: String,
    /// An export whose labels are imported (features.json or its folder).
    pub import_from: String,
    /// Import even an export made with another SAE.
    pub import_force: bool,
    /// The image view's file path, and where its heatmap PNGs are saved.
    pub image_path: String,
    pub heatmap_dir: String,
    /// Measurements (Compare tab): labelled folders the probes are fit on and scored on.
    pub eval_fit: String,
    pub eval_images: String,
    /// The grid's order reversed (ascending frequency, activation and lift; Z to A).
    pub reverse: bool,
    /// How heatmaps are drawn on the feature page and in the image view.
    pub heatmap: HeatmapView,
    /// The SAE to train (or file to load) for a workspace that has none yet.
    pub new_sae: NewSae,
}

/// A workspace's first SAE: a TopK SAE to train, or an SAE file to load instead.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct NewSae {
    pub d_sae: usize,
    pub k: usize,
    /// Training tokens in millions; 0 = ten passes over the activations.
    pub mtokens: f64,
    pub sae_file: String,
}

impl Default for NewSae {
    fn default() -> Self {
        NewSae {
            d_sae: 2048,
            k: 16,
            mtokens: 0.0,
            sae_file: String::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportWhat {
    All,
    Labelled,
    /// Only statistically supported class labels.
    Significant,
    SearchResult,
}

/// Grid orders shown so far (an explorer opened, a new sort): each scrolls apart from the rest.
static GRIDS_OPENED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Labels are saved this long after the last keystroke.
const AUTOSAVE_AFTER: Duration = Duration::from_millis(600);
/// Every card has this exact size, so the grid's column count is exact.
const CARD: egui::Vec2 = egui::vec2(172.0, 92.0);
/// Examples across the activation range on a feature page.
const QUANTILE_EXAMPLES: usize = 8;

impl Explorer {
    /// Drops the model loaded for the image view (after the device changed): the next image
    /// loads it again where the jobs now run.
    pub fn forget_backbone(&mut self) {
        self.backbone = Default::default();
    }

    /// Loads what exists in the workspace; missing parts (SAE, index, OOD, ontology) are offered
    /// as jobs or CLI hints in the UI rather than failing.
    pub fn open(dir: &Path) -> crate::Result<Explorer> {
        let session = crate::ops::session::open(dir)?;
        // No SAE yet is a state the page offers to fix; what could not be loaded is shown.
        let error = session.problems.into_iter().next().map(crate::Failure::new);
        let crate::ops::session::Session {
            ws,
            ds,
            home,
            sae,
            index,
            labels,
            analyses,
            token_indices,
            ..
        } = session;
        let example = crate::ops::example::is_example(&ws.dir);
        let mut x = Explorer {
            ws,
            ds,
            home,
            sae,
            index,
            labels,
            ood: analyses.ood,
            ood_view: Default::default(),
            browse: Default::default(),
            ontology: analyses.ontology,
            image_pick: 0,
            tab: Tab::Features,
            selected: None,
            sort: SortBy::Frequency,
            search: String::new(),
            order: Vec::new(),
            order_key: None,
            // Each explorer opened (another SAE, the same one again) starts its grid at the top.
            scroll_order: (
                None,
                GRIDS_OPENED.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            ),
            label_edit: String::new(),
            label_changed: None,
            nearest: None,
            back: Vec::new(),
            forward: Vec::new(),
            token_indices,
            thumbs: Thumbs::default(),
            picker: Default::default(),
            jobs: Vec::new(),
            show_all_jobs: false,
            error,
            image_view: None,
            backbone: Default::default(),
            device: Default::default(),
            export_what: ExportWhat::Labelled,
            form: FormInputs::default(),
            effects: analyses.effects,
            effect_class: 0,
            compare: Default::default(),
            switch_to: None,
            example: false,
            jobs_finished: 0,
        };
        x.example = example;
        Ok(x)
    }

    /// (Re)reads the OOD results, ontology and effects the workspace holds, if any.
    fn load_results(&mut self) {
        let Some(home) = &self.home else { return };
        let mut problems = Vec::new();
        let a = crate::ops::session::read_analyses(home, &mut problems);
        (self.ood, self.ontology, self.effects) = (a.ood, a.ontology, a.effects);
        self.ood_view = Default::default();
        if let Some(e) = problems.into_iter().next() {
            self.error = Some(crate::Failure::new(e));
        }
    }

    /// Opens a feature's page, remembering the page it came from for Back.
    pub fn select(&mut self, feature: u32) {
        if let Some(prev) = self.selected
            && prev != feature
        {
            self.back.push(prev);
            self.forward.clear();
        }
        self.show(feature);
    }

    /// Back (`forward` false) or Forward through the feature pages visited.
    pub fn go(&mut self, forward: bool) {
        let (from, to) = if forward {
            (&mut self.forward, &mut self.back)
        } else {
            (&mut self.back, &mut self.forward)
        };
        if let Some(f) = from.pop() {
            to.extend(self.selected);
            self.show(f);
        }
    }

    /// The feature before (`step` −1) or after (+1) `f` in the grid's current order (its sort and
    /// search), or by id when the grid does not hold `f`.
    pub fn neighbour(&self, f: u32, step: isize) -> Option<u32> {
        match self.order.iter().position(|&x| x == f) {
            Some(i) => i
                .checked_add_signed(step)
                .and_then(|j| self.order.get(j).copied()),
            None => {
                let d_sae = self.index.as_ref().map_or(0, |i| i.d_sae) as isize;
                let j = f as isize + step;
                (0..d_sae).contains(&j).then_some(j as u32)
            }
        }
    }

    fn show(&mut self, feature: u32) {
        self.save_label_now();
        self.selected = Some(feature);
        // The causal-effect form starts on the class this feature is most selective for.
        if let Some((c, _)) = self
            .index
            .as_ref()
            .and_then(|i| i.best_lift(feature as usize))
        {
            self.effect_class = c;
        }
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
            self.order_key = None; // label sort and search see the new text
            // Only this edit is written, onto the labels as they are on disk now: what another
            // process saved meanwhile (`saescope label`) is kept, and shown from here on.
            let saved = match &self.home {
                Some(h) => crate::ops::analyse::set_labels(
                    &self.ws.dir,
                    h,
                    &[(f, self.label_edit.clone())],
                ),
                None => Err(crate::ops::Error::Workspace(
                    "labels belong to an SAE: train or import one first".into(),
                )),
            };
            match saved {
                Ok(labels) => self.labels = labels,
                Err(e) => {
                    self.labels.set_manual(f, &self.label_edit);
                    self.error = Some(crate::Failure::new(e));
                }
            }
        }
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
        // Act once on what each newly finished job produced (never again when a later job
        // ends: that reloaded imported labels over newer edits and reset the Compare tab).
        let finished: Vec<String> = self
            .jobs
            .iter()
            .filter(|j| j.newly_done())
            .map(|j| j.title.clone())
            .collect();
        if !finished.is_empty() {
            self.after_jobs(&finished);
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
                Err(e) => self.error = Some(crate::Failure::new(e)),
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
                (
                    Tab::Dataset,
                    "Dataset",
                    "The workspace's images: thumbnails by class and name; a click opens one",
                ),
                (Tab::Ood, "OOD", "Out-of-distribution scores"),
                (Tab::Ontology, "Ontology", "Feature and class trees"),
                (
                    Tab::Export,
                    "Export",
                    "Share labelled features (JSON, CSV, PNGs)",
                ),
                (
                    Tab::Compare,
                    "Compare",
                    "The workspace's SAEs side by side: benchmark figures, Pareto plots, closest \
                     features; train or load another SAE",
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
        if self.example {
            ui.label(
                egui::RichText::new(
                    "The built-in example: its model has random weights, so its features show \
                     how the tool works, not what a trained model learns.",
                )
                .weak(),
            );
        }
        super::jobs::status_area(
            ui,
            "explorer",
            "No jobs yet",
            &self.jobs,
            &mut self.show_all_jobs,
        );
        if let Some(e) = &self.error
            && super::error_ui(ui, e)
        {
            self.error = None;
        }
        ui.separator();
        if self.tab == Tab::Compare && self.sae.is_some() {
            self.compare_ui(ui);
            return;
        }
        if self.index.is_none() {
            self.no_index_ui(ui);
            return;
        }
        match self.tab {
            Tab::Features => self.grid_ui(ui),
            Tab::Feature => self.feature_ui(ui),
            Tab::Image => self.image_ui(ui),
            Tab::Dataset => self.dataset_ui(ui),
            // The form, table, curves and histograms are taller than a laptop window.
            Tab::Ood => {
                egui::ScrollArea::vertical()
                    .id_salt("ood_scroll")
                    .show(ui, |ui| self.ood_ui(ui));
            }
            Tab::Ontology => self.ontology_ui(ui),
            Tab::Export => self.export_ui(ui),
            Tab::Compare => self.compare_ui(ui),
        }
    }

    /// Reloads what the jobs titled `finished`, just ended well, produced.
    fn after_jobs(&mut self, finished: &[String]) {
        let ended = |title: &str| finished.iter().any(|t| t == title);
        self.jobs_finished += 1;
        if self.sae.is_none() {
            self.adopt_new_sae();
        } else if ended("Train SAE") || ended("Load SAE") {
            // Another SAE was trained or loaded (the compare page): it is now the active one,
            // unless it is the one explored already.
            let active = Workspace::open(&self.ws.dir)
                .and_then(|w| w.active_sae())
                .ok();
            if active.is_some() && active != self.active_name() {
                self.switch_to = active;
            }
        }
        if self.index.is_none()
            && let Some(h) = &self.home
            && crate::analysis::index::index_dir(h).exists()
        {
            match load_index(h) {
                Ok(i) => self.index = Some(i),
                Err(e) => self.error = Some(crate::Failure::new(e)),
            }
        }
        self.load_results();
        // A finished benchmark's figures fill the Compare tab.
        if ended("Benchmark") {
            self.compare = Default::default();
        }
        // Imported labels show at once.
        if ended("Import labels")
            && let Some(h) = &self.home
        {
            match crate::analysis::labels::Labels::load(h) {
                Ok(l) => {
                    self.labels = l;
                    self.order_key = None;
                }
                Err(e) => self.error = Some(crate::Failure::new(e)),
            }
        }
    }

    /// The name of the SAE explored here (its folder under WS/saes/).
    fn active_name(&self) -> Option<String> {
        self.home
            .as_ref()
            .and_then(|h| h.file_name())
            .map(|n| n.to_string_lossy().into_owned())
    }

    /// Takes over another explorer's jobs (switching SAE): the finished ones are not acted on
    /// again, the running ones report here.
    pub fn adopt_jobs(&mut self, jobs: Vec<BackgroundJob>) {
        for j in &jobs {
            j.newly_done();
        }
        self.jobs = jobs;
    }

    /// Starts a job; the finished runs of the same job (same title) go from the list, so a
    /// message stays until the same action runs again and is not left above its newer result.
    fn push_job(&mut self, job: BackgroundJob) {
        // Training and loading an SAE are one action: either result supersedes the other's.
        fn action(title: &str) -> &str {
            match title {
                "Train SAE" | "Load SAE" => "new SAE",
                t => t,
            }
        }
        self.jobs
            .retain(|j| action(&j.title) != action(&job.title) || j.is_running());
        self.jobs.push(job);
    }

    /// The index-backed thumbnail source and the cache, borrowed apart.
    fn thumb_parts(&mut self) -> Option<(ThumbSource<'_>, &mut Thumbs)> {
        let Explorer {
            index,
            ds,
            ws,
            token_indices,
            thumbs,
            form,
            ..
        } = self;
        let src = ThumbSource {
            index: index.as_ref()?,
            ds,
            geometry: &ws.config.backbone.geometry,
            token_indices,
            preprocessor: ws.config.preprocessor.as_ref(),
            alpha: form.heatmap.opacity,
        };
        Some((src, thumbs))
    }

    /// Why feature `f`'s card shows the "unreadable" placeholder, if it does.
    pub fn thumb_problem(&self, f: u32) -> Option<&str> {
        self.thumbs.problem(f, ThumbKind::Card)
    }

    fn thumb(
        &mut self,
        ctx: &egui::Context,
        f: u32,
        kind: ThumbKind,
    ) -> Option<egui::TextureHandle> {
        let (src, thumbs) = self.thumb_parts()?;
        thumbs.get(ctx, &src, f, kind)
    }

    /// Makes the top-image thumbnails of `f`'s page together (in parallel, within the frame's
    /// budget).
    fn prefetch_page(&mut self, ctx: &egui::Context, f: u32) {
        let kinds = self.page_thumbs(f);
        if let Some((src, thumbs)) = self.thumb_parts() {
            thumbs.prefetch(ctx, &src, f, &kinds);
        }
    }

    /// The thumbnails the feature page of `f` shows: its top images and its examples across
    /// the activation range.
    fn page_thumbs(&self, f: u32) -> Vec<ThumbKind> {
        let Some(ix) = self.index.as_ref() else {
            return Vec::new();
        };
        let n = ix.top[f as usize].len();
        let plain = if self.form.heatmap.side_by_side { n } else { 0 };
        let top = (0..n)
            .map(|r| ThumbKind::Overlay(r as u16))
            .chain((0..plain).map(|r| ThumbKind::Plain(r as u16)));
        let samples = ix
            .quantile_examples(f as usize, QUANTILE_EXAMPLES)
            .into_iter()
            .map(|(_, i)| ThumbKind::Sample(i as u16));
        top.chain(samples).collect()
    }

    /// A dataset image's file (as listed) and class name ("" when it has none).
    fn image_facts(&self, image: u32) -> (String, String) {
        let Some(e) = self.ds.images.get(image as usize) else {
            return (String::new(), String::new());
        };
        let class = e
            .class
            .and_then(|c| self.ds.classes.get(c as usize).cloned())
            .unwrap_or_default();
        (e.path.clone(), class)
    }

    /// Whether the feature page of `f` is fully drawn: every thumbnail made.
    pub fn feature_page_ready(&self, f: u32) -> bool {
        self.page_thumbs(f)
            .into_iter()
            .all(|k| self.thumbs.is_ready(f, k))
    }

    fn running(&self) -> bool {
        self.jobs.iter().any(|j| j.state() == JobState::Running)
    }
}

/// A grid row: a caption, the single-line path field it names, and its Browse... button.
fn labelled_path_row(
    ui: &mut egui::Ui,
    picker: &Picker,
    kind: Pick,
    caption: &'static str,
    value: &mut String,
    hint: &str,
) {
    let l = ui.label(caption);
    ui.horizontal(|ui| {
        ui.add(
            egui::TextEdit::singleline(value)
                .hint_text(hint)
                .desired_width(360.0),
        )
        .labelled_by(l.id);
        picker.button(ui, caption, kind);
    });
    if let Some(p) = picker.take(caption) {
        *value = p.display().to_string();
    }
    ui.end_row();
}

/// Equal-width histogram of `v` as (bin centre, share of values).
/// Shares of `v` in `bins` equal bins over [lo, hi] (bin centres); values outside are clamped
/// into the end bins. Every series of one plot takes the same lo and hi, so bars line up.
fn histogram(v: &[f64], lo: f64, hi: f64, bins: usize) -> Vec<(f64, f64)> {
    if v.is_empty() || hi <= lo || bins == 0 {
        return Vec::new();
    }
    let w = (hi - lo) / bins as f64;
    let mut counts = vec![0usize; bins];
    for &x in v {
        counts[(((x - lo) / w).max(0.0) as usize).min(bins - 1)] += 1;
    }
    counts
        .iter()
        .enumerate()
        .map(|(i, &c)| (lo + (i as f64 + 0.5) * w, c as f64 / v.len() as f64))
        .collect()
}
