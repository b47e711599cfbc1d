//! SAE training on the CPU with exact sparse kernels. Only the active latents of each token
//! carry gradient, so everything after the dense encoder GEMM is sparse: the decoder is a gather
//! of the active rows, and the gradients of W_enc / W_dec touch only active latents (grouped by
//! latent so rows update in parallel without conflicts).
//!
//! Architectures: TopK (k per token) and BatchTopK (k·rows over the whole batch, which learns the
//! inference threshold as a running mean of the smallest kept activation), both with AuxK
//! (Gao et al., 2024) reviving dead latents and unit-norm decoder rows; ReLU with an L1 penalty
//! weighted by decoder row norms (decoder rows free). Adam with warm-up and linear decay.
//!
//! [`DeviceTrainer`] runs the same training as candle ops on a GPU (or any candle device); it
//! starts from a [`Trainer`] and writes its state back into one, so checkpoints and the saved
//! SAE come from this module either way.

mod adam;
mod arch;
mod dense;
mod device;
mod grads;
mod jump;
mod prefixes;
mod topk;

use adam::Adam;
pub use arch::{JUMP_BANDWIDTH, JUMP_INIT_THRESHOLD, TrainArch};
pub use device::{DecoderKind, DeviceGrads, DeviceTrainer};
pub use grads::Grads;
pub use prefixes::{Prefixes, SAEV_PREFIXES};
pub use topk::select_active;
pub(crate) use topk::{top_k_biased, top_k_row};

use super::{Engine, Sae, SaeActivation, SaeMeta};
use crate::linalg::{RhsLayout, matmul};
use crate::rng::Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub arch: TrainArch,
    pub d_in: usize,
    pub d_sae: usize,
    /// Active latents per token (TopK), or on average (BatchTopK); unused by ReLU.
    pub k: usize,
    /// Dead latents used by AuxK (0 disables it); the usual choice is d_in / 2.
    pub k_aux: usize,
    pub aux_coeff: f32,
    /// A latent that has not fired for this many tokens counts as dead.
    pub dead_after_tokens: u64,
    pub lr: f32,
    pub warmup_steps: u64,
    pub total_steps: u64,
    /// ReLU: the L1 coefficient ramps up linearly over these steps (avoids early dead latents).
    pub l1_warmup_steps: u64,
    pub seed: u64,
}

impl TrainConfig {
    /// The learning rate at `step`: linear warm-up, then constant, then linear decay to zero
    /// over the last 20% of training.
    pub fn lr_at(&self, step: u64) -> f32 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f32 / self.warmup_steps as f32;
        }
        let decay_start = (self.total_steps as f64 * 0.8) as u64;
        if step >= decay_start && self.total_steps > decay_start {
            let frac = (self.total_steps - step) as f32 / (self.total_steps - decay_start) as f32;
            return self.lr * frac.max(0.0);
        }
        self.lr
    }

    /// The L1 coefficient at `step` (ReLU only; ramps up over `l1_warmup_steps`).
    pub fn l1_at(&self, step: u64) -> f32 {
        match self.arch {
            TrainArch::Relu { l1 } => {
                l1 * ((step + 1) as f32 / self.l1_warmup_steps.max(1) as f32).min(1.0)
            }
            _ => 0.0,
        }
    }
}

/// Latents whose last firing (`last_fired`, in tokens) is `dead_after` tokens or more ago.
fn dead_mask(last_fired: &[u64], tokens_seen: u64, dead_after: u64) -> Vec<bool> {
    last_fired
        .iter()
        .map(|&t| tokens_seen.saturating_sub(t) >= dead_after && tokens_seen >= dead_after)
        .collect()
}

/// The BatchTopK inference threshold after a batch whose smallest kept activation is `m`: a
/// running mean (dictionary_learning's BatchTopK rule); `threshold` < 0 means unset.
fn running_threshold(threshold: f32, m: f32) -> f32 {
    if threshold < 0.0 {
        m
    } else {
        0.99 * threshold + 0.01 * m
    }
}

/// Named state tensors of a trainer, in a fixed order (checkpoints store these; the last three
/// only for JumpReLU).
pub const STATE_TENSORS: [&str; 15] = [
    "w_enc_t",
    "b_enc",
    "w_dec",
    "b_dec",
    "adam_m.w_enc_t",
    "adam_v.w_enc_t",
    "adam_m.b_enc",
    "adam_v.b_enc",
    "adam_m.w_dec",
    "adam_v.w_dec",
    "adam_m.b_dec",
    "adam_v.b_dec",
    "log_threshold",
    "adam_m.log_threshold",
    "adam_v.log_threshold",
];

