//! TopK SAE training on the CPU with exact sparse kernels. Only k latents per token are active,
//! so everything after the dense encoder GEMM is sparse: the decoder is a gather of k rows, and
//! the gradients of W_enc / W_dec touch only active latents (grouped by latent so rows update
//! in parallel without conflicts). AuxK (Gao et al., 2024) revives dead latents by training the
//! top `k_aux` dead latents to reconstruct the residual. Adam with warm-up and linear decay,
//! decoder rows renormalised to unit norm after each step.

use super::{Sae, SaeActivation, SaeMeta};
use crate::linalg::{RhsLayout, matmul};
use rayon::prelude::*;

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    pub d_in: usize,
    pub d_sae: usize,
    pub k: usize,
    /// Dead latents used by AuxK (0 disables it); the usual choice is d_in / 2.
    pub k_aux: usize,
    pub aux_coeff: f32,
    /// A latent that has not fired for this many tokens counts as dead.
    pub dead_after_tokens: u64,
    pub lr: f32,
    pub warmup_steps: u64,
    pub total_steps: u64,
    pub seed: u64,
}

/// Adam state for one parameter tensor.
#[derive(Clone)]
struct Adam {
    m: Vec<f32>,
    v: Vec<f32>,
}

impl Adam {
    fn new(n: usize) -> Self {
        Adam {
            m: vec![0.0; n],
            v: vec![0.0; n],
        }
    }

