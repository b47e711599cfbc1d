//! The dense form of a step, for codes that are not sparse: JumpReLU early in training (half of
//! the latents above a small threshold) and ReLU. Codes are a [rows, d_sae] matrix and every
//! product is a GEMM; the sparse kernels would gather half the decoder per row.
//! Same loss and gradients as `grads.rs` for one prefix and no AuxK (the tests hold them equal).

use super::jump::JumpTerms;
use super::*;
use crate::linalg::matmul_tn;

/// Codes denser than this fraction of the batch take the dense form.
pub(super) const DENSE_ABOVE: f64 = 1.0 / 16.0;

impl Trainer {
    /// The selection's size for architectures with unbounded codes (ReLU, JumpReLU): how many
    /// entries of `pre` (bias not added) pass their threshold. None for the top-k ones.
    pub(super) fn unbounded_count(&self, pre: &[f32], theta: &[f32]) -> Option<usize> {
        let d_sae = self.cfg.d_sae;
        let floor = |j: usize| theta.get(j).copied().unwrap_or(0.0).max(0.0);
        match self.cfg.arch {
            TrainArch::Relu { .. } | TrainArch::JumpRelu { .. } => Some(
                pre.par_chunks(d_sae)
                    .map(|row| {
                        row.iter()
                            .zip(&self.b_enc)
                            .enumerate()
                            .filter(|&(j, (&p, &b))| p + b > floor(j))
                            .count()
                    })
                    .sum(),
            ),
            _ => None,
        }
    }

