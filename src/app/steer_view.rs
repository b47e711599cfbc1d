//! The steering view: a diffusion pipeline and a text-encoder SAE, a prompt, sliders on SAE
//! features, and the unsteered and steered images side by side. Dragging regenerates live:
//! changes are debounced, the generation in flight is cancelled, the preview decoder answers
//! first and the full decoder runs once the sliders rest. Training a text SAE and attribute
//! discovery run as background jobs from here too.

use super::dialogs::{Pick, Picker};
use super::jobs::{BackgroundJob, JobState};
use crate::sae::Sae;
use crate::steer::discover::{self, ClipScorer, DiscoverOptions, Discovery};
use crate::steer::edit::{EditMode, FeatureEdit, TokenScope};
use crate::steer::pipeline::{GenerateOptions, Pipeline};
use crate::steer::session::{self, Decoder, default_device};
use candle_core::Tensor;
use image::RgbImage;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Quiet time after the last change before a new generation starts.
const DEBOUNCE: Duration = Duration::from_millis(120);
/// Quiet time before the full decoder replaces the preview.
const REST: Duration = Duration::from_millis(500);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Slider {
    pub feature: usize,
    pub value: f32,
    /// Clamp the feature to `value` instead of adding value·W_dec[f].
    pub clamp: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScopeChoice {
    /// Every position, padding included.
    All,
    /// The prompt's tokens and its EOS.
    Prompt,
    /// Tokens the user picked.
    Chosen,
}

/// What the user set up; remembered between runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SteerSettings {
    pub pipeline: String,
    pub sae: String,
    pub preview_decoder: String,
    /// Where "Train text SAE" writes (its SAE lands in `<folder>/sae`).
    pub train_folder: String,
    pub clip: String,
    pub prompt: String,
    pub seed: u64,
    pub size: usize,
    pub steps: usize,
    /// Which tokens the sliders edit.
    pub scope: ScopeChoice,
    /// Positions edited when `scope` is `Chosen`.
    pub chosen_tokens: Vec<usize>,
    pub sliders: Vec<Slider>,
}

impl Default for SteerSettings {
    fn default() -> Self {
        SteerSettings {
            pipeline: String::new(),
            sae: String::new(),
            preview_decoder: String::new(),
            train_folder: String::new(),
            clip: String::new(),
            prompt: "a watercolor painting of a lighthouse at sunset".into(),
            seed: 0,
            size: 256,
            steps: 0,
            scope: ScopeChoice::All,
            chosen_tokens: Vec::new(),
            sliders: Vec::new(),
        }
    }
}

/// Everything one generation depends on: a change to any of it regenerates.
#[derive(Clone, Debug, PartialEq)]
struct Request {
    prompt: String,
    opts: GenerateOptions,
    edits: Vec<FeatureEdit>,
}

pub struct Loaded {
    pub pipe: Pipeline,
    pub sae: Option<Sae>,
}

/// One side of the comparison.
pub struct Shown {
    pub texture: egui::TextureHandle,
    pub latents: Tensor,
    pub decoder: Decoder,
    pub seconds: f64,
}

struct GenOutput {
    request: Request,
    base: (Tensor, RgbImage),
    steered: (Tensor, RgbImage),
    decoder: Decoder,
    seconds: f64,
    identical: bool,
}

/// A generation (or a full-decoder pass) on its own thread.
struct Task {
    cancel: Arc<AtomicBool>,
    progress: Arc<Mutex<(usize, usize, String)>>,
    result: Arc<Mutex<Option<crate::Result<GenOutput>>>>,
}

impl Task {
    fn spawn(
        ctx: &egui::Context,
        work: impl FnOnce(&AtomicBool, &dyn Fn(usize, usize, &str)) -> crate::Result<GenOutput>
        + Send
        + 'static,
    ) -> Task {
        let cancel = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(Mutex::new((0, 0, String::from("starting"))));
        let result = Arc::new(Mutex::new(None));
        let (c, p, r, ctx) = (
            cancel.clone(),
            progress.clone(),
            result.clone(),
            ctx.clone(),
        );
        std::thread::spawn(move || {
            let ctx2 = ctx.clone();
            let report = move |done: usize, total: usize, what: &str| {
                if let Ok(mut g) = p.lock() {
                    *g = (done, total, what.to_string());
                }
                ctx2.request_repaint();
            };
            let out = work(&c, &report);
            if let Ok(mut g) = r.lock() {
                *g = Some(out);
            }
            ctx.request_repaint();
        });
        Task {
            cancel,
            progress,
            result,
        }
    }

