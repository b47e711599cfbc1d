//! Out-of-distribution detection with SAE features. Fit on in-distribution images, then score
//! any folder; higher score = more unusual. Methods:
//! - `sae_reconstruction`: relative SAE reconstruction error Σ‖x − x̂‖² / Σ‖x‖² over the tokens;
//! - `sae_rarity`: activation-weighted mean surprisal −ln p_j of the features the image fires,
//!   p_j = fraction of fit images on which feature j fires;
//! - `sae_mahalanobis`: Mahalanobis distance of the image's mean SAE code;
//! - `sae_cls_mahalanobis`: Mahalanobis distance of the CLS token's SAE code (models with a CLS
//!   token): the SAE counterpart of the raw-CLS baseline, comparing like with like;
//! - baselines `msp` (negated maximum softmax probability; models with a classifier head) and
//!   `raw_cls_mahalanobis` (Mahalanobis on the raw CLS activation at the tapped layer, or the
//!   token mean for models without CLS).
//!
//! Each scored image keeps the features that contributed most: for rarity a_j·(−ln p_j), for
//! Mahalanobis (c − μ)_j·(Σ⁻¹(c − μ))_j (these sum to the squared distance), for reconstruction
//! the features whose decoder directions best align with the unexplained residual.

use crate::backbone::Backbone;
use crate::error::{Error, Result};
use crate::job::{Job, Progress};
use crate::linalg::{RhsLayout, matmul, whitening};
use crate::sae::Sae;
use crate::store::Dataset;
use crate::store::Workspace;
use crate::store::reuse::{HiddenBatch, LayerActivations};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const METHODS: [&str; 6] = [
    "sae_reconstruction",
    "sae_rarity",
    "sae_mahalanobis",
    "sae_cls_mahalanobis",
    "msp",
    "raw_cls_mahalanobis",
];
const SAE_METHODS: usize = 4;
/// Contributions kept per image and SAE method.
pub const TOP_CONTRIBUTIONS: usize = 5;

// ---------- metrics ----------

mod gaussian;
mod roc;
mod run;
pub mod split;
use gaussian::{Gaussian, Moments, choose_ridge};
pub use gaussian::{RIDGE_GRID, RidgeChoice};
pub use roc::{auroc, fpr_at_95_tpr, roc_curve};
pub use run::{Folders, run};

/// What scoring needs from one image (computed by the backbone and the SAE; a task of a split
/// run stores these, and the merge fits and scores from them).
#[derive(Clone, Debug, PartialEq)]
struct ImageOut {
    /// Σ_t ‖x − x̂‖² and Σ_t ‖x‖².
    sq_err: f64,
    sq_norm: f64,
    /// Mean over tokens of the dense SAE code [d_sae].
    code_mean: Vec<f32>,
    /// Per active feature, its maximum activation over tokens.
    active_max: Vec<(u32, f32)>,
    /// Mean residual x − x̂ over tokens [d_in].
    residual_mean: Vec<f32>,
    /// Raw CLS activation at the layer (token mean without CLS) [d_in].
    cls: Vec<f32>,
    /// The CLS token's dense SAE code [d_sae] (models with a CLS token).
    cls_code: Option<Vec<f32>>,
    /// Maximum softmax probability, with a classifier head.
    msp: Option<f32>,
}

/// Receives each batch's dataset ids and per-image outputs.
type BatchSink<'s> = dyn FnMut(&[usize], Vec<ImageOut>) -> Result<()> + 's;

/// Where a folder's per-batch outputs come from: the model run now, or a split run's stored
/// outputs (the same batches, in the same order). Returns how many images it fed.
type Feed<'f> = dyn FnMut(&mut BatchSink) -> Result<usize> + 'f;

