//! SAE training as candle tensor ops, so it runs on whatever device the tensors live on (CUDA,
//! Metal, or the CPU, where the tests hold it equal to [`Trainer`]). The CPU path stays
//! [`Trainer`] with its sparse kernels; this one takes its initial state from a [`Trainer`] and
//! writes its state back into one, so checkpoints, resume, `to_sae` and metrics are shared.
//!
//! The backward pass is written out by hand, term by term as in `grads.rs` (main loss, AuxK with
//! its target held constant, ReLU's L1 weighted by decoder norms), not through candle's
//! autograd: the selection is a constant anyway, and an explicit backward keeps only the tensors
//! it needs and gives the same sums as the CPU trainer.
//!
//! Codes take one of two forms ([`DecoderKind`]): `Sparse` gathers each row's active decoder
//! rows (`index_select`) and scatters gradients with `index_add`; `Dense` holds codes as a
//! [rows, d_sae] matrix (zero where off) and uses GEMMs. TopK and AuxK use the chosen form.
//! BatchTopK's sparse form takes each row's top m (m = the most any row keeps) and falls back to
//! dense when m would exceed a sort chunk. ReLU, whose active count is unbounded, is always dense.
//! On CUDA, candle's `index_add` runs one thread per d_in column over all rows·k entries, so the
//! dense form (GEMMs) is the one a GPU is fast at.
//!
//! BatchTopK's batch threshold (the rows·k-th largest activation) is found by bisection over the
//! bit patterns of positive floats (which sort as the floats do), counting with one comparison
//! per step: exact, and no sort longer than a row (candle's CUDA sort stops at 8,192 columns).

use super::adam::{B1, B2, EPS, bias_corrected};
use super::{TrainArch, TrainConfig, Trainer, dead_mask, running_threshold};
use crate::error::{Error, Result};
use crate::sae::device::{SORT_CHUNK, top_k};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

/// How codes meet the decoder (see the module notes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecoderKind {
    /// Gather the active decoder rows; scatter gradients with `index_add`.
    Sparse,
    /// Codes as a dense matrix; GEMMs.
    Dense,
}

crate::str_choices!(DecoderKind: "sparse" => DecoderKind::Sparse, "dense" => DecoderKind::Dense);

/// One batch's losses and gradients on the device, with the statistics the bookkeeping and the
/// metrics read on the host.
pub struct DeviceGrads {
    /// Mean over rows of ‖x − x̂‖².
    pub loss: f32,
    pub aux_loss: f32,
    /// ReLU: the (warmed-up) L1 term.
    pub sparsity_loss: f32,
    /// Σ‖x − x̂‖² over the batch.
    pub sq_err: f64,
    /// Latents above 0 per row, on average.
    pub l0: f64,
    /// Latents above 0 in at least one row.
    pub fired: Vec<bool>,
    /// BatchTopK: the smallest activation kept in this batch.
    pub min_kept: Option<f32>,
    /// [d_sae, d_in]
    pub w_enc_t: Tensor,
    pub b_enc: Tensor,
    pub w_dec: Tensor,
    pub b_dec: Tensor,
}

/// Adam's moments of one parameter tensor.
struct Moments {
    m: Tensor,
    v: Tensor,
}

/// The state of a [`Trainer`] on a device: weights and Adam moments as tensors, the counters
/// (step, tokens, last firing, BatchTopK threshold) on the host.
pub struct DeviceTrainer {
    cfg: TrainConfig,
    device: Device,
    kind: DecoderKind,
    /// [d_sae, d_in]
    w_enc_t: Tensor,
    b_enc: Tensor,
    /// [d_sae, d_in]
    w_dec: Tensor,
    b_dec: Tensor,
    /// In the order of `Trainer::adam`: w_enc_t, b_enc, w_dec, b_dec.
    adam: [Moments; 4],
    step: u64,
    tokens_seen: u64,
    last_fired: Vec<u64>,
    threshold: f32,
}