    fn take(&self) -> Option<crate::Result<GenOutput>> {
        self.result.lock().ok()?.take()
    }
}

#[derive(Default)]
pub struct SteerView {
    pub settings: SteerSettings,
    pub loaded: Option<Arc<Loaded>>,
    load_slot: Arc<Mutex<Option<Arc<Loaded>>>>,
    pub jobs: Vec<BackgroundJob>,
    task: Option<Task>,
    /// The request the running task computes.
    running: Option<Request>,
    /// Changed inputs waiting out the debounce.
    pending: Option<(Request, Instant)>,
    /// What the images show.
    pub shown_request: Option<ShownRequest>,
    pub unsteered: Option<Shown>,
    pub steered: Option<Shown>,
    pub identical: bool,
    last_change: Option<Instant>,
    /// A request the user cancelled: not restarted until the inputs change or Generate is pressed.
    cancelled: Option<Request>,
    pub error: Option<String>,
    discovery_slot: Arc<Mutex<Option<Discovery>>>,
    pub discovery: Option<Discovery>,
    discovery_dir: Option<PathBuf>,
    strip_textures: Vec<(String, egui::TextureHandle)>,
    sae_slot: Arc<Mutex<Option<PathBuf>>>,
    pub discover_candidates: usize,
    picker: Picker,
    /// The prompt's tokens (text per position), cached per prompt.
    prompt_tokens: Option<(String, Vec<(usize, String)>)>,
}

/// Opaque wrapper so tests can check which request is shown.
pub struct ShownRequest(Request);

impl SteerView {
    pub fn new(settings: SteerSettings, picker: Picker) -> Self {
        SteerView {
            settings,
            discover_candidates: 6,
            picker,
            ..Default::default()
        }
    }

    /// The edits of the images on screen.
    pub fn shown_edits(&self) -> Vec<FeatureEdit> {
        self.shown_request
            .as_ref()
            .map(|r| r.0.edits.clone())
            .unwrap_or_default()
    }

    /// Is a generation or decoder pass running?
    pub fn busy(&self) -> bool {
        self.task.is_some()
    }

    fn edits(&self) -> Vec<FeatureEdit> {
        let tokens = match self.settings.scope {
            ScopeChoice::All => TokenScope::All,
            ScopeChoice::Prompt => TokenScope::Prompt,
            ScopeChoice::Chosen => TokenScope::Positions(self.settings.chosen_tokens.clone()),
        };
        self.settings
            .sliders
            .iter()
            .map(|s| FeatureEdit {
                feature: s.feature,
                mode: if s.clamp {
                    EditMode::Clamp(s.value)
                } else {
                    EditMode::Add(s.value)
                },
                tokens: tokens.clone(),
            })
            .collect()
    }

    fn request(&self, pipe: &Pipeline) -> Request {
        let d = pipe.default_options();
        let s = &self.settings;
        Request {
            prompt: s.prompt.clone(),
            opts: GenerateOptions {
                seed: s.seed,
                steps: if s.steps == 0 { d.steps } else { s.steps },
                width: s.size,
                height: s.size,
                ..d
            },
            edits: self.edits(),
        }
    }

    fn start_load(&mut self, ctx: &egui::Context) {
        let s = self.settings.clone();
        let slot = self.load_slot.clone();
        self.loaded = None;
        self.unsteered = None;
        self.steered = None;
        self.shown_request = None;
        self.jobs
            .push(BackgroundJob::spawn("Load pipeline", ctx, move |job| {
                let device = default_device(false);
                let preview = Some(s.preview_decoder.trim()).filter(|p| !p.is_empty());
                let pipe = Pipeline::load(s.pipeline.trim(), preview, &device)?;
                job.check()?;
                let sae = match s.sae.trim() {
                    "" => None,
                    p => {
                        let sae = crate::sae::formats::load_sae(Path::new(p))?;
                        sae.check_fits(pipe.embedding_width(), "this pipeline's text encoder")?;
                        Some(sae)
                    }
                };
                let msg = format!(
                    "{} loaded ({} px native{}{})",
                    pipe.name,
                    pipe.native_size,
                    if pipe.preview.is_some() {
                        ", TAESD preview"
                    } else {
                        ""
                    },
                    sae.as_ref()
                        .map(|s| format!(", SAE with {} features", s.d_sae))
                        .unwrap_or_default()
                );
                if let Ok(mut g) = slot.lock() {
                    *g = Some(Arc::new(Loaded { pipe, sae }));
                }
                Ok(msg)
            }));
    }