/// Runs the backbone to `layer` on the images of `ds` and calls `sink` once per batch of
/// `batch` images; with `part`, only that task's contiguous range of the batches.
#[allow(clippy::too_many_arguments)]
fn for_each_batch(
    backbone: &dyn Backbone,
    sae: &Sae,
    ds: &Dataset,
    layer: usize,
    batch: usize,
    part: Option<crate::store::tasks::TaskSpec>,
    job: &Job,
    what: &str,
    want_msp: bool,
    reuse: &[PathBuf],
    sink: &mut BatchSink,
) -> Result<usize> {
    let geometry = backbone.info().geometry;
    let workspaces = reuse
        .iter()
        .map(|p| Workspace::open(p))
        .collect::<Result<Vec<_>>>()?;
    let source = LayerActivations::new(backbone, layer, &workspaces)?;
    let ids: Vec<usize> = (0..ds.len()).collect();
    let batches: Vec<&[usize]> = ids.chunks(batch.max(1)).collect();
    let range = part.map_or(0..batches.len(), |t| t.range(batches.len()));
    let mut done = 0;
    for &chunk in &batches[range] {
        job.check()?;
        let HiddenBatch {
            hidden: Some(hidden),
            ok,
            ..
        } = source.batch(ds, chunk)?
        else {
            continue;
        };
        let (b, t, d) = hidden.dims3()?;
        let msp: Option<Vec<f32>> = if want_msp {
            match backbone.finish_from(&hidden, layer)?.logits {
                Some(l) => {
                    let p = candle_nn::ops::softmax_last_dim(&l)?;
                    Some(p.max(1)?.to_vec1()?)
                }
                None => None,
            }
        } else {
            None
        };
        let h: Vec<f32> = hidden.flatten_all()?.to_vec1()?;
        let codes = sae.encode_sparse(&h);
        let d_sae = sae.d_sae;
        let outs: Vec<ImageOut> = (0..b)
            .into_par_iter()
            .map(|i| {
                let x = &h[i * t * d..(i + 1) * t * d];
                // x̂ from the sparse codes: b_dec + Σ f_j W_dec[j] (input scale undone).
                let mut code_mean = vec![0f32; d_sae];
                let mut active: std::collections::BTreeMap<u32, f32> = Default::default();
                let mut residual_mean = vec![0f32; d];
                let (mut se, mut sn) = (0f64, 0f64);
                let scale = sae.input_scale.unwrap_or(1.0);
                for tok in 0..t {
                    let mut xh = sae.b_dec.clone();
                    for (j, v) in codes.row(i * t + tok) {
                        let wd = &sae.w_dec[j as usize * d..(j as usize + 1) * d];
                        xh.iter_mut().zip(wd).for_each(|(a, w)| *a += v * w);
                        code_mean[j as usize] += v / t as f32;
                        let m = active.entry(j).or_insert(0.0);
                        *m = m.max(v);
                    }
                    let xt = &x[tok * d..(tok + 1) * d];
                    for ((r, &a), &xv) in residual_mean.iter_mut().zip(&xh).zip(xt) {
                        let e = xv - a / scale;
                        *r += e / t as f32;
                        se += (e as f64).powi(2);
                        sn += (xv as f64).powi(2);
                    }
                }
                let cls = if geometry.has_cls {
                    x[..d].to_vec()
                } else {
                    let mut m = vec![0f32; d];
                    for row in x.chunks(d) {
                        m.iter_mut().zip(row).for_each(|(a, v)| *a += v / t as f32);
                    }
                    m
                };
                let cls_code = geometry.has_cls.then(|| {
                    let mut c = vec![0f32; d_sae];
                    for (j, v) in codes.row(i * t) {
                        c[j as usize] = v;
                    }
                    c
                });
                ImageOut {
                    sq_err: se,
                    sq_norm: sn,
                    code_mean,
                    cls_code,
                    active_max: active.into_iter().collect(),
                    residual_mean,
                    cls,
                    msp: msp.as_ref().map(|m| m[i]),
                }
            })
            .collect();
        sink(&ok, outs)?;
        done += ok.len();
        job.report(Progress {
            done: done as u64,
            total: ds.len() as u64,
            unit: "images",
            message: match source.reused() {
                0 => what.to_string(),
                r => format!("{what} ({r} read from the workspace store)"),
            },
        });
    }
    Ok(done)
}

pub struct OodModel {
    pub n_fit: usize,
    /// Fraction of fit images on which each feature fires (Laplace-smoothed).
    pub image_freq: Vec<f64>,
    codes: Gaussian,
    cls: Gaussian,
    /// The CLS token's SAE code (models with a CLS token).
    cls_codes: Option<Gaussian>,
    pub ridge_codes: RidgeChoice,
    pub ridge_raw: RidgeChoice,
    pub ridge_cls_codes: Option<RidgeChoice>,
}

