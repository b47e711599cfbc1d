//! Linear probe: multinomial logistic regression on a backbone's pooled output, fit on one
//! folder's images and scored on another's. With an SAE, the same images are also run with the
//! tapped layer replaced by the SAE reconstruction ("spliced"), which is how vision-SAE papers
//! measure what an SAE keeps for backbones without a classifier head.
//!
//! The L2 strength is chosen on a held-out fifth of the fit folder (every fifth image of each
//! class), never on the evaluation folder, then the probe is refit on the whole fit folder.
//! Optimisation is L-BFGS on the mean cross-entropy (a convex problem; written here in ~60
//! lines rather than pulling in ndarray + argmin for one solver).

use crate::backbone::Backbone;
use crate::error::{Error, Result};
use crate::job::{Job, Progress};
use crate::linalg::{RhsLayout, matmul};
use crate::sae::Sae;
use crate::store::reuse::{HiddenBatch, LayerActivations};
use crate::store::{Dataset, Workspace};
use candle_core::Tensor;
use serde::Serialize;
use std::time::Instant;

/// L2 strengths tried on the held-out part of the fit folder (standardised features).
pub const L2_GRID: [f64; 6] = [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0];

#[derive(Clone, Debug)]
pub struct ProbeOptions {
    pub batch: usize,
    /// Fixed L2 strength; None = chosen from [`L2_GRID`] on held-out fit images.
    pub l2: Option<f64>,
    pub max_iter: usize,
    /// Workspaces whose stored activations at the probed layer (same image files) are read
    /// instead of running the backbone up to that layer again.
    pub reuse_stores: Vec<std::path::PathBuf>,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            batch: 32,
            l2: None,
            max_iter: 300,
            reuse_stores: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ProbeScores {
    pub fit_accuracy: f64,
    pub accuracy: f64,
    pub l2: f64,
    /// (L2 strength, held-out fit accuracy) for each strength tried.
    pub l2_search: Vec<(f64, f64)>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProbeReport {
    pub layer: usize,
    pub classes: Vec<String>,
    pub n_fit: usize,
    pub n_eval: usize,
    /// Images whose layer activations were read from the workspace store, not recomputed.
    pub images_read_from_store: usize,
    pub clean: ProbeScores,
    /// With the tapped layer replaced by the SAE reconstruction (all tokens).
    pub spliced: Option<ProbeScores>,
    pub seconds: f64,
}

/// Pooled features [n, d] of every labelled, readable image (clean and, with an SAE, spliced)
/// and their class indices.
struct Features {
    clean: Vec<f32>,
    spliced: Option<Vec<f32>>,
    labels: Vec<usize>,
    d: usize,
}

#[allow(clippy::too_many_arguments)]
fn pooled_features(
    backbone: &dyn Backbone,
    sae: Option<&Sae>,
    source: &LayerActivations,
    layer: usize,
    ds: &Dataset,
    batch: usize,
    job: &Job,
    what: &str,
) -> Result<Features> {
    let device = backbone.device().clone();
    let labelled: Vec<usize> = (0..ds.len())
        .filter(|&i| ds.images[i].class.is_some())
        .collect();
    let d = backbone.info().d_model;
    let mut f = Features {
        clean: Vec::new(),
        spliced: sae.map(|_| Vec::new()),
        labels: Vec::new(),
        d,
    };
    let mut done = 0u64;
    for chunk in labelled.chunks(batch.max(1)) {
        job.check()?;
        let HiddenBatch { hidden, ok, .. } = source.batch(ds, chunk)?;
        if let Some(hidden) = hidden {
            let pooled = backbone.finish_from(&hidden, layer)?.pooled;
            f.clean.extend(pooled.flatten_all()?.to_vec1::<f32>()?);
            if let (Some(sae), Some(out)) = (sae, f.spliced.as_mut()) {
                let dims = hidden.dims3()?;
                let h: Vec<f32> = hidden.flatten_all()?.to_vec1()?;
                let rec = sae.decode(&sae.encode(&h));
                let spliced = Tensor::from_vec(rec, dims, &device)?;
                let p = backbone.finish_from(&spliced, layer)?.pooled;
                out.extend(p.flatten_all()?.to_vec1::<f32>()?);
            }
            f.labels
                .extend(ok.iter().map(|&i| ds.images[i].class.unwrap_or(0) as usize));
        }
        done += chunk.len() as u64;
        job.report(Progress {
            done,
            total: labelled.len() as u64,
            unit: "images",
            message: what.to_string(),
        });
    }
    if f.labels.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: no readable images in class sub-folders; a probe needs <folder>/<class>/<image>",
            ds.root.display()
        )));
    }
    Ok(f)
}

