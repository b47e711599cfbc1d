//! Feature labels: automatic ones from class folders (given only when a class is significantly
//! over-represented among a feature's top images, with the evidence), manual ones that always
//! win, and imported ones. Every label keeps its source and confidence. Stored in
//! WS/saes/<name>/labels.json, written atomically, so a crash mid-write leaves the previous file
//! intact.

use super::index::FeatureIndex;
use super::label_null::ClassNull;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::store::Dataset;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const LABELS_FILE: &str = "labels.json";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelSource {
    /// From class folders.
    Class,
    /// CLIP zero-shot against a concept vocabulary.
    Clip,
    /// Typed by a person; never overwritten by automatic labelling.
    Manual,
    /// Read from an export of another workspace (keeps the original source in `note`).
    Imported,
    /// Found by steering a diffusion model with the feature (attribute discovery).
    Steering,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Label {
    pub text: String,
    pub source: LabelSource,
    /// 0..=1: precision for class labels, 1 for manual ones.
    pub confidence: f64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub precision: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub recall: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub note: Option<String>,
    /// For a class label: the test that supports it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub evidence: Option<ClassEvidence>,
}

/// Why a class labels a feature: of the feature's `n` top images, `k` are of the class, against
/// a base rate (the class's share of all images); `p_value` is the one-sided binomial
/// probability of at least `k` of `n` at the base rate, and `lift` is the index's image-level
/// lift, P(class | the feature fires) / P(class), as the feature page shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassEvidence {
    pub n: usize,
    pub k: usize,
    pub base_rate: f64,
    pub lift: f64,
    pub p_value: f64,
    /// The significance level the p-value was held to (α over the tests made).
    pub threshold: f64,
    /// The smallest p-value the best class of any of the workspace's random directions reached
    /// (see [`super::label_null`]); the label's p-value is below it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub null_p: Option<f64>,
    /// How many random directions that null was taken over.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub null_directions: Option<usize>,
}

/// Family-wise error rate of the class labels of one SAE: the chance that any label is given
/// to a feature whose top images are no more of that class than chance would make them.
pub const LABEL_ALPHA: f64 = 0.01;
/// A class label needs at least this many top images, and this many of them of the class.
pub const MIN_TOP_IMAGES: usize = 10;
pub const MIN_CLASS_IMAGES: usize = 5;