#[derive(Clone, Debug)]
pub struct OodOptions {
    pub batch: usize,
    /// Ridge added to the SAE-code covariance, relative to its mean variance (1.0 shrinks it
    /// halfway to isotropic). None = chosen from [`RIDGE_GRID`] on the fit folder alone: the
    /// ridge whose Gaussian, fit on four fifths of the fit images, gives the held-out fifth the
    /// highest likelihood. No OOD folder is looked at, and one setting serves every OOD set.
    pub ridge_codes: Option<f64>,
    /// The same for the raw-activation baseline.
    pub ridge_raw: Option<f64>,
    /// Workspaces whose stored activations (same layer, same image files) are read instead of
    /// running the backbone again.
    pub reuse_stores: Vec<PathBuf>,
}

impl Default for OodOptions {
    fn default() -> Self {
        OodOptions {
            batch: 256,
            ridge_codes: None,
            ridge_raw: None,
            reuse_stores: Vec::new(),
        }
    }
}

/// The widths an OOD fit works with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dims {
    /// The layer's width.
    pub d: usize,
    pub d_sae: usize,
    pub has_cls: bool,
}

impl Dims {
    pub fn of(backbone: &dyn Backbone, sae: &Sae) -> Self {
        Dims {
            d: backbone.info().d_model,
            d_sae: sae.d_sae,
            has_cls: backbone.info().geometry.has_cls,
        }
    }
}

/// The fit from the fit folder's per-batch outputs (run now, or stored by a split run).
fn fit_from(
    dims: Dims,
    dir: &Path,
    opts: &OodOptions,
    job: &Job,
    feed: &mut Feed,
) -> Result<OodModel> {
    let Dims { d, d_sae, has_cls } = dims;
    // Every fifth image is held out for choosing the ridges; all images make the final fit.
    let is_held = |i: usize| i % 5 == 4;
    let (mut codes, mut codes_held) = (Moments::new(d_sae), Moments::new(d_sae));
    let (mut cls, mut cls_held) = (Moments::new(d), Moments::new(d));
    let (mut cls_codes, mut cls_codes_held) = (Moments::new(d_sae), Moments::new(d_sae));
    let (mut held_codes, mut held_cls, mut held_cls_codes) = (Vec::new(), Vec::new(), Vec::new());
    let mut fires = vec![0u64; d_sae];
    let n = feed(&mut |ids, outs| {
        for (&i, o) in ids.iter().zip(&outs) {
            if is_held(i) {
                codes_held.add(&o.code_mean);
                cls_held.add(&o.cls);
                held_codes.extend_from_slice(&o.code_mean);
                held_cls.extend_from_slice(&o.cls);
                if let Some(c) = &o.cls_code {
                    cls_codes_held.add(c);
                    held_cls_codes.extend_from_slice(c);
                }
            }
            for &(j, _) in &o.active_max {
                fires[j as usize] += 1;
            }
        }
        let rows = |f: &dyn Fn(&ImageOut) -> &[f32]| -> Vec<f32> {
            ids.iter()
                .zip(&outs)
                .filter(|(i, _)| !is_held(**i))
                .flat_map(|(_, o)| f(o).iter().copied())
                .collect()
        };
        let c = rows(&|o| &o.code_mean);
        if !c.is_empty() {
            codes.add(&c);
            cls.add(&rows(&|o| &o.cls));
            if has_cls {
                cls_codes.add(&rows(&|o| o.cls_code.as_deref().unwrap_or(&[])));
            }
        }
        Ok(())
    })?;
    if n < 10 || codes_held.count < 2 {
        return Err(Error::Invalid(format!(
            "{}: OOD fitting needs at least 10 readable images",
            dir.display()
        )));
    }
    job.report(Progress {
        done: n as u64,
        total: n as u64,
        unit: "images",
        message: "choosing covariance ridges on held-out fit images".into(),
    });
    let ridge_codes = choose_ridge(opts.ridge_codes, &codes, &held_codes)?;
    let ridge_raw = choose_ridge(opts.ridge_raw, &cls, &held_cls)?;
    let ridge_cls_codes = has_cls
        .then(|| choose_ridge(opts.ridge_codes, &cls_codes, &held_cls_codes))
        .transpose()?;
    Ok(OodModel {
        n_fit: n,
        image_freq: fires
            .iter()
            .map(|&c| (c as f64 + 1.0) / (n as f64 + 2.0))
            .collect(),
        codes: codes.merged(&codes_held).gaussian(ridge_codes.ridge)?,
        cls: cls.merged(&cls_held).gaussian(ridge_raw.ridge)?,
        cls_codes: ridge_cls_codes
            .as_ref()
            .map(|r| cls_codes.merged(&cls_codes_held).gaussian(r.ridge))
            .transpose()?,
        ridge_codes,
        ridge_raw,
        ridge_cls_codes,
    })
}