/// Per-dimension mean and standard deviation of rows [n, d].
fn standardiser(x: &[f32], d: usize) -> (Vec<f32>, Vec<f32>) {
    let n = (x.len() / d).max(1) as f64;
    let mut mean = vec![0f64; d];
    let mut sq = vec![0f64; d];
    for row in x.chunks(d) {
        for j in 0..d {
            mean[j] += row[j] as f64;
            sq[j] += (row[j] as f64).powi(2);
        }
    }
    let m: Vec<f32> = mean.iter().map(|s| (s / n) as f32).collect();
    let s: Vec<f32> = (0..d)
        .map(|j| {
            ((sq[j] / n - (mean[j] / n).powi(2))
                .max(0.0)
                .sqrt()
                .max(1e-6)) as f32
        })
        .collect();
    (m, s)
}

fn standardise(x: &[f32], d: usize, (mean, std): &(Vec<f32>, Vec<f32>)) -> Vec<f32> {
    let mut out = x.to_vec();
    for row in out.chunks_mut(d) {
        for j in 0..d {
            row[j] = (row[j] - mean[j]) / std[j];
        }
    }
    out
}

/// A fitted multinomial logistic regression: weights [d, c] then biases [c], one vector.
pub struct LogReg {
    d: usize,
    c: usize,
    params: Vec<f32>,
}

impl LogReg {
    fn logits(&self, x: &[f32]) -> Vec<f32> {
        logits(&self.params, x, self.d, self.c)
    }

    pub fn predict(&self, x: &[f32]) -> Vec<usize> {
        self.logits(x)
            .chunks(self.c)
            .map(|r| {
                r.iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(0, |(i, _)| i)
            })
            .collect()
    }
}

fn logits(params: &[f32], x: &[f32], d: usize, c: usize) -> Vec<f32> {
    let n = x.len() / d;
    let (w, b) = params.split_at(d * c);
    let mut z: Vec<f32> = (0..n).flat_map(|_| b.iter().copied()).collect();
    matmul(&mut z, x, w, (n, d, c), RhsLayout::RowMajor, true, true);
    z
}

/// Mean cross-entropy + l2/2·‖W‖² and its gradient.
fn loss_grad(
    params: &[f32],
    x: &[f32],
    y: &[usize],
    d: usize,
    c: usize,
    l2: f64,
) -> (f64, Vec<f32>) {
    let n = y.len();
    let mut z = logits(params, x, d, c);
    let mut loss = 0f64;
    for (row, &yi) in z.chunks_mut(c).zip(y) {
        let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f64 = row.iter().map(|&v| ((v - m) as f64).exp()).sum();
        loss += sum.ln() + m as f64 - row[yi] as f64;
        // Row becomes (softmax − one-hot) / n: the gradient of the mean loss w.r.t. the logits.
        for (k, v) in row.iter_mut().enumerate() {
            let p = ((*v - m) as f64).exp() / sum;
            *v = ((p - (k == yi) as u8 as f64) / n as f64) as f32;
        }
    }
    let mut grad = vec![0f32; params.len()];
    let (gw, gb) = grad.split_at_mut(d * c);
    // ∇W = Xᵀ·R: X is [n, d] row-major, so Xᵀ is the transposed view of a [d, n] problem.
    let mut xt = vec![0f32; d * n];
    for (i, row) in x.chunks(d).enumerate() {
        for j in 0..d {
            xt[j * n + i] = row[j];
        }
    }
    matmul(gw, &xt, &z, (d, n, c), RhsLayout::RowMajor, false, true);
    for row in z.chunks(c) {
        gb.iter_mut().zip(row).for_each(|(g, &r)| *g += r);
    }
    let w = &params[..d * c];
    let reg: f64 = w.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() * l2 / 2.0;
    gw.iter_mut()
        .zip(w)
        .for_each(|(g, &v)| *g += (l2 * v as f64) as f32);
    (loss / n as f64 + reg, grad)
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

/// Fits the probe by L-BFGS (memory 10, backtracking Armijo line search).
pub fn fit_logreg(x: &[f32], y: &[usize], d: usize, c: usize, l2: f64, max_iter: usize) -> LogReg {
    const MEMORY: usize = 10;
    let mut p = vec![0f32; d * c + c];
    let (mut f, mut g) = loss_grad(&p, x, y, d, c, l2);
    let mut hist: std::collections::VecDeque<(Vec<f32>, Vec<f32>, f64)> = Default::default();
    for _ in 0..max_iter {
        // Two-loop recursion: direction = −H·g.
        let mut q = g.clone();
        let mut alphas = Vec::with_capacity(hist.len());
        for (s, yv, rho) in hist.iter().rev() {
            let a = rho * dot(s, &q);
            q.iter_mut()
                .zip(yv)
                .for_each(|(qi, &yi)| *qi -= (a * yi as f64) as f32);
            alphas.push(a);
        }
        if let Some((s, yv, _)) = hist.back() {
            let gamma = dot(s, yv) / dot(yv, yv).max(1e-30);
            q.iter_mut().for_each(|v| *v = (*v as f64 * gamma) as f32);
        }
        for ((s, yv, rho), a) in hist.iter().zip(alphas.iter().rev()) {
            let b = rho * dot(yv, &q);
            q.iter_mut()
                .zip(s)
                .for_each(|(qi, &si)| *qi += ((a - b) * si as f64) as f32);
        }
        let dir: Vec<f32> = q.iter().map(|v| -v).collect();
        let slope = dot(&g, &dir);
        if slope >= 0.0 {
            hist.clear();
            continue;
        }
        let mut step = 1.0f64;
        let (mut p_new, mut f_new, mut g_new);
        loop {
            p_new = p
                .iter()
                .zip(&dir)
                .map(|(a, b)| a + (step * *b as f64) as f32)
                .collect::<Vec<_>>();
            (f_new, g_new) = loss_grad(&p_new, x, y, d, c, l2);
            if f_new <= f + 1e-4 * step * slope || step < 1e-10 {
                break;
            }
            step *= 0.5;
        }
        let s: Vec<f32> = p_new.iter().zip(&p).map(|(a, b)| a - b).collect();
        let yv: Vec<f32> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &yv);
        if sy > 1e-12 {
            hist.push_back((s, yv, 1.0 / sy));
            if hist.len() > MEMORY {
                hist.pop_front();
            }
        }
        let converged = (f - f_new).abs() <= 1e-9 * f.abs().max(1.0);
        (p, f, g) = (p_new, f_new, g_new);
        if converged || dot(&g, &g).sqrt() < 1e-6 {
            break;
        }
    }
    LogReg { d, c, params: p }
}

