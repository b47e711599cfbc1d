//! Gaussian fits for Mahalanobis scores: streaming moments, a ridge chosen by held-out
//! likelihood on the fit images, and whitened distances with per-feature contributions.

use super::*;

/// Mean and whitening of a Gaussian fit, for Mahalanobis distances.
#[derive(Clone, Debug)]
pub(super) struct Gaussian {
    n: usize,
    mean: Vec<f32>,
    /// L⁻¹ with L·Lᵀ = Σ + ridge·I [n×n].
    w: Vec<f32>,
}

/// Streaming first and second moments of row vectors.
pub(super) struct Moments {
    d: usize,
    pub(super) count: usize,
    sum: Vec<f64>,
    outer: Vec<f64>,
}

impl Moments {
    pub(super) fn new(d: usize) -> Self {
        Moments {
            d,
            count: 0,
            sum: vec![0.0; d],
            outer: vec![0.0; d * d],
        }
    }
    /// Adds rows [b, d] (one GEMM per batch for Σ xxᵀ).
    pub(super) fn add(&mut self, rows: &[f32]) {
        let d = self.d;
        let b = rows.len() / d;
        let mut t = vec![0f32; d * b];
        for (r, row) in rows.chunks(d).enumerate() {
            for (j, &v) in row.iter().enumerate() {
                t[j * b + r] = v;
            }
            self.sum
                .iter_mut()
                .zip(row)
                .for_each(|(s, &v)| *s += v as f64);
        }
        let mut o = vec![0f32; d * d];
        matmul(
            &mut o,
            &t,
            rows,
            (d, b, d),
            RhsLayout::RowMajor,
            false,
            true,
        );
        self.outer
            .iter_mut()
            .zip(&o)
            .for_each(|(a, &v)| *a += v as f64);
        self.count += b;
    }
    pub(super) fn merged(&self, other: &Moments) -> Moments {
        let add = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x + y).collect();
        Moments {
            d: self.d,
            count: self.count + other.count,
            sum: add(&self.sum, &other.sum),
            outer: add(&self.outer, &other.outer),
        }
    }

    /// Gaussian with ridge = `rel_ridge` × mean variance.
    pub(super) fn gaussian(&self, rel_ridge: f64) -> Result<Gaussian> {
        let (d, n) = (self.d, self.count.max(1) as f64);
        let mean: Vec<f64> = self.sum.iter().map(|s| s / n).collect();
        let mut cov = vec![0f64; d * d];
        for i in 0..d {
            for j in 0..d {
                cov[i * d + j] = self.outer[i * d + j] / n - mean[i] * mean[j];
            }
        }
        let mean_var = (0..d).map(|i| cov[i * d + i]).sum::<f64>() / d as f64;
        let w = whitening(&cov, d, rel_ridge * mean_var.max(1e-12))?;
        Ok(Gaussian {
            n: d,
            mean: mean.iter().map(|&m| m as f32).collect(),
            w,
        })
    }
}

impl Gaussian {
    /// ln det(Σ + ridge·I) = −2 Σ ln W_ii (W = L⁻¹ is lower triangular).
    pub(super) fn log_det(&self) -> f64 {
        -2.0 * (0..self.n)
            .map(|i| (self.w[i * self.n + i] as f64).ln())
            .sum::<f64>()
    }

    /// Mean Gaussian negative log-likelihood of rows [b, n] (without the constant n·ln 2π / 2).
    pub(super) fn mean_nll(&self, rows: &[f32]) -> f64 {
        let (d2, _) = self.score(rows, false);
        let mean_d2 = d2.iter().sum::<f64>() / d2.len().max(1) as f64;
        0.5 * (self.log_det() + mean_d2)
    }

    /// Squared distances of rows [b, n] and, per row, every dimension's contribution
    /// (c − μ)_j·(Σ⁻¹(c − μ))_j (they sum to the squared distance).
    pub(super) fn score(
        &self,
        rows: &[f32],
        with_contributions: bool,
    ) -> (Vec<f64>, Vec<Vec<f32>>) {
        let n = self.n;
        let b = rows.len() / n;
        let mut v = rows.to_vec();
        v.par_chunks_mut(n)
            .for_each(|r| r.iter_mut().zip(&self.mean).for_each(|(a, m)| *a -= m));
        // z = W·v per row: Z = V·Wᵀ.
        let mut z = vec![0f32; b * n];
        matmul(
            &mut z,
            &v,
            &self.w,
            (b, n, n),
            RhsLayout::Transposed,
            false,
            true,
        );
        let d2: Vec<f64> = z
            .chunks(n)
            .map(|r| r.iter().map(|&x| (x as f64).powi(2)).sum())
            .collect();
        if !with_contributions {
            return (d2, Vec::new());
        }
        // Σ⁻¹v = Wᵀz per row: U = Z·W.
        let mut u = vec![0f32; b * n];
        matmul(
            &mut u,
            &z,
            &self.w,
            (b, n, n),
            RhsLayout::RowMajor,
            false,
            true,
        );
        let contrib = v
            .chunks(n)
            .zip(u.chunks(n))
            .map(|(a, c)| a.iter().zip(c).map(|(x, y)| x * y).collect())
            .collect();
        (d2, contrib)
    }
}

/// Relative ridges tried when choosing on held-out fit images.
pub const RIDGE_GRID: [f64; 8] = [1e-4, 1e-3, 1e-2, 0.03, 0.1, 0.3, 1.0, 3.0];

/// How a ridge was set: given, or chosen by held-out likelihood (with the curve).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RidgeChoice {
    pub ridge: f64,
    pub chosen_on_held_out_fit: bool,
    /// (ridge, mean held-out negative log-likelihood) per grid value; empty when given.
    pub held_out_nll: Vec<(f64, f64)>,
}

/// Picks the ridge for `train` (four fifths of the fit images) that best predicts `held`
/// (the other fifth), or takes the given one.
pub(super) fn choose_ridge(
    given: Option<f64>,
    train: &Moments,
    held: &[f32],
) -> Result<RidgeChoice> {
    if let Some(r) = given {
        return Ok(RidgeChoice {
            ridge: r,
            ..Default::default()
        });
    }
    let mut curve = Vec::new();
    for &r in &RIDGE_GRID {
        // A ridge too small for this covariance is not positive definite: skip it.
        if let Ok(g) = train.gaussian(r) {
            let nll = g.mean_nll(held);
            if nll.is_finite() {
                curve.push((r, nll));
            }
        }
    }
    let best = curve
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|b| b.0)
        .ok_or_else(|| {
            Error::Invalid(
                "no covariance ridge gives a usable Gaussian on the fit images; fit on more images, or pass the ridge".into(),
            )
        })?;
    Ok(RidgeChoice {
        ridge: best,
        chosen_on_held_out_fit: true,
        held_out_nll: curve,
    })
}
