//! JumpReLU's threshold terms (Rajamanoharan et al. 2024, arXiv 2407.14435; the PyTorch peer's
//! `Jump` and `Step` functions, as in SAELens). With z = ReLU(pre) and f = z·H(z − θ), the
//! pseudo-derivatives use the rectangle kernel K = 1{|z − θ| < ε/2}/ε:
//! ∂f/∂θ = −θ·K and ∂H(z − θ)/∂θ = −K; f's derivative in z is H(z − θ) (the active entries).
//! So θ's gradient only needs the entries within ε/2 of their threshold, few of them.

use super::TrainArch;
use rayon::prelude::*;

/// One batch's JumpReLU terms: the entries near their thresholds and the L0 they add up to.
pub(super) struct JumpTerms {
    /// Per row: the latents with |z − θ| < ε/2.
    near: Vec<Vec<u32>>,
    /// Active latents per row, on average.
    l0: f64,
    coeff: f32,
    target: Option<f32>,
    bandwidth: f32,
}

/// The L0 term's value and its derivative in the batch's mean L0 `l0`: coeff·L0, or with a
/// target t, coeff·(L0/t − 1)².
pub(super) fn l0_term(coeff: f32, target: Option<f32>, l0: f64) -> (f64, f64) {
    match target {
        None => (coeff as f64 * l0, coeff as f64),
        Some(t) => {
            let t = t as f64;
            let r = l0 / t - 1.0;
            (coeff as f64 * r * r, 2.0 * coeff as f64 * r / t)
        }
    }
}

impl JumpTerms {
    /// None unless `arch` is JumpReLU. `pre` lacks the encoder bias; `l0`: active latents per
    /// row, on average.
    pub(super) fn new(
        arch: &TrainArch,
        pre: &[f32],
        b_enc: &[f32],
        theta: &[f32],
        l0: f64,
    ) -> Option<Self> {
        let TrainArch::JumpRelu {
            l0_coeff,
            l0_target,
            bandwidth,
            ..
        } = *arch
        else {
            return None;
        };
        let d_sae = b_enc.len();
        let half = bandwidth / 2.0;
        let near = pre
            .par_chunks(d_sae)
            .map(|row| {
                row.iter()
                    .zip(b_enc.iter().zip(theta))
                    .enumerate()
                    .filter(|&(_, (&p, (&b, &t)))| ((p + b).max(0.0) - t).abs() < half)
                    .map(|(j, _)| j as u32)
                    .collect()
            })
            .collect();
        Some(JumpTerms {
            near,
            l0,
            coeff: l0_coeff,
            target: l0_target,
            bandwidth,
        })
    }

    /// d/d log θ of the whole loss and the L0 term's value. `df(b, j)`: the loss's derivative in
    /// the code f_bj (without the sparsity term).
    pub(super) fn threshold_grads(
        &self,
        theta: &[f32],
        rows: usize,
        df: impl Fn(usize, usize) -> f32 + Sync,
    ) -> (Vec<f32>, f32) {
        let (value, slope) = l0_term(self.coeff, self.target, self.l0);
        let k = 1.0 / self.bandwidth;
        let step_grad = (slope / rows as f64) as f32;
        let per_row: Vec<Vec<(u32, f32)>> = self
            .near
            .par_iter()
            .enumerate()
            .map(|(b, list)| {
                list.iter()
                    .map(|&j| {
                        let t = theta[j as usize];
                        (j, -t * k * df(b, j as usize) - k * step_grad)
                    })
                    .collect()
            })
            .collect();
        let mut g = vec![0f32; theta.len()];
        for (j, v) in per_row.into_iter().flatten() {
            g[j as usize] += v;
        }
        // θ = exp(log θ).
        g.iter_mut().zip(theta).for_each(|(g, t)| *g *= t);
        (g, value as f32)
    }
}

impl super::Trainer {
    /// Starts JumpReLU's thresholds where the sample's L0 is `target`: each latent's θ is the
    /// value it exceeds on a target/d_sae share of the sample's rows (at least the configured
    /// initial threshold). With the peer's fixed θ₀ = e^−3 half of the latents fire at first,
    /// and Adam moves log θ by at most about the learning rate per step, so a run of a few
    /// thousand steps would end far above its L0 target.
    pub fn start_thresholds_at_l0(&mut self, sample: &[f32], target: f32) {
        let TrainArch::JumpRelu { init_threshold, .. } = self.cfg.arch else {
            return;
        };
        let (d_in, d_sae) = (self.cfg.d_in, self.cfg.d_sae);
        let rows = sample.len() / d_in;
        if rows == 0 {
            return;
        }
        let mut pre = Vec::new();
        self.encoder_pre(sample, &mut pre);
        let share = (target as f64 / d_sae as f64).clamp(0.0, 1.0);
        let rank = ((share * rows as f64).ceil() as usize).clamp(1, rows);
        self.log_threshold = (0..d_sae)
            .into_par_iter()
            .map(|j| {
                let mut col: Vec<f32> = (0..rows)
                    .map(|r| (pre[r * d_sae + j] + self.b_enc[j]).max(0.0))
                    .collect();
                let v = *col
                    .select_nth_unstable_by(rank - 1, |a, b| b.total_cmp(a))
                    .1;
                v.max(init_threshold).ln()
            })
            .collect();
    }
}