    /// Loss and gradients with dense codes. `pre` = xin·W_encᵀ [rows, d_sae] (bias not added)
    /// is turned into the codes in place; `xin` = x − b_dec.
    pub(super) fn dense_grads(
        &self,
        x: &[f32],
        xin: &[f32],
        pre: &mut [f32],
        theta: &[f32],
        active: usize,
    ) -> Grads {
        let (d_in, d_sae) = (self.cfg.d_in, self.cfg.d_sae);
        let rows = x.len() / d_in;
        let n = rows as f32;
        let l0 = active as f64 / rows.max(1) as f64;
        let jump = JumpTerms::new(&self.cfg.arch, pre, &self.b_enc, theta, l0);
        // Codes: v = pre + b where v passes its threshold (θ for JumpReLU, 0 for ReLU), else 0;
        // and which latents fired in the batch.
        let fired = pre
            .par_chunks_mut(d_sae)
            .fold(
                || vec![false; d_sae],
                |mut fired, row| {
                    for (j, (p, &b)) in row.iter_mut().zip(&self.b_enc).enumerate() {
                        let v = *p + b;
                        let floor = theta.get(j).copied().unwrap_or(0.0).max(0.0);
                        *p = if v > floor { v } else { 0.0 };
                        fired[j] |= *p > 0.0;
                    }
                    fired
                },
            )
            .reduce(
                || vec![false; d_sae],
                |mut a, b| {
                    a.iter_mut().zip(&b).for_each(|(a, b)| *a |= b);
                    a
                },
            );
        let z: &[f32] = pre;
        // x̂ = z·W_dec + b_dec; e = x̂ − x.
        let mut dxhat = vec![0f32; rows * d_in];
        matmul(
            &mut dxhat,
            z,
            &self.w_dec,
            (rows, d_sae, d_in),
            RhsLayout::RowMajor,
            false,
            true,
        );
        let sq_err: f64 = dxhat
            .par_chunks_mut(d_in)
            .zip(x.par_chunks(d_in))
            .map(|(e, xr)| {
                let mut se = 0f64;
                for ((e, &b), &xv) in e.iter_mut().zip(&self.b_dec).zip(xr) {
                    *e = *e + b - xv;
                    se += (*e as f64) * (*e as f64);
                }
                se
            })
            // Rows' sums added in row order, so the logged loss and FVE repeat exactly.
            .collect::<Vec<f64>>()
            .iter()
            .sum();
        let loss = (sq_err / rows as f64) as f32;
        dxhat.par_iter_mut().for_each(|v| *v *= 2.0 / n);
        // dL/dz = dx̂·W_decᵀ, for every entry (the JumpReLU kernel reads it off-support too).
        let mut dz = vec![0f32; rows * d_sae];
        matmul(
            &mut dz,
            &dxhat,
            &self.w_dec,
            (rows, d_in, d_sae),
            RhsLayout::Transposed,
            false,
            true,
        );
        let l1 = self.l1_at(self.step);
        let dec_norms = self.decoder_norms_if(l1 > 0.0);
        let (log_threshold, sparsity_loss) = match &jump {
            Some(j) => j.threshold_grads(theta, rows, |b, l| dz[b * d_sae + l]),
            None => {
                let l1_sum: f64 = z
                    .par_chunks(d_sae)
                    .map(|row| {
                        row.iter()
                            .zip(&dec_norms)
                            .map(|(&v, &w)| (v * w) as f64)
                            .sum::<f64>()
                    })
                    .collect::<Vec<f64>>()
                    .iter()
                    .sum();
                (Vec::new(), (l1 as f64 * l1_sum / rows as f64) as f32)
            }
        };
        // dpre: dL/dz (+ the L1 term) on the support, 0 elsewhere.
        dz.par_chunks_mut(d_sae)
            .zip(z.par_chunks(d_sae))
            .for_each(|(d, zr)| {
                for (j, (d, &v)) in d.iter_mut().zip(zr).enumerate() {
                    *d = if v > 0.0 {
                        *d + if l1 > 0.0 { l1 / n * dec_norms[j] } else { 0.0 }
                    } else {
                        0.0
                    };
                }
            });
        let dpre = dz;
        let mut g_wenc = vec![0f32; d_sae * d_in];
        matmul_tn(&mut g_wenc, &dpre, xin, (d_sae, rows, d_in));
        let mut g_wdec = vec![0f32; d_sae * d_in];
        matmul_tn(&mut g_wdec, z, &dxhat, (d_sae, rows, d_in));
        // Sums over rows in fixed blocks added in order, so a seed gives the same weights
        // however rayon schedules the blocks.
        let column_sums = |m: &[f32]| -> Vec<f32> {
            let blocks: Vec<Vec<f32>> = m
                .par_chunks(64 * d_sae)
                .map(|block| {
                    let mut acc = vec![0f32; d_sae];
                    for row in block.chunks(d_sae) {
                        acc.iter_mut().zip(row).for_each(|(a, v)| *a += v);
                    }
                    acc
                })
                .collect();
            let mut total = vec![0f32; d_sae];
            for b in &blocks {
                total.iter_mut().zip(b).for_each(|(t, v)| *t += v);
            }
            total
        };
        let g_benc = column_sums(&dpre);
        if l1 > 0.0 {
            // d/dW_dec[j] of λ/n·Σ_b z_bj‖W_dec[j]‖.
            let f_sums = column_sums(z);
            g_wdec
                .par_chunks_mut(d_in)
                .zip(self.w_dec.par_chunks(d_in))
                .enumerate()
                .for_each(|(j, (g, w))| {
                    if f_sums[j] > 0.0 {
                        let c = l1 / n * f_sums[j] / dec_norms[j].max(1e-12);
                        g.iter_mut().zip(w).for_each(|(g, w)| *g += c * w);
                    }
                });
        }
        // b_dec: Σ_b dx̂ − (Σ_b dpre_b)·W_enc.
        let mut g_bdec = vec![0f32; d_in];
        for r in dxhat.chunks(d_in) {
            g_bdec.iter_mut().zip(r).for_each(|(g, v)| *g += v);
        }
        for (&s, we) in g_benc.iter().zip(self.w_enc_t.chunks(d_in)) {
            if s != 0.0 {
                g_bdec.iter_mut().zip(we).for_each(|(g, w)| *g -= s * w);
            }
        }
        Grads {
            loss,
            aux_loss: 0.0,
            sparsity_loss,
            w_enc_t: g_wenc,
            b_enc: g_benc,
            w_dec: g_wdec,
            b_dec: g_bdec,
            log_threshold,
            fired,
            l0,
            sq_err,
            min_kept: None,
        }
    }
}