/// P(X ≥ k) for X ~ Binomial(n, p), summed in log space (exact enough at any n the index keeps).
pub fn binomial_tail(k: usize, n: usize, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n || p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    // ln C(n, i) built up from ln C(n, 0) = 0.
    let mut ln_choose = 0.0f64;
    let mut terms = Vec::with_capacity(n + 1 - k);
    for i in 0..=n {
        if i > 0 {
            ln_choose += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        if i >= k {
            terms.push(ln_choose + i as f64 * p.ln() + (n - i) as f64 * (1.0 - p).ln());
        }
    }
    let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (max.exp() * terms.iter().map(|t| (t - max).exp()).sum::<f64>()).min(1.0)
}

impl Label {
    /// A class label that passed both tests of [`label_from_classes`] (chance and random
    /// directions). Manual, imported and CLIP labels, and class labels made before the null
    /// existed, are not statistically supported in this sense.
    pub fn is_significant(&self) -> bool {
        self.evidence.as_ref().is_some_and(|e| {
            e.p_value <= e.threshold && e.null_p.is_some_and(|null| e.p_value < null)
        })
    }

    /// One line of the evidence for a class label ("41 of 64 top images (64% vs 10%), lift
    /// 3.1×, p 2e-20 < best random 4e-9"), or the label's source for other labels.
    pub fn evidence_line(&self) -> String {
        match &self.evidence {
            Some(e) => format!(
                "{} of {} top images ({:.0}% vs {:.0}% of all), lift {:.1}×, recall {:.0}%, p {:.0e}{}",
                e.k,
                e.n,
                100.0 * e.k as f64 / e.n.max(1) as f64,
                100.0 * e.base_rate,
                e.lift,
                100.0 * self.recall.unwrap_or(0.0),
                e.p_value,
                match e.null_p {
                    Some(null) => format!(" < best random direction's {null:.0e}"),
                    None => " (not tested against random directions)".into(),
                }
            ),
            None => format!("{:?} label, confidence {:.2}", self.source, self.confidence),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Labels {
    pub format: String,
    /// Feature id → label.
    pub labels: BTreeMap<u32, Label>,
}

impl Labels {
    /// The labels of the SAE whose folder is `home` (`WS/saes/<name>/labels.json`).
    pub fn path(home: &Path) -> PathBuf {
        home.join(LABELS_FILE)
    }

    /// The SAE's labels (empty if none were saved yet).
    pub fn load(home: &Path) -> Result<Labels> {
        let p = Self::path(home);
        if !p.exists() {
            return Ok(Labels {
                format: "saescope-labels-v1".into(),
                labels: BTreeMap::new(),
            });
        }
        fsutil::read_json(&p)
    }

    pub fn save(&self, home: &Path) -> Result<()> {
        fsutil::write_json_atomic(&Self::path(home), self)
    }

    /// Sets a label unless a manual one is there and `label` is not manual.
    pub fn set(&mut self, feature: u32, label: Label) {
        let keep_manual = self
            .labels
            .get(&feature)
            .is_some_and(|l| l.source == LabelSource::Manual)
            && label.source != LabelSource::Manual;
        if !keep_manual {
            self.labels.insert(feature, label);
        }
    }

    pub fn set_manual(&mut self, feature: u32, text: &str) {
        if text.trim().is_empty() {
            self.labels.remove(&feature);
            return;
        }
        self.set(
            feature,
            Label {
                text: text.trim().to_string(),
                source: LabelSource::Manual,
                confidence: 1.0,
                precision: None,
                recall: None,
                note: None,
                evidence: None,
            },
        );
    }
}

/// Class precision/recall of feature `j`: precision among its top images, recall = share of the
/// class's images on which it fires.
pub fn class_scores(index: &FeatureIndex, ds: &Dataset, j: usize) -> Vec<(usize, f64, f64)> {
    let top = &index.top[j];
    let nc = ds.classes.len();
    let mut counts = vec![0usize; nc];
    for e in top {
        if let Some(c) = ds.images.get(e.image as usize).and_then(|i| i.class) {
            counts[c as usize] += 1;
        }
    }
    (0..nc)
        .map(|c| {
            let precision = counts[c] as f64 / top.len().max(1) as f64;
            let recall = index.class_images[j * index.n_classes + c] as f64
                / index.class_sizes.get(c).copied().unwrap_or(0).max(1) as f64;
            (c, precision, recall)
        })
        .collect()
}

/// Labels a feature with a class only when that class is significantly over-represented among
/// its top images, twice over:
/// - against chance: at least [`MIN_TOP_IMAGES`] top images, [`MIN_CLASS_IMAGES`] of the class,
///   and a one-sided binomial p-value against the class's base rate below [`LABEL_ALPHA`]
///   divided by the number of (feature, class) pairs tested (Bonferroni);
/// - against random directions: that p-value is below the best any of the workspace's random
///   directions reaches (`null`; the binomial null alone is too weak, because the top images
///   of any direction in a class-structured representation share classes).
///
/// Features without such a class are left unlabelled, and class labels from an earlier, laxer
/// run are removed; manual and other labels are kept. Returns how many class labels were set.
pub fn label_from_classes(
    labels: &mut Labels,
    index: &FeatureIndex,
    ds: &Dataset,
    null: &ClassNull,
) -> Result<usize> {
    if ds.classes.is_empty() {
        return Err(Error::Invalid(
            "the dataset has no class folders, so there is nothing to label features with".into(),
        ));
    }
    let nc = ds.classes.len();
    let testable = (0..index.d_sae)
        .filter(|&j| index.top[j].len() >= MIN_TOP_IMAGES)
        .count();
    let threshold = LABEL_ALPHA / (testable * nc).max(1) as f64;
    let null_p = null.min_p();
    let mut n = 0;
    for j in 0..index.d_sae {
        let best = class_evidence(index, ds, j)
            .into_iter()
            .filter(|(_, e)| {
                e.n >= MIN_TOP_IMAGES
                    && e.k >= MIN_CLASS_IMAGES
                    && e.p_value <= threshold
                    && e.p_value < null_p
            })
            .min_by(|a, b| a.1.p_value.total_cmp(&b.1.p_value).then(b.1.k.cmp(&a.1.k)));
        let stale = labels
            .labels
            .get(&(j as u32))
            .is_some_and(|l| l.source == LabelSource::Class);
        match best {
            Some((c, evidence)) => {
                let precision = evidence.k as f64 / evidence.n as f64;
                let recall = index.class_images[j * index.n_classes + c] as f64
                    / index.class_sizes.get(c).copied().unwrap_or(0).max(1) as f64;
                labels.set(
                    j as u32,
                    Label {
                        text: ds.classes[c].clone(),
                        source: LabelSource::Class,
                        confidence: precision,
                        precision: Some(precision),
                        recall: Some(recall),
                        note: None,
                        evidence: Some(ClassEvidence {
                            threshold,
                            null_p: Some(null_p),
                            null_directions: Some(null.directions),
                            ..evidence
                        }),
                    },
                );
                n += 1;
            }
            None if stale => {
                labels.labels.remove(&(j as u32));
            }
            None => {}
        }
    }
    Ok(n)
}

/// Per class, the evidence that it labels feature `j` (its top images against the base rate).
pub fn class_evidence(index: &FeatureIndex, ds: &Dataset, j: usize) -> Vec<(usize, ClassEvidence)> {
    let top = &index.top[j];
    let nc = ds.classes.len();
    let mut counts = vec![0usize; nc];
    for e in top {
        if let Some(c) = ds.images.get(e.image as usize).and_then(|i| i.class)
            && (c as usize) < nc
        {
            counts[c as usize] += 1;
        }
    }
    (0..nc)
        .map(|c| {
            let base_rate = index.class_sizes.get(c).copied().unwrap_or(0) as f64
                / index.n_images.max(1) as f64;
            let evidence = ClassEvidence {
                n: top.len(),
                k: counts[c],
                base_rate,
                lift: if c < index.n_classes {
                    index.lift(j, c)
                } else {
                    0.0
                },
                p_value: binomial_tail(counts[c], top.len(), base_rate),
                threshold: LABEL_ALPHA,
                null_p: None,
                null_directions: None,
            };
            (c, evidence)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class_label(text: &str, p: f64) -> Label {
        Label {
            text: text.into(),
            source: LabelSource::Class,
            confidence: p,
            precision: Some(p),
            recall: Some(0.1),
            note: None,
            evidence: None,
        }
    }

    #[test]
    fn manual_labels_win_over_automatic_ones() {
        let mut l = Labels::default();
        l.set(3, class_label("cat", 0.6));
        l.set_manual(3, " whiskers ");
        l.set(3, class_label("dog", 0.9));
        assert_eq!(l.labels[&3].text, "whiskers");
        assert_eq!(l.labels[&3].source, LabelSource::Manual);
        l.set_manual(3, "");
        assert!(!l.labels.contains_key(&3));
        l.set(3, class_label("dog", 0.9));
        assert_eq!(l.labels[&3].text, "dog");
    }

    #[test]
    fn labels_round_trip_through_the_file() {
        let d = tempfile::tempdir().unwrap();
        let mut l = Labels::load(d.path()).unwrap();
        l.set(1, class_label("ship", 0.75));
        l.set_manual(2, "water texture");
        l.save(d.path()).unwrap();
        assert_eq!(Labels::load(d.path()).unwrap(), l);
    }

    #[test]
    fn binomial_tail_matches_known_values() {
        assert_eq!(binomial_tail(0, 10, 0.3), 1.0);
        assert!((binomial_tail(1, 1, 0.3) - 0.3).abs() < 1e-12);
        // P(X ≥ 8 | 10, 0.5) = 56 / 1024.
        assert!((binomial_tail(8, 10, 0.5) - 56.0 / 1024.0).abs() < 1e-12);
        // P(X ≥ 64 | 64, 0.1) = 1e-64.
        assert!((binomial_tail(64, 64, 0.1).log10() + 64.0).abs() < 1e-9);
    }

    /// Planted features: 10 class-specific ones (40 of their 64 top images of one class), 10
    /// dense ones, 5 as class-enriched as random directions are (22 of 64) and 25 random ones
    /// (top images drawn without regard to class). Exactly the planted class features get
    /// labels, each with its class; a stale class label of another feature goes, a manual one
    /// stays.
    #[test]
    fn only_significantly_class_specific_features_are_labelled() {
        use crate::analysis::index::{ExactSums, FeatureIndex, TopEntry};
        let (nc, per_class, d_sae, top_n) = (10usize, 50usize, 50usize, 64usize);
        let n_images = nc * per_class;
        let ds = Dataset {
            root: "/data".into(),
            classes: (0..nc).map(|c| format!("class{c}")).collect(),
            images: (0..n_images)
                .map(|i| crate::store::dataset::ImageEntry {
                    path: format!("class{}/{i}.png", i / per_class),
                    class: Some((i / per_class) as u32),
                })
                .collect(),
        };
        let mut rng = crate::rng::Rng::new(5);
        let mut random_images = |n: usize| -> Vec<u32> {
            let mut all: Vec<u32> = (0..n_images as u32).collect();
            for i in 0..n {
                let j = i + (rng.next_u64() as usize) % (all.len() - i);
                all.swap(i, j);
            }
            all.truncate(n);
            all
        };
        let mut top = Vec::new();
        for j in 0..d_sae {
            // Planted: 40 of class j, then 24 from anywhere. As enriched as random directions
            // get: 22 of class j - 2 nc (significant against chance, not against the null).
            let of_class = match j {
                j if j < nc => Some((j, 40)),
                j if (2 * nc..2 * nc + 5).contains(&j) => Some((j - 2 * nc, 22)),
                _ => None,
            };
            let images: Vec<u32> = if let Some((c, k)) = of_class {
                let mut v: Vec<u32> = (0..k).map(|i| (c * per_class + i) as u32).collect();
                let more: Vec<u32> = random_images(n_images)
                    .into_iter()
                    .filter(|i| !v.contains(i) && *i as usize / per_class != c)
                    .take(top_n - k)
                    .collect();
                v.extend(more);
                v
            } else {
                random_images(top_n)
            };
            top.push(
                images
                    .iter()
                    .enumerate()
                    .map(|(r, &image)| TopEntry {
                        image,
                        token: 0,
                        value: 100.0 - r as f32,
                        tokens: vec![0.0],
                    })
                    .collect::<Vec<_>>(),
            );
        }
        // Dense features fire on every image; the class-specific and random ones on some.
        let image_count: Vec<u64> = (0..d_sae)
            .map(|j| {
                if (nc..2 * nc).contains(&j) {
                    n_images as u64
                } else {
                    100
                }
            })
            .collect();
        let index = FeatureIndex {
            d_sae,
            top_n,
            tokens_per_image: 1,
            n_classes: nc,
            n_images: n_images as u64,
            n_tokens: n_images as u64,
            token_count: image_count.clone(),
            image_count,
            act_sum: ExactSums::zeros(d_sae),
            max_act: vec![1.0; d_sae],
            hist: vec![0; d_sae * crate::analysis::index::HIST_BINS],
            class_images: vec![10; d_sae * nc],
            class_act: ExactSums::zeros(d_sae * nc),
            class_sizes: vec![per_class as u64; nc],
            class_raw: ExactSums::zeros(0),
            d_in: 0,
            top,
            samples: vec![Vec::new(); d_sae],
            has_samples: false,
        };
        let mut labels = Labels::default();
        labels.set(30, class_label("stale", 0.2));
        labels.set_manual(31, "my own");
        // Random directions reach 25 of 64 of one class at best.
        let null = ClassNull {
            format: String::new(),
            directions: 256,
            seed: 0,
            top_n,
            store_key: String::new(),
            best_p: vec![binomial_tail(25, top_n, 0.1), 0.5],
            best_precision: vec![25.0 / 64.0, 0.2],
        };
        let weak = class_evidence(&index, &ds, 2 * nc)[0].1.p_value;
        assert!(
            weak < LABEL_ALPHA / (d_sae * nc) as f64,
            "22 of 64 passes Bonferroni"
        );
        let n = label_from_classes(&mut labels, &index, &ds, &null).unwrap();
        assert_eq!(n, nc);
        for j in 0..nc as u32 {
            let l = &labels.labels[&j];
            assert_eq!(l.text, format!("class{j}"));
            let e = l.evidence.as_ref().unwrap();
            assert!(e.k >= 40 && e.n == 64 && e.p_value <= e.threshold, "{e:?}");
        }
        let auto: Vec<u32> = labels
            .labels
            .iter()
            .filter(|(_, l)| l.source == LabelSource::Class)
            .map(|(j, _)| *j)
            .collect();
        assert_eq!(
            auto,
            (0..nc as u32).collect::<Vec<_>>(),
            "only the planted features"
        );
        assert_eq!(labels.labels[&31].text, "my own");
    }
}
