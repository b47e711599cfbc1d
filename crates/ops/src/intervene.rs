//! Interventions on a workspace's model through its SAE: one image edited and run on (reads
//! only), features' causal effects on a class over the workspace's images, and features' class
//! attributions (their decoder directions written into the stream; both saved beside the SAE,
//! for the feature pages).

use super::{device_of, sae_of};
use crate::analysis::attribution::{self, AttributionOptions, FeatureAttribution};
use crate::analysis::causal::{self, EffectOptions, FeatureEffect};
use crate::analysis::index;
use crate::analysis::intervene::{Intervention, Outcome, Prepared};
use crate::device::DeviceChoice;
use crate::error::{Error, Result};
use crate::fix::Opt;
use crate::job::Job;
use crate::lock::{Hold, writer};
use crate::store::Workspace;
use crate::store::reuse::LayerActivations;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct ImageRequest {
    pub workspace: PathBuf,
    pub sae: Option<PathBuf>,
    pub device: DeviceChoice,
    pub image: PathBuf,
    pub intervention: Intervention,
    /// Classes listed before and after.
    pub top_k: usize,
}

/// Edits one image's stream at the workspace's layer and runs the rest of the model.
pub fn image(r: &ImageRequest) -> Result<Outcome> {
    let ws = Workspace::open(&r.workspace)?;
    let sae = crate::sae::workflow::workspace_sae(&ws, r.sae.as_deref())?;
    r.intervention
        .validate(&sae, &ws.config.backbone.geometry)?;
    let img = crate::store::dataset::load_rgb(&r.image)
        .map_err(|e| Error::Invalid(format!("{}: {e}", r.image.display())))?;
    let device = device_of(r.device)?;
    let sae = sae.on_device(&device)?;
    let b = crate::backbone::load_backbone(&ws.config.model, &device)?;
    let prepared = Prepared::new(&b, &sae, ws.config.layer, &img)?;
    prepared.run(&b, &sae, &r.intervention, r.top_k)
}

#[derive(Clone, Debug)]
pub struct EffectRequest {
    pub workspace: PathBuf,
    pub sae: Option<PathBuf>,
    pub device: DeviceChoice,
    /// A class (sub-folder name) of the workspace's images.
    pub class: String,
    pub features: Vec<u32>,
    /// Also measure the features with the highest lift for the class (this many).
    pub top_lift: usize,
    /// Features firing on fewer images are passed over by `top_lift`.
    pub min_images: u64,
    pub options: EffectOptions,
}

#[derive(Debug, Serialize)]
pub struct EffectReport {
    pub class: String,
    pub images: usize,
    pub effects: Vec<FeatureEffect>,
    /// Means over the measured features of their own and their random features' mean Δ P.
    pub mean_dprob: f64,
    pub random_mean_dprob: f64,
    /// Measured features whose ablation lowered P(class) more than the mean of their random ones.
    pub features_beyond_random: usize,
    pub saved_to: PathBuf,
    pub seconds: f64,
}

/// Measures the features' causal effects on the class and saves them beside the SAE.
pub fn effects(r: &EffectRequest, job: &Job) -> Result<EffectReport> {
    let start = Instant::now();
    if r.options.batch == 0 {
        return Err(crate::fix::at_least_one(Opt::Batch));
    }
    let ws = Workspace::open(&r.workspace)?;
    let _lock = writer(&ws.dir, "effects", Hold::Job)?;
    let (home, sae) = sae_of(&ws, r.sae.as_deref())?;
    if !index::is_complete(&home) {
        return Err(crate::fixable!(
            ["causal effects need the feature index (frequencies and lifts)"],
            [
                "build it first with ",
                crate::fix::Command::Index { rebuild: false }
            ]
        ));
    }
    let idx = index::load_index(&home)?;
    let ds = ws.dataset()?;
    let class = ds
        .classes
        .iter()
        .position(|c| *c == r.class)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "class `{}` is not one of the workspace's classes ({})",
                r.class,
                ds.classes.join(", ")
            ))
        })?;
    let mut features = r.features.clone();
    for f in causal::top_lift(&idx, class, r.top_lift, r.min_images) {
        if !features.contains(&f) {
            features.push(f);
        }
    }
    if features.is_empty() {
        return Err(crate::fixable!(
            ["no features to measure"],
            [
                "name some with ",
                Opt::Features,
                " or ask for the top ones by lift with ",
                Opt::TopLift
            ]
        ));
    }
    let device = device_of(r.device)?;
    let sae = sae.on_device(&device)?;
    let b = crate::backbone::load_backbone(&ws.config.model, &device)?;
    let source = LayerActivations::new(&b, ws.config.layer, std::slice::from_ref(&ws))?;
    let effects = causal::causal_effects(
        &b,
        &sae,
        ws.config.layer,
        &idx,
        &ds,
        &source,
        class,
        &features,
        &r.options,
        job,
    )?;
    causal::save_effects(&home, &effects)?;
    let k = effects.len().max(1) as f64;
    Ok(EffectReport {
        class: r.class.clone(),
        images: effects.first().map_or(0, |e| e.images),
        mean_dprob: effects.iter().map(|e| e.ablated.mean_dprob).sum::<f64>() / k,
        random_mean_dprob: effects.iter().map(|e| e.random_mean_dprob).sum::<f64>() / k,
        features_beyond_random: effects
            .iter()
            .filter(|e| e.ablated.mean_dprob < e.random_mean_dprob)
            .count(),
        saved_to: causal::effects_path(&home),
        effects,
        seconds: start.elapsed().as_secs_f64(),
    })
}