    /// Starts a generation for `req`, reusing the unsteered image when only sliders changed.
    fn start_generation(&mut self, req: Request, ctx: &egui::Context) {
        let Some(loaded) = self.loaded.clone() else {
            return;
        };
        if let Some(t) = &self.task {
            t.cancel.store(true, Ordering::Relaxed);
        }
        let base_reusable = self
            .shown_request
            .as_ref()
            .is_some_and(|s| s.0.prompt == req.prompt && s.0.opts == req.opts);
        let base = base_reusable
            .then(|| self.unsteered.as_ref().map(|u| u.latents.clone()))
            .flatten();
        self.running = Some(req.clone());
        self.task = Some(Task::spawn(ctx, move |cancel, report| {
            let t0 = Instant::now();
            let pipe = &loaded.pipe;
            let steps = req.opts.steps;
            let any_edit = req.edits.iter().any(|e| !e.is_noop());
            let total = steps * (usize::from(base.is_none()) + usize::from(any_edit));
            let cond = pipe.encode_prompt(&req.prompt)?;
            let mut done = 0;
            let mut step = |what: &str| {
                done += 1;
                report(done, total.max(1), what);
                !cancel.load(Ordering::Relaxed)
            };
            let base_latents = match base {
                Some(l) => l,
                None => pipe.denoise(&cond, &req.opts, &mut |_, _| step("unsteered"))?,
            };
            let base_image = session::decode(pipe, &base_latents, Decoder::Preview)?;
            let (steered, identical) = if any_edit {
                let sae = loaded.sae.as_ref().ok_or_else(|| {
                    crate::Error::Invalid(
                        "sliders need a text-encoder SAE: set one and press Load".into(),
                    )
                })?;
                let edited = crate::steer::edit::apply(sae, &cond, &req.edits)?;
                let l = pipe.denoise(&edited, &req.opts, &mut |_, _| step("steered"))?;
                let img = session::decode(pipe, &l, Decoder::Preview)?;
                ((l, img), false)
            } else {
                ((base_latents.clone(), base_image.clone()), true)
            };
            Ok(GenOutput {
                request: req,
                base: (base_latents, base_image),
                steered,
                decoder: Decoder::Preview,
                seconds: t0.elapsed().as_secs_f64(),
                identical,
            })
        }));
    }

    /// Decodes what is shown with the full VAE.
    fn start_full_decode(&mut self, ctx: &egui::Context) {
        let (Some(loaded), Some(u), Some(s), Some(req)) = (
            self.loaded.clone(),
            self.unsteered.as_ref(),
            self.steered.as_ref(),
            self.shown_request.as_ref(),
        ) else {
            return;
        };
        let (ul, sl, req, identical) = (
            u.latents.clone(),
            s.latents.clone(),
            req.0.clone(),
            self.identical,
        );
        self.running = Some(req.clone());
        self.task = Some(Task::spawn(ctx, move |cancel, report| {
            let t0 = Instant::now();
            report(0, 2, "full decoder");
            let ui = session::decode(&loaded.pipe, &ul, Decoder::Full)?;
            if cancel.load(Ordering::Relaxed) {
                return Err(crate::Error::Cancelled);
            }
            report(1, 2, "full decoder");
            let si = if identical {
                ui.clone()
            } else {
                session::decode(&loaded.pipe, &sl, Decoder::Full)?
            };
            Ok(GenOutput {
                request: req,
                base: (ul, ui),
                steered: (sl, si),
                decoder: Decoder::Full,
                seconds: t0.elapsed().as_secs_f64(),
                identical,
            })
        }));
    }