    fn step(&mut self, p: &mut [f32], g: &[f32], lr: f32, t: u64) {
        const B1: f32 = 0.9;
        const B2: f32 = 0.999;
        const EPS: f32 = 1e-8;
        let c1 = 1.0 - B1.powi(t as i32);
        let c2 = 1.0 - B2.powi(t as i32);
        let step = lr / c1;
        let c2s = c2.sqrt();
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

/// Loss and gradients of one batch (what the sparse kernels compute; the tests compare these to
/// a dense autograd implementation).
pub struct Grads {
    pub loss: f32,
    pub aux_loss: f32,
    /// [d_sae, d_in] (encoder stored latent-major).
    pub w_enc_t: Vec<f32>,
    pub b_enc: Vec<f32>,
    pub w_dec: Vec<f32>,
    pub b_dec: Vec<f32>,
    /// Active latent ids per row [rows·k] and their values.
    pub active: Vec<u32>,
    pub values: Vec<f32>,
    /// Σ‖x − x̂‖² and Σ‖x − mean‖² pieces for FVE are left to the caller; this is Σ‖x − x̂‖².
    pub sq_err: f64,
}

pub struct TopKTrainer {
    pub cfg: TrainConfig,
    /// [d_sae, d_in]: the encoder, one row per latent (= W_encᵀ).
    pub w_enc_t: Vec<f32>,
    pub b_enc: Vec<f32>,
    /// [d_sae, d_in]
    pub w_dec: Vec<f32>,
    pub b_dec: Vec<f32>,
    adam: [Adam; 4],
    pub step: u64,
    pub tokens_seen: u64,
    /// Token count when each latent last fired.
    pub last_fired: Vec<u64>,
    /// Reused [rows, d_sae] pre-activation buffer: a fresh 256 MiB allocation per step costs
    /// more in page faults than the top-k selection itself.
    scratch: Vec<f32>,
}

/// splitmix64: small, seedable, reproducible across platforms.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = self.uniform().max(1e-7);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

impl TopKTrainer {
    /// Random unit-norm decoder rows, encoder = decoder transposed (the usual TopK init),
    /// `b_dec` = the mean of `sample` (rows of d_in).
    pub fn new(cfg: TrainConfig, sample: &[f32]) -> Self {
        let (d_in, d_sae) = (cfg.d_in, cfg.d_sae);
        let mut rng = Rng::new(cfg.seed);
        let mut w_dec: Vec<f32> = (0..d_in * d_sae).map(|_| rng.normal()).collect();
        normalize_rows(&mut w_dec, d_in);
        let w_enc_t = w_dec.clone();
        let rows = sample.len() / d_in;
        let mut b_dec = vec![0f32; d_in];
        for r in sample.chunks(d_in) {
            b_dec
                .iter_mut()
                .zip(r)
                .for_each(|(b, x)| *b += x / rows.max(1) as f32);
        }
        TopKTrainer {
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
            scratch: Vec::new(),
            cfg,
        }
    }

    pub fn lr_at(&self, step: u64) -> f32 {
        let c = &self.cfg;
        if step < c.warmup_steps {
            return c.lr * (step + 1) as f32 / c.warmup_steps as f32;
        }
        // Linear decay to zero over the last 20% of training.
        let decay_start = (c.total_steps as f64 * 0.8) as u64;
        if step >= decay_start && c.total_steps > decay_start {
            let frac = (c.total_steps - step) as f32 / (c.total_steps - decay_start) as f32;
            return c.lr * frac.max(0.0);
        }
        c.lr
    }

    /// Latents that have not fired for `dead_after_tokens` tokens.
    pub fn dead_mask(&self) -> Vec<bool> {
        self.last_fired
            .iter()
            .map(|&t| {
                self.tokens_seen.saturating_sub(t) >= self.cfg.dead_after_tokens
                    && self.tokens_seen >= self.cfg.dead_after_tokens
            })
            .collect()
    }

    /// Loss and exact gradients for a batch x [rows, d_in].
    pub fn grads(&mut self, x: &[f32], dead: &[bool]) -> Grads {
        let (d_in, d_sae, k) = (self.cfg.d_in, self.cfg.d_sae, self.cfg.k);
        let rows = x.len() / d_in;
        // xin = x − b_dec
        let mut xin = x.to_vec();
        xin.par_chunks_mut(d_in)
            .for_each(|r| r.iter_mut().zip(&self.b_dec).for_each(|(v, b)| *v -= b));
        // pre = xin·W_enc (the one dense GEMM); b_enc is added during the selection below.
        let mut pre = std::mem::take(&mut self.scratch);
        pre.resize(rows * d_sae, 0.0);
        matmul(
            &mut pre,
            &xin,
            &self.w_enc_t,
            (rows, d_in, d_sae),
            RhsLayout::Transposed,
            false,
            true,
        );
        let b_enc = &self.b_enc;
        // Top-k (then ReLU) per row, plus the top k_aux dead latents for AuxK.
        let use_aux = self.cfg.k_aux > 0 && dead.iter().any(|&d| d);
        let k_aux = self.cfg.k_aux;
        let per_row: Vec<(Vec<(u32, f32)>, Vec<(u32, f32)>)> = pre
            .par_chunks(d_sae)
            .map(|row| {
                let top = top_k_biased(row, b_enc, k, None);
                let aux = if use_aux {
                    top_k_biased(row, b_enc, k_aux, Some(dead))
                } else {
                    Vec::new()
                };
                (top, aux)
            })
            .collect();
        self.scratch = pre;
        // Decode by gathering k rows: x̂ = Σ f_j W_dec[j] + b_dec; residual e = x̂ − x.
        let mut active = vec![0u32; rows * k];
        let mut values = vec![0f32; rows * k];
        let mut dxhat = vec![0f32; rows * d_in];
        let mut aux_dxhat = vec![0f32; rows * d_in];
        let n = rows as f32;
        let (sq_err, aux_sq): (f64, f64) = dxhat
            .par_chunks_mut(d_in)
            .zip(x.par_chunks(d_in))
            .zip(per_row.par_iter())
            .zip(active.par_chunks_mut(k).zip(values.par_chunks_mut(k)))
            .zip(aux_dxhat.par_chunks_mut(d_in))
            .map(|((((dx, xr), (top, aux)), (act, val)), aux_dx)| {
                dx.copy_from_slice(&self.b_dec);
                for (slot, &(j, v)) in top.iter().enumerate() {
                    act[slot] = j;
                    val[slot] = v;
                    let wd = &self.w_dec[j as usize * d_in..(j as usize + 1) * d_in];
                    dx.iter_mut().zip(wd).for_each(|(a, w)| *a += v * w);
                }
                let mut se = 0f64;
                for (a, &xv) in dx.iter_mut().zip(xr) {
                    *a -= xv; // now e = x̂ − x
                    se += (*a as f64) * (*a as f64);
                }
                let mut aux_se = 0f64;
                if use_aux {
                    let adx = aux_dx;
                    // AuxK: ê = Σ_aux f_j W_dec[j] should predict −e (= x − x̂).
                    adx.iter_mut().for_each(|v| *v = 0.0);
                    for &(j, v) in aux {
                        let wd = &self.w_dec[j as usize * d_in..(j as usize + 1) * d_in];
                        adx.iter_mut().zip(wd).for_each(|(a, w)| *a += v * w);
                    }
                    for (a, &e) in adx.iter_mut().zip(dx.iter()) {
                        *a += e; // ê − (x − x̂)
                        aux_se += (*a as f64) * (*a as f64);
                    }
                }
                (se, aux_se)
            })
            .reduce(|| (0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
        let loss = (sq_err / rows as f64) as f32;
        let aux_loss = if use_aux {
            self.cfg.aux_coeff * (aux_sq / rows as f64) as f32
        } else {
            0.0
        };
        // dL/dx̂ = 2e/n; dLaux/dê = 2·c·(ê − (x − x̂))/n (the aux target is treated as constant).
        dxhat.par_iter_mut().for_each(|v| *v *= 2.0 / n);
        let aux_scale = 2.0 * self.cfg.aux_coeff / n;
        aux_dxhat.par_iter_mut().for_each(|v| *v *= aux_scale);

        // Per-row sparse gradients w.r.t. the active latents' pre-activations.
        let mut entries: Vec<(u32, u32, f32, f32)> =
            Vec::with_capacity(rows * (k + if use_aux { k_aux } else { 0 }));
        let row_entries: Vec<Vec<(u32, u32, f32, f32)>> = (0..rows)
            .into_par_iter()
            .map(|b| {
                let (top, aux) = &per_row[b];
                let mut out = Vec::with_capacity(top.len() + aux.len());
                let dx = &dxhat[b * d_in..(b + 1) * d_in];
                for &(j, v) in top {
                    let wd = &self.w_dec[j as usize * d_in..(j as usize + 1) * d_in];
                    let df: f32 = dx.iter().zip(wd).map(|(a, w)| a * w).sum();
                    // (row, latent, activation value, upstream grad into the decoder row, dpre)
                    out.push((b as u32, j, v, if v > 0.0 { df } else { 0.0 }));
                }
                if use_aux {
                    let adx = &aux_dxhat[b * d_in..(b + 1) * d_in];
                    for &(j, v) in aux {
                        let wd = &self.w_dec[j as usize * d_in..(j as usize + 1) * d_in];
                        let df: f32 = adx.iter().zip(wd).map(|(a, w)| a * w).sum();
                        out.push((b as u32 | AUX_BIT, j, v, if v > 0.0 { df } else { 0.0 }));
                    }
                }
                out
            })
            .collect();
        for r in row_entries {
            entries.extend(r);
        }

        // Group entries by latent so each latent's rows update without write conflicts.
        let mut by_latent: Vec<Vec<(u32, f32, f32)>> = vec![Vec::new(); d_sae];
        for &(b, j, v, dpre) in &entries {
            by_latent[j as usize].push((b, v, dpre));
        }
        let mut g_wenc = vec![0f32; d_sae * d_in];
        let mut g_wdec = vec![0f32; d_sae * d_in];
        let mut g_benc = vec![0f32; d_sae];
        g_wenc
            .par_chunks_mut(d_in)
            .zip(g_wdec.par_chunks_mut(d_in))
            .zip(g_benc.par_iter_mut())
            .zip(by_latent.par_iter())
            .for_each(|(((ge, gd), gb), list)| {
                for &(b, v, dpre) in list {
                    let aux = b & AUX_BIT != 0;
                    let b = (b & !AUX_BIT) as usize;
                    let xr = &xin[b * d_in..(b + 1) * d_in];
                    ge.iter_mut().zip(xr).for_each(|(g, x)| *g += dpre * x);
                    *gb += dpre;
                    let up = if aux {
                        &aux_dxhat[b * d_in..(b + 1) * d_in]
                    } else {
                        &dxhat[b * d_in..(b + 1) * d_in]
                    };
                    gd.iter_mut().zip(up).for_each(|(g, u)| *g += v * u);
                }
            });
        // b_dec: decoder side Σ dx̂, encoder side −Σ_b Σ_j dpre W_enc[j].
        let mut g_bdec = vec![0f32; d_in];
        for r in dxhat.chunks(d_in) {
            g_bdec.iter_mut().zip(r).for_each(|(g, v)| *g += v);
        }
        let mut per_row_dxin: Vec<f32> = vec![0f32; rows * d_in];
        let mut row_lists: Vec<Vec<(u32, f32)>> = vec![Vec::new(); rows];
        for &(b, j, _, dpre) in &entries {
            row_lists[(b & !AUX_BIT) as usize].push((j, dpre));
        }
        per_row_dxin
            .par_chunks_mut(d_in)
            .zip(row_lists.par_iter())
            .for_each(|(d, list)| {
                for &(j, dpre) in list {
                    let we = &self.w_enc_t[j as usize * d_in..(j as usize + 1) * d_in];
                    d.iter_mut().zip(we).for_each(|(a, w)| *a += dpre * w);
                }
            });
        for r in per_row_dxin.chunks(d_in) {
            g_bdec.iter_mut().zip(r).for_each(|(g, v)| *g -= v);
        }
        Grads {
            loss,
            aux_loss,
            w_enc_t: g_wenc,
            b_enc: g_benc,
            w_dec: g_wdec,
            b_dec: g_bdec,
            active,
            values,
            sq_err,
        }
    }

    /// One optimisation step on a batch; returns the batch's gradients/statistics.
    pub fn train_step(&mut self, x: &[f32]) -> Grads {
        let dead = self.dead_mask();
        let g = self.grads(x, &dead);
        let rows = (x.len() / self.cfg.d_in) as u64;
        self.tokens_seen += rows;
        for (&j, &v) in g.active.iter().zip(&g.values) {
            if v > 0.0 {
                self.last_fired[j as usize] = self.tokens_seen;
            }
        }
        self.step += 1;
        let lr = self.lr_at(self.step - 1);
        let t = self.step;
        let [a0, a1, a2, a3] = &mut self.adam;
        a0.step(&mut self.w_enc_t, &g.w_enc_t, lr, t);
        a1.step(&mut self.b_enc, &g.b_enc, lr, t);
        a2.step(&mut self.w_dec, &g.w_dec, lr, t);
        a3.step(&mut self.b_dec, &g.b_dec, lr, t);
        normalize_rows(&mut self.w_dec, self.cfg.d_in);
        g
    }

    /// The trained SAE in inference form.
    pub fn to_sae(&self, meta: SaeMeta) -> Sae {
        let (d_in, d_sae) = (self.cfg.d_in, self.cfg.d_sae);
        let mut w_enc = vec![0f32; d_in * d_sae];
        for j in 0..d_sae {
            for i in 0..d_in {
                w_enc[i * d_sae + j] = self.w_enc_t[j * d_in + i];
            }
        }
        Sae {
            d_in,
            d_sae,
            w_enc,
            b_enc: self.b_enc.clone(),
            w_dec: self.w_dec.clone(),
            b_dec: self.b_dec.clone(),
            threshold: None,
            activation: SaeActivation::TopK { k: self.cfg.k },
            apply_b_dec_to_input: true,
            input_scale: None,
            meta,
        }
    }
}

const AUX_BIT: u32 = 1 << 31;

/// The k largest entries of `row + bias` (among latents not excluded by `only`), as
/// (latent, ReLU'd value). One pass with a size-k min-heap: no allocation per candidate.
fn top_k_biased(row: &[f32], bias: &[f32], k: usize, only: Option<&[bool]>) -> Vec<(u32, f32)> {
    // heap[0] is the smallest kept value; ties keep the lower index (as the sorting rule does).
    let mut heap: Vec<(f32, u32)> = Vec::with_capacity(k);
    let less = |a: (f32, u32), b: (f32, u32)| a.0 < b.0 || (a.0 == b.0 && a.1 > b.1);
    for (j, (&p, &b)) in row.iter().zip(bias).enumerate() {
        if only.is_some_and(|m| !m[j]) {
            continue;
        }
        let item = (p + b, j as u32);
        if heap.len() < k {
            heap.push(item);
            let mut i = heap.len() - 1;
            while i > 0 && less(heap[i], heap[(i - 1) / 2]) {
                heap.swap(i, (i - 1) / 2);
                i = (i - 1) / 2;
            }
        } else if k > 0 && less(heap[0], item) {
            heap[0] = item;
            let mut i = 0;
            loop {
                let (l, r) = (2 * i + 1, 2 * i + 2);
                let mut m = i;
                if l < k && less(heap[l], heap[m]) {
                    m = l;
                }
                if r < k && less(heap[r], heap[m]) {
                    m = r;
                }
                if m == i {
                    break;
                }
                heap.swap(i, m);
                i = m;
            }
        }
    }
    heap.into_iter().map(|(v, j)| (j, v.max(0.0))).collect()
}

fn normalize_rows(w: &mut [f32], d: usize) {
    w.par_chunks_mut(d).for_each(|r| {
        let n = r.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        r.iter_mut().for_each(|v| *v /= n);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor, Var};

    /// The sparse kernels against a dense autograd implementation (candle), main and AuxK loss.
    #[test]
    fn sparse_gradients_match_dense_autograd() {
        let (d_in, d_sae, k, k_aux, rows) = (5, 12, 3, 4, 7);
        let cfg = TrainConfig {
            d_in,
            d_sae,
            k,
            k_aux,
            aux_coeff: 0.25,
            dead_after_tokens: 1,
            lr: 1e-3,
            warmup_steps: 1,
            total_steps: 10,
            seed: 3,
        };
        let mut rng = Rng::new(11);
        let x: Vec<f32> = (0..rows * d_in).map(|_| rng.normal()).collect();
        let mut t = TopKTrainer::new(cfg, &x);
        t.b_enc.iter_mut().for_each(|b| *b = rng.normal() * 0.3);
        t.b_dec.iter_mut().for_each(|b| *b += rng.normal() * 0.1);
        t.w_enc_t.iter_mut().for_each(|w| *w += rng.normal() * 0.2);
        let dead: Vec<bool> = (0..d_sae).map(|j| j % 3 == 0).collect();
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
        let pre_v: Vec<Vec<f32>> = pre.to_vec2().unwrap();
        let mask = |aux: bool| -> Tensor {
            let m: Vec<f32> = pre_v
                .iter()
                .flat_map(|row| {
                    let zero = vec![0f32; d_sae];
                    let sel = if aux {
                        top_k_biased(row, &zero, k_aux, Some(&dead))
                    } else {
                        top_k_biased(row, &zero, k, None)
                    };
                    let mut m = vec![0f32; d_sae];
                    for (j, _) in sel {
                        m[j as usize] = 1.0;
                    }
                    m
                })
                .collect();
            Tensor::from_vec(m, (rows, d_sae), &dev).unwrap()
        };
        let f = (pre.relu().unwrap() * mask(false)).unwrap();
        let xhat = f
            .matmul(wd.as_tensor())
            .unwrap()
            .broadcast_add(bd.as_tensor())
            .unwrap();
        let e = (&xhat - &xt).unwrap();
        let loss = (e.sqr().unwrap().sum_all().unwrap() / rows as f64).unwrap();
        let fa = (pre.relu().unwrap() * mask(true)).unwrap();
        let ehat = fa.matmul(wd.as_tensor()).unwrap();
        let target = e.detach().neg().unwrap();
        let aux = ((ehat - target).unwrap().sqr().unwrap().sum_all().unwrap()
            * (0.25 / rows as f64))
            .unwrap();
        let total = (&loss + &aux).unwrap();
        let grads = total.backward().unwrap();

        assert!((loss.to_scalar::<f32>().unwrap() - g.loss).abs() < 1e-5);
        assert!((aux.to_scalar::<f32>().unwrap() - g.aux_loss).abs() < 1e-5);
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
            assert!(d < 1e-5, "{name}: max |sparse − dense| = {d}");
            assert!(
                dense.iter().any(|v| v.abs() > 1e-4),
                "{name}: gradient should not be trivially zero"
            );
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
        }
    }

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
        let run = || {
            let cfg = TrainConfig {
                d_in,
                d_sae,
                k: 4,
                k_aux: 4,
                aux_coeff: 1.0 / 32.0,
                dead_after_tokens: 4096,
                lr: 3e-3,
                warmup_steps: 10,
                total_steps: 200,
                seed: 1,
            };
            let mut t = TopKTrainer::new(cfg, &x);
            let first = t.grads(&x[..256 * d_in], &vec![false; d_sae]).loss;
            for s in 0..200 {
                let b = (s % 8) * 256;
                t.train_step(&x[b * d_in..(b + 256) * d_in]);
            }
            (
                first,
                t.grads(&x[..256 * d_in], &vec![false; d_sae]).loss,
                t.w_dec.clone(),
            )
        };
        let (first, last, w1) = run();
        assert!(last < first * 0.3, "loss {first} → {last}");
        let (_, _, w2) = run();
        assert_eq!(w1, w2, "same seed, same data → same weights");
    }
}
