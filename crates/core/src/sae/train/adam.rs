//! Adam, one state per parameter tensor (PyTorch's defaults: β 0.9 / 0.999, ε 1e-8).

use rayon::prelude::*;

pub(super) const B1: f32 = 0.9;
pub(super) const B2: f32 = 0.999;
pub(super) const EPS: f32 = 1e-8;

/// Step `t`'s bias corrections: (lr / (1 − β1ᵗ), √(1 − β2ᵗ)); the update is
/// p −= step·m / (√v / c2s + ε).
pub(super) fn bias_corrected(lr: f32, t: u64) -> (f32, f32) {
    let c1 = 1.0 - B1.powi(t as i32);
    let c2 = 1.0 - B2.powi(t as i32);
    (lr / c1, c2.sqrt())
}

/// Adam state for one parameter tensor.
#[derive(Clone)]
pub(super) struct Adam {
    pub(super) m: Vec<f32>,
    pub(super) v: Vec<f32>,
}

impl Adam {
    pub(super) fn new(n: usize) -> Self {
        Adam {
            m: vec![0.0; n],
            v: vec![0.0; n],
        }
    }

    pub(super) fn step(&mut self, p: &mut [f32], g: &[f32], lr: f32, t: u64) {
        let (step, c2s) = bias_corrected(lr, t);
        p.par_chunks_mut(4096)
            .zip(g.par_chunks(4096))
            .zip(self.m.par_chunks_mut(4096).zip(self.v.par_chunks_mut(4096)))
            .for_each(|((p, g), (m, v))| {
                for i in 0..p.len() {
                    m[i] = B1 * m[i] + (1.0 - B1) * g[i];
                    v[i] = B2 * v[i] + (1.0 - B2) * g[i] * g[i];
                    p[i] -= step * m[i] / (v[i].sqrt() / c2s + EPS);
                }
            });
    }
}
