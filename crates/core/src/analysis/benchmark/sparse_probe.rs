//! Sparse probing: how well a few SAE latents alone tell the classes apart. On the fit images,
//! latents are ranked by their one-way ANOVA F statistic across classes (between-class over
//! within-class variance of the image's mean activation); a multinomial logistic regression on
//! the top `k` is fit there (L2 chosen on a held-out fifth, as the linear probe does) and scored
//! on the evaluation images. The evaluation images play no part in the choice of latents.

use crate::analysis::probe::{ProbeOptions, ProbeScores, fit_and_score};
use crate::sae::SparseCodes;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SparseProbe {
    /// The latents the probe reads, best first.
    pub latents: Vec<u32>,
    pub accuracy: f64,
    pub fit_accuracy: f64,
    pub l2: f64,
}

/// The `k` latents with the largest F statistic over `fit` rows (one per image, `y` its class
/// of `c`); latents that never vary are never chosen.
pub fn rank_latents(fit: &SparseCodes, y: &[usize], c: usize, d_sae: usize, k: usize) -> Vec<u32> {
    let n = y.len() as f64;
    let mut class_n = vec![0f64; c];
    let mut class_sum = vec![0f64; c * d_sae];
    let mut sum_sq = vec![0f64; d_sae];
    for (r, &cls) in y.iter().enumerate() {
        class_n[cls] += 1.0;
        for (j, v) in fit.row(r) {
            class_sum[cls * d_sae + j as usize] += v as f64;
            sum_sq[j as usize] += (v as f64).powi(2);
        }
    }
    let groups = class_n.iter().filter(|&&m| m > 0.0).count() as f64;
    let mut f: Vec<(f64, u32)> = (0..d_sae)
        .filter_map(|j| {
            let total: f64 = (0..c).map(|cls| class_sum[cls * d_sae + j]).sum();
            let between: f64 = (0..c)
                .filter(|&cls| class_n[cls] > 0.0)
                .map(|cls| class_sum[cls * d_sae + j].powi(2) / class_n[cls])
                .sum::<f64>()
                - total * total / n;
            let within = sum_sq[j] - (between + total * total / n);
            let stat = (between / (groups - 1.0).max(1.0)) / (within / (n - groups).max(1.0));
            (between > 1e-12).then_some((if within > 1e-12 { stat } else { f64::MAX }, j as u32))
        })
        .collect();
    f.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    f.into_iter().take(k).map(|(_, j)| j).collect()
}

/// Ranks latents on `fit`, then fits and scores the probe on them.
#[allow(clippy::too_many_arguments)]
pub fn sparse_probe(
    fit: &SparseCodes,
    y_fit: &[usize],
    eval: &SparseCodes,
    y_eval: &[usize],
    c: usize,
    d_sae: usize,
    k: usize,
    opts: &ProbeOptions,
) -> SparseProbe {
    let latents = rank_latents(fit, y_fit, c, d_sae, k);
    let columns = |codes: &SparseCodes| -> Vec<f32> {
        let mut out = vec![0f32; codes.rows() * latents.len().max(1)];
        for r in 0..codes.rows() {
            for (j, v) in codes.row(r) {
                if let Some(col) = latents.iter().position(|&l| l == j) {
                    out[r * latents.len() + col] = v;
                }
            }
        }
        out
    };
    let ProbeScores {
        fit_accuracy,
        accuracy,
        l2,
        ..
    } = fit_and_score(
        &columns(fit),
        y_fit,
        &columns(eval),
        y_eval,
        latents.len().max(1),
        c,
        opts,
    );
    SparseProbe {
        latents,
        accuracy,
        fit_accuracy,
        l2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(rows: &[Vec<(u32, f32)>]) -> SparseCodes {
        let mut c = SparseCodes {
            row_start: vec![0],
            ..Default::default()
        };
        for r in rows {
            for &(j, v) in r {
                c.ids.push(j);
                c.vals.push(v);
            }
            c.row_start.push(c.ids.len());
        }
        c
    }

    /// Latent 3 carries the class, latents 0–2 are noise: the probe picks 3 and is accurate.
    #[test]
    fn finds_the_class_latent() {
        let mut rng = crate::rng::Rng::new(2);
        let mut make = |n: usize| {
            let y: Vec<usize> = (0..n).map(|i| i % 2).collect();
            let rows: Vec<Vec<(u32, f32)>> = y
                .iter()
                .map(|&cls| {
                    let mut r: Vec<(u32, f32)> = (0..3).map(|j| (j, rng.uniform() + 0.1)).collect();
                    if cls == 1 {
                        r.push((3, 1.0 + 0.1 * rng.uniform()));
                    }
                    r
                })
                .collect();
            (codes(&rows), y)
        };
        let (fit, y_fit) = make(200);
        let (eval, y_eval) = make(100);
        let p = sparse_probe(
            &fit,
            &y_fit,
            &eval,
            &y_eval,
            2,
            5,
            1,
            &ProbeOptions::default(),
        );
        assert_eq!(p.latents, vec![3]);
        assert!(p.accuracy > 0.95, "{}", p.accuracy);
        // Latent 4 never fires: it is never ranked.
        assert!(!rank_latents(&fit, &y_fit, 2, 5, 5).contains(&4));
    }
}