impl DeviceTrainer {
    /// `trainer`'s configuration and state (weights, Adam, counters) on `device`.
    pub fn new(trainer: &Trainer, device: &Device, kind: DecoderKind) -> Result<Self> {
        let (i, s) = (trainer.cfg.d_in, trainer.cfg.d_sae);
        let put = |v: &[f32], shape: &[usize]| Tensor::from_slice(v, shape, device);
        let shapes: [&[usize]; 4] = [&[s, i], &[s], &[s, i], &[i]];
        let mut adam = Vec::with_capacity(4);
        for (a, shape) in trainer.adam.iter().zip(shapes) {
            adam.push(Moments {
                m: put(&a.m, shape)?,
                v: put(&a.v, shape)?,
            });
        }
        let adam: [Moments; 4] = adam
            .try_into()
            .map_err(|_| Error::Invalid("the trainer has 4 Adam states".into()))?;
        Ok(DeviceTrainer {
            cfg: trainer.cfg.clone(),
            device: device.clone(),
            kind,
            w_enc_t: put(&trainer.w_enc_t, shapes[0])?,
            b_enc: put(&trainer.b_enc, shapes[1])?,
            w_dec: put(&trainer.w_dec, shapes[2])?,
            b_dec: put(&trainer.b_dec, shapes[3])?,
            adam,
            step: trainer.step,
            tokens_seen: trainer.tokens_seen,
            last_fired: trainer.last_fired.clone(),
            threshold: trainer.threshold,
        })
    }