pub struct Trainer {
    pub cfg: TrainConfig,
    /// [d_sae, d_in]: the encoder, one row per latent (= W_encᵀ).
    pub w_enc_t: Vec<f32>,
    pub b_enc: Vec<f32>,
    /// [d_sae, d_in]
    pub w_dec: Vec<f32>,
    pub b_dec: Vec<f32>,
    adam: [Adam; 4],
    /// JumpReLU: log θ per latent, and its Adam state (empty otherwise).
    pub log_threshold: Vec<f32>,
    adam_threshold: Adam,
    pub step: u64,
    pub tokens_seen: u64,
    /// Token count when each latent last fired.
    pub last_fired: Vec<u64>,
    /// BatchTopK inference threshold (running mean of the smallest kept activation; < 0 = unset).
    pub threshold: f32,
    /// Codes denser than this fraction of a batch take the dense form (`dense.rs`); the tests
    /// move it to run both forms on one batch.
    pub(super) dense_above: f64,
    /// Reused [rows, d_sae] pre-activation buffer: a fresh 256 MiB allocation per step costs
    /// more in page faults than the top-k selection itself.
    scratch: Vec<f32>,
}

impl Trainer {
    /// Random decoder rows (unit norm; norm 0.1 for ReLU, whose decoder norms are free), encoder =
    /// decoder transposed, `b_dec` = the mean of `sample` (rows of d_in).
    pub fn new(cfg: TrainConfig, sample: &[f32]) -> Self {
        let (d_in, d_sae) = (cfg.d_in, cfg.d_sae);
        let mut rng = Rng::new(cfg.seed);
        let mut w_dec: Vec<f32> = (0..d_in * d_sae).map(|_| rng.normal()).collect();
        normalize_rows(&mut w_dec, d_in);
        if !cfg.arch.unit_norm_decoder() {
            w_dec.iter_mut().for_each(|w| *w *= 0.1);
        }
        let w_enc_t = w_dec.clone();
        let rows = sample.len() / d_in;
        let mut b_dec = vec![0f32; d_in];
        for r in sample.chunks(d_in) {
            b_dec
                .iter_mut()
                .zip(r)
                .for_each(|(b, x)| *b += x / rows.max(1) as f32);
        }
        let log_threshold = match cfg.arch {
            TrainArch::JumpRelu { init_threshold, .. } => vec![init_threshold.ln(); d_sae],
            _ => Vec::new(),
        };
        Trainer {
            adam_threshold: Adam::new(log_threshold.len()),
            log_threshold,
            w_enc_t,
            b_enc: vec![0.0; d_sae],
            w_dec,
            b_dec,
            adam: [
                Adam::new(d_in * d_sae),
                Adam::new(d_sae),
                Adam::new(d_in * d_sae),
                Adam::new(d_in),
            ],
            step: 0,
            tokens_seen: 0,
            last_fired: vec![0; d_sae],
            threshold: -1.0,
            dense_above: dense::DENSE_ABOVE,
            scratch: Vec::new(),
            cfg,
        }
    }

    pub fn lr_at(&self, step: u64) -> f32 {
        self.cfg.lr_at(step)
    }

    /// JumpReLU's θ = exp(log θ) (empty for the other architectures).
    pub fn thresholds(&self) -> Vec<f32> {
        self.log_threshold.iter().map(|l| l.exp()).collect()
    }

    /// The L1 coefficient at `step` (ReLU only; ramps up over `l1_warmup_steps`).
    pub fn l1_at(&self, step: u64) -> f32 {
        self.cfg.l1_at(step)
    }

    /// Latents that have not fired for `dead_after_tokens` tokens.
    pub fn dead_mask(&self) -> Vec<bool> {
        dead_mask(
            &self.last_fired,
            self.tokens_seen,
            self.cfg.dead_after_tokens,
        )
    }

