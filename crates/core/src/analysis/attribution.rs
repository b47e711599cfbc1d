//! A feature's class attribution, measured rather than read off weights: which classes' logits
//! its decoder direction pushes when it is written into the stream and the rest of the model runs.
//!
//! Design, and why:
//! - The edit adds `a·W_dec[j]/s` (the feature's decoder direction at a typical activation `a`,
//!   in the stream's units) to every patch token of each image at the tapped layer. Through the
//!   SAE this is raising feature j's code by `a` on every patch (the change in reconstruction of
//!   [`super::intervene::apply`], with Δf = a). An addition rather than a clamp, because a
//!   clamp's size depends on what each image already had, and the control below must be *the
//!   same edit* with another direction: an addition of a vector of the same norm is exactly that.
//! - The blocks after the layer and the head run through [`super::intervene::finish`], the
//!   intervention machinery the image view uses; nothing of the model is reimplemented here.
//! - The images are a fixed, seeded sample stratified over the workspace's classes, so a result
//!   is reproducible and no class dominates by being the largest folder.
//! - Per class: the mean change in logit over the images and its standard error (the spread of
//!   the per-image changes / √n).
//! - Control: the same edit with random unit directions scaled to the same norm. Any vector of
//!   that size moves the logits somewhat (through the norms and the attention), so a class push
//!   counts as the feature's own only when it stands out from what random directions do:
//!   more than [`BEYOND_SDS`] standard deviations from their mean, counting both the spread of
//!   the random directions' means and this estimate's own standard error.
//! - Every logit of the head is reported (the model's classes), not only the folder's classes.

use super::intervene::{Intervention, TokenScope, finish};
use crate::backbone::Backbone;
use crate::error::{Error, Result};
use crate::job::{Job, Progress};
use crate::sae::Sae;
use crate::store::Dataset;
use crate::store::reuse::LayerActivations;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How far (in standard deviations) a class push must stand from the random directions' mean
/// to count as beyond them.
pub const BEYOND_SDS: f64 = 3.0;

#[derive(Clone, Debug)]
pub struct AttributionOptions {
    /// Images in the sample (stratified over the classes).
    pub images: usize,
    /// Random directions in the control.
    pub random: usize,
    pub seed: u64,
    pub batch: usize,
}

impl Default for AttributionOptions {
    fn default() -> Self {
        AttributionOptions {
            images: 64,
            random: 8,
            seed: 0,
            batch: 32,
        }
    }
}

impl AttributionOptions {
    /// Refuses samples and controls too small to have a spread.
    pub fn validate(&self) -> Result<()> {
        if self.images < 2 {
            return Err(Error::Invalid(format!(
                "class attribution needs at least 2 images for a standard error (got {})",
                self.images
            )));
        }
        if self.random < 2 {
            return Err(Error::Invalid(format!(
                "class attribution needs at least 2 random directions for their spread (got {})",
                self.random
            )));
        }
        if self.batch == 0 {
            return Err(Error::Invalid(
                "the batch must be at least 1 (got 0)".into(),
            ));
        }
        Ok(())
    }
}

/// One class's logit under the edit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassPush {
    pub class: String,
    /// Mean Δ logit over the images (edited − original) and its standard error.
    pub mean_dlogit: f64,
    pub se_dlogit: f64,
    /// Each random direction's mean Δ logit of this class, their mean and standard deviation.
    pub random_dlogits: Vec<f64>,
    pub random_mean_dlogit: f64,
    pub random_sd_dlogit: f64,
    /// (mean − random mean) / √(random sd² + se²).
    pub z: f64,
    /// |z| above [`BEYOND_SDS`].
    pub beyond_random: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureAttribution {
    pub feature: u32,
    pub layer: usize,
    /// The activation the direction was scaled by, and where it came from.
    pub activation: f32,
    pub activation_from: String,
    /// L2 norm of the vector added to each patch token (also the random directions').
    pub edit_norm: f64,
    /// Patch tokens edited per image.
    pub tokens_per_image: usize,
    /// Images measured (the sample's readable images), and the sample's seed.
    pub images: usize,
    pub seed: u64,
    pub random_directions: usize,
    /// The mean over classes of `mean_dlogit`: a shift shared by every logit moves no
    /// probability.
    pub shared_shift: f64,
    /// One per logit of the head, in the head's order.
    pub classes: Vec<ClassPush>,
    pub images_read_from_store: usize,
}

