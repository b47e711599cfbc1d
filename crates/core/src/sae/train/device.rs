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
//! dense when m would exceed a sort chunk. ReLU and JumpReLU, whose active counts are unbounded,
//! are always dense. Matryoshka is BatchTopK with its prefix groups (`device_prefix.rs`: one
//! masked decode and backward per group); JumpReLU's threshold gradient is `device_jump.rs`.
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

#[path = "device_jump.rs"]
mod jump;
#[path = "device_prefix.rs"]
mod prefix;

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
    /// JumpReLU: d/d log θ [d_sae].
    pub log_threshold: Option<Tensor>,
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
    /// JumpReLU: log θ [d_sae] and its Adam moments.
    log_threshold: Option<(Tensor, Moments)>,
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
            log_threshold: match trainer.log_threshold.is_empty() {
                true => None,
                false => Some((
                    put(&trainer.log_threshold, shapes[1])?,
                    Moments {
                        m: put(&trainer.adam_threshold.m, shapes[1])?,
                        v: put(&trainer.adam_threshold.v, shapes[1])?,
                    },
                )),
            },
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
        if let Some((t, m)) = &self.log_threshold {
            trainer.log_threshold = host(t)?;
            trainer.adam_threshold.m = host(&m.m)?;
            trainer.adam_threshold.v = host(&m.v)?;
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
        if let (Some((p, m)), Some(g)) = (self.log_threshold.as_mut(), g.log_threshold.as_ref()) {
            adam_step(p, g, m, lr, t)?;
        }
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
        let theta = match &self.log_threshold {
            Some((l, _)) => Some(l.exp()?),
            None => None,
        };
        let (codes, min_kept) = self.select(&pre, theta.as_ref())?;
        let aux = self.aux_codes(&pre, dead)?;
        let l1 = self.cfg.l1_at(self.step);

        // Matryoshka: e_p = x̂_p − x per prefix, and group g's upstream 2/n·Σ_{q≥g} e_q (as in
        // grads.rs); one group (every other architecture): e = x̂ − x and dL/dx̂ = 2e/n.
        let groups = prefix::Groups::new(&self.cfg, self.step, &codes, &self.device)?;
        let (errs, ups) = groups.residuals(&codes, &self.w_dec, &self.b_dec, x, n)?;
        let e = errs
            .last()
            .cloned()
            .ok_or_else(|| Error::Invalid("no prefix".into()))?;
        let dxhat = ups[0].clone();
        let on = codes.vals().gt(0f32)?.to_dtype(DType::F32)?;
        let mut sums = vec![e.sqr()?.sum_all()?];
        let prefix_sq = (errs.len() > 1).then_some(sums.len());
        if prefix_sq.is_some() {
            sums.push(
                Tensor::stack(
                    &errs
                        .iter()
                        .map(|e| e.sqr()?.sum_all())
                        .collect::<candle_core::Result<Vec<_>>>()?,
                    0,
                )?
                .sum_all()?,
            );
        }
        // dL/dpre of each active entry: dx̂·W_dec[j] (+ λ/n·‖W_dec[j]‖), where its value is > 0;
        // JumpReLU's θ gradient needs it at the entries near θ too (dense codes: every entry).
        let (mut dpre, mut g_wdec) = groups.backward(&codes, &self.w_dec, &ups, d_sae)?;
        let jump = match &theta {
            Some(t) => Some(jump::threshold_grads(&self.cfg.arch, &pre, t, &dpre)?),
            None => None,
        };
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
        let sparsity_loss = match &jump {
            Some(j) => j.value(counts.iter().map(|&c| c as f64).sum::<f64>() / rows as f64),
            None if l1 > 0.0 => (l1 as f64 * sums[1] as f64 / rows as f64) as f32,
            None => 0.0,
        };
        let log_threshold = match (&jump, &theta) {
            (Some(j), Some(t)) => Some(j.log_grad(
                t,
                counts.iter().map(|&c| c as f64).sum::<f64>() / rows as f64,
                rows,
            )?),
            _ => None,
        };
        let loss = match prefix_sq {
            Some(i) => sums[i] as f64,
            None => sq_err,
        };
        Ok(DeviceGrads {
            log_threshold,
            loss: (loss / rows as f64) as f32,
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
    fn select(&self, pre: &Tensor, theta: Option<&Tensor>) -> Result<(Codes, Option<f32>)> {
        match self.cfg.arch {
            TrainArch::TopK => {
                let (idx, vals) = top_k(pre, self.cfg.k.min(self.cfg.d_sae))?;
                Ok((self.codes(&idx, &vals.relu()?)?, None))
            }
            TrainArch::Relu { .. } => Ok((Codes::Dense(pre.relu()?), None)),
            TrainArch::BatchTopK | TrainArch::Matryoshka { .. } => self.batch_top_k(pre),
            // Entries above 0 and above their threshold; dense, as ReLU's (unbounded count).
            TrainArch::JumpRelu { .. } => {
                let theta = theta.ok_or_else(|| Error::Invalid("JumpReLU without θ".into()))?;
                let z = pre.relu()?;
                let on = z.broadcast_gt(theta)?;
                Ok((Codes::Dense(on.where_cond(&z, &z.zeros_like()?)?), None))
            }
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

    /// Σ_j c_j W_dec[j] per row: [rows, d_in], for entries c (the codes' values or a masked
    /// copy of them).
    fn decode_values(&self, c: &Tensor, w_dec: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Codes::Sparse { rows_dec, .. } => c.unsqueeze(1)?.matmul(rows_dec)?.squeeze(1)?,
            Codes::Dense(_) => c.matmul(w_dec)?,
        })
    }

    /// Σ_j f_j W_dec[j] per row: [rows, d_in].
    fn decode(&self, w_dec: &Tensor) -> Result<Tensor> {
        self.decode_values(self.vals(), w_dec)
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
#[path = "device_tests.rs"]
mod tests;
