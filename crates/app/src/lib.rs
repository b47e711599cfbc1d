//! The desktop app (eframe + egui on wgpu). A thin layer over the library: it shows workspaces
//! and starts library jobs; it computes nothing itself.
#![cfg_attr(test, allow(clippy::disallowed_methods))] // unit tests write fixtures directly

pub mod bench;
pub mod create;
pub mod dialogs;
pub mod explorer;
pub mod image_view;
pub mod intervene_panel;
pub mod jobs;
pub mod live_hint;
mod persist;
mod sae_table;
pub mod steer_view;
pub mod thumbs;
pub mod view_state;
pub mod words;

// The app's view of the library is ops (and what ops re-exports): paths below name
// `crate::<module>` as if these were the app's own.
/// The window framework, for tests that give the app a storage of their own.
pub use eframe;
use saescope_ops as ops;
#[cfg(test)]
use saescope_ops::fixable;
use saescope_ops::{Error, Result, analysis, backbone, device, fix, job, sae, steer};

/// An error the app keeps to show: the library's value itself, worded for the app only when
/// drawn ([`words::shown`]).
pub type Failure = std::sync::Arc<Error>;

/// A failure from the app's own words (a check the form makes before calling ops).
pub(crate) fn failure(msg: impl Into<String>) -> Failure {
    Failure::new(Error::Invalid(msg.into()))
}

use crate::ops::workspace::Workspace;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// State remembered between runs, saved as soon as it changes.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Persisted {
    pub recent_workspaces: Vec<PathBuf>,
    pub dark_mode: bool,
    /// A workspace creation that has not finished (offered for resuming at the next start).
    pub pending_create: Option<create::CreateRequest>,
    /// Where the user was: reopened at the next start.
    pub last_view: Option<LastView>,
    /// Which top-level view was showing.
    pub mode: Mode,
    /// The steering view's pipeline, SAE, prompt and sliders.
    pub steer: steer_view::SteerSettings,
    /// Each workspace's typed explorer inputs (OOD and ontology forms, export folder, …).
    pub inputs: std::collections::BTreeMap<PathBuf, explorer::FormInputs>,
    /// Where models and SAEs run (the status bar's choice).
    pub device: crate::device::DeviceChoice,
    /// The built-in example's folder as typed (empty: `saescope-example` in the home folder).
    pub example_folder: String,
}

/// The two top-level views: vision workspaces, and diffusion steering.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    #[default]
    Workspaces,
    Steering,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LastView {
    pub workspace: PathBuf,
    pub tab: explorer::Tab,
    pub feature: Option<u32>,
    pub sort: explorer::SortBy,
    pub search: String,
}

/// A workspace as the start page summarises it.
pub struct OpenWorkspace {
    pub dir: PathBuf,
    pub summary: Vec<(String, String)>,
    /// The workspace's SAEs (`WS/saes/`), the active one marked.
    pub saes: Vec<crate::ops::saes::SaeSummary>,
    /// The explorer's finished-job count when `saes` was last read.
    pub jobs_seen: usize,
}

pub struct SaescopeApp {
    pub persisted: Persisted,
    pub path_input: String,
    pub open: Option<OpenWorkspace>,
    /// The open workspace's explorer (feature grid, feature pages, OOD, ontology).
    pub explorer: Option<explorer::Explorer>,
    /// The "new workspace" form and its running pipeline.
    pub create: create::CreateRequest,
    pub create_job: Option<jobs::BackgroundJob>,
    /// The built-in example being made, and its folder.
    pub example_job: Option<(jobs::BackgroundJob, PathBuf)>,
    pub picker: dialogs::Picker,
    pub error: Option<crate::Failure>,
    pub steer: steer_view::SteerView,
    /// Where the state is saved when eframe gives no storage (a headless harness: tests read it).
    pub headless_storage: Option<Box<dyn eframe::Storage>>,
    /// The state as last saved, and when.
    saved: Option<(Persisted, std::time::Instant)>,
}

pub const STORAGE_KEY: &str = "saescope";
const MAX_RECENT: usize = 10;

