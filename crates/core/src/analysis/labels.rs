//! Feature labels: automatic ones from class folders (the class most precise among a feature's
//! top images, with precision and recall), manual ones that always win, and imported ones.
//! Every label keeps its source and confidence. Stored in WS/labels.json, written atomically,
//! so a crash mid-write leaves the previous file intact.

use super::index::FeatureIndex;
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

/// Labels every feature that fired with its most precise class (ties: higher recall).
/// Manual labels are kept. Returns how many labels were set.
pub fn label_from_classes(
    labels: &mut Labels,
    index: &FeatureIndex,
    ds: &Dataset,
) -> Result<usize> {
    if ds.classes.is_empty() {
        return Err(Error::Invalid(
            "the dataset has no class folders, so there is nothing to label features with".into(),
        ));
    }
    let mut n = 0;
    for j in 0..index.d_sae {
        if index.top[j].is_empty() {
            continue;
        }
        let best = class_scores(index, ds, j)
            .into_iter()
            .max_by(|a, b| a.1.total_cmp(&b.1).then(a.2.total_cmp(&b.2)));
        if let Some((c, p, r)) = best {
            labels.set(
                j as u32,
                Label {
                    text: ds.classes[c].clone(),
                    source: LabelSource::Class,
                    confidence: p,
                    precision: Some(p),
                    recall: Some(r),
                    note: None,
                },
            );
            n += 1;
        }
    }
    Ok(n)
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
}