    /// Copies the state (weights, Adam moments, counters) into `trainer`, which must have this
    /// trainer's configuration.
    pub fn write_back(&self, trainer: &mut Trainer) -> Result<()> {
        if trainer.cfg != self.cfg {
            return Err(Error::Invalid(
                "write_back: the trainer has another configuration than this device trainer".into(),
            ));
        }
        let host = |t: &Tensor| -> Result<Vec<f32>> { Ok(t.flatten_all()?.to_vec1()?) };
        trainer.w_enc_t = host(&self.w_enc_t)?;
        trainer.b_enc = host(&self.b_enc)?;
        trainer.w_dec = host(&self.w_dec)?;
        trainer.b_dec = host(&self.b_dec)?;
        for (a, m) in trainer.adam.iter_mut().zip(&self.adam) {
            a.m = host(&m.m)?;
            a.v = host(&m.v)?;
        }
        trainer.step = self.step;
        trainer.tokens_seen = self.tokens_seen;
        trainer.last_fired.clone_from(&self.last_fired);
        trainer.threshold = self.threshold;
        Ok(())
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn kind(&self) -> DecoderKind {
        self.kind
    }

    pub fn step(&self) -> u64 {
        self.step
    }

    pub fn tokens_seen(&self) -> u64 {
        self.tokens_seen
    }

    /// Latents that have not fired for `dead_after_tokens` tokens (as [`Trainer::dead_mask`]).
    pub fn dead_mask(&self) -> Vec<bool> {
        dead_mask(
            &self.last_fired,
            self.tokens_seen,
            self.cfg.dead_after_tokens,
        )
    }

    /// One optimisation step on a batch x [rows, d_in] (f32, on this device): what
    /// [`Trainer::train_step`] does.
    pub fn train_step(&mut self, x: &Tensor) -> Result<DeviceGrads> {
        let dead = self.dead_mask();
        let g = self.grads(x, &dead)?;
        self.tokens_seen += x.dim(0)? as u64;
        for (t, &fired) in self.last_fired.iter_mut().zip(&g.fired) {
            if fired {
                *t = self.tokens_seen;
            }
        }
        if let Some(m) = g.min_kept {
            self.threshold = running_threshold(self.threshold, m);
        }
        self.step += 1;
        let lr = self.cfg.lr_at(self.step - 1);
        let t = self.step;
        let [a0, a1, a2, a3] = &mut self.adam;
        adam_step(&mut self.w_enc_t, &g.w_enc_t, a0, lr, t)?;
        adam_step(&mut self.b_enc, &g.b_enc, a1, lr, t)?;
        adam_step(&mut self.w_dec, &g.w_dec, a2, lr, t)?;
        adam_step(&mut self.b_dec, &g.b_dec, a3, lr, t)?;
        if self.cfg.arch.unit_norm_decoder() {
            let norms = self
                .w_dec
                .sqr()?
                .sum_keepdim(1)?
                .sqrt()?
                .maximum(1e-12f32)?;
            self.w_dec = self.w_dec.broadcast_div(&norms)?;
        }
        Ok(g)
    }

    /// Loss and exact gradients for a batch x [rows, d_in] with latents `dead` (for AuxK): what
    /// [`Trainer::grads`] computes.
    pub fn grads(&self, x: &Tensor, dead: &[bool]) -> Result<DeviceGrads> {
        let (d_in, d_sae) = (self.cfg.d_in, self.cfg.d_sae);
        let (rows, width) = x.dims2()?;
        if width != d_in || rows == 0 || x.dtype() != DType::F32 || dead.len() != d_sae {
            return Err(Error::Invalid(format!(
                "a training batch is [rows ≥ 1, {d_in}] f32 with {d_sae} dead flags \
                 (got {:?} {:?} with {} flags)",
                x.dims(),
                x.dtype(),
                dead.len()
            )));
        }
        let n = rows as f32;
        let xin = x.broadcast_sub(&self.b_dec)?;
        let pre = xin.matmul(&self.w_enc_t.t()?)?.broadcast_add(&self.b_enc)?;
        let (codes, min_kept) = self.select(&pre)?;
        let aux = self.aux_codes(&pre, dead)?;
        let l1 = self.cfg.l1_at(self.step);

        // e = x̂ − x; dL/dx̂ = 2e/n.
        let e = (codes.decode(&self.w_dec)?.broadcast_add(&self.b_dec)? - x)?;
        let dxhat = e.affine((2.0 / n) as f64, 0.0)?;
        let on = codes.vals().gt(0f32)?.to_dtype(DType::F32)?;
        let mut sums = vec![e.sqr()?.sum_all()?];
        // dL/dpre of each active entry: dx̂·W_dec[j] (+ λ/n·‖W_dec[j]‖), where its value is > 0.
        let mut dpre = codes.project(&self.w_dec, &dxhat)?;
        let mut g_wdec = codes.outer(codes.vals(), &dxhat, d_sae)?;
        if l1 > 0.0 {
            let norms = self.w_dec.sqr()?.sum(1)?.sqrt()?;
            let c = (l1 / n) as f64;
            dpre = (dpre + codes.per_entry(&norms)?.affine(c, 0.0)?)?;
            // d/dW_dec[j] of λ/n·Σ_b f_bj‖W_dec[j]‖ = λ/n·(Σ_b f_bj)·W_dec[j]/‖W_dec[j]‖.
            let f_sum = codes.latent_sum(codes.vals(), d_sae)?;
            sums.push((&f_sum * &norms)?.sum_all()?);
            let scale = (f_sum.affine(c, 0.0)? / norms.maximum(1e-12f32)?)?;
            g_wdec = (g_wdec + self.w_dec.broadcast_mul(&scale.unsqueeze(1)?)?)?;
        }
        let dpre = (dpre * &on)?;
        let mut g_benc = codes.latent_sum(&dpre, d_sae)?;
        let mut g_wenc = codes.outer(&dpre, &xin, d_sae)?;
        let mut aux_sq = None;
        if let Some(aux) = &aux {
            // ê = Σ_aux f_j W_dec[j] should predict x − x̂, a constant: dLaux/dê = 2c(ê + e)/n.
            let r = (aux.decode(&self.w_dec)? + &e)?;
            aux_sq = Some(sums.len());
            sums.push(r.sqr()?.sum_all()?);
            let daux = r.affine((2.0 * self.cfg.aux_coeff / n) as f64, 0.0)?;
            let aux_on = aux.vals().gt(0f32)?.to_dtype(DType::F32)?;
            let dpre_aux = (aux.project(&self.w_dec, &daux)? * aux_on)?;
            g_benc = (g_benc + aux.latent_sum(&dpre_aux, d_sae)?)?;
            g_wenc = (g_wenc + aux.outer(&dpre_aux, &xin, d_sae)?)?;
            g_wdec = (g_wdec + aux.outer(aux.vals(), &daux, d_sae)?)?;
        }
        // b_dec: decoder side Σ_b dx̂, encoder side −Σ_b Σ_j dpre_bj W_enc[j] = −g_benc·W_encᵀ.
        let g_bdec = (dxhat.sum(0)? - g_benc.unsqueeze(0)?.matmul(&self.w_enc_t)?.squeeze(0)?)?;

        let counts: Vec<f32> = codes.latent_sum(&on, d_sae)?.to_vec1()?;
        let sums: Vec<f32> = Tensor::stack(&sums, 0)?.to_vec1()?;
        let sq_err = sums[0] as f64;
        let aux_loss = aux_sq.map_or(0.0, |i| {
            self.cfg.aux_coeff * (sums[i] as f64 / rows as f64) as f32
        });
        let sparsity_loss = if l1 > 0.0 {
            (l1 as f64 * sums[1] as f64 / rows as f64) as f32
        } else {
            0.0
        };
        Ok(DeviceGrads {
            loss: (sq_err / rows as f64) as f32,
            aux_loss,
            sparsity_loss,
            sq_err,
            l0: counts.iter().map(|&c| c as f64).sum::<f64>() / rows as f64,
            fired: counts.iter().map(|&c| c > 0.0).collect(),
            min_kept,
            w_enc_t: g_wenc,
            b_enc: g_benc,
            w_dec: g_wdec,
            b_dec: g_bdec,
        })
    }

    /// The active latents of pre-activations `pre` [rows, d_sae] (bias added), and for
    /// BatchTopK the smallest kept value: the rule of `select_active`.
    fn select(&self, pre: &Tensor) -> Result<(Codes, Option<f32>)> {
        match self.cfg.arch {
            TrainArch::TopK => {
                let (idx, vals) = top_k(pre, self.cfg.k.min(self.cfg.d_sae))?;
                Ok((self.codes(&idx, &vals.relu()?)?, None))
            }
            TrainArch::Relu { .. } => Ok((Codes::Dense(pre.relu()?), None)),
            TrainArch::BatchTopK => self.batch_top_k(pre),
            TrainArch::Matryoshka { .. } | TrainArch::JumpRelu { .. } => Err(Error::Invalid(
                format!("{} has no device trainer yet", self.cfg.arch.name()),
            )),
        }
    }

    /// The rows·k largest positive activations of the batch (BatchTopK).
    fn batch_top_k(&self, pre: &Tensor) -> Result<(Codes, Option<f32>)> {
        let (rows, d_sae) = pre.dims2()?;
        let budget = rows * self.cfg.k;
        let count = |mask: &Tensor| -> Result<usize> {
            Ok(mask.to_dtype(DType::U32)?.sum_all()?.to_scalar::<u32>()? as usize)
        };
        let positive = count(&pre.gt(0f32)?)?;
        if positive == 0 {
            return Ok((Codes::Dense(pre.zeros_like()?), None));
        }
        // The budget-th largest value: the largest float t with count(pre ≥ t) ≥ budget.
        let floor = if positive > budget && budget > 0 {
            let (mut lo, mut hi) = (1u32, f32::INFINITY.to_bits());
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if count(&pre.ge(f32::from_bits(mid))?)? >= budget {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            f32::from_bits(lo)
        } else {
            0.0
        };
        let keep = |t: &Tensor| -> Result<Tensor> {
            let on = if floor > 0.0 {
                t.ge(floor)?
            } else {
                t.gt(0f32)?
            };
            Ok(on.where_cond(t, &t.zeros_like()?)?)
        };
        let min_kept = if floor > 0.0 {
            floor
        } else {
            let inf = Tensor::full(f32::INFINITY, pre.shape(), pre.device())?;
            pre.gt(0f32)?
                .where_cond(pre, &inf)?
                .min_all()?
                .to_scalar::<f32>()?
        };
        let codes = match self.kind {
            DecoderKind::Dense => Codes::Dense(keep(pre)?),
            DecoderKind::Sparse => {
                let on = if floor > 0.0 {
                    pre.ge(floor)?
                } else {
                    pre.gt(0f32)?
                };
                let m = on
                    .to_dtype(DType::U32)?
                    .sum(1)?
                    .max(0)?
                    .to_scalar::<u32>()? as usize;
                // top_k's last sort covers every chunk's m winners.
                if m == 0 || d_sae.div_ceil(SORT_CHUNK) * m > SORT_CHUNK {
                    Codes::Dense(keep(pre)?)
                } else {
                    let (idx, vals) = top_k(pre, m)?;
                    self.codes(&idx, &keep(&vals)?)?
                }
            }
        };
        Ok((codes, Some(min_kept)))
    }

    /// AuxK's codes: each row's k_aux largest activations among the dead latents.
    fn aux_codes(&self, pre: &Tensor, dead: &[bool]) -> Result<Option<Codes>> {
        let n_dead = dead.iter().filter(|&&d| d).count();
        if self.cfg.k_aux == 0 || n_dead == 0 {
            return Ok(None);
        }
        let mask: Vec<u8> = dead.iter().map(|&d| d as u8).collect();
        let mask =
            Tensor::from_vec(mask, (1, dead.len()), &self.device)?.broadcast_as(pre.shape())?;
        let off = Tensor::full(f32::NEG_INFINITY, pre.shape(), &self.device)?;
        let (idx, vals) = top_k(&mask.where_cond(pre, &off)?, self.cfg.k_aux.min(n_dead))?;
        Ok(Some(self.codes(&idx, &vals.relu()?)?))
    }

    /// Codes in this trainer's form from each row's latents `idx` [rows, m] (u32) and their
    /// values [rows, m].
    fn codes(&self, idx: &Tensor, vals: &Tensor) -> Result<Codes> {
        let (rows, m) = idx.dims2()?;
        Ok(match self.kind {
            DecoderKind::Sparse => {
                let ids = idx.flatten_all()?;
                let rows_dec =
                    self.w_dec
                        .index_select(&ids, 0)?
                        .reshape((rows, m, self.cfg.d_in))?;
                Codes::Sparse {
                    ids,
                    vals: vals.contiguous()?,
                    rows_dec,
                }
            }
            DecoderKind::Dense => Codes::Dense(
                Tensor::zeros((rows, self.cfg.d_sae), DType::F32, &self.device)?.scatter_add(
                    &idx.contiguous()?,
                    &vals.contiguous()?,
                    1,
                )?,
            ),
        })
    }
}

/// The codes of a batch. Per-entry tensors ("entries") have the shape of the values: [rows, m]
/// when sparse, [rows, d_sae] when dense.
enum Codes {
    Sparse {
        /// [rows·m] latent ids, row by row.
        ids: Tensor,
        /// [rows, m], 0 where a latent is not active.
        vals: Tensor,
        /// [rows, m, d_in]: the decoder rows of `ids`.
        rows_dec: Tensor,
    },
    /// [rows, d_sae], 0 where a latent is not active.
    Dense(Tensor),
}

impl Codes {
    fn vals(&self) -> &Tensor {
        match self {
            Codes::Sparse { vals, .. } => vals,
            Codes::Dense(f) => f,
        }
    }

    /// Σ_j f_j W_dec[j] per row: [rows, d_in].
    fn decode(&self, w_dec: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Codes::Sparse { vals, rows_dec, .. } => {
                vals.unsqueeze(1)?.matmul(rows_dec)?.squeeze(1)?
            }
            Codes::Dense(f) => f.matmul(w_dec)?,
        })
    }