impl SaescopeApp {
    pub fn new(cc: &eframe::CreationContext<'_>) -> Self {
        let mut persisted: Persisted = cc
            .storage
            .and_then(|s| eframe::get_value(s, STORAGE_KEY))
            .unwrap_or_default();
        persist::forget_finished_create(&mut persisted);
        cc.egui_ctx.set_theme(if persisted.dark_mode {
            egui::Theme::Dark
        } else {
            egui::Theme::Light
        });
        let last = persisted.last_view.clone();
        let mut app = SaescopeApp {
            path_input: String::new(),
            example_job: None,
            create: persisted.pending_create.clone().unwrap_or_default(),
            persisted,
            open: None,
            explorer: None,
            create_job: None,
            picker: Default::default(),
            error: None,
            steer: Default::default(),
            headless_storage: None,
            saved: None,
        };
        app.steer = steer_view::SteerView::new(app.persisted.steer.clone(), app.picker.clone());
        // Back to where the user was (quietly skipped if the workspace is gone).
        if let Some(v) = last.filter(|v| v.workspace.is_dir()) {
            app.open_workspace(v.workspace.clone());
            if let Some(x) = &mut app.explorer {
                if let Some(f) = v.feature {
                    x.select(f);
                }
                x.tab = v.tab;
                x.sort = v.sort;
                x.search = v.search;
            }
        }
        app
    }

    /// Keeps the open explorer's typed inputs for its workspace (restored when it reopens).
    fn remember_inputs(&mut self) {
        if let Some(x) = &self.explorer {
            if x.form == explorer::FormInputs::default() {
                self.persisted.inputs.remove(&x.ws.dir);
            } else {
                self.persisted
                    .inputs
                    .insert(x.ws.dir.clone(), x.form.clone());
            }
        }
    }

    /// Opens a workspace folder and summarises it; errors are shown, never panicked on.
    pub fn open_workspace(&mut self, dir: PathBuf) {
        match summarise(&dir) {
            Ok(summary) => {
                self.persisted.recent_workspaces.retain(|p| p != &dir);
                self.persisted.recent_workspaces.insert(0, dir.clone());
                self.persisted.recent_workspaces.truncate(MAX_RECENT);
                self.remember_inputs();
                match explorer::Explorer::open(&dir) {
                    Ok(mut x) => {
                        if let Some(f) = self.persisted.inputs.get(&dir) {
                            x.form = f.clone();
                        }
                        self.explorer = Some(x);
                        self.error = None;
                    }
                    Err(e) => {
                        self.explorer = None;
                        self.error = Some(crate::Failure::new(e));
                    }
                }
                let saes = Workspace::open(&dir)
                    .map(|ws| crate::ops::saes::list_saes(&ws))
                    .unwrap_or_default();
                self.open = Some(OpenWorkspace {
                    dir,
                    summary,
                    saes,
                    jobs_seen: 0,
                });
            }
            Err(e) => self.error = Some(crate::Failure::new(e)),
        }
    }

