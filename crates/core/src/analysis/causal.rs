//! A feature's causal effect on a class over a folder: ablate the feature on every token of
//! each image of the class and measure how the class's logit and probability move, beside
//! features of about the same token frequency chosen at random. Any ablation disturbs the
//! model a little; the random features say how much, so a real effect can be told from it.

use super::index::FeatureIndex;
use super::intervene::{
    EditMode, FeatureEdit, Intervention, TokenScope, apply_at, finish, softmax,
};
use crate::backbone::Backbone;
use crate::error::{Error, Result};
use crate::job::{Job, Progress};
use crate::sae::Sae;
use crate::store::Dataset;
use crate::store::reuse::LayerActivations;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
pub struct EffectOptions {
    /// Random features of matching frequency per feature measured.
    pub random: usize,
    pub seed: u64,
    pub batch: usize,
}

impl Default for EffectOptions {
    fn default() -> Self {
        EffectOptions {
            random: 10,
            seed: 0,
            batch: 64,
        }
    }
}

/// Mean change over the class's images when one feature is ablated everywhere.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Effect {
    pub feature: u32,
    /// Mean Δ logit of the class (edited − original).
    pub mean_dlogit: f64,
    /// Mean Δ probability of the class.
    pub mean_dprob: f64,
    /// Images where the feature fired on some token (elsewhere the output is unchanged).
    pub images_changed: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureEffect {
    pub feature: u32,
    pub class: String,
    /// Images of the class measured.
    pub images: usize,
    pub lift: f64,
    pub token_frequency: f64,
    pub ablated: Effect,
    /// The same measure for each random feature of matching frequency.
    pub random: Vec<Effect>,
    /// Mean and standard deviation of the random features' mean Δ probability.
    pub random_mean_dprob: f64,
    pub random_std_dprob: f64,
    pub random_mean_dlogit: f64,
    /// Share of the random features whose ablation lowered the class's probability less.
    pub beats_random: f64,
    /// Where the figures came from.
    pub images_read_from_store: usize,
}

/// Features with the highest lift for `class` among those firing on at least `min_images`
/// images (rarer ones have lifts made of a handful of images).
pub fn top_lift(index: &FeatureIndex, class: usize, n: usize, min_images: u64) -> Vec<u32> {
    let mut f: Vec<(u32, f64)> = (0..index.d_sae)
        .filter(|&j| index.image_count[j] >= min_images)
        .map(|j| (j as u32, index.lift(j, class)))
        .collect();
    f.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    f.into_iter().take(n).map(|x| x.0).collect()
}

