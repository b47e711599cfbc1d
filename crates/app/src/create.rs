//! The "new workspace" flow: image folder (typed or dropped on the window), model, layer, then
//! train a new SAE or load an SAE file — run as one background pipeline (extract → SAE → index)
//! whose stages all resume, so an interrupted creation continues after a restart.

use crate::backbone::{ModelSpec, PosInterpolation};
use crate::jobs::BackgroundJob;
use crate::sae::workflow::TrainOptions;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Everything needed to (re)run a creation; persisted so it can resume after a restart.
/// Its `Default` is the form's starting state (also used for fields missing from saved state).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CreateRequest {
    pub images: String,
    pub model: String,
    /// JSON config for `.pth` models (optional).
    pub model_config: String,
    pub layer: usize,
    pub workspace: String,
    /// Load this SAE instead of training one.
    pub sae_file: String,
    pub d_sae: usize,
    pub k: usize,
    /// Training tokens in millions (0: 10 passes over the activations).
    pub train_mtokens: f32,
    /// How DINOv2 resizes its position table (transformers 5 or the original code).
    pub pos_interpolation: PosInterpolation,
}

impl Default for CreateRequest {
    fn default() -> Self {
        CreateRequest {
            images: String::new(),
            model: String::new(),
            model_config: String::new(),
            layer: 3,
            workspace: String::new(),
            sae_file: String::new(),
            d_sae: 2048,
            k: 16,
            train_mtokens: 0.0,
            pos_interpolation: PosInterpolation::Transformers,
        }
    }
}

impl CreateRequest {
    pub fn new() -> Self {
        Self::default()
    }

    /// What is missing, in words; None when the request can run.
    pub fn problem(&self) -> Option<String> {
        if self.images.trim().is_empty() {
            return Some("choose an image folder (type it or drop it on the window)".into());
        }
        if self.model.trim().is_empty() {
            return Some("choose a model: a Hugging Face id, a local folder or a .pth file".into());
        }
        if self.workspace.trim().is_empty() {
            return Some("choose where the workspace goes".into());
        }
        if self.sae_file.trim().is_empty()
            && (self.d_sae == 0 || self.k == 0 || self.k > self.d_sae)
        {
            return Some("an SAE needs d_sae > 0 and 0 < k ≤ d_sae".into());
        }
        None
    }

    /// Runs the whole pipeline (each stage resumes what an earlier run left).
    pub fn run(
        &self,
        device: crate::device::DeviceChoice,
        job: &crate::job::Job,
    ) -> crate::Result<String> {
        let config =
            (!self.model_config.trim().is_empty()).then(|| PathBuf::from(self.model_config.trim()));
        let mut spec = ModelSpec::from_cli(self.model.trim(), config.as_deref())?;
        // Recorded only when it differs from the default, which is what models other than
        // DINOv2 ignore anyway.
        spec.pos_interpolation = (self.pos_interpolation != PosInterpolation::Transformers)
            .then_some(self.pos_interpolation);
        let train = topk_options(self.d_sae, self.k, self.train_mtokens as f64);
        let sae_file = self.sae_file.trim();
        let r = crate::ops::create::create(
            &crate::ops::create::CreateRequest {
                model: spec,
                device,
                layer: self.layer,
                images: PathBuf::from(self.images.trim()),
                workspace: PathBuf::from(self.workspace.trim()),
                sae_file: (!sae_file.is_empty()).then(|| PathBuf::from(sae_file)),
                train,
            },
            job,
        )?;
        Ok(format!(
            "{} images, {} features indexed, {} labelled from classes ({} skipped images)",
            r.extracted_images, r.features, r.labelled_from_classes, r.skipped_images
        ))
    }
}

/// How long the folder, model and layer must stay as they are before the estimate (which loads
/// the model and times it) starts.
const ESTIMATE_SETTLE: std::time::Duration = std::time::Duration::from_millis(400);

