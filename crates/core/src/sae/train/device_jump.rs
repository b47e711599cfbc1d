//! JumpReLU's threshold terms on the device, as `jump.rs` computes them on the CPU: with
//! z = ReLU(pre) and the rectangle kernel K = 1{|z − θ| < ε/2}/ε, θ_j's gradient is
//! Σ_b K_bj·(−θ_j·df_bj − step), step = the L0 term's slope / rows, and log θ's is that times θ.

use crate::error::{Error, Result};
use crate::sae::train::TrainArch;
use candle_core::{DType, Tensor};

/// One batch's sums over the entries near their thresholds.
pub(super) struct Jump {
    /// Σ_b near_bj·df_bj [d_sae].
    near_df: Tensor,
    /// Σ_b near_bj [d_sae].
    near: Tensor,
    coeff: f32,
    target: Option<f32>,
    bandwidth: f32,
}

/// `pre` [rows, d_sae] with the encoder bias, `theta` [d_sae], `df` the loss's derivative in
/// every code (dense, without the sparsity term).
pub(super) fn threshold_grads(
    arch: &TrainArch,
    pre: &Tensor,
    theta: &Tensor,
    df: &Tensor,
) -> Result<Jump> {
    let TrainArch::JumpRelu {
        l0_coeff,
        l0_target,
        bandwidth,
        ..
    } = *arch
    else {
        return Err(Error::Invalid("threshold gradients are JumpReLU's".into()));
    };
    let near = pre
        .relu()?
        .broadcast_sub(theta)?
        .abs()?
        .lt((bandwidth / 2.0) as f64)?
        .to_dtype(DType::F32)?;
    Ok(Jump {
        near_df: (&near * df)?.sum(0)?,
        near: near.sum(0)?,
        coeff: l0_coeff,
        target: l0_target,
        bandwidth,
    })
}

impl Jump {
    /// The L0 term's value and its derivative in the batch's mean L0 `l0` (as on the CPU).
    fn term(&self, l0: f64) -> (f64, f64) {
        crate::sae::train::jump::l0_term(self.coeff, self.target, l0)
    }

    pub(super) fn value(&self, l0: f64) -> f32 {
        self.term(l0).0 as f32
    }

    /// d/d log θ [d_sae].
    pub(super) fn log_grad(&self, theta: &Tensor, l0: f64, rows: usize) -> Result<Tensor> {
        let k = 1.0 / self.bandwidth as f64;
        let step = self.term(l0).1 / rows as f64;
        let g_theta =
            ((&self.near_df * theta)?.affine(-k, 0.0)? - self.near.affine(k * step, 0.0)?)?;
        Ok((g_theta * theta)?)
    }
}
