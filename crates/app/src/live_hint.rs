//! Facts about what a form field names, worked out in the background as the user types: how
//! many images and classes a folder holds, how many layers and how wide a model is. A scan of a
//! large folder or a model load never stalls the window; the answer for the latest input wins.

use std::sync::{Arc, Mutex};

/// What a field's input turned out to be: a line to show and, for models, the layer count.
pub type Answer = Result<(String, Option<usize>), crate::Failure>;

#[derive(Default)]
struct State {
    asked: String,
    answer: Option<(String, Answer)>,
}

type Shared = Arc<Mutex<State>>;

/// Shows the hint for `input` under a field (`id` names the field); starts `work` on a thread
/// when the input changed. Returns the answer once known for this very input.
pub fn live_hint(
    ui: &mut egui::Ui,
    id: &str,
    input: &str,
    work: fn(&str) -> Answer,
) -> Option<Answer> {
    let key = ui.make_persistent_id(("live_hint", id));
    let shared: Shared = ui.data_mut(|d| d.get_temp_mut_or_default::<Shared>(key).clone());
    let input = input.trim().to_string();
    if input.is_empty() {
        return None;
    }
    let answer = {
        let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
        if s.asked != input {
            s.asked = input.clone();
            let (shared, ctx, asked) = (shared.clone(), ui.ctx().clone(), input.clone());
            crate::jobs::run_detached(move || {
                let a = work(&asked);
                let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
                s.answer = Some((asked, a));
                ctx.request_repaint();
            });
        }
        s.answer
            .as_ref()
            .filter(|(asked, _)| *asked == input)
            .map(|(_, a)| a.clone())
    };
    match &answer {
        None => {
            ui.label(egui::RichText::new("checking…").weak());
        }
        Some(Ok((text, _))) => {
            ui.label(egui::RichText::new(text).weak());
        }
        Some(Err(e)) => {
            ui.add(
                egui::Label::new(
                    egui::RichText::new(crate::words::shown(e)).color(ui.visuals().error_fg_color),
                )
                .wrap(),
            );
        }
    }
    answer
}

/// An image folder: its image and class counts.
pub fn describe_folder(path: &str) -> Answer {
    let ds = crate::ops::workspace::Dataset::scan(std::path::Path::new(path))
        .map_err(crate::Failure::new)?;
    if ds.is_empty() {
        return Err(crate::failure(format!(
            "{path} holds no images (.jpg, .png, …); choose the folder that holds them"
        )));
    }
    let classes = match ds.classes.len() {
        0 => "no class sub-folders".to_string(),
        n => {
            let mut shown: Vec<&str> = ds.classes.iter().take(5).map(String::as_str).collect();
            if n > 5 {
                shown.push("…");
            }
            format!("{n} classes ({})", shown.join(", "))
        }
    };
    Ok((format!("{} images, {classes}", ds.len()), None))
}

/// A model (`source` or `source\0config` for a .pth with its JSON config): layers, width and
/// tokens. Hugging Face ids are not fetched here (that happens on Create).
pub fn describe_model(key: &str) -> Answer {
    let (source, config) = key.split_once('\0').unwrap_or((key, ""));
    let local = std::path::Path::new(source).exists();
    if !local && crate::backbone::source::looks_like_hub_id(source) {
        return Ok((
            "a Hugging Face id: downloaded when you press Create".into(),
            None,
        ));
    }
    let config = (!config.is_empty()).then(|| std::path::PathBuf::from(config));
    let spec = crate::backbone::ModelSpec::from_cli(source, config.as_deref())
        .map_err(crate::Failure::new)?;
    let b = crate::backbone::load_backbone(&spec, &candle_core::Device::Cpu)
        .map_err(crate::Failure::new)?;
    let info = crate::backbone::Backbone::info(&b);
    let g = info.geometry;
    Ok((
        format!(
            "{:?}: {} layers (0 to {}), width {}, {} tokens ({}×{} patches of {} px{})",
            info.family,
            info.n_layers,
            info.n_layers - 1,
            info.d_model,
            g.n_tokens(),
            g.grid_h,
            g.grid_w,
            g.patch_size,
            if g.has_cls { " + CLS" } else { "" }
        ),
        Some(info.n_layers),
    ))
}

/// An SAE file or folder: its layout, width and sparsity, or why it cannot be read.
pub fn describe_sae(path: &str) -> Answer {
    let sae = crate::sae::formats::load_sae(std::path::Path::new(path)).map_err(|e| {
        // Name the field: the message is shown under it, before anything runs.
        crate::failure(format!("SAE file: {}", crate::words::shown(&e)))
    })?;
    let activation = match sae.activation {
        crate::sae::SaeActivation::Relu => "ReLU".to_string(),
        crate::sae::SaeActivation::TopK { k } => format!("TopK, k {k}"),
        crate::sae::SaeActivation::BatchTopK { k, .. }
            if sae.meta.training_architecture.as_deref() == Some("matryoshka") =>
        {
            format!("Matryoshka BatchTopK, k {k}")
        }
        crate::sae::SaeActivation::BatchTopK { k, .. } => format!("BatchTopK, k {k}"),
        crate::sae::SaeActivation::JumpRelu => "JumpReLU".to_string(),
    };
    let format = match sae.meta.source_format.as_deref() {
        None | Some("saelens") => "SAELens",
        Some("openai") => "OpenAI",
        Some(other) => other,
    };
    Ok((
        format!(
            "{format} SAE: {} features over width {} ({activation})",
            sae.d_sae, sae.d_in
        ),
        None,
    ))
}
