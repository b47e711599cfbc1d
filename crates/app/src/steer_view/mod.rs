//! The steering view: a diffusion pipeline and a text-encoder SAE, a prompt, sliders on SAE
//! features, and the unsteered and steered images side by side. Dragging regenerates live:
//! changes are debounced, the generation in flight is cancelled, the preview decoder answers
//! first and the full decoder runs once the sliders rest. Training a text SAE and attribute
//! discovery run as background jobs from here too. The panels have their own files.

mod controls;
mod discovery;
mod setup;

use super::dialogs::{Pick, Picker};
use super::jobs::{BackgroundJob, Ended, JobOutput, JobState};
use crate::job::{Job, Progress};
pub use crate::ops::steering::Loaded;
use crate::steer::discover::{self, Discovery};
use crate::steer::edit::{EditMode, FeatureEdit, TokenScope};
use crate::steer::pipeline::{GenerateOptions, Pipeline};
use crate::steer::session::{self, Decoder};
use candle_core::Tensor;
use image::RgbImage;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
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
    /// Show where the steered image differs from the unsteered one.
    pub show_difference: bool,
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
            show_difference: false,
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
    /// The unsteered latents were an earlier pair's (only sliders changed).
    base_reused: bool,
}

/// A generation (or a full-decoder pass) on its own thread, and the images it hands back.
struct Task {
    job: BackgroundJob,
    output: JobOutput<GenOutput>,
}

impl Task {
    fn spawn(
        ctx: &egui::Context,
        work: impl FnOnce(&Job) -> crate::Result<GenOutput> + Send + 'static,
    ) -> Task {
        let (job, output) = BackgroundJob::spawn_with_output("Generate", ctx, move |job| {
            Ok((work(job)?, String::new()))
        });
        Task { job, output }
    }

    /// The finished generation's images or why there are none; `None` while it runs.
    fn take(&self) -> Option<Result<GenOutput, crate::Failure>> {
        Some(match self.output.ended(&self.job)? {
            Ended::Done(out) => Ok(out),
            Ended::Failed(e) => Err(e),
            Ended::Cancelled => Err(crate::Failure::new(crate::Error::Cancelled)),
        })
    }
}

/// A generation's progress: denoising steps of one side, or decoder passes.
fn report(job: &Job, done: usize, total: usize, unit: &'static str, what: &str) {
    job.report(Progress {
        done: done as u64,
        total: total as u64,
        unit,
        message: what.to_string(),
    });
}

#[derive(Default)]
pub struct SteerView {
    pub settings: SteerSettings,
    /// Where the pipeline is loaded (the app's status-bar choice).
    pub device: crate::device::DeviceChoice,
    pub loaded: Option<Arc<Loaded>>,
    /// The pipeline being loaded (handed over when the load job finishes).
    load_output: Option<JobOutput<Arc<Loaded>>>,
    pub jobs: Vec<BackgroundJob>,
    /// The "All jobs" window is open.
    show_all_jobs: bool,
    task: Option<Task>,
    /// The request the running task computes.
    running: Option<Request>,
    /// Changed inputs waiting out the debounce.
    pending: Option<(Request, Instant)>,
    /// What the images show.
    pub shown_request: Option<ShownRequest>,
    pub unsteered: Option<Shown>,
    pub steered: Option<Shown>,
    /// Where the last pair differs (same decoder on both sides), and the mean |Δ| (0–255).
    pub difference: Option<(egui::TextureHandle, f64)>,
    pub identical: bool,
    last_change: Option<Instant>,
    /// A request the user cancelled: not restarted until the inputs change or Generate is pressed.
    cancelled: Option<Request>,
    pub error: Option<crate::Failure>,
    discovery_output: Option<JobOutput<Discovery>>,
    pub discovery: Option<Discovery>,
    discovery_dir: Option<PathBuf>,
    strip_textures: Vec<(String, egui::TextureHandle)>,
    /// The text SAE being trained (its folder, loaded when the job finishes).
    sae_output: Option<JobOutput<PathBuf>>,
    pub discover_candidates: usize,
    picker: Picker,
    /// The SAE features active on a prompt, and the job finding them for another prompt.
    prompt_features: Option<(String, Vec<session::PromptFeature>)>,
    prompt_features_job: Option<(
        String,
        BackgroundJob,
        JobOutput<Vec<session::PromptFeature>>,
    )>,
    /// The prompt's tokens (text per position), cached per prompt.
    prompt_tokens: Option<(String, Vec<(usize, String)>)>,
}

/// Opaque wrapper so tests can check which request is shown.
pub struct ShownRequest(Request);

