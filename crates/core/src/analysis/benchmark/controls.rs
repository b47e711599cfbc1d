//! The two controls every SAE is scored beside, at its width (the PCA control excepted, below)
//! and its sparsity (k = the SAE's own L0 on a sample of the workspace's training tokens):
//! - **untrained**: the trainers' own initialisation (unit random decoder rows, the encoder
//!   their transpose, `b_dec` the sample mean), coded TopK at that k. It tells whether training
//!   did anything a random sparse code of this data does not.
//! - **pca**: the signed principal directions of the sample (±v_i, so codes stay
//!   non-negative), coded TopK at that k: the best linear basis, with as many atoms as an
//!   orthogonal basis can have (2·d_in), not d_sae.

use crate::error::{Error, Result};
use crate::sae::train::{TrainArch, TrainConfig, Trainer};
use crate::sae::{Engine, Sae, SaeActivation, SaeMeta, fve_and_l0};

/// The SAE's sparsity on `sample` rows, as the k its controls keep (at least 1).
pub fn matched_k(sae: &Sae, sample: &[f32]) -> usize {
    let (_, l0) = fve_and_l0(sae, sample);
    (l0.round() as usize).clamp(1, sae.d_sae)
}

/// The initialised, untrained SAE at `sae`'s width, coded TopK at `k`.
pub fn untrained(sae: &Sae, k: usize, sample: &[f32], seed: u64) -> Sae {
    let cfg = TrainConfig {
        arch: TrainArch::TopK,
        d_in: sae.d_in,
        d_sae: sae.d_sae,
        k,
        k_aux: 0,
        aux_coeff: 0.0,
        dead_after_tokens: u64::MAX,
        lr: 0.0,
        warmup_steps: 1,
        total_steps: 1,
        l1_warmup_steps: 1,
        seed,
    };
    Trainer::new(cfg, sample).to_sae(SaeMeta {
        training_architecture: Some("untrained".into()),
        ..SaeMeta::default()
    })
}

/// TopK over the signed principal directions of `sample` [rows, d_in].
pub fn pca(sample: &[f32], d_in: usize, k: usize) -> Result<Sae> {
    let rows = sample.len() / d_in.max(1);
    if rows < 2 {
        return Err(Error::Invalid(
            "the PCA control needs at least two sample rows".into(),
        ));
    }
    let mut mean = vec![0f64; d_in];
    for r in sample.chunks(d_in) {
        mean.iter_mut().zip(r).for_each(|(m, &v)| *m += v as f64);
    }
    mean.iter_mut().for_each(|m| *m /= rows as f64);
    let mut cov = nalgebra::DMatrix::<f64>::zeros(d_in, d_in);
    let mut centred = vec![0f64; d_in];
    for r in sample.chunks(d_in) {
        centred
            .iter_mut()
            .zip(r.iter().zip(&mean))
            .for_each(|(c, (&v, m))| *c = v as f64 - m);
        for i in 0..d_in {
            let ci = centred[i];
            for j in i..d_in {
                cov[(i, j)] += ci * centred[j];
            }
        }
    }
    for i in 0..d_in {
        for j in 0..i {
            cov[(i, j)] = cov[(j, i)];
        }
    }
    let eig = nalgebra::SymmetricEigen::new(cov);
    let d_sae = 2 * d_in;
    // W_enc [d_in, d_sae]: column i is v_i, column d_in + i is −v_i; W_dec its transpose.
    let mut w_enc = vec![0f32; d_in * d_sae];
    let mut w_dec = vec![0f32; d_sae * d_in];
    for i in 0..d_in {
        for r in 0..d_in {
            let v = eig.eigenvectors[(r, i)] as f32;
            w_enc[r * d_sae + i] = v;
            w_enc[r * d_sae + d_in + i] = -v;
            w_dec[i * d_in + r] = v;
            w_dec[(d_in + i) * d_in + r] = -v;
        }
    }
    Ok(Sae {
        d_in,
        d_sae,
        w_enc,
        b_enc: vec![0.0; d_sae],
        w_dec,
        b_dec: mean.iter().map(|&m| m as f32).collect(),
        threshold: None,
        activation: SaeActivation::TopK { k: k.min(d_in) },
        apply_b_dec_to_input: true,
        input_scale: None,
        meta: SaeMeta {
            training_architecture: Some("pca".into()),
            ..SaeMeta::default()
        },
        engine: Engine::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With k = d_in the PCA control is a full orthogonal basis: it reconstructs exactly. At
    /// k = 1 it keeps the top direction of data stretched along one axis.
    #[test]
    fn pca_is_an_exact_basis_and_ranks_by_variance() {
        let mut rng = crate::rng::Rng::new(4);
        let d = 5;
        let sample: Vec<f32> = (0..400 * d)
            .map(|i| rng.normal() * if i % d == 2 { 10.0 } else { 1.0 } + 3.0)
            .collect();
        let full = pca(&sample, d, d).unwrap();
        let (fve, l0) = fve_and_l0(&full, &sample);
        assert!(fve > 0.999_99, "{fve}");
        assert!(l0 <= d as f64);
        let one = pca(&sample, d, 1).unwrap();
        let (fve1, _) = fve_and_l0(&one, &sample);
        assert!(fve1 > 0.85 && fve1 < 0.99, "{fve1}");
        let u = untrained(&one, 1, &sample, 0);
        assert_eq!(matched_k(&u, &sample), 1);
    }
}
