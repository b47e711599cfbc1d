//! Reconstruction figures over the evaluation images, kept per fold of images so that each has
//! a standard error: FVE, NMSE, L0, and the dead and dense shares of latents.

use super::estimate::Estimate;
use serde::{Deserialize, Serialize};

/// Images are dealt into this many folds by their position in the evaluation folder.
pub const FOLDS: usize = 10;

/// A latent firing on more than this share of tokens counts as dense.
pub const DENSE_ABOVE: f64 = 0.1;

#[derive(Clone, Debug, Default)]
struct Fold {
    rows: f64,
    sq_err: f64,
    sq_norm: f64,
    sum: Vec<f64>,
    active: f64,
}

/// Running sums for one SAE (or control) over the evaluation tokens.
pub struct Reconstruction {
    folds: Vec<Fold>,
    fired: Vec<u64>,
    rows: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReconScores {
    /// Fraction of variance explained (1 − squared error / variance about the mean).
    pub fve: Estimate,
    /// Squared error / squared norm of the inputs (SAELens' normalised MSE).
    pub nmse: Estimate,
    /// Active latents per token.
    pub l0: Estimate,
    /// Latents that never fired on the evaluation tokens.
    pub dead_fraction: f64,
    /// Latents firing on more than 10% of the evaluation tokens.
    pub dense_fraction: f64,
}

impl Reconstruction {
    pub fn new(d_in: usize, d_sae: usize) -> Self {
        Reconstruction {
            folds: vec![
                Fold {
                    sum: vec![0.0; d_in],
                    ..Fold::default()
                };
                FOLDS
            ],
            fired: vec![0; d_sae],
            rows: 0,
        }
    }

    /// Adds one image's token rows `x` [rows, d_in], their reconstructions and the latents that
    /// fired on them (one entry per row and latent).
    pub fn add_image(&mut self, image: usize, x: &[f32], rec: &[f32], fired: &[u32], rows: usize) {
        let fold = &mut self.folds[image % FOLDS];
        let d = fold.sum.len();
        for (xr, rr) in x.chunks(d).zip(rec.chunks(d)) {
            fold.rows += 1.0;
            for ((&a, &b), s) in xr.iter().zip(rr).zip(fold.sum.iter_mut()) {
                fold.sq_err += ((a - b) as f64).powi(2);
                fold.sq_norm += (a as f64).powi(2);
                *s += a as f64;
            }
        }
        fold.active += fired.len() as f64;
        for &j in fired {
            self.fired[j as usize] += 1;
        }
        self.rows += rows as u64;
    }

    pub fn finish(&self) -> ReconScores {
        let fve_of = |f: &Fold| {
            let centred = f.sq_norm - f.sum.iter().map(|s| s * s).sum::<f64>() / f.rows.max(1.0);
            1.0 - f.sq_err / centred.max(1e-12)
        };
        let used: Vec<&Fold> = self.folds.iter().filter(|f| f.rows > 0.0).collect();
        let per = |g: &dyn Fn(&Fold) -> f64| {
            Estimate::mean_of(&used.iter().map(|f| g(f)).collect::<Vec<_>>()).unwrap_or(Estimate {
                value: f64::NAN,
                se: 0.0,
                n: 0,
            })
        };
        // The pooled figure is the value; the spread of the folds' figures gives the error.
        let mut all = Fold {
            sum: vec![0.0; self.folds[0].sum.len()],
            ..Fold::default()
        };
        for f in &used {
            all.rows += f.rows;
            all.sq_err += f.sq_err;
            all.sq_norm += f.sq_norm;
            all.active += f.active;
            all.sum.iter_mut().zip(&f.sum).for_each(|(a, b)| *a += b);
        }
        let pooled = |value: f64, e: Estimate| Estimate { value, ..e };
        let d_sae = self.fired.len().max(1) as f64;
        let rows = self.rows.max(1) as f64;
        ReconScores {
            fve: pooled(fve_of(&all), per(&fve_of)),
            nmse: pooled(
                all.sq_err / all.sq_norm.max(1e-12),
                per(&|f| f.sq_err / f.sq_norm.max(1e-12)),
            ),
            l0: pooled(
                all.active / all.rows.max(1.0),
                per(&|f| f.active / f.rows.max(1.0)),
            ),
            dead_fraction: self.fired.iter().filter(|&&c| c == 0).count() as f64 / d_sae,
            dense_fraction: self
                .fired
                .iter()
                .filter(|&&c| c as f64 > DENSE_ABOVE * rows)
                .count() as f64
                / d_sae,
        }
    }
}