/// `n` features drawn at random from the 4·n live features (not in `exclude`) whose token
/// frequency is closest to feature `j`'s on a log scale.
pub fn matched_random(
    index: &FeatureIndex,
    j: u32,
    n: usize,
    exclude: &[u32],
    seed: u64,
) -> Vec<u32> {
    let log_f = |k: usize| (index.token_frequency(k).max(1e-12)).ln();
    let target = log_f(j as usize);
    let mut pool: Vec<(u32, f64)> = (0..index.d_sae)
        .filter(|&k| index.token_count[k] > 0 && !exclude.contains(&(k as u32)) && k != j as usize)
        .map(|k| (k as u32, (log_f(k) - target).abs()))
        .collect();
    pool.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    pool.truncate(4 * n);
    let mut rng = crate::rng::Rng::new(seed ^ (j as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut out = Vec::with_capacity(n);
    while out.len() < n && !pool.is_empty() {
        out.push(pool.swap_remove(rng.below(pool.len())).0);
    }
    out
}

/// Measures each of `features` on the images of class `class` (a dataset class index).
#[allow(clippy::too_many_arguments)]
pub fn causal_effects(
    backbone: &dyn Backbone,
    sae: &Sae,
    layer: usize,
    index: &FeatureIndex,
    ds: &Dataset,
    source: &LayerActivations,
    class: usize,
    features: &[u32],
    opts: &EffectOptions,
    job: &Job,
) -> Result<Vec<FeatureEffect>> {
    let info = backbone.info();
    let class_name = ds.classes.get(class).cloned().ok_or_else(|| {
        Error::Invalid(format!(
            "class {class} does not exist: the folder has classes {}",
            ds.classes.join(", ")
        ))
    })?;
    if let Some(&bad) = features.iter().find(|&&f| f as usize >= sae.d_sae) {
        return Err(Error::Invalid(format!(
            "feature {bad} does not exist: the SAE has {} features (0..{})",
            sae.d_sae,
            sae.d_sae - 1
        )));
    }
    if index.d_sae != sae.d_sae {
        return Err(crate::fixable!(
            ["the feature index belongs to another SAE"],
            [
                "rebuild it with ",
                crate::fix::Command::Index { rebuild: true }
            ]
        ));
    }
    let images: Vec<usize> = (0..ds.len())
        .filter(|&i| ds.images[i].class == Some(class as u32))
        .collect();
    if images.is_empty() {
        return Err(Error::Invalid(format!(
            "no images of class `{class_name}` in {}",
            ds.root.display()
        )));
    }
    let randoms: Vec<Vec<u32>> = features
        .iter()
        .map(|&j| matched_random(index, j, opts.random, features, opts.seed))
        .collect();
    let mut measured: Vec<u32> = features
        .iter()
        .chain(randoms.iter().flatten())
        .copied()
        .collect();
    measured.sort_unstable();
    measured.dedup();
    let mut sums: BTreeMap<u32, Effect> = measured
        .iter()
        .map(|&f| {
            (
                f,
                Effect {
                    feature: f,
                    ..Default::default()
                },
            )
        })
        .collect();
    let geometry = info.geometry;
    let (t, d) = (geometry.n_tokens(), info.d_model);
    let mut logit_of_class = None;
    let mut n = 0usize;
    for (done, chunk) in images.chunks(opts.batch.max(1)).enumerate() {
        job.check()?;
        let hb = source.batch(ds, chunk)?;
        let Some(hidden) = hb.hidden else { continue };
        let b = hb.ok.len();
        let hidden: Vec<f32> = hidden.flatten_all()?.to_vec1()?;
        let codes = sae.encode_sparse(&hidden);
        let original = finish(backbone, layer, &hidden, b)?;
        let c = match logit_of_class {
            Some(c) => c,
            None => {
                let n_logits = original[0].logits.as_ref().map(Vec::len).ok_or_else(|| {
                    Error::Invalid(format!(
                        "{} has no classifier head: a causal effect on a class needs one",
                        info.name
                    ))
                })?;
                let map = ds.class_mapping(info.class_names.as_deref(), n_logits)?;
                *logit_of_class.insert(map[class])
            }
        };
        let class_prob = |z: &[f32]| softmax(z)[c] as f64;
        // Each image's unedited logit and probability of the class, once per image.
        let before: Vec<Option<(f32, f64)>> = original
            .iter()
            .map(|r| r.logits.as_deref().map(|z| (z[c], class_prob(z))))
            .collect();
        n += b;
        for (&f, sum) in sums.iter_mut() {
            // Only images where f fires change; the rest add exactly 0.
            let hit: Vec<usize> = (0..b)
                .filter(|&i| (i * t..(i + 1) * t).any(|r| codes.row(r).any(|(k, _)| k == f)))
                .collect();
            if hit.is_empty() {
                continue;
            }
            let iv = Intervention {
                edits: vec![FeatureEdit {
                    feature: f,
                    mode: EditMode::Ablate,
                }],
                scope: TokenScope::All,
            };
            let mut edited = Vec::with_capacity(hit.len() * t * d);
            for &i in &hit {
                let mut h = hidden[i * t * d..(i + 1) * t * d].to_vec();
                apply_at(sae, &mut h, &codes, i * t, &iv, &geometry);
                edited.extend_from_slice(&h);
            }
            let out = finish(backbone, layer, &edited, hit.len())?;
            for (&i, r) in hit.iter().zip(&out) {
                let (Some((logit0, p0)), Some(z1)) = (before[i], &r.logits) else {
                    continue;
                };
                sum.mean_dlogit += (z1[c] - logit0) as f64;
                sum.mean_dprob += class_prob(z1) - p0;
                sum.images_changed += 1;
            }
        }
        job.report(Progress {
            done: ((done + 1) * opts.batch.max(1)).min(images.len()) as u64,
            total: images.len() as u64,
            unit: "images",
            message: format!("ablating {} features", measured.len()),
        });
    }
    if n == 0 {
        return Err(Error::Invalid(format!(
            "none of the images of class `{class_name}` could be read"
        )));
    }
    for e in sums.values_mut() {
        e.mean_dlogit /= n as f64;
        e.mean_dprob /= n as f64;
    }
    Ok(features
        .iter()
        .zip(randoms)
        .map(|(&j, rand)| {
            let random: Vec<Effect> = rand.iter().map(|f| sums[f]).collect();
            let k = random.len().max(1) as f64;
            let mean = random.iter().map(|e| e.mean_dprob).sum::<f64>() / k;
            let var = random
                .iter()
                .map(|e| (e.mean_dprob - mean).powi(2))
                .sum::<f64>()
                / (k - 1.0).max(1.0);
            let ablated = sums[&j];
            FeatureEffect {
                feature: j,
                class: class_name.clone(),
                images: n,
                lift: index.lift(j as usize, class),
                token_frequency: index.token_frequency(j as usize),
                ablated,
                random_mean_dprob: mean,
                random_std_dprob: var.sqrt(),
                random_mean_dlogit: random.iter().map(|e| e.mean_dlogit).sum::<f64>() / k,
                beats_random: random
                    .iter()
                    .filter(|e| ablated.mean_dprob < e.mean_dprob)
                    .count() as f64
                    / k,
                random,
                images_read_from_store: source.reused(),
            }
        })
        .collect())
}

/// Where an SAE's measured effects are kept.
pub fn effects_path(home: &std::path::Path) -> std::path::PathBuf {
    home.join("effects.json")
}

/// The saved effects (none yet: empty).
pub fn load_effects(home: &std::path::Path) -> Result<Vec<FeatureEffect>> {
    let p = effects_path(home);
    if !p.exists() {
        return Ok(Vec::new());
    }
    crate::fsutil::read_json(&p)
}

/// Adds `new` to the saved effects, replacing earlier measures of the same feature and class.
pub fn save_effects(home: &std::path::Path, new: &[FeatureEffect]) -> Result<()> {
    let mut all = load_effects(home)?;
    all.retain(|e| {
        !new.iter()
            .any(|n| n.feature == e.feature && n.class == e.class)
    });
    all.extend_from_slice(new);
    all.sort_by(|a, b| a.class.cmp(&b.class).then(a.feature.cmp(&b.feature)));
    crate::fsutil::write_json_atomic(&effects_path(home), &all)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 8 features over 100 images of 2 classes (50 each), 1,000 tokens.
    fn index() -> FeatureIndex {
        let token_count = vec![10, 11, 500, 12, 0, 9, 13, 8];
        let image_count = vec![10, 10, 100, 10, 0, 4, 6, 6];
        // [feature, class]: feature 0 fires only on class 1; feature 5 (4 images) too.
        let class_images = vec![0, 10, 5, 5, 50, 50, 5, 5, 0, 0, 0, 4, 3, 3, 3, 3];
        FeatureIndex {
            d_sae: 8,
            top_n: 0,
            tokens_per_image: 10,
            n_classes: 2,
            n_images: 100,
            n_tokens: 1000,
            token_count,
            image_count,
            act_sum: crate::analysis::index::ExactSums::zeros(8),
            max_act: vec![0.0; 8],
            hist: vec![0; 8 * crate::analysis::index::HIST_BINS],
            class_images,
            class_act: crate::analysis::index::ExactSums::zeros(16),
            class_sizes: vec![50, 50],
            class_raw: crate::analysis::index::ExactSums::zeros(0),
            d_in: 0,
            top: vec![Vec::new(); 8],
            samples: vec![Vec::new(); 8],
            has_samples: true,
        }
    }

    #[test]
    fn lift_is_the_class_share_among_firing_images_over_its_base_rate() {
        let ix = index();
        assert_eq!(ix.lift(0, 1), 2.0); // all of its images are class 1, which is half of all
        assert_eq!(ix.lift(1, 0), 1.0);
        assert_eq!(ix.lift(4, 0), 0.0); // never fires
        // Feature 5 has the same lift as 0 but fires on 4 images: passed over below 5.
        assert_eq!(top_lift(&ix, 1, 2, 5), vec![0, 1]);
        assert_eq!(top_lift(&ix, 1, 1, 1), vec![0]);
    }

    #[test]
    fn random_features_are_live_of_the_closest_frequencies_and_never_the_measured_ones() {
        let ix = index();
        let r = matched_random(&ix, 0, 2, &[0, 1], 7);
        assert_eq!(r.len(), 2);
        // The pool is the 8 closest live, unmeasured features: here all of them.
        assert!(r.iter().all(|f| [2, 3, 5, 6, 7].contains(f)), "{r:?}");
        assert!(!r.contains(&4), "dead features are no baseline");
        // Same seed, same draw.
        assert_eq!(r, matched_random(&ix, 0, 2, &[0, 1], 7));
        // Asked for one, the pool is the 4 closest: feature 2 (50× as frequent as 0) is out.
        for seed in 0..20 {
            let one = matched_random(&ix, 0, 1, &[], seed);
            assert!([1, 3, 5, 7].contains(&one[0]), "{one:?}");
        }
    }
}