/// The form; returns true when the user pressed Create. `device` is where the estimate's
/// forward pass is timed (where the creation would run).
pub fn form_ui(
    ui: &mut egui::Ui,
    req: &mut CreateRequest,
    busy: bool,
    picker: &crate::dialogs::Picker,
    device: crate::device::DeviceChoice,
) -> bool {
    use crate::dialogs::Pick;
    // Answers from file dialogs opened in earlier frames.
    for (field, slot) in [
        ("image folder", &mut req.images),
        ("model", &mut req.model),
        ("model config", &mut req.model_config),
        ("workspace folder", &mut req.workspace),
        ("SAE file", &mut req.sae_file),
    ] {
        if let Some(p) = picker.take(field) {
            *slot = p.display().to_string();
        }
    }
    // A folder dropped on the window becomes the image folder.
    let dropped: Option<PathBuf> = ui.ctx().input(|i| {
        i.raw
            .dropped_files
            .iter()
            .find(|f| !f.path().as_os_str().is_empty())
            .map(|f| f.path().to_path_buf())
    });
    if let Some(p) = dropped.filter(|p| p.is_dir()) {
        req.images = p.display().to_string();
        if req.workspace.is_empty() {
            req.workspace = format!("{}-saescope", p.display());
        }
    }
    let mut go = false;
    // The model's layer count once the model field names one that loads.
    let mut n_layers: Option<usize> = None;
    // Whether the image folder and the model are known to be usable (the estimate needs both).
    let (mut folder_ok, mut model_ok) = (false, false);
    // Whether the typed SAE file is known not to load (the reason is shown under the field).
    let mut sae_fails = false;
    // Each field is labelled by its caption (screen readers and UI tests find it by name).
    let text_row = |ui: &mut egui::Ui,
                    caption: &str,
                    value: &mut String,
                    hint: &str,
                    tip: &str,
                    browse: Option<(&'static str, Pick)>| {
        let l = ui.label(caption);
        ui.horizontal(|ui| {
            ui.add(
                egui::TextEdit::singleline(value)
                    .hint_text(hint)
                    .desired_width(360.0),
            )
            .labelled_by(l.id)
            .on_hover_text(tip);
            if let Some((field, kind)) = browse {
                picker.button(ui, field, kind);
            }
        });
        ui.end_row();
    };
    egui::Grid::new("create_form")
        .num_columns(2)
        .show(ui, |ui| {
            text_row(
                ui,
                "Image folder",
                &mut req.images,
                "folder of images (drop one here)",
                "Class sub-folders become class labels",
                Some(("image folder", Pick::Folder)),
            );
            // What the typed folder holds (a row only once something is typed).
            if !req.images.trim().is_empty() {
                ui.label("");
                let folder = crate::live_hint::live_hint(
                    ui,
                    "images",
                    &req.images,
                    crate::live_hint::describe_folder,
                );
                folder_ok = matches!(folder, Some(Ok(_)));
                ui.end_row();
            }
            text_row(
                ui,
                "Model",
                &mut req.model,
                "openai/clip-vit-base-patch32, a folder, or a .pth",
                "Hugging Face id, local folder, or PyTorch .pth ViT",
                Some(("model", Pick::File)),
            );
            text_row(
                ui,
                "Model config (.pth)",
                &mut req.model_config,
                "optional JSON config for .pth ViTs",
                "heads, norm placement, mean/std (see docs/FORMATS.md)",
                Some(("model config", Pick::File)),
            );
            // The typed model's layers and width (a row only once something is typed).
            if !req.model.trim().is_empty() {
                ui.label("");
                let model_key = format!("{}\0{}", req.model.trim(), req.model_config.trim());
                let model = crate::live_hint::live_hint(
                    ui,
                    "model",
                    &model_key,
                    crate::live_hint::describe_model,
                );
                model_ok = matches!(model, Some(Ok(_)));
                n_layers = model.and_then(|a| a.ok()).and_then(|a| a.layers);
                ui.end_row();
            }
            let l = ui.label("DINOv2 positions");
            egui::ComboBox::from_id_salt("pos_interpolation")
                .selected_text(match req.pos_interpolation {
                    PosInterpolation::Transformers => "transformers (Hugging Face)",
                    PosInterpolation::Original => "original (torch.hub, saev)",
                })
                .show_ui(ui, |ui| {
                    ui.selectable_value(
                        &mut req.pos_interpolation,
                        PosInterpolation::Transformers,
                        "transformers (Hugging Face)",
                    );
                    ui.selectable_value(
                        &mut req.pos_interpolation,
                        PosInterpolation::Original,
                        "original (torch.hub, saev)",
                    );
                })
                .response
                .labelled_by(l.id)
                .on_hover_text(
                    "How DINOv2 resizes its position table to the input grid: the two reference \
                     codes differ, so pick the one your SAE was trained with",
                );
            ui.end_row();
            let l = ui.label("Layer");
            ui.horizontal(|ui| {
                ui.add(egui::DragValue::new(&mut req.layer).range(0..=64))
                    .labelled_by(l.id)
                    .on_hover_text("Residual stream after this block (0-based)");
                if let Some(n) = n_layers
                    && req.layer >= n
                {
                    ui.colored_label(
                        ui.visuals().error_fg_color,
                        format!("this model has layers 0 to {}", n - 1),
                    );
                }
            });
            ui.end_row();
            // Once the folder and the model are known: the store's size and a rough time.
            if folder_ok && model_ok && n_layers.is_none_or(|n| req.layer < n) {
                ui.label("Estimate");
                let key = crate::live_hint::estimate_key(
                    &req.images,
                    &req.model,
                    &req.model_config,
                    req.layer,
                    device,
                );
                crate::live_hint::live_hint_settled(
                    ui,
                    "estimate",
                    &key,
                    crate::live_hint::describe_estimate,
                    ESTIMATE_SETTLE,
                );
                ui.end_row();
            }
            text_row(
                ui,
                "Workspace folder",
                &mut req.workspace,
                "where activations and results go",
                "Created if missing; an unfinished one resumes",
                Some(("workspace folder", Pick::Folder)),
            );
            text_row(
                ui,
                "SAE file (optional)",
                &mut req.sae_file,
                "load an SAE instead of training one",
                "SAELens, saev, dictionary_learning, sparsify or OpenAI layout",
                Some(("SAE file", Pick::File)),
            );
            if req.sae_file.trim().is_empty() {
                new_topk_fields(ui, &mut req.d_sae, &mut req.k, &mut req.train_mtokens);
                ui.end_row();
            } else {
                ui.label("");
                let sae = crate::live_hint::live_hint(
                    ui,
                    "sae_file",
                    &req.sae_file,
                    crate::live_hint::describe_sae,
                );
                sae_fails = matches!(sae, Some(Err(_)));
                ui.end_row();
            }
        });
    let problem = req
        .problem()
        .or_else(|| {
            n_layers.filter(|&n| req.layer >= n).map(|n| {
                format!(
                    "layer {} does not exist: the model has layers 0 to {}",
                    req.layer,
                    n - 1
                )
            })
        })
        .or(sae_fails.then(|| "the SAE file cannot be loaded (see above)".to_string()));
    ui.horizontal(|ui| {
        let create = ui.add_enabled(
            problem.is_none() && !busy,
            egui::Button::new("Create workspace"),
        );
        if create
            .on_hover_text("Extract activations, train or load the SAE, build the index")
            .clicked()
        {
            go = true;
        }
        if let Some(p) = problem {
            ui.label(egui::RichText::new(p).weak());
        }
    });
    go
}