    /// One optimisation step on a batch; returns the batch's gradients/statistics.
    pub fn train_step(&mut self, x: &[f32]) -> Grads {
        let dead = self.dead_mask();
        let g = self.grads(x, &dead);
        let rows = (x.len() / self.cfg.d_in) as u64;
        self.tokens_seen += rows;
        for (j, _) in g.fired.iter().enumerate().filter(|(_, f)| **f) {
            self.last_fired[j] = self.tokens_seen;
        }
        if let Some(m) = g.min_kept {
            self.threshold = running_threshold(self.threshold, m);
        }
        self.step += 1;
        let lr = self.lr_at(self.step - 1);
        let t = self.step;
        let [a0, a1, a2, a3] = &mut self.adam;
        a0.step(&mut self.w_enc_t, &g.w_enc_t, lr, t);
        a1.step(&mut self.b_enc, &g.b_enc, lr, t);
        a2.step(&mut self.w_dec, &g.w_dec, lr, t);
        a3.step(&mut self.b_dec, &g.b_dec, lr, t);
        if !self.log_threshold.is_empty() {
            self.adam_threshold
                .step(&mut self.log_threshold, &g.log_threshold, lr, t);
        }
        if self.cfg.arch.unit_norm_decoder() {
            normalize_rows(&mut self.w_dec, self.cfg.d_in);
        }
        g
    }

    /// The state tensors named by [`STATE_TENSORS`], for checkpoints.
    pub fn state(&self) -> Vec<(&'static str, &[f32])> {
        let a = &self.adam;
        let v: [&[f32]; 15] = [
            &self.w_enc_t,
            &self.b_enc,
            &self.w_dec,
            &self.b_dec,
            &a[0].m,
            &a[0].v,
            &a[1].m,
            &a[1].v,
            &a[2].m,
            &a[2].v,
            &a[3].m,
            &a[3].v,
            &self.log_threshold,
            &self.adam_threshold.m,
            &self.adam_threshold.v,
        ];
        let kept = if self.log_threshold.is_empty() {
            12
        } else {
            15
        };
        STATE_TENSORS.iter().copied().zip(v).take(kept).collect()
    }

    /// Restores what [`Trainer::state`] returned (checked for size) plus the counters.
    pub fn restore(
        &mut self,
        mut get: impl FnMut(&str, usize) -> crate::error::Result<Vec<f32>>,
        step: u64,
        tokens_seen: u64,
        last_fired: Vec<u64>,
        threshold: f32,
    ) -> crate::error::Result<()> {
        let (d_in, d_sae) = (self.cfg.d_in, self.cfg.d_sae);
        self.w_enc_t = get("w_enc_t", d_sae * d_in)?;
        self.b_enc = get("b_enc", d_sae)?;
        self.w_dec = get("w_dec", d_sae * d_in)?;
        self.b_dec = get("b_dec", d_in)?;
        let names = ["w_enc_t", "b_enc", "w_dec", "b_dec"];
        let sizes = [d_sae * d_in, d_sae, d_sae * d_in, d_in];
        for (i, a) in self.adam.iter_mut().enumerate() {
            a.m = get(&format!("adam_m.{}", names[i]), sizes[i])?;
            a.v = get(&format!("adam_v.{}", names[i]), sizes[i])?;
        }
        if !self.log_threshold.is_empty() {
            self.log_threshold = get("log_threshold", d_sae)?;
            self.adam_threshold.m = get("adam_m.log_threshold", d_sae)?;
            self.adam_threshold.v = get("adam_v.log_threshold", d_sae)?;
        }
        if last_fired.len() != d_sae {
            return Err(crate::error::Error::Invalid(format!(
                "checkpoint has {} latent counters, expected {d_sae}",
                last_fired.len()
            )));
        }
        self.step = step;
        self.tokens_seen = tokens_seen;
        self.last_fired = last_fired;
        self.threshold = threshold;
        Ok(())
    }

    /// The trained SAE in inference form.
    pub fn to_sae(&self, mut meta: SaeMeta) -> Sae {
        meta.training_architecture = Some(self.cfg.arch.name().into());
        if let TrainArch::Matryoshka { prefixes } = &self.cfg.arch {
            meta.prefixes = Some(prefixes.clone());
        }
        let (d_in, d_sae) = (self.cfg.d_in, self.cfg.d_sae);
        let mut w_enc = vec![0f32; d_in * d_sae];
        for j in 0..d_sae {
            for i in 0..d_in {
                w_enc[i * d_sae + j] = self.w_enc_t[j * d_in + i];
            }
        }
        let activation = match self.cfg.arch {
            TrainArch::TopK => SaeActivation::TopK { k: self.cfg.k },
            TrainArch::BatchTopK | TrainArch::Matryoshka { .. } => SaeActivation::BatchTopK {
                k: self.cfg.k as f32,
                threshold: self.threshold.max(0.0),
            },
            TrainArch::Relu { .. } => SaeActivation::Relu,
            TrainArch::JumpRelu { .. } => SaeActivation::JumpRelu,
        };
        Sae {
            d_in,
            d_sae,
            w_enc,
            b_enc: self.b_enc.clone(),
            w_dec: self.w_dec.clone(),
            b_dec: self.b_dec.clone(),
            threshold: (!self.log_threshold.is_empty()).then(|| self.thresholds()),
            activation,
            apply_b_dec_to_input: true,
            input_scale: None,
            engine: Engine::default(),
            meta,
        }
    }
}