    /// up_b·W_dec[j] for each entry (b, j), from up [rows, d_in].
    fn project(&self, w_dec: &Tensor, up: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Codes::Sparse { rows_dec, .. } => rows_dec
                .matmul(&up.unsqueeze(2)?.contiguous()?)?
                .squeeze(2)?,
            Codes::Dense(_) => up.matmul(&w_dec.t()?)?,
        })
    }

    /// `per_latent` [d_sae] at each entry's latent.
    fn per_entry(&self, per_latent: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Codes::Sparse { ids, vals, .. } => {
                per_latent.index_select(ids, 0)?.reshape(vals.shape())?
            }
            Codes::Dense(f) => per_latent.unsqueeze(0)?.broadcast_as(f.shape())?,
        })
    }

    /// Σ_b c_bj·v_b for each latent j: [d_sae, d_in], from entries c and rows v [rows, d_in].
    fn outer(&self, c: &Tensor, v: &Tensor, d_sae: usize) -> Result<Tensor> {
        Ok(match self {
            Codes::Sparse { ids, .. } => {
                let (rows, m) = c.dims2()?;
                let d = v.dim(1)?;
                let src = c
                    .unsqueeze(2)?
                    .broadcast_mul(&v.unsqueeze(1)?)?
                    .reshape((rows * m, d))?;
                Tensor::zeros((d_sae, d), DType::F32, v.device())?.index_add(ids, &src, 0)?
            }
            Codes::Dense(_) => c.t()?.matmul(v)?,
        })
    }

    /// Σ_b c_bj for each latent j: [d_sae], from entries c.
    fn latent_sum(&self, c: &Tensor, d_sae: usize) -> Result<Tensor> {
        Ok(match self {
            Codes::Sparse { ids, .. } => Tensor::zeros(d_sae, DType::F32, c.device())?.index_add(
                ids,
                &c.flatten_all()?,
                0,
            )?,
            Codes::Dense(_) => c.sum(0)?,
        })
    }
}