/// The grid row of a new TopK SAE's settings (features, k, training tokens in millions), in the
/// new-workspace form and for a workspace without an SAE.
pub fn new_topk_fields<T: egui::emath::Numeric>(
    ui: &mut egui::Ui,
    d_sae: &mut usize,
    k: &mut usize,
    mtokens: &mut T,
) {
    ui.label("New TopK SAE");
    ui.horizontal(|ui| {
        let l = ui.label("features");
        ui.add(egui::DragValue::new(d_sae).range(16..=131072))
            .labelled_by(l.id);
        let l = ui.label("k");
        ui.add(egui::DragValue::new(k).range(1..=1024))
            .labelled_by(l.id);
        let l = ui.label("M tokens");
        // 0 means the default length; say so in the field rather than show a bare "0.0".
        ui.add(
            egui::DragValue::new(mtokens)
                .range(0.0..=1000.0)
                .speed(0.1)
                .custom_formatter(|v, _| {
                    if v == 0.0 {
                        "10 passes".into()
                    } else {
                        format!("{v:.1}")
                    }
                })
                .custom_parser(|t| {
                    if t.contains("pass") {
                        Some(0.0)
                    } else {
                        t.trim().parse().ok()
                    }
                }),
        )
        .labelled_by(l.id)
        .on_hover_text(
            "Training length in millions of tokens; 0 = ten passes over the activations",
        );
    });
}