fn normalize_rows(w: &mut [f32], d: usize) {
    w.par_chunks_mut(d).for_each(|r| {
        let n = r.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        r.iter_mut().for_each(|v| *v /= n);
    });
}

#[cfg(test)]
mod fixture_tests;
#[cfg(test)]
mod recovery_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor, Var};

    fn small_cfg(arch: TrainArch, k_aux: usize) -> TrainConfig {
        TrainConfig {
            arch,
            d_in: 5,
            d_sae: 12,
            k: 3,
            k_aux,
            aux_coeff: 0.25,
            dead_after_tokens: 1,
            lr: 1e-3,
            warmup_steps: 1,
            total_steps: 10,
            l1_warmup_steps: 1,
            seed: 3,
        }
    }

    /// The sparse kernels against a dense autograd implementation (candle): main loss, AuxK and
    /// the decoder-norm-weighted L1 penalty, for every trainable architecture.
    #[test]
    fn sparse_gradients_match_dense_autograd() {
        for (arch, k_aux) in [
            (TrainArch::TopK, 4),
            (TrainArch::BatchTopK, 4),
            (TrainArch::Relu { l1: 0.7 }, 0),
        ] {
            // Both forms: the sparse kernels and (ReLU, JumpReLU) the dense GEMMs.
            for dense_above in [f64::INFINITY, 0.0] {
                check_against_autograd(small_cfg(arch.clone(), k_aux), dense_above);
            }
        }
    }

    fn check_against_autograd(cfg: TrainConfig, dense_above: f64) {
        let (d_in, d_sae, k, k_aux, rows) = (cfg.d_in, cfg.d_sae, cfg.k, cfg.k_aux, 7);
        let arch = cfg.arch.clone();
        let mut rng = Rng::new(11);
        let x: Vec<f32> = (0..rows * d_in).map(|_| rng.normal()).collect();
        let mut t = Trainer::new(cfg, &x);
        t.b_enc.iter_mut().for_each(|b| *b = rng.normal() * 0.3);
        t.b_dec.iter_mut().for_each(|b| *b += rng.normal() * 0.1);
        t.w_enc_t.iter_mut().for_each(|w| *w += rng.normal() * 0.2);
        t.w_dec.iter_mut().for_each(|w| *w *= 1.0 + rng.uniform());
        let dead: Vec<bool> = (0..d_sae).map(|j| j % 3 == 0).collect();
        t.dense_above = dense_above;
        let g = t.grads(&x, &dead);

        let dev = Device::Cpu;
        let var = |v: &[f32], shape: &[usize]| {
            Var::from_tensor(&Tensor::from_slice(v, shape, &dev).unwrap()).unwrap()
        };
        let (we, be, wd, bd) = (
            var(&t.w_enc_t, &[d_sae, d_in]),
            var(&t.b_enc, &[d_sae]),
            var(&t.w_dec, &[d_sae, d_in]),
            var(&t.b_dec, &[d_in]),
        );
        let xt = Tensor::from_slice(&x, (rows, d_in), &dev).unwrap();
        let xin = xt.broadcast_sub(bd.as_tensor()).unwrap();
        let pre = xin
            .matmul(&we.as_tensor().t().unwrap())
            .unwrap()
            .broadcast_add(be.as_tensor())
            .unwrap();
        // Masks from the same selection rule, as constants.
        let pre_v: Vec<f32> = pre.flatten_all().unwrap().to_vec1().unwrap();
        let zero = vec![0f32; d_sae];
        let to_mask = |lists: Vec<Vec<(u32, f32)>>| {
            let mut m = vec![0f32; rows * d_sae];
            for (r, l) in lists.iter().enumerate() {
                for &(j, _) in l {
                    m[r * d_sae + j as usize] = 1.0;
                }
            }
            Tensor::from_vec(m, (rows, d_sae), &dev).unwrap()
        };
        let main_mask = to_mask(select_active(&arch, &pre_v, &zero, &[], k).0);
        let f = (pre.relu().unwrap() * main_mask).unwrap();
        let xhat = f
            .matmul(wd.as_tensor())
            .unwrap()
            .broadcast_add(bd.as_tensor())
            .unwrap();
        let e = (&xhat - &xt).unwrap();
        let loss = (e.sqr().unwrap().sum_all().unwrap() / rows as f64).unwrap();
        let mut total = loss.clone();
        if k_aux > 0 {
            let aux_mask = to_mask(
                pre_v
                    .chunks(d_sae)
                    .map(|row| top_k_biased(row, &zero, k_aux, Some(&dead)))
                    .collect(),
            );
            let fa = (pre.relu().unwrap() * aux_mask).unwrap();
            let ehat = fa.matmul(wd.as_tensor()).unwrap();
            let target = e.detach().neg().unwrap();
            let aux = ((ehat - target).unwrap().sqr().unwrap().sum_all().unwrap()
                * (0.25 / rows as f64))
                .unwrap();
            assert!((aux.to_scalar::<f32>().unwrap() - g.aux_loss).abs() < 1e-5);
            total = (&total + &aux).unwrap();
        }
        if let TrainArch::Relu { l1 } = arch {
            let norms = wd
                .as_tensor()
                .sqr()
                .unwrap()
                .sum_keepdim(1)
                .unwrap()
                .sqrt()
                .unwrap();
            let pen =
                (f.matmul(&norms).unwrap().sum_all().unwrap() * (l1 as f64 / rows as f64)).unwrap();
            assert!((pen.to_scalar::<f32>().unwrap() - g.sparsity_loss).abs() < 1e-5);
            total = (&total + &pen).unwrap();
        }
        let grads = total.backward().unwrap();

        assert!((loss.to_scalar::<f32>().unwrap() - g.loss).abs() < 1e-5);
        for (name, v, mine) in [
            ("W_enc", &we, &g.w_enc_t),
            ("b_enc", &be, &g.b_enc),
            ("W_dec", &wd, &g.w_dec),
            ("b_dec", &bd, &g.b_dec),
        ] {
            let dense: Vec<f32> = grads
                .get(v.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let d = dense
                .iter()
                .zip(mine.iter())
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(d < 1e-5, "{arch:?} {name}: max |sparse − dense| = {d}");
            assert!(
                dense.iter().any(|v| v.abs() > 1e-4),
                "{arch:?} {name}: gradient should not be trivially zero"
            );
        }
    }

    #[test]
    fn batch_top_k_keeps_k_per_row_on_average() {
        let mut rng = Rng::new(2);
        let (rows, d_sae, k) = (64, 40, 5);
        let pre: Vec<f32> = (0..rows * d_sae).map(|_| rng.normal()).collect();
        let b = vec![0f32; d_sae];
        let (lists, min_kept) = select_active(&TrainArch::BatchTopK, &pre, &b, &[], k);
        let kept: usize = lists.iter().map(Vec::len).sum();
        assert_eq!(kept, rows * k);
        let min_kept = min_kept.unwrap();
        // Everything above the smallest kept value is kept; rows differ in how many they keep.
        let above = pre.iter().filter(|&&v| v >= min_kept).count();
        assert_eq!(above, rows * k);
        assert!(lists.iter().any(|l| l.len() != k));
    }

    /// The candidate-bound selection equals sorting the whole batch, with ties and with rows
    /// that hold far more than 2k of the batch's largest values.
    #[test]
    fn batch_top_k_equals_sorting_the_batch() {
        let mut rng = Rng::new(4);
        for case in 0..40 {
            let (rows, d_sae, k) = (16 + case % 7, 50 + case, 1 + case % 5);
            let pre: Vec<f32> = (0..rows * d_sae)
                .map(|i| {
                    let loud = if (i / d_sae) % 5 == 0 { 4.0 } else { 1.0 };
                    (rng.normal() * loud * 4.0).round() / 4.0
                })
                .collect();
            let b: Vec<f32> = (0..d_sae)
                .map(|_| (rng.normal() * 2.0).round() / 4.0)
                .collect();
            let mut all: Vec<f32> = pre
                .chunks(d_sae)
                .flat_map(|r| r.iter().zip(&b).map(|(p, b)| p + b))
                .filter(|&v| v > 0.0)
                .collect();
            all.sort_by(|a, b| b.total_cmp(a));
            let floor = if all.len() > rows * k {
                all[rows * k - 1]
            } else {
                0.0
            };
            let want: Vec<Vec<(u32, f32)>> = pre
                .chunks(d_sae)
                .map(|r| {
                    r.iter()
                        .zip(&b)
                        .enumerate()
                        .filter_map(|(j, (p, b))| {
                            let v = p + b;
                            (v > 0.0 && v >= floor).then_some((j as u32, v))
                        })
                        .collect()
                })
                .collect();
            let (got, _) = select_active(&TrainArch::BatchTopK, &pre, &b, &[], k);
            assert_eq!(got, want, "case {case}");
        }
    }

    #[test]
    fn heap_top_k_matches_sorting() {
        let mut rng = Rng::new(9);
        for _ in 0..50 {
            let row: Vec<f32> = (0..300)
                .map(|_| (rng.normal() * 4.0).round() / 4.0)
                .collect(); // with ties
            let bias: Vec<f32> = (0..300).map(|_| rng.normal() * 0.5).collect();
            let biased: Vec<f32> = row.iter().zip(&bias).map(|(a, b)| a + b).collect();
            let mut want: Vec<u32> = (0..300u32).collect();
            want.sort_by(|&a, &b| {
                (row[b as usize] + bias[b as usize])
                    .total_cmp(&(row[a as usize] + bias[a as usize]))
                    .then(a.cmp(&b))
            });
            want.truncate(17);
            want.sort();
            let mut got: Vec<u32> = top_k_biased(&row, &bias, 17, None)
                .into_iter()
                .map(|(j, _)| j)
                .collect();
            got.sort();
            assert_eq!(got, want);
            let mut fast: Vec<u32> = top_k_row(&biased, 17).into_iter().map(|(j, _)| j).collect();
            fast.sort();
            assert_eq!(fast, want, "block-skipping top-k");
        }
    }

    /// Every architecture learns sparse synthetic data, and a seed fixes the result.
    #[test]
    fn training_reduces_the_loss_and_is_deterministic() {
        let (d_in, d_sae) = (8, 32);
        let mut rng = Rng::new(5);
        // Data from 16 sparse directions.
        let dirs: Vec<f32> = (0..16 * d_in).map(|_| rng.normal()).collect();
        let x: Vec<f32> = (0..2048)
            .flat_map(|_| {
                let mut row = vec![0f32; d_in];
                for _ in 0..2 {
                    let j = rng.below(16);
                    let a = rng.uniform() * 2.0;
                    row.iter_mut()
                        .zip(&dirs[j * d_in..(j + 1) * d_in])
                        .for_each(|(r, d)| *r += a * d);
                }
                row
            })
            .collect();
        for arch in [
            TrainArch::TopK,
            TrainArch::BatchTopK,
            TrainArch::Relu { l1: 0.01 },
        ] {
            let run = || {
                let cfg = TrainConfig {
                    arch: arch.clone(),
                    d_in,
                    d_sae,
                    k: 4,
                    k_aux: 4,
                    aux_coeff: 1.0 / 32.0,
                    dead_after_tokens: 4096,
                    lr: 3e-3,
                    warmup_steps: 10,
                    total_steps: 200,
                    l1_warmup_steps: 20,
                    seed: 1,
                };
                let mut t = Trainer::new(cfg, &x);
                let first = t.grads(&x[..256 * d_in], &vec![false; d_sae]).loss;
                for s in 0..200 {
                    let b = (s % 8) * 256;
                    t.train_step(&x[b * d_in..(b + 256) * d_in]);
                }
                let sae = t.to_sae(SaeMeta::default());
                // The inference SAE (BatchTopK: learned threshold) reconstructs too.
                let xs = &x[..256 * d_in];
                let rec = sae.decode(&sae.encode(xs));
                let inf_loss = xs
                    .iter()
                    .zip(&rec)
                    .map(|(a, b)| (a - b).powi(2))
                    .sum::<f32>()
                    / 256.0;
                (
                    first,
                    t.grads(xs, &vec![false; d_sae]).loss,
                    inf_loss,
                    t.w_dec.clone(),
                )
            };
            let (first, last, inf, w1) = run();
            assert!(last < first * 0.3, "{arch:?}: loss {first} → {last}");
            assert!(
                inf < first * 0.4,
                "{arch:?}: inference loss {first} → {inf}"
            );
            let (_, _, _, w2) = run();
            assert_eq!(w1, w2, "{arch:?}: same seed, same data → same weights");
        }
    }
}