/// Up to `n` images of `ds`, stratified over its classes (images without a class are a stratum
/// of their own): each stratum shuffled with `seed`, then taken in turn. Sorted by id.
pub fn stratified_sample(ds: &Dataset, n: usize, seed: u64) -> Vec<usize> {
    let mut strata: BTreeMap<Option<u32>, Vec<usize>> = BTreeMap::new();
    for (i, e) in ds.images.iter().enumerate() {
        strata.entry(e.class).or_default().push(i);
    }
    let mut rng = crate::rng::Rng::new(seed);
    let mut strata: Vec<Vec<usize>> = strata
        .into_values()
        .map(|mut v| {
            for i in (1..v.len()).rev() {
                v.swap(i, rng.below(i + 1));
            }
            v.reverse(); // taken from the back below
            v
        })
        .collect();
    let mut out = Vec::with_capacity(n.min(ds.len()));
    while out.len() < n && strata.iter().any(|s| !s.is_empty()) {
        for s in strata.iter_mut() {
            if out.len() < n
                && let Some(i) = s.pop()
            {
                out.push(i);
            }
        }
    }
    out.sort_unstable();
    out
}

/// `count` random directions of `d` dimensions, each of L2 norm `norm` (seeded).
fn random_directions(count: usize, d: usize, norm: f64, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = crate::rng::Rng::new(seed ^ 0x005e_edd1_4ec7);
    (0..count)
        .map(|_| {
            let v: Vec<f64> = (0..d).map(|_| rng.normal() as f64).collect();
            let n = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-30);
            v.iter().map(|x| (x * norm / n) as f32).collect()
        })
        .collect()
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