impl SteerView {
    pub fn new(settings: SteerSettings, picker: Picker) -> Self {
        SteerView {
            settings,
            device: Default::default(),
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
        let device = self.device;
        // The loaded pipeline stays in use until the new one is ready: a load that fails
        // leaves it working, its error beside it (`use_loaded` switches over).
        self.jobs.retain(|j| !j.title.starts_with("Load"));
        let (job, output) = BackgroundJob::spawn_with_output("Load pipeline", ctx, move |job| {
            let request = crate::ops::steering::LoadRequest {
                pipeline: s.pipeline.trim().to_string(),
                preview_decoder: Some(s.preview_decoder.trim().to_string()),
                sae: Some(s.sae.trim())
                    .filter(|p| !p.is_empty())
                    .map(PathBuf::from),
                device,
            };
            let loaded = crate::ops::steering::load(&request, job)?;
            let (pipe, sae) = (&loaded.pipe, &loaded.sae);
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
            Ok((Arc::new(loaded), msg))
        });
        self.jobs.push(job);
        self.load_output = Some(output);
    }

    /// Switches to a newly loaded pipeline: what the old one made (images, the generation in
    /// flight, the features found on the prompt) no longer applies.
    fn use_loaded(&mut self, loaded: Arc<Loaded>) {
        if let Some(t) = self.task.take() {
            t.job.cancel();
        }
        self.running = None;
        self.pending = None;
        self.cancelled = None;
        self.unsteered = None;
        self.steered = None;
        self.difference = None;
        self.shown_request = None;
        self.prompt_features = None;
        self.prompt_features_job = None;
        self.error = None;
        self.loaded = Some(loaded);
        if self.settings.size == 0 {
            self.settings.size = 256;
        }
    }

    /// Starts a generation for `req`, reusing the unsteered image when only sliders changed.
    fn start_generation(&mut self, req: Request, ctx: &egui::Context) {
        let Some(loaded) = self.loaded.clone() else {
            return;
        };
        if let Some(t) = &self.task {
            t.job.cancel();
        }
        let base_reusable = self
            .shown_request
            .as_ref()
            .is_some_and(|s| s.0.prompt == req.prompt && s.0.opts == req.opts);
        let base = base_reusable
            .then(|| self.unsteered.as_ref().map(|u| u.latents.clone()))
            .flatten();
        let base_reused = base.is_some();
        self.running = Some(req.clone());
        self.task = Some(Task::spawn(ctx, move |job| {
            if loaded.sae.is_none() && req.edits.iter().any(|e| !e.is_noop()) {
                return Err(crate::Error::Invalid(
                    "sliders need a text-encoder SAE: set one and press Load".into(),
                ));
            }
            let pair = session::steered_pair(
                &loaded.pipe,
                loaded.sae.as_ref(),
                &req.prompt,
                &req.edits,
                &req.opts,
                Decoder::Preview,
                base,
                &mut |done, total, side| {
                    report(job, done, total, "steps", side);
                    job.check().is_ok()
                },
            )?;
            Ok(GenOutput {
                request: req,
                base: pair.base,
                base_reused,
                steered: pair.steered,
                decoder: Decoder::Preview,
                seconds: pair.seconds,
                identical: pair.identical,
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
        self.task = Some(Task::spawn(ctx, move |job| {
            let t0 = Instant::now();
            report(job, 0, 2, "images", "full decoder");
            let ui = session::decode(&loaded.pipe, &ul, Decoder::Full)?;
            job.check()?;
            report(job, 1, 2, "images", "full decoder");
            let si = if identical {
                ui.clone()
            } else {
                session::decode(&loaded.pipe, &sl, Decoder::Full)?
            };
            Ok(GenOutput {
                request: req,
                base: (ul, ui),
                base_reused: false,
                steered: (sl, si),
                decoder: Decoder::Full,
                seconds: t0.elapsed().as_secs_f64(),
                identical,
            })
        }));
    }

    /// Picks up finished work and starts what the current inputs need.
    fn drive(&mut self, ctx: &egui::Context) {
        if let Some(l) = self.load_output.as_ref().and_then(JobOutput::take) {
            self.use_loaded(l);
        }
        if let Some(p) = self.sae_output.as_ref().and_then(JobOutput::take) {
            self.settings.sae = p.display().to_string();
            self.start_load(ctx);
        }
        if let Some(d) = self.discovery_output.as_ref().and_then(JobOutput::take) {
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
                    // While sliders move, an unsteered image already through the full decoder
                    // stays (its latents are the ones reused), not replaced by a preview.
                    let keep_unsteered = out.base_reused
                        && self
                            .unsteered
                            .as_ref()
                            .is_some_and(|u| u.decoder == Decoder::Full);
                    if !keep_unsteered {
                        self.unsteered = Some(Shown {
                            texture: tex("steer-unsteered", &out.base.1),
                            latents: out.base.0,
                            decoder: out.decoder,
                            seconds: out.seconds,
                        });
                    }
                    // Compared through the same decoder, so the difference is the steering's.
                    self.difference = session::difference_image(&out.base.1, &out.steered.1, 4.0)
                        .map(|img| {
                            let mean = session::mean_abs_diff(&out.base.1, &out.steered.1);
                            (tex("steer-difference", &img), mean)
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
                Err(e) if matches!(*e, crate::Error::Cancelled) => {}
                Err(e) => self.error = Some(e),
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
        // A finished load leaves the list; a failed one stays, with its error, until the next load.
        self.jobs.retain(|j| {
            !j.title.starts_with("Load")
                || matches!(j.state(), JobState::Running | JobState::Failed(_))
        });
    }
}