    /// Picks up finished work and starts what the current inputs need.
    fn drive(&mut self, ctx: &egui::Context) {
        if let Some(l) = self.load_slot.lock().ok().and_then(|mut g| g.take()) {
            self.loaded = Some(l);
            if self.settings.size == 0 {
                self.settings.size = 256;
            }
        }
        if let Some(p) = self.sae_slot.lock().ok().and_then(|mut g| g.take()) {
            self.settings.sae = p.display().to_string();
            self.start_load(ctx);
        }
        if let Some(d) = self.discovery_slot.lock().ok().and_then(|mut g| g.take()) {
            self.discovery = Some(d);
            self.strip_textures.clear();
        }
        if let Some(t) = &self.task
            && let Some(result) = t.take()
        {
            self.task = None;
            self.running = None;
            match result {
                Ok(out) => {
                    let tex = |name: &str, img: &RgbImage| {
                        ctx.load_texture(
                            name,
                            egui::ColorImage::from_rgb(
                                [img.width() as usize, img.height() as usize],
                                img.as_raw(),
                            ),
                            egui::TextureOptions::LINEAR,
                        )
                    };
                    self.unsteered = Some(Shown {
                        texture: tex("steer-unsteered", &out.base.1),
                        latents: out.base.0,
                        decoder: out.decoder,
                        seconds: out.seconds,
                    });
                    self.steered = Some(Shown {
                        texture: tex("steer-steered", &out.steered.1),
                        latents: out.steered.0,
                        decoder: out.decoder,
                        seconds: out.seconds,
                    });
                    self.identical = out.identical;
                    self.shown_request = Some(ShownRequest(out.request));
                    self.error = None;
                }
                Err(crate::Error::Cancelled) => {}
                Err(e) => self.error = Some(e.to_string()),
            }
        }
        let Some(loaded) = self.loaded.clone() else {
            return;
        };
        let want = self.request(&loaded.pipe);
        // A cancelled request stays cancelled only until the inputs change.
        if self.cancelled.as_ref().is_some_and(|c| c != &want) {
            self.cancelled = None;
        }
        let shown_is_wanted = self.shown_request.as_ref().is_some_and(|s| s.0 == want);
        let up_to_date = shown_is_wanted
            || self.running.as_ref() == Some(&want)
            || self.cancelled.as_ref() == Some(&want);
        let now = Instant::now();
        if !up_to_date {
            match &self.pending {
                Some((r, _)) if r == &want => {}
                _ => {
                    self.pending = Some((want.clone(), now));
                    self.last_change = Some(now);
                }
            }
        }
        if let Some((r, since)) = self.pending.clone() {
            if r != want {
                self.pending = None;
            } else if now.duration_since(since) >= DEBOUNCE {
                self.pending = None;
                self.start_generation(r, ctx);
            } else {
                ctx.request_repaint_after(DEBOUNCE);
            }
        }
        // Sliders at rest and the preview on screen: run the full decoder.
        let dragging = ctx.input(|i| i.pointer.any_down());
        let rested = self
            .last_change
            .is_none_or(|t| now.duration_since(t) >= REST);
        let preview_shown = self
            .steered
            .as_ref()
            .is_some_and(|s| s.decoder == Decoder::Preview);
        if self.task.is_none() && self.pending.is_none() && preview_shown && shown_is_wanted {
            if rested && !dragging {
                self.start_full_decode(ctx);
            } else {
                ctx.request_repaint_after(REST);
            }
        }
    }

    pub fn ui(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        self.drive(&ctx);
        for (field, slot) in [
            ("pipeline folder", &mut self.settings.pipeline),
            ("text SAE", &mut self.settings.sae),
            ("preview decoder", &mut self.settings.preview_decoder),
            ("CLIP model", &mut self.settings.clip),
        ] {
            if let Some(p) = self.picker.take(field) {
                *slot = p.display().to_string();
            }
        }
        egui::ScrollArea::vertical()
            .id_salt("steer_scroll")
            .show(ui, |ui| {
                self.setup_ui(ui);
                ui.separator();
                self.controls_ui(ui);
                ui.separator();
                self.images_ui(ui);
                ui.separator();
                self.discovery_ui(ui);
            });
        self.jobs
            .retain(|j| j.state() == JobState::Running || !j.title.starts_with("Load"));
    }