    fn top_bar_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.heading("saescope");
            ui.label(egui::RichText::new(format!("v{}", env!("CARGO_PKG_VERSION"))).weak());
            ui.separator();
            for (mode, name, tip) in [
                (
                    Mode::Workspaces,
                    "Workspaces",
                    "Vision workspaces: features, heatmaps, ontology, OOD",
                ),
                (
                    Mode::Steering,
                    "Steering",
                    "Steer a diffusion model with text-encoder SAE features",
                ),
            ] {
                if ui
                    .selectable_label(self.persisted.mode == mode, name)
                    .on_hover_text(tip)
                    .clicked()
                {
                    self.persisted.mode = mode;
                }
            }
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                let label = if self.persisted.dark_mode {
                    "Light theme"
                } else {
                    "Dark theme"
                };
                if ui
                    .button(label)
                    .on_hover_text("Switch between light and dark theme")
                    .clicked()
                {
                    self.persisted.dark_mode = !self.persisted.dark_mode;
                    ui.ctx().set_theme(if self.persisted.dark_mode {
                        egui::Theme::Dark
                    } else {
                        egui::Theme::Light
                    });
                }
            });
        });
    }

    /// The device choice, and what it resolves to here and why.
    fn status_bar_ui(&mut self, ui: &mut egui::Ui) {
        use crate::device::DeviceChoice;
        ui.horizontal(|ui| {
            let l = ui.label("Device:");
            let before = self.persisted.device;
            egui::ComboBox::from_id_salt("device")
                .selected_text(self.persisted.device.to_string())
                .show_ui(ui, |ui| {
                    for c in [
                        DeviceChoice::Auto,
                        DeviceChoice::Cpu,
                        DeviceChoice::Cuda(0),
                        DeviceChoice::Metal,
                    ] {
                        ui.selectable_value(&mut self.persisted.device, c, c.to_string());
                    }
                })
                .response
                .labelled_by(l.id)
                .on_hover_text(
                    "Where models and SAEs run for jobs started from now on (auto: the first of \
                     CUDA, Metal and the CPU that this build and machine offer)",
                );
            match crate::device::resolve(self.persisted.device) {
                Ok((device, why)) => {
                    ui.label(
                        egui::RichText::new(format!("runs on {}", crate::device::name(&device)))
                            .weak(),
                    )
                    .on_hover_text(why);
                }
                Err(e) => {
                    ui.add(
                        egui::Label::new(
                            egui::RichText::new(words::shown(&e))
                                .color(ui.visuals().error_fg_color),
                        )
                        .wrap(),
                    );
                }
            }
            if before != self.persisted.device {
                // The image view's model was loaded on the old device.
                if let Some(x) = &mut self.explorer {
                    x.forget_backbone();
                }
            }
        });
    }

    fn start_ui(&mut self, ui: &mut egui::Ui) {
        ui.heading("Workspaces");
        ui.label("A workspace holds one model layer's activations over an image folder, and everything computed from them.");
        ui.add_space(8.0);
        ui.horizontal(|ui| {
            let l = ui.label("Open workspace folder:");
            let edit = ui
                .add(
                    egui::TextEdit::singleline(&mut self.path_input)
                        .hint_text("/path/to/workspace")
                        .desired_width(360.0),
                )
                .labelled_by(l.id);
            let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            // A changed path is a new question: the old answer's error goes.
            if edit.changed() {
                self.error = None;
            }
            self.picker
                .button(ui, "workspace to open", dialogs::Pick::Folder);
            if let Some(p) = self.picker.take("workspace to open") {
                self.path_input = p.display().to_string();
            }
            if (ui
                .button("Open")
                .on_hover_text("Open the workspace in this folder")
                .clicked()
                || enter)
                && !self.path_input.trim().is_empty()
            {
                self.open_workspace(PathBuf::from(self.path_input.trim()));
            }
        });
        if let Some(err) = &self.error
            && error_ui(ui, err)
        {
            self.error = None;
        }
        ui.add_space(8.0);
        ui.label(egui::RichText::new("Recent").strong());
        if self.persisted.recent_workspaces.is_empty() {
            ui.label(
                egui::RichText::new(
                    "No workspaces yet: make the built-in example or create one below (or with `saescope extract`).",
                )
                .weak(),
            );
        }
        let mut clicked = None;
        for p in &self.persisted.recent_workspaces {
            if ui
                .link(p.display().to_string())
                .on_hover_text("Open this workspace")
                .clicked()
            {
                clicked = Some(p.clone());
            }
        }
        if let Some(p) = clicked {
            self.open_workspace(p);
        }
        ui.add_space(8.0);
        self.example_ui(ui);
        ui.add_space(12.0);
        self.create_ui(ui);
    }

    /// The built-in example: one click makes a complete workspace (no download) and opens it.
    fn example_ui(&mut self, ui: &mut egui::Ui) {
        ui.label(egui::RichText::new("Built-in example").strong())
            .on_hover_text(
                "160 images of four classes (checks, discs, squares, stripes) drawn by saescope \
                 and a small DINOv2-layout model with random weights, made here without a \
                 download; then extracted, an SAE trained, indexed and labelled from the classes. \
                 It shows how the tool works: a random model's features say nothing about what a \
                 trained model learns.",
            );
        ui.label(
            egui::RichText::new(
                "No download: 160 drawn images of four classes and a small random-weight model, \
                 made into a workspace in seconds, to see how everything works.",
            )
            .weak(),
        );
        let busy = self
            .example_job
            .as_ref()
            .is_some_and(|(j, _)| j.is_running());
        ui.horizontal(|ui| {
            let cap = ui.label("Example folder:");
            ui.add(
                egui::TextEdit::singleline(&mut self.persisted.example_folder)
                    .hint_text("~/saescope-example")
                    .desired_width(300.0),
            )
            .labelled_by(cap.id);
            if ui
                .add_enabled(!busy, egui::Button::new("Make the example"))
                .on_hover_text(
                    "Draw the images, write a random-weight model, and build a workspace from \
                     them (a few seconds); opens it when done",
                )
                .clicked()
            {
                let typed = self.persisted.example_folder.trim();
                let home = std::env::var_os("HOME").map(PathBuf::from);
                let folder = match (typed, home) {
                    ("", Some(h)) => h.join("saescope-example"),
                    (t, Some(h)) if t.starts_with("~/") => h.join(&t[2..]),
                    ("", None) => PathBuf::from("saescope-example"),
                    (t, _) => PathBuf::from(t),
                };
                let req = crate::ops::example::ExampleRequest {
                    folder: folder.clone(),
                    device: self.persisted.device,
                };
                let job = jobs::BackgroundJob::spawn("Built-in example", ui.ctx(), move |job| {
                    let r = crate::ops::example::example(&req, job)?;
                    Ok(format!(
                        "{} images, {} features, {} labelled from classes",
                        r.extracted_images, r.features, r.labelled_from_classes
                    ))
                });
                self.example_job = Some((job, folder));
            }
        });
        // The job repaints the window as it reports and when it ends.
        let mut finished = None;
        if let Some((j, folder)) = &self.example_job {
            j.ui(ui);
            if matches!(j.state(), jobs::JobState::Done(_)) {
                finished = Some(crate::ops::example::workspace_of(folder));
            }
        }
        if let Some(ws) = finished {
            self.example_job = None;
            self.open_workspace(ws);
        }
    }

    /// New workspace: the form, then the running pipeline with progress and live curves.
    fn create_ui(&mut self, ui: &mut egui::Ui) {
        ui.label(egui::RichText::new("New workspace").strong());
        let busy = self
            .create_job
            .as_ref()
            .is_some_and(|j| j.state() == jobs::JobState::Running);
        let mut go = false;
        if !busy
            && self.create_job.is_none()
            && let Some(p) = self.persisted.pending_create.clone()
        {
            ui.horizontal(|ui| {
                ui.label(format!("Creating {} did not finish.", p.workspace));
                if ui
                    .button("Resume")
                    .on_hover_text("Run it again: each stage continues where it stopped")
                    .clicked()
                {
                    self.create = p.clone();
                    go = true;
                }
                if ui
                    .button("Forget")
                    .on_hover_text("Stop offering it (its folder stays as it is)")
                    .clicked()
                {
                    self.persisted.pending_create = None;
                }
            });
        }
        let device = self.persisted.device;
        go |= create::form_ui(ui, &mut self.create, busy, &self.picker, device);
        if go {
            self.persisted.pending_create = Some(self.create.clone());
            self.create_job = Some(create::start(&self.create, device, ui.ctx()));
        }
        let mut finished = None;
        if let Some(j) = &self.create_job {
            j.ui(ui);
            create::metrics_plot(
                ui,
                &create::training_folder(std::path::Path::new(self.create.workspace.trim())),
            );
            match j.state() {
                jobs::JobState::Done(_) => {
                    finished = Some(PathBuf::from(self.create.workspace.trim()))
                }
                jobs::JobState::Running => ui
                    .ctx()
                    .request_repaint_after(std::time::Duration::from_millis(500)),
                _ => {}
            }
        }
        if let Some(dir) = finished {
            self.persisted.pending_create = None;
            self.create_job = None;
            self.open_workspace(dir);
        }
    }

    /// The open workspace: its summary, then the explorer.
    fn workspace_ui(&mut self, ui: &mut egui::Ui) {
        // A job of the explorer finished (an SAE trained or loaded, an index, labels, OOD, a
        // tree): the SAE table is read again, so its Analyses column is never stale.
        if let (Some(open), Some(x)) = (&mut self.open, &self.explorer)
            && (x.jobs_finished != open.jobs_seen || (open.saes.is_empty() && x.sae.is_some()))
        {
            open.jobs_seen = x.jobs_finished;
            open.saes = crate::ops::saes::list_saes(&x.ws);
        }
        let Some(ws) = &self.open else { return };
        let mut close = false;
        ui.horizontal(|ui| {
            if ui
                .button("< Workspaces")
                .on_hover_text("Back to the workspace list")
                .clicked()
            {
                close = true;
            }
            // The folder name (full path on hover) keeps the header short and stable.
            let name = ws
                .dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| ws.dir.display().to_string());
            ui.heading(name).on_hover_text(ws.dir.display().to_string());
        });
        let has_index = self.explorer.as_ref().is_some_and(|x| x.index.is_some());
        let mut use_sae = None;
        // The folds above the explorer scroll within at most 45% of the window, so the explorer
        // (the feature page among it) always keeps the rest, however many SAEs are listed.
        egui::ScrollArea::vertical()
            .id_salt("workspace_folds")
            .max_height(ui.available_height() * 0.45)
            .auto_shrink([false, true])
            .show(ui, |ui| {
                // Open while there is no SAE yet; after that the SAE table matters more.
                egui::CollapsingHeader::new("Workspace")
                    .default_open(ws.saes.is_empty())
                    .show(ui, |ui| {
                        egui::Grid::new("workspace_summary")
                            .num_columns(2)
                            .striped(true)
                            .show(ui, |ui| {
                                for (k, v) in &ws.summary {
                                    ui.label(k);
                                    ui.label(v);
                                    ui.end_row();
                                }
                            });
                    });
                if !ws.saes.is_empty() {
                    egui::CollapsingHeader::new(format!("SAEs ({})", ws.saes.len()))
                        .default_open(!has_index || ws.saes.len() > 1)
                        .show(ui, |ui| {
                            use_sae = sae_table::sae_table_ui(ui, &ws.saes);
                            if let Some(active) = ws.saes.iter().find(|s| s.active) {
                                egui::CollapsingHeader::new(format!(
                                    "Training curves: {}",
                                    active.name
                                ))
                                .show(ui, |ui| {
                                    let home = ws.dir.join("saes").join(&active.name);
                                    if !create::metrics_plot(ui, &home) {
                                        ui.label(
                                            egui::RichText::new(
                                                "No training log: this SAE was loaded, not trained \
                                                 here.",
                                            )
                                            .weak(),
                                        );
                                    }
                                });
                            }
                        });
                }
            });
        if let Some(err) = &self.error
            && error_ui(ui, err)
        {
            self.error = None;
        }
        if let Some(x) = &mut self.explorer {
            x.ui(ui);
            use_sae = use_sae.or_else(|| x.switch_to.take());
        }
        if let Some(name) = use_sae {
            let dir = ws.dir.clone();
            let switched = crate::ops::saes::use_sae(&dir, &name);
            match switched {
                Ok(_) => {
                    // The jobs that led here (a training, a benchmark) stay in the status row.
                    let jobs = self
                        .explorer
                        .as_mut()
                        .map(|x| std::mem::take(&mut x.jobs))
                        .unwrap_or_default();
                    self.open_workspace(dir);
                    if let Some(x) = &mut self.explorer {
                        x.adopt_jobs(jobs);
                    }
                }
                Err(e) => {
                    self.error = Some(failure(format!(
                        "Could not switch to SAE {name}: {}",
                        words::shown(&e)
                    )))
                }
            }
            return;
        }
        if close {
            self.remember_inputs();
            self.open = None;
            self.explorer = None;
        }
    }
}