// ---------- scoring ----------

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageScore {
    pub path: String,
    /// One score per entry of `METHODS` (null where the method does not apply).
    pub scores: Vec<Option<f64>>,
    /// Per SAE method (reconstruction, rarity, Mahalanobis): the top (feature, contribution).
    pub contributions: Vec<Vec<(u32, f32)>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScoredSet {
    pub name: String,
    pub dir: PathBuf,
    pub in_distribution: bool,
    pub images: Vec<ImageScore>,
}

fn top_contributions(c: impl Iterator<Item = (u32, f32)>) -> Vec<(u32, f32)> {
    let mut v: Vec<(u32, f32)> = c.filter(|x| x.1 > 0.0).collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(TOP_CONTRIBUTIONS);
    v
}

/// A folder's scores from its per-batch outputs (run now, or stored by a split run).
fn score_from(
    sae: &Sae,
    model: &OodModel,
    ds: &Dataset,
    dir: &Path,
    name: &str,
    in_distribution: bool,
    feed: &mut Feed,
) -> Result<ScoredSet> {
    let mut images = Vec::with_capacity(ds.len());
    let d = sae.d_in;
    feed(&mut |ok, outs| {
        let c: Vec<f32> = outs
            .iter()
            .flat_map(|o| o.code_mean.iter().copied())
            .collect();
        let (maha, contrib) = model.codes.score(&c, true);
        let r: Vec<f32> = outs.iter().flat_map(|o| o.cls.iter().copied()).collect();
        let (raw, _) = model.cls.score(&r, false);
        let (cls_maha, cls_contrib) = match &model.cls_codes {
            Some(g) => {
                let c: Vec<f32> = outs
                    .iter()
                    .flat_map(|o| o.cls_code.iter().flatten().copied())
                    .collect();
                let (m, c) = g.score(&c, true);
                (m.into_iter().map(Some).collect(), c)
            }
            None => (vec![None; outs.len()], vec![Vec::new(); outs.len()]),
        };
        let scored: Vec<ImageScore> = outs
            .par_iter()
            .enumerate()
            .map(|(i, o)| {
                let recon = o.sq_err / o.sq_norm.max(1e-12);
                let weight: f64 = o.active_max.iter().map(|&(_, a)| a as f64).sum();
                let rarity_terms: Vec<(u32, f32)> = o
                    .active_max
                    .iter()
                    .map(|&(j, a)| (j, (a as f64 * -model.image_freq[j as usize].ln()) as f32))
                    .collect();
                let rarity = if weight > 0.0 {
                    rarity_terms.iter().map(|t| t.1 as f64).sum::<f64>() / weight
                } else {
                    0.0
                };
                // Features whose decoder direction the unexplained residual points along.
                let residual_align = (0..sae.d_sae).map(|j| {
                    let wd = &sae.w_dec[j * d..(j + 1) * d];
                    let dot: f32 = wd.iter().zip(&o.residual_mean).map(|(a, b)| a * b).sum();
                    (j as u32, dot)
                });
                ImageScore {
                    path: ds.images[ok[i]].path.clone(),
                    scores: vec![
                        Some(recon),
                        Some(rarity),
                        Some(maha[i]),
                        cls_maha[i],
                        o.msp.map(|m| -(m as f64)),
                        Some(raw[i]),
                    ],
                    contributions: vec![
                        top_contributions(residual_align),
                        top_contributions(rarity_terms.into_iter()),
                        top_contributions(
                            contrib[i].iter().enumerate().map(|(j, &v)| (j as u32, v)),
                        ),
                        top_contributions(
                            cls_contrib[i]
                                .iter()
                                .enumerate()
                                .map(|(j, &v)| (j as u32, v)),
                        ),
                    ],
                }
            })
            .collect();
        images.extend(scored);
        Ok(())
    })?;
    Ok(ScoredSet {
        name: name.to_string(),
        dir: dir.to_path_buf(),
        in_distribution,
        images,
    })
}

// ---------- report ----------

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MethodResult {
    pub method: String,
    pub ood_set: String,
    pub auroc: f64,
    pub fpr95: f64,
    /// (FPR, TPR) points.
    pub roc: Vec<(f64, f64)>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OodResults {
    pub format: String,
    pub fit_dir: PathBuf,
    pub n_fit: usize,
    /// How the Mahalanobis ridges were set (older results files have none).
    #[serde(default)]
    pub ridge_codes: RidgeChoice,
    #[serde(default)]
    pub ridge_raw: RidgeChoice,
    #[serde(default)]
    pub ridge_cls_codes: Option<RidgeChoice>,
    pub methods: Vec<String>,
    pub sets: Vec<ScoredSet>,
    pub results: Vec<MethodResult>,
}

impl OodResults {
    pub fn scores(&self, set: usize, method: usize) -> Vec<f64> {
        self.sets[set]
            .images
            .iter()
            .filter_map(|i| i.scores[method])
            .collect()
    }
}

/// Where the SAE whose folder is `home` keeps its OOD results.
pub fn results_path(home: &Path) -> PathBuf {
    home.join("ood").join("results.json")
}

/// Writes the full results to `home`/ood/results.json (atomically); returns the path.
pub fn save_results(home: &Path, r: &OodResults) -> Result<PathBuf> {
    let p = results_path(home);
    crate::fsutil::write_json_atomic(&p, r)?;
    Ok(p)
}

#[derive(Clone, Debug, Serialize)]
pub struct OodSummaryRow {
    pub method: String,
    pub ood_set: String,
    pub auroc: f64,
    pub fpr95: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct MostUnusual {
    pub set: String,
    pub path: String,
    pub score: f64,
    pub features: Vec<(u32, f32)>,
}

#[derive(Clone, Debug, Serialize)]
pub struct OodSummary {
    pub results_file: PathBuf,
    pub n_fit: usize,
    /// The Mahalanobis ridges used and whether they were chosen on held-out fit images.
    pub ridge_codes: f64,
    pub ridge_raw: f64,
    pub ridges_chosen_on_held_out_fit: bool,
    pub table: Vec<OodSummaryRow>,
    /// The SAE method with the best mean AUROC over the OOD sets.
    pub best_sae_method: String,
    pub best_sae_auroc: f64,
    /// Per OOD set, its highest-scoring images by the best SAE method and their top features.
    pub most_unusual: Vec<MostUnusual>,
}

/// The compact report `saescope ood --json` prints.
pub fn summary(r: &OodResults, file: &Path, per_set: usize) -> OodSummary {
    let table: Vec<OodSummaryRow> = r
        .results
        .iter()
        .map(|m| OodSummaryRow {
            method: m.method.clone(),
            ood_set: m.ood_set.clone(),
            auroc: m.auroc,
            fpr95: m.fpr95,
        })
        .collect();
    let (best, best_auroc) = METHODS[..SAE_METHODS]
        .iter()
        .map(|m| {
            let v: Vec<f64> = table
                .iter()
                .filter(|t| t.method == *m)
                .map(|t| t.auroc)
                .collect();
            (m.to_string(), v.iter().sum::<f64>() / v.len().max(1) as f64)
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or_default();
    let mi = sae_method_index(&best).unwrap_or(0);
    let mut most_unusual = Vec::new();
    for s in r.sets.iter().filter(|s| !s.in_distribution) {
        let mut imgs: Vec<&ImageScore> = s.images.iter().collect();
        imgs.sort_by(|a, b| {
            b.scores[mi]
                .unwrap_or(f64::MIN)
                .total_cmp(&a.scores[mi].unwrap_or(f64::MIN))
        });
        for i in imgs.into_iter().take(per_set) {
            most_unusual.push(MostUnusual {
                set: s.name.clone(),
                path: i.path.clone(),
                score: i.scores[mi].unwrap_or(f64::NAN),
                features: i.contributions[mi].clone(),
            });
        }
    }
    OodSummary {
        results_file: file.to_path_buf(),
        n_fit: r.n_fit,
        ridge_codes: r.ridge_codes.ridge,
        ridge_raw: r.ridge_raw.ridge,
        ridges_chosen_on_held_out_fit: r.ridge_codes.chosen_on_held_out_fit
            && r.ridge_raw.chosen_on_held_out_fit,
        table,
        best_sae_method: best,
        best_sae_auroc: best_auroc,
        most_unusual,
    }
}

/// Index of an SAE method in `METHODS` whose contributions are stored at the same index.
pub fn sae_method_index(method: &str) -> Option<usize> {
    METHODS[..SAE_METHODS].iter().position(|m| *m == method)
}

#[cfg(test)]
mod tests;