fn accuracy(pred: &[usize], y: &[usize]) -> f64 {
    pred.iter().zip(y).filter(|(a, b)| a == b).count() as f64 / y.len().max(1) as f64
}

/// Chooses the L2 strength on every fifth image of each class, refits on all fit images, scores.
pub(crate) fn fit_and_score(
    fit: &[f32],
    y_fit: &[usize],
    eval: &[f32],
    y_eval: &[usize],
    d: usize,
    c: usize,
    opts: &ProbeOptions,
) -> ProbeScores {
    let norm = standardiser(fit, d);
    let xf = standardise(fit, d, &norm);
    let xe = standardise(eval, d, &norm);
    let (l2, l2_search) = match opts.l2 {
        Some(l2) => (l2, Vec::new()),
        None => {
            let mut seen = vec![0usize; c];
            let held: Vec<bool> = y_fit
                .iter()
                .map(|&k| {
                    seen[k] += 1;
                    seen[k].is_multiple_of(5)
                })
                .collect();
            let pick = |keep: bool| -> (Vec<f32>, Vec<usize>) {
                let mut x = Vec::new();
                let mut y = Vec::new();
                for (i, &h) in held.iter().enumerate() {
                    if h == keep {
                        x.extend_from_slice(&xf[i * d..(i + 1) * d]);
                        y.push(y_fit[i]);
                    }
                }
                (x, y)
            };
            let (xt, yt) = pick(false);
            let (xh, yh) = pick(true);
            let search: Vec<(f64, f64)> = L2_GRID
                .iter()
                .map(|&l2| {
                    let m = fit_logreg(&xt, &yt, d, c, l2, opts.max_iter);
                    (l2, accuracy(&m.predict(&xh), &yh))
                })
                .collect();
            // Best held-out accuracy; ties go to the stronger regularisation.
            let best = search
                .iter()
                .rev()
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map_or(1e-3, |b| b.0);
            (best, search)
        }
    };
    let m = fit_logreg(&xf, y_fit, d, c, l2, opts.max_iter);
    ProbeScores {
        fit_accuracy: accuracy(&m.predict(&xf), y_fit),
        accuracy: accuracy(&m.predict(&xe), y_eval),
        l2,
        l2_search,
    }
}