fn summarise(dir: &std::path::Path) -> crate::Result<Vec<(String, String)>> {
    let s = crate::ops::session::summary(dir)?;
    let mut rows = vec![
        ("Model".to_string(), s.model),
        (
            "Layer".to_string(),
            format!("{} of {}", s.layer, s.n_layers),
        ),
        ("Width".to_string(), s.width.to_string()),
        ("Images".to_string(), s.images.display().to_string()),
        ("Tokens".to_string(), s.tokens),
    ];
    match &s.activations {
        Some(a) => {
            rows.push((
                "Activations".into(),
                format!(
                    "{} rows in {}/{} shards ({})",
                    a.rows,
                    a.shards,
                    a.planned_shards,
                    a.dtype.to_uppercase()
                ),
            ));
            rows.push(("Skipped images".into(), a.skipped_images.to_string()));
        }
        None if s.problems.is_empty() => rows.push(("Activations".into(), "none yet".into())),
        None => {}
    }
    for p in s.problems {
        rows.push(("Cannot read".into(), words::shown(&p)));
    }
    // A job split into tasks on a cluster: each task's state, as `saescope status` shows it
    // (from the files; the window never waits on Slurm's controller).
    if let Ok(status) = crate::ops::cluster::status(dir, false) {
        for stage in status.stages {
            let mut counts: Vec<(&str, usize)> = Vec::new();
            for t in &stage.states {
                match counts.iter_mut().find(|(s, _)| *s == t.state) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((t.state, 1)),
                }
            }
            let not_done: Vec<String> = stage
                .states
                .iter()
                .filter(|t| t.state != "done")
                .map(|t| format!("{} {}", t.task, t.state))
                .collect();
            let what = match &stage.sae {
                Some(sae) => format!("Index tasks ({sae})"),
                None => "Extraction tasks".to_string(),
            };
            let summary: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
            rows.push((
                what,
                format!(
                    "{} of {}{}{}",
                    summary.join(", "),
                    stage.tasks,
                    if stage.merged { ", merged" } else { "" },
                    if not_done.is_empty() {
                        String::new()
                    } else {
                        format!(" (task {})", not_done.join(", task "))
                    }
                ),
            ));
        }
    }
    Ok(rows)
}