    fn setup_ui(&mut self, ui: &mut egui::Ui) {
        ui.label(egui::RichText::new("Diffusion steering").strong());
        let picker = self.picker.clone();
        egui::Grid::new("steer_setup").num_columns(2).show(ui, |ui| {
            let row = |ui: &mut egui::Ui, caption: &str, value: &mut String, hint: &str, tip: &str, field: &'static str, kind: Pick| {
                let l = ui.label(caption);
                ui.horizontal(|ui| {
                    ui.add(egui::TextEdit::singleline(value).hint_text(hint).desired_width(380.0))
                        .labelled_by(l.id)
                        .on_hover_text(tip);
                    picker.button(ui, field, kind);
                });
                ui.end_row();
            };
            row(ui, "Pipeline folder", &mut self.settings.pipeline, "diffusers folder or id, e.g. stabilityai/sd-turbo",
                "A text-to-image pipeline in diffusers layout (model_index.json, unet/, vae/, text_encoder/, tokenizer/)", "pipeline folder", Pick::Folder);
            row(ui, "Text SAE", &mut self.settings.sae, "SAE folder (e.g. <train folder>/sae)",
                "An SAE trained on this pipeline's text-encoder outputs", "text SAE", Pick::Folder);
            row(ui, "Preview decoder", &mut self.settings.preview_decoder, "optional: TAESD folder or id (madebyollin/taesd)",
                "Fast preview decoder; default: the pipeline's taesd/ folder, else the full VAE", "preview decoder", Pick::Folder);
        });
        ui.horizontal(|ui| {
            let loading = self.jobs.iter().any(|j| j.title == "Load pipeline" && j.state() == JobState::Running);
            if ui
                .add_enabled(!loading && !self.settings.pipeline.trim().is_empty(), egui::Button::new("Load"))
                .on_hover_text("Load the pipeline and the SAE")
                .clicked()
            {
                self.start_load(ui.ctx());
            }
            if let Some(l) = &self.loaded {
                ui.label(format!(
                    "{}: {} text width, {}",
                    l.pipe.name,
                    l.pipe.embedding_width(),
                    l.sae
                        .as_ref()
                        .map(|s| format!("SAE with {} features", s.d_sae))
                        .unwrap_or_else(|| "no SAE (sliders disabled)".into())
                ));
                if l.pipe.missing_added_conditioning {
                    ui.label(egui::RichText::new("SDXL micro-conditioning is not applied (candle's UNet lacks it): images differ from diffusers'").weak());
                }
            }
        });
        if let Some(l) = self.loaded.clone()
            && l.sae.is_none()
        {
            ui.horizontal(|ui| {
                    let cap = ui.label("Train a text SAE into");
                    if self.settings.train_folder.is_empty() {
                        self.settings.train_folder = format!("{}-text-sae", self.settings.pipeline.trim_end_matches('/'));
                    }
                    ui.add(egui::TextEdit::singleline(&mut self.settings.train_folder).desired_width(300.0))
                        .labelled_by(cap.id);
                    let busy = self.jobs.iter().any(|j| j.title == "Train text SAE" && j.state() == JobState::Running);
                    if ui
                        .add_enabled(!busy, egui::Button::new("Train text SAE"))
                        .on_hover_text("Encode ~1,200 built-in prompts and train a TopK SAE on their tokens (4× the text width in features)")
                        .clicked()
                    {
                        let out = PathBuf::from(self.settings.train_folder.trim());
                        let source = self.settings.pipeline.trim().to_string();
                        let slot = self.sae_slot.clone();
                        self.jobs.push(BackgroundJob::spawn("Train text SAE", ui.ctx(), move |job| {
                            let opts = crate::steer::corpus::default_train_options(l.pipe.embedding_width());
                            let r = crate::steer::corpus::train_text_sae(&l.pipe, &source, None, &out, &opts, job)?;
                            if let Ok(mut g) = slot.lock() {
                                *g = Some(out.join(crate::sae::workflow::SAE_DIR));
                            }
                            Ok(format!("{} tokens from {} prompts; FVE {:.3}", r.tokens, r.prompts, r.train.final_fve))
                        }));
                    }
                });
        }
        for j in &self.jobs {
            j.ui(ui);
        }
        if let Some(e) = &self.error {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
    }