/// Measures feature `feature`'s class attribution over a stratified sample of `ds` (see the
/// module's notes): its decoder direction × `activation` added to every patch token at `layer`,
/// beside `opts.random` random directions of the same norm.
#[allow(clippy::too_many_arguments)]
pub fn class_attribution(
    backbone: &dyn Backbone,
    sae: &Sae,
    layer: usize,
    ds: &Dataset,
    source: &LayerActivations,
    feature: u32,
    activation: f32,
    activation_from: &str,
    opts: &AttributionOptions,
    job: &Job,
) -> Result<FeatureAttribution> {
    opts.validate()?;
    let info = backbone.info();
    sae.check_fits(info.d_model, &format!("layer {layer}"))?;
    if feature as usize >= sae.d_sae {
        return Err(Error::Invalid(format!(
            "feature {feature} does not exist: the SAE has {} features (0..{})",
            sae.d_sae,
            sae.d_sae.saturating_sub(1)
        )));
    }
    if !activation.is_finite() || activation <= 0.0 {
        return Err(Error::Invalid(format!(
            "the activation to add for feature {feature} must be a positive number (got {activation})"
        )));
    }
    let geometry = info.geometry;
    let (t, d) = (geometry.n_tokens(), info.d_model);
    let patches = Intervention {
        edits: Vec::new(),
        scope: TokenScope::Patches,
    }
    .tokens(&geometry);
    if patches.is_empty() {
        return Err(Error::Invalid(format!(
            "{} has no patch tokens to edit",
            info.name
        )));
    }
    let j = feature as usize;
    let scale = activation / sae.input_scale.unwrap_or(1.0);
    let own: Vec<f32> = sae.w_dec[j * d..(j + 1) * d]
        .iter()
        .map(|&w| w * scale)
        .collect();
    let edit_norm = own.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    let mut directions = vec![own];
    directions.extend(random_directions(opts.random, d, edit_norm, opts.seed));
    let sample = stratified_sample(ds, opts.images, opts.seed);
    if sample.len() < 2 {
        return Err(Error::Invalid(format!(
            "class attribution needs at least 2 images; {} holds {}",
            ds.root.display(),
            ds.len()
        )));
    }
    // deltas[k][c]: per image, Δ logit of class c under direction k (0 = the feature's).
    let mut deltas: Vec<Vec<Vec<f64>>> = Vec::new();
    let mut n_logits = None;
    let mut measured = 0usize;
    for chunk in sample.chunks(opts.batch) {
        job.check()?;
        let hb = source.batch(ds, chunk)?;
        let Some(hidden) = hb.hidden else { continue };
        let b = hb.ok.len();
        let hidden: Vec<f32> = hidden.flatten_all()?.to_vec1()?;
        let original = finish(backbone, layer, &hidden, b)?;
        let before: Vec<Vec<f32>> = original
            .into_iter()
            .map(|r| r.logits)
            .collect::<Option<_>>()
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "{} has no classifier head: class attribution measures logits, which only \
                     a model with a head has",
                    info.name
                ))
            })?;
        let c = *n_logits.get_or_insert(before.first().map_or(0, Vec::len));
        if deltas.is_empty() {
            deltas = vec![vec![Vec::with_capacity(sample.len()); c]; directions.len()];
        }
        for (k, dir) in directions.iter().enumerate() {
            let mut edited = hidden.clone();
            for i in 0..b {
                for &p in &patches {
                    let row = &mut edited[(i * t + p) * d..(i * t + p + 1) * d];
                    for (x, &v) in row.iter_mut().zip(dir) {
                        *x += v;
                    }
                }
            }
            let after = finish(backbone, layer, &edited, b)?;
            for (r, z0) in after.iter().zip(&before) {
                let Some(z1) = &r.logits else { continue };
                for (cls, (&a, &o)) in z1.iter().zip(z0).enumerate().take(c) {
                    deltas[k][cls].push((a - o) as f64);
                }
            }
            job.report(Progress {
                done: (measured * directions.len() + (k + 1) * b) as u64,
                total: (sample.len() * directions.len()) as u64,
                unit: "image runs",
                message: format!(
                    "feature {feature}: direction {}/{}",
                    k + 1,
                    directions.len()
                ),
            });
        }
        measured += b;
    }
    if measured < 2 {
        return Err(Error::Invalid(format!(
            "class attribution needs at least 2 readable images; {measured} of the {} sampled \
             from {} could be read",
            sample.len(),
            ds.root.display()
        )));
    }
    let c = n_logits.unwrap_or(0);
    let names: Vec<String> = match info.class_names.as_deref() {
        Some(n) if n.len() == c => n.to_vec(),
        _ => (0..c).map(|i| format!("class {i}")).collect(),
    };
    let classes: Vec<ClassPush> = (0..c)
        .map(|cls| {
            let (mean, sd) = mean_sd(&deltas[0][cls]);
            let se = sd / (deltas[0][cls].len() as f64).sqrt();
            let random: Vec<f64> = deltas[1..]
                .iter()
                .map(|per_dir| mean_sd(&per_dir[cls]).0)
                .collect();
            let (rmean, rsd) = mean_sd(&random);
            let z = (mean - rmean) / (rsd * rsd + se * se).sqrt().max(1e-12);
            ClassPush {
                class: names[cls].clone(),
                mean_dlogit: mean,
                se_dlogit: se,
                random_dlogits: random,
                random_mean_dlogit: rmean,
                random_sd_dlogit: rsd,
                z,
                beyond_random: z.abs() > BEYOND_SDS,
            }
        })
        .collect();
    Ok(FeatureAttribution {
        feature,
        layer,
        activation,
        activation_from: activation_from.to_string(),
        edit_norm,
        tokens_per_image: patches.len(),
        images: measured,
        seed: opts.seed,
        random_directions: opts.random,
        shared_shift: classes.iter().map(|p| p.mean_dlogit).sum::<f64>() / c.max(1) as f64,
        classes,
        images_read_from_store: source.reused(),
    })
}