/// Fits a probe on `fit_dir`'s images and scores it on `eval_dir`'s (classes matched by folder
/// name). With `sae`, also the spliced probe (its own fit, same procedure).
pub fn probe(
    backbone: &dyn Backbone,
    sae: Option<&Sae>,
    layer: usize,
    fit_dir: &std::path::Path,
    eval_dir: &std::path::Path,
    opts: &ProbeOptions,
    job: &Job,
) -> Result<ProbeReport> {
    let start = Instant::now();
    if let Some(s) = sae {
        s.check_fits(backbone.info().d_model, &format!("layer {layer}"))?;
    }
    let fit_ds = Dataset::scan(fit_dir)?;
    let eval_ds = Dataset::scan(eval_dir)?;
    let classes = fit_ds.classes.clone();
    // Eval classes → fit class indices by name.
    let eval_map: Vec<Option<usize>> = eval_ds
        .classes
        .iter()
        .map(|c| classes.iter().position(|k| k == c))
        .collect();
    if eval_map.iter().all(Option::is_none) {
        return Err(Error::Invalid(format!(
            "{} and {} share no class folder names; the probe scores the fit folder's classes",
            fit_dir.display(),
            eval_dir.display()
        )));
    }
    let workspaces = opts
        .reuse_stores
        .iter()
        .map(|p| Workspace::open(p))
        .collect::<Result<Vec<_>>>()?;
    let source = LayerActivations::new(backbone, layer, &workspaces)?;
    let fit = pooled_features(
        backbone, sae, &source, layer, &fit_ds, opts.batch, job, "fit",
    )?;
    let ev = pooled_features(
        backbone, sae, &source, layer, &eval_ds, opts.batch, job, "eval",
    )?;
    let d = fit.d;
    // Drop eval images of classes the fit folder lacks.
    let keep: Vec<usize> = (0..ev.labels.len())
        .filter(|&i| eval_map[ev.labels[i]].is_some())
        .collect();
    let y_eval: Vec<usize> = keep
        .iter()
        .filter_map(|&i| eval_map[ev.labels[i]])
        .collect();
    let rows = |x: &[f32]| -> Vec<f32> {
        keep.iter()
            .flat_map(|&i| x[i * d..(i + 1) * d].iter().copied())
            .collect()
    };
    let c = classes.len();
    job.check()?;
    let clean = fit_and_score(
        &fit.clean,
        &fit.labels,
        &rows(&ev.clean),
        &y_eval,
        d,
        c,
        opts,
    );
    let spliced = match (&fit.spliced, &ev.spliced) {
        (Some(f), Some(e)) => Some(fit_and_score(f, &fit.labels, &rows(e), &y_eval, d, c, opts)),
        _ => None,
    };
    Ok(ProbeReport {
        layer,
        classes,
        n_fit: fit.labels.len(),
        n_eval: y_eval.len(),
        images_read_from_store: source.reused(),
        clean,
        spliced,
        seconds: start.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three Gaussian blobs in 4-D: the probe separates them and the optimum has zero gradient.
    #[test]
    fn logistic_regression_separates_blobs_and_converges() {
        let (d, c) = (4, 3);
        let mut rng = crate::rng::Rng::new(7);
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..300 {
            let k = i % c;
            for j in 0..d {
                let centre = if j == k { 3.0 } else { 0.0 };
                x.push(centre + rng.normal());
            }
            y.push(k);
        }
        let m = fit_logreg(&x, &y, d, c, 1e-3, 200);
        assert!(accuracy(&m.predict(&x), &y) > 0.9);
        let (_, g) = loss_grad(&m.params, &x, &y, d, c, 1e-3);
        let gn = dot(&g, &g).sqrt();
        assert!(gn < 1e-3, "gradient norm at the optimum {gn}");
        // Stronger regularisation shrinks the weights.
        let strong = fit_logreg(&x, &y, d, c, 1.0, 200);
        let norm = |p: &[f32]| dot(&p[..d * c], &p[..d * c]);
        assert!(norm(&strong.params) < norm(&m.params));
    }

    #[test]
    fn the_gradient_matches_finite_differences() {
        let (d, c) = (3, 4);
        let mut rng = crate::rng::Rng::new(3);
        let x: Vec<f32> = (0..30 * d).map(|_| rng.normal()).collect();
        let y: Vec<usize> = (0..30).map(|i| i % c).collect();
        let p: Vec<f32> = (0..d * c + c).map(|_| rng.normal() * 0.3).collect();
        let (_, g) = loss_grad(&p, &x, &y, d, c, 0.1);
        for i in [0, 5, d * c + 1] {
            let mut hi = p.clone();
            let mut lo = p.clone();
            hi[i] += 1e-2;
            lo[i] -= 1e-2;
            let num =
                (loss_grad(&hi, &x, &y, d, c, 0.1).0 - loss_grad(&lo, &x, &y, d, c, 0.1).0) / 2e-2;
            assert!(
                (num - g[i] as f64).abs() < 1e-3,
                "param {i}: {num} vs {}",
                g[i]
            );
        }
    }
}
