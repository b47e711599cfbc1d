//! Interventions through an SAE (saev's demos; the vision analogue of steering sliders): change
//! chosen features' codes on chosen tokens at the tapped layer and run the backbone's remaining
//! blocks on the edited stream.
//!
//! The edit is added to the stream as the change in reconstruction, `h' = h + (f' − f)·W_dec / s`,
//! which equals `decode(f') + (h − decode(f))`: the SAE's error term is kept. Written as a change,
//! a code left as it was adds nothing, so an edit that changes no code leaves the stream, and
//! everything after it, bit for bit as it was.

use crate::backbone::{Backbone, TokenGeometry, TokenKind, TokenSelection};
use crate::error::{Error, Result};
use crate::sae::{Sae, SparseCodes};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

/// What happens to a chosen feature's code.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode", content = "value")]
pub enum EditMode {
    /// Set to 0.
    Ablate,
    /// Set to this value (also where the feature was inactive).
    Clamp(f32),
    /// Multiply by this factor (inactive stays 0).
    Scale(f32),
}

impl EditMode {
    fn apply(self, code: f32) -> f32 {
        match self {
            EditMode::Ablate => 0.0,
            EditMode::Clamp(v) => v,
            EditMode::Scale(s) => code * s,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureEdit {
    pub feature: u32,
    #[serde(flatten)]
    pub mode: EditMode,
}

/// Which tokens of the sequence an edit touches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenScope {
    /// Every token (CLS and registers too).
    All,
    /// Every patch token.
    Patches,
    /// These sequence positions (e.g. patches painted in the app).
    Tokens(Vec<usize>),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Intervention {
    pub edits: Vec<FeatureEdit>,
    pub scope: TokenScope,
}

impl Intervention {
    /// Refuses features the SAE lacks, tokens the sequence lacks and non-finite values.
    pub fn validate(&self, sae: &Sae, geometry: &TokenGeometry) -> Result<()> {
        for e in &self.edits {
            if e.feature as usize >= sae.d_sae {
                return Err(Error::Invalid(format!(
                    "feature {} does not exist: the SAE has {} features (0..{})",
                    e.feature,
                    sae.d_sae,
                    sae.d_sae.saturating_sub(1)
                )));
            }
            if let EditMode::Clamp(v) | EditMode::Scale(v) = e.mode
                && !v.is_finite()
            {
                return Err(Error::Invalid(format!(
                    "the value for feature {} must be a finite number (got {v})",
                    e.feature
                )));
            }
        }
        if let TokenScope::Tokens(t) = &self.scope
            && let Some(&bad) = t.iter().find(|&&t| t >= geometry.n_tokens())
        {
            return Err(Error::Invalid(format!(
                "token {bad} does not exist: this model's sequence has {} tokens (0..{})",
                geometry.n_tokens(),
                geometry.n_tokens() - 1
            )));
        }
        Ok(())
    }

    /// The sequence positions edited, in order.
    pub fn tokens(&self, geometry: &TokenGeometry) -> Vec<usize> {
        match &self.scope {
            TokenScope::All => (0..geometry.n_tokens()).collect(),
            TokenScope::Patches => geometry.select(TokenSelection::Patch).unwrap_or_default(),
            TokenScope::Tokens(t) => {
                let mut t = t.clone();
                t.sort_unstable();
                t.dedup();
                t
            }
        }
    }
}

/// Applies `iv` to one image's stream `hidden` [T, D] whose codes are `codes` (T rows).
/// Returns how many codes changed.
pub fn apply(
    sae: &Sae,
    hidden: &mut [f32],
    codes: &SparseCodes,
    iv: &Intervention,
    geometry: &TokenGeometry,
) -> usize {
    apply_at(sae, hidden, codes, 0, iv, geometry)
}

/// [`apply`] for an image whose codes are rows `first_row..first_row + T` of a batch's.
pub fn apply_at(
    sae: &Sae,
    hidden: &mut [f32],
    codes: &SparseCodes,
    first_row: usize,
    iv: &Intervention,
    geometry: &TokenGeometry,
) -> usize {
    let d = sae.d_in;
    let inv_scale = 1.0 / sae.input_scale.unwrap_or(1.0);
    let mut changed = 0;
    for t in iv.tokens(geometry) {
        if first_row + t >= codes.rows() || (t + 1) * d > hidden.len() {
            continue;
        }
        let row = &mut hidden[t * d..(t + 1) * d];
        for e in &iv.edits {
            let old = codes
                .row(first_row + t)
                .find(|&(j, _)| j == e.feature)
                .map_or(0.0, |x| x.1);
            let delta = e.mode.apply(old) - old;
            if delta == 0.0 {
                continue;
            }
            changed += 1;
            let j = e.feature as usize;
            let w = &sae.w_dec[j * d..(j + 1) * d];
            for (x, &w) in row.iter_mut().zip(w) {
                *x += delta * w * inv_scale;
            }
        }
    }
    changed
}

/// What the model outputs for one image.
#[derive(Clone, Debug, PartialEq)]
pub struct Readout {
    /// Classifier logits, when the model has a head.
    pub logits: Option<Vec<f32>>,
    pub pooled: Vec<f32>,
    /// Final hidden state [T, D].
    pub last: Vec<f32>,
}

impl Readout {
    pub fn probs(&self) -> Option<Vec<f32>> {
        self.logits.as_deref().map(softmax)
    }
}

pub fn softmax(z: &[f32]) -> Vec<f32> {
    let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f64> = z.iter().map(|&v| ((v - m) as f64).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|&v| (v / s) as f32).collect()
}

/// Runs the blocks after `layer` on streams [B, T, D]; one readout per image.
pub fn finish(
    backbone: &dyn Backbone,
    layer: usize,
    hidden: &[f32],
    batch: usize,
) -> Result<Vec<Readout>> {
    let (t, d) = (backbone.info().geometry.n_tokens(), backbone.info().d_model);
    let x = Tensor::from_slice(hidden, (batch, t, d), backbone.device())?;
    let out = backbone.finish_from(&x, layer)?;
    let last: Vec<f32> = out.last.flatten_all()?.to_vec1()?;
    let pooled: Vec<f32> = out.pooled.flatten_all()?.to_vec1()?;
    let logits: Option<Vec<f32>> = out
        .logits
        .map(|l| l.flatten_all().and_then(|l| l.to_vec1()))
        .transpose()?;
    let dp = pooled.len() / batch.max(1);
    let c = logits.as_ref().map_or(0, |l| l.len() / batch.max(1));
    Ok((0..batch)
        .map(|b| Readout {
            logits: logits.as_ref().map(|l| l[b * c..(b + 1) * c].to_vec()),
            pooled: pooled[b * dp..(b + 1) * dp].to_vec(),
            last: last[b * t * d..(b + 1) * t * d].to_vec(),
        })
        .collect())
}

/// One image run to the tapped layer, encoded, and finished unedited: what every later edit of
/// it starts from (the app keeps it so sliders only re-run the blocks after the layer).
#[derive(Clone, Debug)]
pub struct Prepared {
    pub layer: usize,
    pub hidden: Vec<f32>,
    pub codes: SparseCodes,
    pub original: Readout,
    /// The model's own top-5 classes before any edit (empty without a classifier head).
    pub prediction: Vec<ClassProb>,
}

impl Prepared {
    pub fn new(
        backbone: &dyn Backbone,
        sae: &Sae,
        layer: usize,
        img: &image::RgbImage,
    ) -> Result<Prepared> {
        sae.check_fits(backbone.info().d_model, &format!("layer {layer}"))?;
        let (pixels, _) = backbone
            .preprocessor()
            .batch(std::slice::from_ref(img), backbone.device())?;
        let hidden: Vec<f32> = backbone
            .forward_to(&pixels, layer)?
            .flatten_all()?
            .to_vec1()?;
        let codes = sae.encode_sparse(&hidden);
        let original = finish(backbone, layer, &hidden, 1)?.remove(0);
        let names = class_names(backbone.info().class_names.as_deref(), &original);
        let prediction = prediction(&original, &names, 5);
        Ok(Prepared {
            layer,
            hidden,
            codes,
            original,
            prediction,
        })
    }

    /// Runs the edited stream through the rest of the model and compares it with the original.
    pub fn run(
        &self,
        backbone: &dyn Backbone,
        sae: &Sae,
        iv: &Intervention,
        top_k: usize,
    ) -> Result<Outcome> {
        let info = backbone.info();
        let geometry = info.geometry;
        iv.validate(sae, &geometry)?;
        let mut edited_stream = self.hidden.clone();
        let codes_changed = apply(sae, &mut edited_stream, &self.codes, iv, &geometry);
        // Run even when no code changed: `identical` is then measured, not assumed.
        let edited = finish(backbone, self.layer, &edited_stream, 1)?.remove(0);
        let d = info.d_model;
        let per_token = |a: &[f32], b: &[f32]| -> Vec<f32> {
            a.chunks(d)
                .zip(b.chunks(d))
                .map(|(x, y)| {
                    x.iter()
                        .zip(y)
                        .map(|(p, q)| ((p - q) as f64).powi(2))
                        .sum::<f64>()
                        .sqrt() as f32
                })
                .collect()
        };
        let names = class_names(info.class_names.as_deref(), &self.original);
        Ok(Outcome {
            layer: self.layer,
            edits: iv.edits.clone(),
            tokens_edited: iv.tokens(&geometry).len(),
            codes_changed,
            identical: edited == self.original,
            original: prediction(&self.original, &names, top_k),
            edited: prediction(&edited, &names, top_k),
            class_probs: match (self.original.probs(), edited.probs()) {
                (Some(a), Some(b)) => names
                    .iter()
                    .zip(a.iter().zip(&b))
                    .map(|(n, (&a, &b))| ClassShift {
                        class: n.clone(),
                        original: a,
                        edited: b,
                    })
                    .collect(),
                _ => Vec::new(),
            },
            pooled_cosine: cosine(&self.original.pooled, &edited.pooled),
            stream_change: per_token(&edited_stream, &self.hidden),
            output_change: per_token(&edited.last, &self.original.last),
        })
    }
}

fn class_names(names: Option<&[String]>, r: &Readout) -> Vec<String> {
    let n = r.logits.as_ref().map_or(0, Vec::len);
    match names {
        Some(names) if names.len() == n => names.to_vec(),
        _ => (0..n).map(|i| format!("class {i}")).collect(),
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
    let na: f64 = a.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    (dot / (na * nb).max(1e-30)) as f32
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassProb {
    pub class: String,
    pub prob: f32,
    pub logit: f32,
}

/// The top classes, best first (empty without a classifier head).
fn prediction(r: &Readout, names: &[String], top_k: usize) -> Vec<ClassProb> {
    let (Some(logits), Some(probs)) = (&r.logits, r.probs()) else {
        return Vec::new();
    };
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    order
        .into_iter()
        .take(top_k)
        .map(|c| ClassProb {
            class: names[c].clone(),
            prob: probs[c],
            logit: logits[c],
        })
        .collect()
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassShift {
    pub class: String,
    pub original: f32,
    pub edited: f32,
}

/// An intervention's result on one image.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub layer: usize,
    pub edits: Vec<FeatureEdit>,
    pub tokens_edited: usize,
    /// Codes that the edit changed.
    pub codes_changed: usize,
    /// The edited outputs equal the original bit for bit.
    pub identical: bool,
    /// Top classes before and after (empty for a model without a classifier head).
    pub original: Vec<ClassProb>,
    pub edited: Vec<ClassProb>,
    /// Every class's probability before and after.
    pub class_probs: Vec<ClassShift>,
    /// Cosine similarity of the pooled outputs (for models without a head, the main readout).
    pub pooled_cosine: f32,
    /// Per token: L2 norm of the edit at the tapped layer.
    pub stream_change: Vec<f32>,
    /// Per token: L2 norm of the change in the final hidden state (the edit's effect map).
    pub output_change: Vec<f32>,
}

impl Outcome {
    /// A per-token vector as a patch-grid heatmap (CLS value kept aside).
    pub fn heatmap(values: &[f32], geometry: &TokenGeometry) -> crate::analysis::heatmap::Heatmap {
        let tokens: Vec<usize> = (0..values.len()).collect();
        crate::analysis::heatmap::Heatmap::from_tokens(u32::MAX, geometry, &tokens, values)
    }
}

/// Whether `token` is a patch (painting only selects patches).
pub fn is_patch(geometry: &TokenGeometry, token: usize) -> bool {
    matches!(geometry.kind(token), TokenKind::Patch { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry() -> TokenGeometry {
        TokenGeometry {
            has_cls: true,
            registers: 0,
            grid_h: 2,
            grid_w: 2,
            patch_size: 4,
        }
    }

    #[test]
    fn the_edit_is_the_change_in_reconstruction_and_keeps_the_error_term() {
        let mut sae = Sae::random_topk(6, 16, 3, 0.4, 7);
        sae.input_scale = Some(2.0);
        sae.b_dec = (0..6).map(|i| i as f32 * 0.1).collect();
        let g = geometry();
        let h: Vec<f32> = (0..5 * 6)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.3)
            .collect();
        let codes = sae.encode_sparse(&h);
        let (t, j) = (2usize, codes.row(2).next().unwrap().0);
        let iv = Intervention {
            edits: vec![FeatureEdit {
                feature: j,
                mode: EditMode::Scale(3.0),
            }],
            scope: TokenScope::Tokens(vec![t]),
        };
        let mut edited = h.clone();
        assert_eq!(apply(&sae, &mut edited, &codes, &iv, &g), 1);
        // decode(f') + (h − decode(f)), computed densely.
        let f = codes.to_dense(16);
        let mut f2 = f.clone();
        f2[t * 16 + j as usize] *= 3.0;
        let (r, r2) = (sae.decode(&f), sae.decode(&f2));
        for i in 0..h.len() {
            let want = r2[i] + (h[i] - r[i]);
            assert!(
                (edited[i] - want).abs() < 1e-5,
                "{i}: {} vs {want}",
                edited[i]
            );
        }
        // Only token t moved.
        for (i, (a, b)) in edited.iter().zip(&h).enumerate() {
            if i / 6 != t {
                assert_eq!(a.to_bits(), b.to_bits());
            }
        }
    }

    #[test]
    fn clamping_to_zero_where_inactive_changes_nothing_bit_for_bit() {
        let sae = Sae::random_topk(6, 16, 2, 0.4, 3);
        let g = geometry();
        let h: Vec<f32> = (0..5 * 6).map(|i| (i as f32 * 0.7).sin()).collect();
        let codes = sae.encode_sparse(&h);
        let inactive = (0..16u32)
            .find(|&j| (0..5).all(|r| codes.row(r).all(|(k, _)| k != j)))
            .expect("with k=2 of 16 some feature is inactive everywhere");
        let mut edited = h.clone();
        for mode in [EditMode::Clamp(0.0), EditMode::Ablate, EditMode::Scale(5.0)] {
            let iv = Intervention {
                edits: vec![FeatureEdit {
                    feature: inactive,
                    mode,
                }],
                scope: TokenScope::All,
            };
            assert_eq!(apply(&sae, &mut edited, &codes, &iv, &g), 0);
        }
        assert!(
            edited
                .iter()
                .zip(&h)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
    }

    #[test]
    fn bad_features_tokens_and_values_are_refused_with_the_range() {
        let sae = Sae::random_topk(6, 16, 2, 0.4, 1);
        let g = geometry();
        let iv = |feature, mode, scope| Intervention {
            edits: vec![FeatureEdit { feature, mode }],
            scope,
        };
        let e = iv(99, EditMode::Ablate, TokenScope::All)
            .validate(&sae, &g)
            .unwrap_err()
            .to_string();
        assert!(e.contains("feature 99 does not exist"), "{e}");
        let e = iv(0, EditMode::Clamp(f32::NAN), TokenScope::All)
            .validate(&sae, &g)
            .unwrap_err()
            .to_string();
        assert!(e.contains("finite"), "{e}");
        let e = iv(0, EditMode::Ablate, TokenScope::Tokens(vec![5]))
            .validate(&sae, &g)
            .unwrap_err()
            .to_string();
        assert!(e.contains("token 5 does not exist"), "{e}");
        assert_eq!(
            iv(0, EditMode::Ablate, TokenScope::Patches).tokens(&g),
            vec![1, 2, 3, 4]
        );
    }
}
