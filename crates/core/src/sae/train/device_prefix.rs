//! Matryoshka's prefix groups on the device, as `grads.rs` computes them on the CPU: with prefix
//! ends m_1 < … < m_P, e_p = b_dec + Σ_{j<m_p} f_j W_dec[j] − x, and a latent of group g sees
//! the upstream gradient u_g = 2/n·Σ_{q≥g} e_q. Every other architecture is one group (no mask).

use super::Codes;
use crate::error::Result;
use crate::sae::train::prefixes::group_of;
use crate::sae::train::{TrainArch, TrainConfig};
use candle_core::{DType, Device, Tensor};

/// One mask per group over the codes' entries (1 where the entry's latent is in the group).
pub(super) struct Groups {
    masks: Vec<Option<Tensor>>,
}

fn masked(t: &Tensor, mask: &Option<Tensor>) -> Result<Tensor> {
    Ok(match mask {
        Some(m) => (t * m)?,
        None => t.clone(),
    })
}

impl Groups {
    /// The groups of this step (Matryoshka's prefixes are drawn per step), over `codes`.
    pub(super) fn new(
        cfg: &TrainConfig,
        step: u64,
        codes: &Codes,
        device: &Device,
    ) -> Result<Self> {
        let TrainArch::Matryoshka { prefixes } = &cfg.arch else {
            return Ok(Groups { masks: vec![None] });
        };
        let ends = prefixes.ends_at(cfg.d_sae, cfg.seed, step);
        if ends.len() <= 1 {
            return Ok(Groups { masks: vec![None] });
        }
        let gid: Vec<f32> = (0..cfg.d_sae).map(|j| group_of(&ends, j) as f32).collect();
        let per_entry = codes.per_entry(&Tensor::from_vec(gid, cfg.d_sae, device)?)?;
        let masks = (0..ends.len())
            .map(|g| Ok(Some(per_entry.eq(g as f64)?.to_dtype(DType::F32)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Groups { masks })
    }

    /// The residual e_p [rows, d_in] of every prefix (the last is the whole dictionary's) and
    /// every group's upstream gradient u_g.
    pub(super) fn residuals(
        &self,
        codes: &Codes,
        w_dec: &Tensor,
        b_dec: &Tensor,
        x: &Tensor,
        n: f32,
    ) -> Result<(Vec<Tensor>, Vec<Tensor>)> {
        let mut sum: Option<Tensor> = None;
        let mut errs = Vec::with_capacity(self.masks.len());
        for m in &self.masks {
            let part = codes.decode_values(&masked(codes.vals(), m)?, w_dec)?;
            let s = match sum {
                None => part,
                Some(s) => (s + part)?,
            };
            errs.push((s.broadcast_add(b_dec)? - x)?);
            sum = Some(s);
        }
        let mut ups: Vec<Tensor> = Vec::with_capacity(errs.len());
        let mut suffix: Option<Tensor> = None;
        for e in errs.iter().rev() {
            let s = match suffix {
                None => e.clone(),
                Some(s) => (s + e)?,
            };
            ups.push(s.affine((2.0 / n) as f64, 0.0)?);
            suffix = Some(s);
        }
        ups.reverse();
        Ok((errs, ups))
    }

    /// dL/dpre at every entry (before the mask of active entries) and dL/dW_dec, from the
    /// groups' upstream gradients `ups`.
    pub(super) fn backward(
        &self,
        codes: &Codes,
        w_dec: &Tensor,
        ups: &[Tensor],
        d_sae: usize,
    ) -> Result<(Tensor, Tensor)> {
        let (mut dpre, mut g_wdec): (Option<Tensor>, Option<Tensor>) = (None, None);
        for (m, u) in self.masks.iter().zip(ups) {
            let d = masked(&codes.project(w_dec, u)?, m)?;
            let g = codes.outer(&masked(codes.vals(), m)?, u, d_sae)?;
            dpre = Some(match dpre {
                None => d,
                Some(a) => (a + d)?,
            });
            g_wdec = Some(match g_wdec {
                None => g,
                Some(a) => (a + g)?,
            });
        }
        match (dpre, g_wdec) {
            (Some(d), Some(g)) => Ok((d, g)),
            _ => Err(crate::error::Error::Invalid("no prefix group".into())),
        }
    }
}