/// Where an SAE's class attributions are kept.
pub fn attribution_path(home: &Path) -> PathBuf {
    home.join("attribution.json")
}

/// The saved class attributions by feature (none yet: empty).
pub fn load_attributions(home: &Path) -> Result<BTreeMap<u32, FeatureAttribution>> {
    let p = attribution_path(home);
    if !p.exists() {
        return Ok(BTreeMap::new());
    }
    crate::fsutil::read_json(&p)
}

/// Adds `new` to the saved attributions (replacing earlier ones of the same features), under
/// the workspace's writer lock.
pub fn save_attributions(
    home: &Path,
    new: &[FeatureAttribution],
    _held: &crate::store::lock::WriterLock,
) -> Result<()> {
    let mut all = load_attributions(home)?;
    for a in new {
        all.insert(a.feature, a.clone());
    }
    crate::fsutil::write_json_atomic(&attribution_path(home), &all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backbone::{ModelSpec, load_backbone};
    use crate::shared::shared_path;

    /// `per_class` CIFAR-10 test images of each class in a new folder.
    fn folder(dir: &Path, classes: &[&str], per_class: usize) -> Dataset {
        for c in classes {
            std::fs::create_dir_all(dir.join(c)).unwrap();
            for i in 0..per_class {
                let name = format!("{i:04}.jpg");
                std::fs::copy(
                    shared_path(&format!("data/cifar10/test/{c}/{name}")),
                    dir.join(c).join(&name),
                )
                .unwrap();
            }
        }
        Dataset::scan(dir).unwrap()
    }

    fn cifar_vit() -> crate::backbone::VisionTransformer {
        let config =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets/models/vit-cifar10.json");
        let model = shared_path("models/vit-cifar10/vit_cifar10.pth");
        let spec = ModelSpec::from_cli(model.to_str().unwrap(), Some(&config)).unwrap();
        load_backbone(&spec, &candle_core::Device::Cpu).unwrap()
    }

    /// The measured Δ logits are those of running the model on the edited stream directly, image
    /// by image: the decoder direction × activation added to every patch token at the layer.
    #[test]
    fn measured_dlogits_equal_a_direct_run_of_the_edited_stream() {
        let tmp = tempfile::tempdir().unwrap();
        let ds = folder(tmp.path(), &["cat", "ship"], 1);
        let b = cifar_vit();
        let layer = 3;
        let mut sae = Sae::random_topk(128, 32, 4, 0.2, 11);
        sae.input_scale = Some(2.0);
        let (feature, activation) = (5u32, 3.0f32);
        let source = LayerActivations::new(&b, layer, &[]).unwrap();
        let opts = AttributionOptions {
            images: 2,
            random: 3,
            seed: 4,
            batch: 1,
        };
        let got = class_attribution(
            &b,
            &sae,
            layer,
            &ds,
            &source,
            feature,
            activation,
            "test",
            &opts,
            &Job::default(),
        )
        .unwrap();
        assert_eq!(got.images, 2);
        assert_eq!(got.tokens_per_image, 64);
        assert_eq!(got.classes.len(), 10);
        assert_eq!(got.classes[3].class, "cat");
        // Directly: forward to the layer, add the direction on the patches, finish, compare.
        let d = 128;
        let dir: Vec<f32> = sae.w_dec[5 * d..6 * d]
            .iter()
            .map(|w| w * activation / 2.0)
            .collect();
        let norm = dir.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        assert!((got.edit_norm - norm).abs() < 1e-9 * norm.max(1.0));
        let mut per_image: Vec<Vec<f64>> = Vec::new();
        for i in 0..2 {
            let img = ds.load(i).unwrap();
            let (pixels, _) = b
                .preprocessor()
                .batch(std::slice::from_ref(&img), b.device())
                .unwrap();
            let h: Vec<f32> = b
                .forward_to(&pixels, layer)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let mut e = h.clone();
            for t in 1..65 {
                for (x, v) in e[t * d..(t + 1) * d].iter_mut().zip(&dir) {
                    *x += v;
                }
            }
            let z0 = finish(&b, layer, &h, 1).unwrap()[0].logits.clone().unwrap();
            let z1 = finish(&b, layer, &e, 1).unwrap()[0].logits.clone().unwrap();
            per_image.push(z1.iter().zip(&z0).map(|(a, o)| (a - o) as f64).collect());
        }
        let mut moved = 0.0f64;
        for (c, p) in got.classes.iter().enumerate() {
            let (a, b) = (per_image[0][c], per_image[1][c]);
            assert!(
                (p.mean_dlogit - (a + b) / 2.0).abs() < 1e-4,
                "{c}: {p:?} vs {a}, {b}"
            );
            // Two images: sd = |a − b|/√2, se = sd/√2.
            assert!(
                (p.se_dlogit - (a - b).abs() / 2.0).abs() < 1e-4,
                "{c}: {p:?}"
            );
            assert_eq!(p.random_dlogits.len(), 3);
            moved = moved.max(p.mean_dlogit.abs());
            let (m, s) = mean_sd(&p.random_dlogits);
            assert_eq!((m, s), (p.random_mean_dlogit, p.random_sd_dlogit));
            assert_eq!(p.beyond_random, p.z.abs() > BEYOND_SDS);
        }
        assert!(moved > 1e-3, "the edit moved no logit");
        let shared = got.classes.iter().map(|p| p.mean_dlogit).sum::<f64>() / 10.0;
        assert!((got.shared_shift - shared).abs() < 1e-12);
        // Same seed, same numbers.
        let again = class_attribution(
            &b,
            &sae,
            layer,
            &ds,
            &source,
            feature,
            activation,
            "test",
            &opts,
            &Job::default(),
        )
        .unwrap();
        assert_eq!(again, got);
    }

    /// Only a head has logits: a model without one is refused with the reason.
    #[test]
    fn a_model_without_a_classifier_head_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let ds = folder(tmp.path(), &["cat", "ship"], 1);
        let spec = ModelSpec::from_cli(
            shared_path("models/tiny-random/dinov2").to_str().unwrap(),
            None,
        )
        .unwrap();
        let b = load_backbone(&spec, &candle_core::Device::Cpu).unwrap();
        let d = b.info().d_model;
        let sae = Sae::random_topk(d, 16, 2, 0.2, 1);
        let source = LayerActivations::new(&b, 1, &[]).unwrap();
        let opts = AttributionOptions {
            images: 2,
            random: 2,
            ..Default::default()
        };
        let err = class_attribution(
            &b,
            &sae,
            1,
            &ds,
            &source,
            0,
            1.0,
            "test",
            &opts,
            &Job::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("no classifier head"), "{err}");
    }

    #[test]
    fn the_sample_is_stratified_seeded_and_capped() {
        let tmp = tempfile::tempdir().unwrap();
        let ds = folder(tmp.path(), &["cat", "frog", "ship"], 5);
        let s = stratified_sample(&ds, 7, 1);
        assert_eq!(s.len(), 7);
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        let mut per_class = [0usize; 3];
        for &i in &s {
            per_class[ds.images[i].class.unwrap() as usize] += 1;
        }
        per_class.sort_unstable();
        assert_eq!(per_class, [2, 2, 3]);
        assert_eq!(s, stratified_sample(&ds, 7, 1));
        assert_ne!(s, stratified_sample(&ds, 7, 2));
        assert_eq!(stratified_sample(&ds, 100, 1), (0..15).collect::<Vec<_>>());
    }

    #[test]
    fn random_directions_have_the_norm_and_small_samples_are_refused() {
        for v in random_directions(4, 50, 2.5, 9) {
            let n = v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            assert!((n - 2.5).abs() < 1e-5, "{n}");
        }
        let small = AttributionOptions {
            images: 1,
            ..Default::default()
        };
        assert!(
            small
                .validate()
                .unwrap_err()
                .to_string()
                .contains("at least 2 images")
        );
        let few = AttributionOptions {
            random: 1,
            ..Default::default()
        };
        assert!(
            few.validate()
                .unwrap_err()
                .to_string()
                .contains("2 random directions")
        );
    }
}
