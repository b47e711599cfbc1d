//! Facts about what a form field names, worked out in the background as the user types: how
//! many images and classes a folder holds, how many layers and how wide a model is. A scan of a
//! large folder or a model load never stalls the window; the answer for the latest input wins.

use std::sync::{Arc, Mutex};

/// What a field's input turned out to be.
#[derive(Clone, Debug, Default)]
pub struct Hint {
    /// The line shown under the field.
    pub text: String,
    /// For models: the layer count.
    pub layers: Option<usize>,
    /// More on the line, shown on hover.
    pub detail: Option<String>,
}

impl Hint {
    fn line(text: impl Into<String>) -> Self {
        Hint {
            text: text.into(),
            ..Default::default()
        }
    }
}

pub type Answer = Result<Hint, crate::Failure>;

#[derive(Default)]
struct State {
    asked: String,
    /// The input last seen and since when (work waits until it has settled).
    seen: Option<(String, std::time::Instant)>,
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
    live_hint_settled(ui, id, input, work, std::time::Duration::ZERO)
}

/// [`live_hint`] for costly work: started only once `input` has not changed for `settle` (a
/// value dragged through many steps starts one run, not one per step).
pub fn live_hint_settled(
    ui: &mut egui::Ui,
    id: &str,
    input: &str,
    work: fn(&str) -> Answer,
    settle: std::time::Duration,
) -> Option<Answer> {
    let key = ui.make_persistent_id(("live_hint", id));
    let shared: Shared = ui.data_mut(|d| d.get_temp_mut_or_default::<Shared>(key).clone());
    let input = input.trim().to_string();
    if input.is_empty() {
        return None;
    }
    let answer = {
        let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
        if s.seen.as_ref().is_none_or(|(seen, _)| *seen != input) {
            s.seen = Some((input.clone(), std::time::Instant::now()));
        }
        let waited = s.seen.as_ref().map_or(settle, |(_, since)| since.elapsed());
        if s.asked != input && waited < settle {
            ui.ctx().request_repaint_after(settle - waited);
        } else if s.asked != input {
            s.asked = input.clone();
            let (shared, ctx, asked) = (shared.clone(), ui.ctx().clone(), input.clone());
            crate::jobs::run_detached(move || {
                let a = work(&asked);
                let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
                // Only the answer to the latest question is kept: an earlier, slower one
                // (a parent folder typed on the way) arriving last left the field on
                // "checking…" for good.
                if s.asked == asked {
                    s.answer = Some((asked, a));
                }
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
        Some(Ok(hint)) => {
            let line = ui.add(egui::Label::new(egui::RichText::new(&hint.text).weak()).wrap());
            if let Some(detail) = &hint.detail {
                line.on_hover_text(detail);
            }
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
    Ok(Hint::line(format!("{} images, {classes}", ds.len())))
}

/// A model (`source` or `source\0config` for a .pth with its JSON config): layers, width and
/// tokens. Hugging Face ids are not fetched here (that happens on Create).
pub fn describe_model(key: &str) -> Answer {
    let (source, config) = key.split_once('\0').unwrap_or((key, ""));
    let local = std::path::Path::new(source).exists();
    if !local && crate::backbone::source::looks_like_hub_id(source) {
        return Ok(Hint::line(
            "a Hugging Face id: downloaded when you press Create",
        ));
    }
    let config = (!config.is_empty()).then(|| std::path::PathBuf::from(config));
    let spec = crate::backbone::ModelSpec::from_cli(source, config.as_deref())
        .map_err(crate::Failure::new)?;
    let b = crate::backbone::load_backbone(&spec, &candle_core::Device::Cpu)
        .map_err(crate::Failure::new)?;
    let info = crate::backbone::Backbone::info(&b);
    let g = info.geometry;
    Ok(Hint {
        text: format!(
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
        layers: Some(info.n_layers),
        detail: None,
    })
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
    Ok(Hint::line(format!(
        "{format} SAE: {} features over width {} ({activation})",
        sae.d_sae, sae.d_in
    )))
}

/// The key of [`describe_estimate`]: what the estimate depends on, one field each.
pub fn estimate_key(
    images: &str,
    model: &str,
    config: &str,
    layer: usize,
    device: crate::device::DeviceChoice,
) -> String {
    [
        images.trim(),
        model.trim(),
        config.trim(),
        &layer.to_string(),
        &device.to_string(),
    ]
    .join("\0")
}

/// Before a creation: the images, the activation store's size on disk and roughly how long
/// extraction takes (a forward pass timed here on the first images; see `ops::estimate`).
pub fn describe_estimate(key: &str) -> Answer {
    let fields: Vec<&str> = key.split('\0').collect();
    let [images, model, config, layer, device] = fields[..] else {
        return Err(crate::failure(
            "the estimate needs the image folder, model and layer",
        ));
    };
    if !std::path::Path::new(model).exists() && crate::backbone::source::looks_like_hub_id(model) {
        return Ok(Hint::line(
            "size on disk and time: known once the model is downloaded (on Create)",
        ));
    }
    let config = (!config.is_empty()).then(|| std::path::PathBuf::from(config));
    let layer: usize = layer
        .parse()
        .map_err(|_| crate::failure(format!("layer {layer} is not a number")))?;
    let e = crate::ops::estimate::estimate(&crate::ops::estimate::EstimateRequest {
        model: crate::backbone::ModelSpec::from_cli(model, config.as_deref())
            .map_err(crate::Failure::new)?,
        device: device.parse().map_err(crate::Failure::new)?,
        images: std::path::PathBuf::from(images),
        options: crate::ops::create::extract_options(layer),
    })
    .map_err(crate::Failure::new)?;
    let size = format!(
        "{} images × {} tokens × width {} × {} bytes ({:?}) = {} on disk",
        e.images,
        e.tokens_per_image,
        e.d_model,
        e.bytes_per_value,
        e.dtype,
        bytes(e.store_bytes)
    );
    let first_unreadable = e
        .unreadable
        .first()
        .map(|s| format!("{}: {}", s.path, s.reason))
        .unwrap_or_default();
    let time = match e.seconds {
        Some(secs) => format!(
            "extraction {} at the speed of a forward pass timed here on {} images ({})",
            rough_time(secs),
            e.timed_images,
            e.device
        ),
        None => format!(
            "extraction time unknown until the first shard: none of the first {} images can \
             be read ({first_unreadable})",
            e.unreadable.len()
        ),
    };
    let unreadable = if e.seconds.is_some() && !e.unreadable.is_empty() {
        format!(
            "; {} of the first {} images cannot be read and will be skipped ({first_unreadable})",
            e.unreadable.len(),
            e.unreadable.len() + e.timed_images
        )
    } else {
        String::new()
    };
    Ok(Hint {
        text: format!("{size}; {time}{unreadable}"),
        layers: None,
        detail: e.images_per_s.map(|rate| {
            format!(
                "{rate:.1} images/s measured for the forward pass to layer {layer} on {}; the \
                 run also decodes the images and writes the shards (alongside), then trains \
                 the SAE and builds the index",
                e.device
            )
        }),
    })
}

/// A size in bytes, in the largest unit it reaches (1 kB = 1000 bytes).
pub fn bytes(n: u64) -> String {
    let units = ["kB", "MB", "GB", "TB", "PB"];
    let mut value = n as f64;
    let mut unit = "bytes";
    for u in units {
        if value < 1000.0 {
            break;
        }
        value /= 1000.0;
        unit = u;
    }
    if unit == "bytes" {
        format!("{n} bytes")
    } else {
        format!("{value:.1} {unit}")
    }
}

/// A duration as a person plans with it.
pub fn rough_time(secs: f64) -> String {
    if secs < 60.0 {
        "under a minute".into()
    } else if secs < 3600.0 {
        format!("about {:.0} min", (secs / 60.0).ceil())
    } else if secs < 48.0 * 3600.0 {
        format!("about {:.1} h", secs / 3600.0)
    } else {
        format!("about {:.0} days", secs / 86400.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_times_read_as_people_plan_with_them() {
        assert_eq!(bytes(999), "999 bytes");
        assert_eq!(bytes(36_992), "37.0 kB");
        assert_eq!(bytes(15_129_600_000), "15.1 GB");
        assert_eq!(rough_time(12.0), "under a minute");
        assert_eq!(rough_time(61.0), "about 2 min");
        assert_eq!(rough_time(5400.0), "about 1.5 h");
        assert_eq!(rough_time(3.0 * 86400.0), "about 3 days");
    }
}

#[cfg(test)]
mod race_tests {
    use super::*;

    /// The answer for a prefix typed on the way is slow and arrives after the answer for the
    /// whole input: the whole input's answer is the one shown.
    fn slow_for_prefixes(input: &str) -> Answer {
        if input == "ab" {
            Ok(Hint::line("whole"))
        } else {
            std::thread::sleep(std::time::Duration::from_millis(300));
            Ok(Hint::line("prefix"))
        }
    }

    #[test]
    fn a_slow_answer_to_an_earlier_input_never_hides_the_latest() {
        let ctx = egui::Context::default();
        let mut got = None;
        let start = std::time::Instant::now();
        let mut frame = 0;
        while start.elapsed().as_millis() < 900 {
            let input = if frame == 0 { "a" } else { "ab" };
            let mut out = ctx.run_ui(egui::RawInput::default(), |ui| {
                got = live_hint(ui, "field", input, slow_for_prefixes);
            });
            out.textures_delta.clear(); // nothing uploads them here
            frame += 1;
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        match got {
            Some(Ok(h)) => assert_eq!(h.text, "whole"),
            other => panic!("the field shows {other:?} after the prefix's answer arrived"),
        }
    }
}