/// TopK training options from those fields (0 M tokens = the default ten passes).
pub fn topk_options(d_sae: usize, k: usize, mtokens: f64) -> TrainOptions {
    let mut train = TrainOptions::topk(d_sae, k);
    if mtokens > 0.0 {
        train.tokens = Some((mtokens * 1e6) as u64);
    }
    train
}

/// Starts the pipeline as a background job.
pub fn start(
    req: &CreateRequest,
    device: crate::device::DeviceChoice,
    ctx: &egui::Context,
) -> BackgroundJob {
    let r = req.clone();
    BackgroundJob::spawn("Create workspace", ctx, move |job| r.run(device, job))
}

/// The SAE folder whose training log changed last (`WS/saes/<name>/`): the one being trained.
pub fn training_folder(ws_dir: &std::path::Path) -> PathBuf {
    std::fs::read_dir(ws_dir.join(crate::ops::workspace::SAES_DIR))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let m = e.path().join(crate::sae::workflow::METRICS_FILE);
            Some((std::fs::metadata(&m).ok()?.modified().ok()?, e.path()))
        })
        .max()
        .map(|(_, p)| p)
        .unwrap_or_default()
}

/// Live training curves from an SAE folder's metrics.jsonl (read when asked; small file).
/// Draws nothing and returns false when the SAE has no training log (yet, or at all: loaded).
pub fn metrics_plot(ui: &mut egui::Ui, sae_home: &std::path::Path) -> bool {
    let Ok(text) = std::fs::read_to_string(sae_home.join(crate::sae::workflow::METRICS_FILE))
    else {
        return false;
    };
    let rows: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    if rows.is_empty() {
        return false;
    }
    let series = |key: &str| -> Vec<[f64; 2]> {
        rows.iter()
            .filter_map(|r| Some([r.get("step")?.as_f64()?, r.get(key)?.as_f64()?]))
            .collect()
    };
    ui.horizontal(|ui| {
        for (key, title) in [("fve", "FVE"), ("l0", "L0"), ("loss", "loss")] {
            ui.vertical(|ui| {
                ui.label(title);
                egui_plot::Plot::new(format!("metric-{key}"))
                    .width(260.0)
                    .height(120.0)
                    .allow_scroll(false)
                    .x_axis_label("training step")
                    .y_axis_label(title)
                    // From zero up: a flat curve (L0 at k) then reads at its value.
                    .include_y(0.0)
                    .show(ui, |p| {
                        p.line(egui_plot::Line::new(
                            title,
                            egui_plot::PlotPoints::from(series(key)),
                        ))
                    });
            });
        }
    });
    true
}