#[derive(Clone, Debug)]
pub struct AttributionRequest {
    pub workspace: PathBuf,
    pub sae: Option<PathBuf>,
    pub device: DeviceChoice,
    pub features: Vec<u32>,
    /// The activation the decoder direction is scaled by; None: each feature's mean activation
    /// where it fires, from the feature index.
    pub activation: Option<f32>,
    pub options: AttributionOptions,
}

#[derive(Debug, Serialize)]
pub struct AttributionReport {
    pub attributions: Vec<FeatureAttribution>,
    pub saved_to: PathBuf,
    pub seconds: f64,
}

/// Measures each feature's class attribution over a stratified sample of the workspace's
/// images (beside random directions of the same norm) and saves them beside the SAE.
pub fn attribute(r: &AttributionRequest, job: &Job) -> Result<AttributionReport> {
    let start = Instant::now();
    r.options.validate()?;
    if r.features.is_empty() {
        return Err(crate::fixable!([
            "name the features whose class attribution to measure with ",
            Opt::Features
        ]));
    }
    if let Some(a) = r.activation
        && (!a.is_finite() || a <= 0.0)
    {
        return Err(Error::Invalid(format!(
            "--value (the activation added) must be a positive number (got {a})"
        )));
    }
    let ws = Workspace::open(&r.workspace)?;
    let lock = writer(&ws.dir, "class attribution", Hold::Job)?;
    let (home, sae) = sae_of(&ws, r.sae.as_deref())?;
    if let Some(&bad) = r.features.iter().find(|&&f| f as usize >= sae.d_sae) {
        return Err(Error::Invalid(format!(
            "feature {bad} does not exist: the SAE has {} features (0..{})",
            sae.d_sae,
            sae.d_sae.saturating_sub(1)
        )));
    }
    // Each feature's activation: given, or its mean where it fires (a typical strength, not
    // its rare peak).
    let activations: Vec<(f32, String)> = match r.activation {
        Some(a) => r.features.iter().map(|_| (a, "--value".into())).collect(),
        None => {
            if !index::is_complete(&home) {
                return Err(crate::fixable!(
                    [
                        "class attribution scales the decoder direction by the feature's mean \
                         activation, which the feature index holds"
                    ],
                    [
                        "build it first with ",
                        crate::fix::Command::Index { rebuild: false },
                        " or give the activation with --value"
                    ]
                ));
            }
            let idx = index::load_index(&home)?;
            r.features
                .iter()
                .map(|&f| {
                    let j = f as usize;
                    if idx.token_count.get(j).copied().unwrap_or(0) == 0 {
                        return Err(Error::Invalid(format!(
                            "feature {f} never fires on the indexed images, so it has no typical \
                             activation; give one with --value"
                        )));
                    }
                    Ok((
                        idx.mean_active(j) as f32,
                        "mean activation where it fires (feature index)".to_string(),
                    ))
                })
                .collect::<Result<_>>()?
        }
    };
    let ds = ws.dataset()?;
    let device = device_of(r.device)?;
    let sae = sae.on_device(&device)?;
    let b = crate::backbone::load_backbone(&ws.config.model, &device)?;
    let source = LayerActivations::new(&b, ws.config.layer, std::slice::from_ref(&ws))?;
    let mut attributions = Vec::with_capacity(r.features.len());
    for (&f, (a, from)) in r.features.iter().zip(&activations) {
        attributions.push(attribution::class_attribution(
            &b,
            &sae,
            ws.config.layer,
            &ds,
            &source,
            f,
            *a,
            from,
            &r.options,
            job,
        )?);
    }
    attribution::save_attributions(&home, &attributions, &lock)?;
    Ok(AttributionReport {
        attributions,
        saved_to: attribution::attribution_path(&home),
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// The class attributions saved for the SAE in `home`, by feature (none yet: empty).
pub fn load_attributions(home: &Path) -> Result<BTreeMap<u32, FeatureAttribution>> {
    attribution::load_attributions(home)
}