    fn controls_ui(&mut self, ui: &mut egui::Ui) {
        let Some(loaded) = self.loaded.clone() else {
            ui.label("Load a pipeline to generate.");
            return;
        };
        let l = ui.label("Prompt");
        ui.add(egui::TextEdit::singleline(&mut self.settings.prompt).desired_width(f32::INFINITY))
            .labelled_by(l.id)
            .on_hover_text("The text the image is generated from");
        ui.horizontal(|ui| {
            let l = ui.label("Seed");
            ui.add(egui::DragValue::new(&mut self.settings.seed))
                .labelled_by(l.id)
                .on_hover_text("Same seed, same noise: steered and unsteered share it");
            let l = ui.label("Size");
            egui::ComboBox::from_id_salt("steer_size")
                .selected_text(format!("{} px", self.settings.size))
                .show_ui(ui, |ui| {
                    let native = loaded.pipe.native_size;
                    let mut sizes = vec![128, 256, 384, 512];
                    if !sizes.contains(&native) {
                        sizes.push(native);
                    }
                    for s in sizes {
                        ui.selectable_value(&mut self.settings.size, s, format!("{s} px"));
                    }
                })
                .response
                .labelled_by(l.id)
                .on_hover_text("Smaller is much faster on a CPU");
            let l = ui.label("Steps");
            ui.add(
                egui::DragValue::new(&mut self.settings.steps)
                    .range(0..=50)
                    .custom_formatter(|v, _| {
                        if v == 0.0 {
                            "model default".into()
                        } else {
                            format!("{v}")
                        }
                    }),
            )
            .labelled_by(l.id)
            .on_hover_text("0: the model's default (1 for Turbo models)");
        });
        self.tokens_ui(ui, &loaded.pipe);
        let d_sae = loaded.sae.as_ref().map_or(0, |s| s.d_sae);
        let mut remove = None;
        let labels = self.discovery_labels();
        for (i, s) in self.settings.sliders.iter_mut().enumerate() {
            ui.horizontal(|ui| {
                let l = ui.label("Feature");
                ui.add(egui::DragValue::new(&mut s.feature).range(0..=d_sae.saturating_sub(1)))
                    .labelled_by(l.id)
                    .on_hover_text("SAE feature id");
                let caption = ui.label(format!("Strength of slider {}", i + 1));
                ui.add(egui::Slider::new(&mut s.value, -20.0..=20.0).step_by(0.25))
                    .labelled_by(caption.id)
                    .on_hover_text(if s.clamp {
                        "Clamp the feature to this activation"
                    } else {
                        "Add this multiple of the feature's decoder direction"
                    });
                ui.checkbox(&mut s.clamp, "Clamp")
                    .on_hover_text("Set the feature's activation instead of adding its direction");
                if ui
                    .button("0")
                    .on_hover_text("Reset this slider to zero")
                    .clicked()
                {
                    s.value = 0.0;
                }
                if ui
                    .button("Remove")
                    .on_hover_text("Remove this slider")
                    .clicked()
                {
                    remove = Some(i);
                }
                if let Some(t) = labels.iter().find(|(f, _)| *f == s.feature).map(|(_, t)| t) {
                    ui.label(egui::RichText::new(t).weak());
                }
            });
        }
        if let Some(i) = remove {
            self.settings.sliders.remove(i);
        }
        ui.horizontal(|ui| {
            if ui
                .add_enabled(d_sae > 0, egui::Button::new("Add slider"))
                .on_hover_text("Steer with another SAE feature")
                .clicked()
            {
                let next = self
                    .settings
                    .sliders
                    .last()
                    .map_or(0, |s| (s.feature + 1) % d_sae.max(1));
                self.settings.sliders.push(Slider {
                    feature: next,
                    value: 0.0,
                    clamp: false,
                });
            }
            if self.busy() {
                let (done, total, what) = self
                    .task
                    .as_ref()
                    .and_then(|t| t.progress.lock().ok().map(|g| g.clone()))
                    .unwrap_or_default();
                ui.add(
                    egui::ProgressBar::new(if total > 0 {
                        done as f32 / total as f32
                    } else {
                        0.0
                    })
                    .desired_width(160.0)
                    .text(format!("{what} {done}/{total}")),
                );
                if ui
                    .button("Cancel")
                    .on_hover_text("Stop this generation")
                    .clicked()
                {
                    if let Some(t) = &self.task {
                        t.cancel.store(true, Ordering::Relaxed);
                    }
                    self.cancelled = self.running.clone();
                }
            } else if self.cancelled.is_some() {
                ui.label("Cancelled.");
                if ui
                    .button("Generate")
                    .on_hover_text("Run the cancelled generation")
                    .clicked()
                {
                    self.cancelled = None;
                }
            }
        });
    }