/// One Adam step on the device, in the form of `adam.rs`.
fn adam_step(p: &mut Tensor, g: &Tensor, mom: &mut Moments, lr: f32, t: u64) -> Result<()> {
    let (step, c2s) = bias_corrected(lr, t);
    mom.m = (mom.m.affine(B1 as f64, 0.0)? + g.affine((1.0 - B1) as f64, 0.0)?)?;
    mom.v = (mom.v.affine(B2 as f64, 0.0)? + g.sqr()?.affine((1.0 - B2) as f64, 0.0)?)?;
    let denom = mom.v.sqrt()?.affine(1.0 / c2s as f64, EPS as f64)?;
    *p = (&*p - (mom.m.affine(step as f64, 0.0)? / denom)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    const D_IN: usize = 24;
    const ROWS: usize = 64;

    fn config(arch: TrainArch, d_sae: usize, k_aux: usize) -> TrainConfig {
        TrainConfig {
            arch,
            d_in: D_IN,
            d_sae,
            k: 8,
            k_aux,
            aux_coeff: 0.25,
            dead_after_tokens: ROWS as u64,
            lr: 1e-3,
            warmup_steps: 2,
            total_steps: 5,
            l1_warmup_steps: 2,
            seed: 7,
        }
    }

    fn batch(seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        (0..ROWS * D_IN).map(|_| rng.normal()).collect()
    }

    /// The CPU unless `SAESCOPE_TEST_DEVICE` names another (see `crate::device::test_device`).
    fn dev_under_test() -> Device {
        crate::device::test_device().unwrap()
    }

    fn tensor(v: &[f32], shape: &[usize]) -> Tensor {
        Tensor::from_slice(v, shape, &dev_under_test()).unwrap()
    }

    fn host(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    /// max |got − want| ≤ tol·max(1e-3, max |want|): relative to the tensor's scale.
    fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        let scale = want.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
        let err = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            err <= tol * scale,
            "{what}: max |device − cpu| = {err} (scale {scale})"
        );
    }

    /// A trainer away from its symmetric initial state: biases, encoder ≠ decoder, decoder rows
    /// of several norms (what the L1 term and its gradient weigh).
    fn trainer(cfg: TrainConfig) -> Trainer {
        let mut rng = Rng::new(11);
        let mut t = Trainer::new(cfg, &batch(1));
        t.b_enc.iter_mut().for_each(|b| *b = rng.normal() * 0.3);
        t.b_dec.iter_mut().for_each(|b| *b += rng.normal() * 0.1);
        t.w_enc_t.iter_mut().for_each(|w| *w += rng.normal() * 0.2);
        t.w_dec.iter_mut().for_each(|w| *w *= 1.0 + rng.uniform());
        t
    }

    /// One batch's losses, statistics and four gradients equal the CPU trainer's, for TopK with
    /// dead latents (AuxK) at 96 latents and at 20,000 (wider than one sort chunk), BatchTopK
    /// with AuxK, and ReLU after its L1 warm-up, in both decoder forms.
    #[test]
    fn grads_equal_the_cpu_trainer() {
        let cases = [
            (TrainArch::TopK, 96, 12),
            (TrainArch::TopK, 20_000, 12),
            (TrainArch::BatchTopK, 96, 12),
            (TrainArch::Relu { l1: 0.5 }, 96, 0),
        ];
        for (arch, d_sae, k_aux) in cases {
            let mut cpu = trainer(config(arch.clone(), d_sae, k_aux));
            cpu.step = 10; // past the L1 warm-up
            let x = batch(2);
            let dead: Vec<bool> = (0..d_sae).map(|j| j % 3 == 0).collect();
            let want = cpu.grads(&x, &dead);
            for kind in [DecoderKind::Sparse, DecoderKind::Dense] {
                let what = format!("{arch:?} d_sae {d_sae} {kind:?}");
                let dev = DeviceTrainer::new(&cpu, &dev_under_test(), kind).unwrap();
                let got = dev.grads(&tensor(&x, &[ROWS, D_IN]), &dead).unwrap();
                let close = |a: f32, b: f32| (a - b).abs() <= 1e-4 * b.abs().max(1e-3);
                assert!(
                    close(got.loss, want.loss),
                    "{what}: loss {} vs {}",
                    got.loss,
                    want.loss
                );
                assert!(
                    close(got.aux_loss, want.aux_loss),
                    "{what}: aux {} vs {}",
                    got.aux_loss,
                    want.aux_loss
                );
                assert!(
                    close(got.sparsity_loss, want.sparsity_loss),
                    "{what}: l1 {} vs {}",
                    got.sparsity_loss,
                    want.sparsity_loss
                );
                assert_eq!(k_aux > 0, want.aux_loss > 0.0, "{what}: AuxK runs");
                assert_eq!(
                    matches!(arch, TrainArch::Relu { .. }),
                    want.sparsity_loss > 0.0,
                    "{what}: L1 runs"
                );
                assert!(
                    (got.sq_err - want.sq_err).abs() <= 1e-4 * want.sq_err,
                    "{what}"
                );
                match (got.min_kept, want.min_kept) {
                    (Some(a), Some(b)) => assert!(close(a, b), "{what}: min kept {a} vs {b}"),
                    (a, b) => assert_eq!(a, b, "{what}: min kept"),
                }
                assert_eq!(got.fired, want.fired, "{what}: fired latents");
                assert_eq!(got.l0, want.l0, "{what}: L0");
                for (name, g, w) in [
                    ("W_enc", &got.w_enc_t, &want.w_enc_t),
                    ("b_enc", &got.b_enc, &want.b_enc),
                    ("W_dec", &got.w_dec, &want.w_dec),
                    ("b_dec", &got.b_dec, &want.b_dec),
                ] {
                    assert!(w.iter().any(|v| v.abs() > 1e-4), "{what} {name}: all zero");
                    assert_close(&format!("{what} {name}"), &host(g), w, 1e-4);
                }
            }
        }
    }

    /// Three steps on the device leave the same weights, Adam moments and counters as three
    /// steps of the CPU trainer: warm-up learning rates, the L1 ramp, latents that die (a
    /// negative bias keeps a quarter from firing) and are then trained by AuxK, the BatchTopK
    /// threshold, unit-norm decoder rows.
    #[test]
    fn three_steps_equal_the_cpu_trainer() {
        for arch in [
            TrainArch::TopK,
            TrainArch::BatchTopK,
            TrainArch::Relu { l1: 0.5 },
        ] {
            let k_aux = if matches!(arch, TrainArch::Relu { .. }) {
                0
            } else {
                12
            };
            for kind in [DecoderKind::Sparse, DecoderKind::Dense] {
                let what = format!("{arch:?} {kind:?}");
                let mut cpu = Trainer::new(config(arch.clone(), 96, k_aux), &batch(1));
                for j in (0..96).step_by(4) {
                    cpu.b_enc[j] = -2.0;
                }
                let mut dev = DeviceTrainer::new(&cpu, &dev_under_test(), kind).unwrap();
                let mut aux_steps = 0;
                for s in 0..3 {
                    let x = batch(20 + s);
                    let want = cpu.train_step(&x);
                    let got = dev.train_step(&tensor(&x, &[ROWS, D_IN])).unwrap();
                    aux_steps += (want.aux_loss > 0.0) as usize;
                    for (name, g, w) in [
                        ("loss", got.loss, want.loss),
                        ("aux loss", got.aux_loss, want.aux_loss),
                        ("l1 loss", got.sparsity_loss, want.sparsity_loss),
                    ] {
                        assert!(
                            (g - w).abs() <= 1e-4 * w,
                            "{what} step {s}: {name} {g} vs {w}"
                        );
                    }
                }
                if k_aux > 0 {
                    assert_eq!(aux_steps, 2, "{what}: dead latents after the first step");
                }
                let mut back = Trainer::new(config(arch.clone(), 96, k_aux), &batch(3));
                dev.write_back(&mut back).unwrap();
                for ((name, got), (_, want)) in back.state().into_iter().zip(cpu.state()) {
                    assert_close(&format!("{what} {name}"), got, want, 1e-4);
                }
                assert_eq!(back.step, 3, "{what}");
                assert_eq!(back.tokens_seen, cpu.tokens_seen, "{what}");
                assert_eq!(back.last_fired, cpu.last_fired, "{what}");
                assert!(
                    (back.threshold - cpu.threshold).abs() <= 1e-5 * cpu.threshold.abs(),
                    "{what}: threshold {} vs {}",
                    back.threshold,
                    cpu.threshold
                );
                if arch == TrainArch::BatchTopK {
                    assert!(cpu.threshold > 0.0, "{what}: threshold learned");
                }
            }
        }
    }
}