impl eframe::App for SaescopeApp {
    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        egui::Panel::top("top_bar").show(ui, |ui| self.top_bar_ui(ui));
        egui::Panel::bottom("status_bar").show(ui, |ui| self.status_bar_ui(ui));
        // Every view starts its jobs on the device chosen here.
        self.steer.device = self.persisted.device;
        if let Some(x) = &mut self.explorer {
            x.device = self.persisted.device;
        }
        // A creation that got to its end is no longer pending, whichever view is showing (the
        // start page opens its workspace when it shows next).
        if self
            .create_job
            .as_ref()
            .is_some_and(|j| matches!(j.state(), jobs::JobState::Done(_)))
        {
            self.persisted.pending_create = None;
        }
        egui::CentralPanel::default().show(ui, |ui| {
            if self.persisted.mode == Mode::Steering {
                self.steer.ui(ui)
            } else if self.open.is_some() {
                self.workspace_ui(ui)
            } else {
                self.start_ui(ui)
            }
        });
        self.save_if_changed(&ui.ctx().clone(), frame);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        self.sync_persisted();
        eframe::set_value(storage, STORAGE_KEY, &self.persisted);
        self.saved = Some((self.persisted.clone(), std::time::Instant::now()));
    }
}

/// Opens the main window. Fails with a message that says how to get a graphics adapter.
pub fn run_native_app(workspace: Option<PathBuf>) -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("saescope")
            .with_inner_size([1200.0, 800.0])
            .with_min_inner_size([640.0, 400.0]),
        ..Default::default()
    };
    eframe::run_native(
        "saescope",
        options,
        Box::new(|cc| {
            let mut app = SaescopeApp::new(cc);
            if let Some(w) = workspace {
                app.open_workspace(w);
            }
            Ok(Box::new(app))
        }),
    )
        .map_err(|e| anyhow::anyhow!(
            "could not open the saescope window: {e}. Without a GPU, install Mesa's software renderer \
             (Debian/Ubuntu: apt-get install mesa-vulkan-drivers libvulkan1 libgl1-mesa-dri libegl1) and make sure \
             a display is available (DISPLAY or WAYLAND_DISPLAY; headless: xvfb-run saescope). The CLI works without a display."
        ))
}

/// An error where it happened: in the app's words, wrapped, with a Dismiss button. It stays
/// until its cause changes or the user dismisses it; returns true when dismissed.
pub(crate) fn error_ui(ui: &mut egui::Ui, error: &Error) -> bool {
    let mut dismissed = false;
    ui.horizontal_top(|ui| {
        dismissed = ui
            .small_button("Dismiss")
            .on_hover_text("Hide this message")
            .clicked();
        ui.add(
            egui::Label::new(
                egui::RichText::new(words::shown(error)).color(ui.visuals().error_fg_color),
            )
            .wrap(),
        );
    });
    dismissed
}