    /// Which tokens the sliders edit: all, the prompt's, or ones picked from the prompt.
    fn tokens_ui(&mut self, ui: &mut egui::Ui, pipe: &Pipeline) {
        if self
            .prompt_tokens
            .as_ref()
            .is_none_or(|(p, _)| *p != self.settings.prompt)
        {
            let t = pipe.prompt_tokens(&self.settings.prompt);
            self.prompt_tokens = Some((self.settings.prompt.clone(), t));
        }
        ui.horizontal_wrapped(|ui| {
            let l = ui.label("Steer tokens");
            egui::ComboBox::from_id_salt("steer_scope")
                .selected_text(match self.settings.scope {
                    ScopeChoice::All => "all 77 positions",
                    ScopeChoice::Prompt => "the prompt's tokens",
                    ScopeChoice::Chosen => "chosen tokens",
                })
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut self.settings.scope, ScopeChoice::All, "all 77 positions");
                    ui.selectable_value(&mut self.settings.scope, ScopeChoice::Prompt, "the prompt's tokens");
                    ui.selectable_value(&mut self.settings.scope, ScopeChoice::Chosen, "chosen tokens");
                })
                .response
                .labelled_by(l.id)
                .on_hover_text("Positions the sliders edit: every one (padding too: the UNet attends to all), the prompt's own tokens and EOS, or the ones you pick");
            if self.settings.scope == ScopeChoice::Chosen {
                let tokens = self.prompt_tokens.as_ref().map(|(_, t)| t.clone()).unwrap_or_default();
                for (pos, text) in tokens {
                    let on = self.settings.chosen_tokens.contains(&pos);
                    if ui
                        .selectable_label(on, text.to_string())
                        .on_hover_text(format!("token {pos}: click to steer it or not"))
                        .clicked()
                    {
                        if on {
                            self.settings.chosen_tokens.retain(|&p| p != pos);
                        } else {
                            self.settings.chosen_tokens.push(pos);
                            self.settings.chosen_tokens.sort_unstable();
                        }
                    }
                }
            }
        });
    }

    fn images_ui(&mut self, ui: &mut egui::Ui) {
        let (Some(u), Some(s)) = (&self.unsteered, &self.steered) else {
            if self.loaded.is_some() {
                ui.label("Generating…");
            }
            return;
        };
        let side = ((ui.available_width() - 24.0) / 2.0).clamp(96.0, 360.0);
        ui.horizontal(|ui| {
            for (title, shown) in [("Unsteered", u), ("Steered", s)] {
                ui.vertical(|ui| {
                    ui.label(egui::RichText::new(title).strong());
                    let decoder = match shown.decoder {
                        Decoder::Preview => "preview decoder",
                        Decoder::Full => "full decoder",
                    };
                    // Timings go in the tooltip: they vary run to run.
                    ui.add(
                        egui::Image::new(&shown.texture)
                            .fit_to_exact_size(egui::vec2(side, side))
                            .alt_text(title),
                    )
                    .on_hover_text(format!("{decoder}: {:.2} s", shown.seconds));
                    ui.label(egui::RichText::new(decoder).weak());
                });
            }
        });
        if self.identical {
            ui.label(
                egui::RichText::new(
                    "No slider is active: the steered image is the unsteered one, bit for bit.",
                )
                .weak(),
            );
        }
    }

    fn discovery_labels(&self) -> Vec<(usize, String)> {
        self.discovery
            .as_ref()
            .map(|d| {
                d.ranking
                    .iter()
                    .filter_map(|r| {
                        r.effects.first().map(|e| {
                            (
                                r.feature,
                                format!(
                                    "{} {}",
                                    if e.mean_delta >= 0.0 { "more" } else { "less" },
                                    e.attribute
                                ),
                            )
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn discovery_ui(&mut self, ui: &mut egui::Ui) {
        egui::CollapsingHeader::new("Attribute discovery")
            .default_open(self.discovery.is_some())
            .show(ui, |ui| {
                let picker = self.picker.clone();
                ui.horizontal(|ui| {
                    let l = ui.label("CLIP model");
                    ui.add(egui::TextEdit::singleline(&mut self.settings.clip).hint_text("CLIP folder or id, e.g. openai/clip-vit-base-patch32").desired_width(320.0))
                        .labelled_by(l.id)
                        .on_hover_text("Scores each image against the attribute vocabulary (zero-shot)");
                    picker.button(ui, "CLIP model", Pick::Folder);
                    let l = ui.label("Candidates");
                    ui.add(egui::DragValue::new(&mut self.discover_candidates).range(1..=64)).labelled_by(l.id);
                });
                let ready = self.loaded.as_ref().is_some_and(|l| l.sae.is_some()) && !self.settings.clip.trim().is_empty();
                let busy = self.jobs.iter().any(|j| j.title == "Discover attributes" && j.state() == JobState::Running);
                if ui
                    .add_enabled(ready && !busy, egui::Button::new("Discover attributes"))
                    .on_hover_text("Generate at −α, 0, +α for the features most active on three prompts × two seeds, score with CLIP, rank")
                    .clicked()
                {
                    self.start_discovery(ui.ctx());
                }
                if let Some(dir) = &self.discovery_dir
                    && self.discovery.is_some() {
                        ui.label(format!("Written to {} (ranking) and {} (labelled-feature export)",
                            dir.join(discover::DISCOVERY_FILE).display(), dir.join(discover::EXPORT_FILE).display()));
                    }
                let Some(d) = &self.discovery else { return };
                let dir = self.discovery_dir.clone().unwrap_or_default();
                let mut add = None;
                for r in &d.ranking {
                    ui.horizontal(|ui| {
                        let best = r.effects.first();
                        ui.label(format!("#{} feature {}", r.feature, r.feature));
                        if let Some(e) = best {
                            ui.label(format!("{} {}  (Δp {:+.3}, consistency {:.0}%)",
                                if e.mean_delta >= 0.0 { "more" } else { "less" }, e.attribute, e.mean_delta, 100.0 * e.consistency));
                        }
                        if let Some(strip) = r.strips.first() {
                            let tex = match self.strip_textures.iter().find(|(n, _)| n == strip) {
                                Some((_, t)) => Some(t.clone()),
                                None => crate::store::dataset::load_rgb(&dir.join(strip)).ok().map(|img| {
                                    let t = ui.ctx().load_texture(strip.clone(), egui::ColorImage::from_rgb([img.width() as usize, img.height() as usize], img.as_raw()), egui::TextureOptions::LINEAR);
                                    self.strip_textures.push((strip.clone(), t.clone()));
                                    t
                                }),
                            };
                            if let Some(t) = tex {
                                ui.add(egui::Image::new(&t).fit_to_exact_size(egui::vec2(144.0, 48.0)).alt_text(format!("feature {} at −α, 0, +α", r.feature)));
                            }
                        }
                        if ui.button(format!("Use feature {}", r.feature)).on_hover_text("Add a slider for this feature at +α").clicked() {
                            add = Some((r.feature, r.alpha));
                        }
                    });
                }
                if let Some((f, a)) = add {
                    self.settings.sliders.push(Slider { feature: f, value: a.clamp(-20.0, 20.0), clamp: false });
                }
            });
    }

    fn start_discovery(&mut self, ctx: &egui::Context) {
        let Some(loaded) = self.loaded.clone() else {
            return;
        };
        let clip = self.settings.clip.trim().to_string();
        let out = PathBuf::from(if self.settings.train_folder.trim().is_empty() {
            format!("{}-discovery", self.settings.pipeline.trim_end_matches('/'))
        } else {
            format!(
                "{}/discovery",
                self.settings.train_folder.trim_end_matches('/')
            )
        });
        self.discovery_dir = Some(out.clone());
        let slot = self.discovery_slot.clone();
        let req = self.request(&loaded.pipe);
        let candidates = self.discover_candidates;
        self.jobs.push(BackgroundJob::spawn(
            "Discover attributes",
            ctx,
            move |job| {
                let Some(sae) = loaded.sae.as_ref() else {
                    return Err(crate::Error::Invalid("discovery needs a text SAE".into()));
                };
                let scorer = ClipScorer::load(&clip, None, &loaded.pipe.device)?;
                let opts = DiscoverOptions {
                    prompts: discover::DEFAULT_PROMPTS
                        .iter()
                        .map(|s| s.to_string())
                        .collect(),
                    seeds: vec![0, 1],
                    features: Vec::new(),
                    candidates,
                    alpha: None,
                    attributes: discover::BUILTIN_ATTRIBUTES
                        .iter()
                        .map(|s| s.to_string())
                        .collect(),
                    generate: req.opts,
                };
                let d = discover::discover(&loaded.pipe, sae, &scorer, &opts, &out, job)?;
                let n = d.ranking.len();
                if let Ok(mut g) = slot.lock() {
                    *g = Some(d);
                }
                Ok(format!("{n} features ranked"))
            },
        ));
    }
}
