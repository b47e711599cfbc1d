//! One batch's loss and gradients: sparse encoder/decoder products over the active latents
//! only, plus the auxiliary loss that revives dead latents.
//!
//! Matryoshka: with prefix ends m_1 < … < m_P = d_sae, e_p = b_dec + Σ_{j<m_p} f_j W_dec[j] − x
//! and the loss is Σ_p ‖e_p‖²/n, so a latent of prefix group g (the first prefix holding it)
//! sees the upstream gradient u_g = 2/n·Σ_{p≥g} e_p. The other architectures are the case P = 1.

use super::jump::JumpTerms;
use super::prefixes::group_of;
use super::*;

/// Loss and gradients of one batch (what the sparse kernels compute; the tests compare these to
/// a dense autograd implementation).
pub struct Grads {
    /// The reconstruction loss: mean over rows of ‖x − x̂‖² (Matryoshka: summed over prefixes).
    pub loss: f32,
    pub aux_loss: f32,
    /// The sparsity term: ReLU's (warmed-up) L1, JumpReLU's L0 penalty.
    pub sparsity_loss: f32,
    /// [d_sae, d_in] (encoder stored latent-major).
    pub w_enc_t: Vec<f32>,
    pub b_enc: Vec<f32>,
    pub w_dec: Vec<f32>,
    pub b_dec: Vec<f32>,
    /// JumpReLU: d/d log θ (empty otherwise).
    pub log_threshold: Vec<f32>,
    /// Which latents were above 0 in at least one row.
    pub fired: Vec<bool>,
    /// Latents above 0 per row, on average.
    pub l0: f64,
    /// Σ‖x − x̂‖² over the batch, for the whole dictionary.
    pub sq_err: f64,
    /// BatchTopK: the smallest activation kept in this batch.
    pub min_kept: Option<f32>,
}

const AUX_BIT: u32 = 1 << 31;

impl Trainer {
    /// ‖W_dec[j]‖ per latent when `needed` (ReLU's L1 weighting), else nothing.
    pub(super) fn decoder_norms_if(&self, needed: bool) -> Vec<f32> {
        if !needed {
            return Vec::new();
        }
        self.w_dec
            .par_chunks(self.cfg.d_in)
            .map(|r| r.iter().map(|v| v * v).sum::<f32>().sqrt())
            .collect()
    }

    /// The encoder's one dense GEMM: returns xin = x − b_dec and fills `pre` with xin·W_encᵀ
    /// [rows, d_sae] (b_enc not added: the selection adds it).
    pub(super) fn encoder_pre(&self, x: &[f32], pre: &mut Vec<f32>) -> Vec<f32> {
        let (d_in, d_sae) = (self.cfg.d_in, self.cfg.d_sae);
        let rows = x.len() / d_in;
        let mut xin = x.to_vec();
        xin.par_chunks_mut(d_in)
            .for_each(|r| r.iter_mut().zip(&self.b_dec).for_each(|(v, b)| *v -= b));
        pre.resize(rows * d_sae, 0.0);
        matmul(
            pre,
            &xin,
            &self.w_enc_t,
            (rows, d_in, d_sae),
            RhsLayout::Transposed,
            false,
            true,
        );
        xin
    }

    /// Loss and exact gradients for a batch x [rows, d_in].
    pub fn grads(&mut self, x: &[f32], dead: &[bool]) -> Grads {
        let (d_in, d_sae, k) = (self.cfg.d_in, self.cfg.d_sae, self.cfg.k);
        let rows = x.len() / d_in;
        let n = rows as f32;
        let ends = match &self.cfg.arch {
            TrainArch::Matryoshka { prefixes } => prefixes.ends_at(d_sae, self.cfg.seed, self.step),
            _ => vec![d_sae],
        };
        let groups = ends.len();
        // xin = x − b_dec
        let mut pre = std::mem::take(&mut self.scratch);
        let xin = self.encoder_pre(x, &mut pre);
        let theta = self.thresholds();
        // AuxK: the top k_aux dead latents per row reconstruct the residual.
        let use_aux = self.cfg.k_aux > 0 && dead.iter().any(|&d| d);
        if let Some(count) = self.unbounded_count(&pre, &theta)
            && groups == 1
            && !use_aux
            && count as f64 > self.dense_above * (rows * d_sae) as f64
        {
            let g = self.dense_grads(x, &xin, &mut pre, &theta, count);
            self.scratch = pre;
            return g;
        }
        let (top, min_kept) = select_active(&self.cfg.arch, &pre, &self.b_enc, &theta, k);
        let aux: Vec<Vec<(u32, f32)>> = if use_aux {
            pre.par_chunks(d_sae)
                .map(|row| top_k_biased(row, &self.b_enc, self.cfg.k_aux, Some(dead)))
                .collect()
        } else {
            vec![Vec::new(); rows]
        };
        // JumpReLU: the entries within half a bandwidth of their threshold carry θ's gradient.
        let selected: usize = top.iter().map(Vec::len).sum();
        let jump = JumpTerms::new(
            &self.cfg.arch,
            &pre,
            &self.b_enc,
            &theta,
            selected as f64 / rows.max(1) as f64,
        );
        self.scratch = pre;
        // ReLU's L1 penalty λ/n·Σ f_j‖W_dec[j]‖ needs the decoder norms.
        let l1 = self.l1_at(self.step);
        let dec_norms = self.decoder_norms_if(l1 > 0.0);
        // Decode by gathering the active rows prefix by prefix: e_p = x̂_p − x, kept in `up` [rows,
        // P, d_in] and then turned into the suffix sums Σ_{q≥p} e_q.
        let mut up = vec![0f32; rows * groups * d_in];
        let mut aux_dxhat = vec![0f32; if use_aux { rows * d_in } else { 0 }];
        let aux_chunk = if use_aux { d_in } else { 1 };
        let mut aux_dummy = vec![0f32; rows];
        let aux_buf = if use_aux {
            &mut aux_dxhat
        } else {
            &mut aux_dummy
        };
        let (sq_err, prefix_sq, aux_sq, l1_sum): (f64, f64, f64, f64) = up
            .par_chunks_mut(groups * d_in)
            .zip(x.par_chunks(d_in))
            .zip(top.par_iter().zip(aux.par_iter()))
            .zip(aux_buf.par_chunks_mut(aux_chunk))
            .map(|(((u, xr), (top, aux)), adx)| {
                let mut l1_row = 0f64;
                let mut prefix_se = 0f64;
                let mut acc = self.b_dec.clone();
                let sorted: Vec<(u32, f32)>;
                let order: &[(u32, f32)] = if groups > 1 {
                    let mut t = top.clone();
                    t.sort_unstable_by_key(|&(j, _)| j);
                    sorted = t;
                    &sorted
                } else {
                    top
                };
                let mut next = order.iter().peekable();
                for (g, e_g) in u.chunks_mut(d_in).enumerate() {
                    while let Some(&&(j, v)) = next.peek() {
                        if groups > 1 && group_of(&ends, j as usize) != g {
                            break;
                        }
                        next.next();
                        let wd = &self.w_dec[j as usize * d_in..(j as usize + 1) * d_in];
                        acc.iter_mut().zip(wd).for_each(|(a, w)| *a += v * w);
                        if l1 > 0.0 {
                            l1_row += (v * dec_norms[j as usize]) as f64;
                        }
                    }
                    let mut se = 0f64;
                    for ((e, a), &xv) in e_g.iter_mut().zip(&acc).zip(xr) {
                        *e = a - xv;
                        se += (*e as f64) * (*e as f64);
                    }
                    prefix_se += se;
                }
                // The full reconstruction's residual e_P (the AuxK target and the FVE).
                let e = &u[(groups - 1) * d_in..];
                let se: f64 = e.iter().map(|&v| (v as f64) * (v as f64)).sum();
                let mut aux_se = 0f64;
                if use_aux {
                    // ê = Σ_aux f_j W_dec[j] should predict −e (= x − x̂).
                    adx.iter_mut().for_each(|v| *v = 0.0);
                    for &(j, v) in aux {
                        let wd = &self.w_dec[j as usize * d_in..(j as usize + 1) * d_in];
                        adx.iter_mut().zip(wd).for_each(|(a, w)| *a += v * w);
                    }
                    for (a, &ev) in adx.iter_mut().zip(e) {
                        *a += ev; // ê − (x − x̂)
                        aux_se += (*a as f64) * (*a as f64);
                    }
                }
                // Suffix sums: group g's latents enter every prefix from g on.
                for g in (0..groups - 1).rev() {
                    let (head, tail) = u.split_at_mut((g + 1) * d_in);
                    head[g * d_in..]
                        .iter_mut()
                        .zip(&tail[..d_in])
                        .for_each(|(a, b)| *a += b);
                }
                (se, prefix_se, aux_se, l1_row)
            })
            // Rows' sums added in row order, so the logged loss and FVE repeat exactly.
            .collect::<Vec<_>>()
            .into_iter()
            .fold((0.0, 0.0, 0.0, 0.0), |a, b| {
                (a.0 + b.0, a.1 + b.1, a.2 + b.2, a.3 + b.3)
            });
        let loss = (prefix_sq / rows as f64) as f32;
        let aux_loss = if use_aux {
            self.cfg.aux_coeff * (aux_sq / rows as f64) as f32
        } else {
            0.0
        };
        // dL/dx̂_p summed over the prefixes holding a latent: 2/n·Σ_{q≥g} e_q; dLaux/dê =
        // 2·c·(ê − (x − x̂))/n (the aux target is treated as constant).
        up.par_iter_mut().for_each(|v| *v *= 2.0 / n);
        let aux_scale = 2.0 * self.cfg.aux_coeff / n;
        aux_dxhat.par_iter_mut().for_each(|v| *v *= aux_scale);
        let upstream = |b: usize, j: usize| {
            let g = if groups > 1 { group_of(&ends, j) } else { 0 };
            &up[(b * groups + g) * d_in..(b * groups + g + 1) * d_in]
        };

        // Per-row sparse gradients w.r.t. the active latents' pre-activations:
        // (row | AUX_BIT, latent, activation value, dL/dpre).
        let row_entries: Vec<Vec<(u32, u32, f32, f32)>> = (0..rows)
            .into_par_iter()
            .map(|b| {
                let mut out = Vec::with_capacity(top[b].len() + aux[b].len());
                for &(j, v) in &top[b] {
                    let wd = &self.w_dec[j as usize * d_in..(j as usize + 1) * d_in];
                    let mut df: f32 = upstream(b, j as usize)
                        .iter()
                        .zip(wd)
                        .map(|(a, w)| a * w)
                        .sum();
                    if l1 > 0.0 {
                        df += l1 / n * dec_norms[j as usize];
                    }
                    out.push((b as u32, j, v, if v > 0.0 { df } else { 0.0 }));
                }
                if use_aux {
                    let adx = &aux_dxhat[b * d_in..(b + 1) * d_in];
                    for &(j, v) in &aux[b] {
                        let wd = &self.w_dec[j as usize * d_in..(j as usize + 1) * d_in];
                        let df: f32 = adx.iter().zip(wd).map(|(a, w)| a * w).sum();
                        out.push((b as u32 | AUX_BIT, j, v, if v > 0.0 { df } else { 0.0 }));
                    }
                }
                out
            })
            .collect();
        let (log_threshold, sparsity_loss) = match &jump {
            Some(j) => j.threshold_grads(&theta, rows, |b, l| {
                let wd = &self.w_dec[l * d_in..(l + 1) * d_in];
                upstream(b, l).iter().zip(wd).map(|(a, w)| a * w).sum()
            }),
            None => (Vec::new(), (l1 as f64 * l1_sum / rows as f64) as f32),
        };

        // Group entries by latent so each latent's rows update without write conflicts.
        let mut by_latent: Vec<Vec<(u32, f32, f32)>> = vec![Vec::new(); d_sae];
        for list in &row_entries {
            for &(b, j, v, dpre) in list {
                by_latent[j as usize].push((b, v, dpre));
            }
        }
        let mut g_wenc = vec![0f32; d_sae * d_in];
        let mut g_wdec = vec![0f32; d_sae * d_in];
        let mut g_benc = vec![0f32; d_sae];
        g_wenc
            .par_chunks_mut(d_in)
            .zip(g_wdec.par_chunks_mut(d_in))
            .zip(g_benc.par_iter_mut())
            .zip(by_latent.par_iter().enumerate())
            .for_each(|(((ge, gd), gb), (j, list))| {
                let mut f_sum = 0f32;
                for &(b, v, dpre) in list {
                    let is_aux = b & AUX_BIT != 0;
                    let b = (b & !AUX_BIT) as usize;
                    let xr = &xin[b * d_in..(b + 1) * d_in];
                    ge.iter_mut().zip(xr).for_each(|(g, x)| *g += dpre * x);
                    *gb += dpre;
                    let from = if is_aux {
                        &aux_dxhat[b * d_in..(b + 1) * d_in]
                    } else {
                        f_sum += v;
                        upstream(b, j)
                    };
                    gd.iter_mut().zip(from).for_each(|(g, u)| *g += v * u);
                }
                // d/dW_dec[j] of λ/n·Σ_b f_bj‖W_dec[j]‖ = λ/n·(Σ_b f_bj)·W_dec[j]/‖W_dec[j]‖.
                if l1 > 0.0 && f_sum > 0.0 {
                    let wd = &self.w_dec[j * d_in..(j + 1) * d_in];
                    let c = l1 / n * f_sum / dec_norms[j].max(1e-12);
                    gd.iter_mut().zip(wd).for_each(|(g, w)| *g += c * w);
                }
            });
        // b_dec: decoder side Σ_b Σ_p dx̂_p (= the first suffix sum), encoder side
        // −Σ_b Σ_j dpre W_enc[j].
        let mut g_bdec = vec![0f32; d_in];
        for r in up.chunks(groups * d_in) {
            g_bdec.iter_mut().zip(&r[..d_in]).for_each(|(g, v)| *g += v);
        }
        let per_row_dxin: Vec<Vec<f32>> = row_entries
            .par_iter()
            .map(|list| {
                let mut d = vec![0f32; d_in];
                for &(_, j, _, dpre) in list {
                    let we = &self.w_enc_t[j as usize * d_in..(j as usize + 1) * d_in];
                    d.iter_mut().zip(we).for_each(|(a, w)| *a += dpre * w);
                }
                d
            })
            .collect();
        for r in &per_row_dxin {
            g_bdec.iter_mut().zip(r).for_each(|(g, v)| *g -= v);
        }
        let mut fired = vec![false; d_sae];
        let mut on = 0usize;
        for &(j, v) in top.iter().flatten() {
            if v > 0.0 {
                fired[j as usize] = true;
                on += 1;
            }
        }
        Grads {
            loss,
            aux_loss,
            sparsity_loss,
            w_enc_t: g_wenc,
            b_enc: g_benc,
            w_dec: g_wdec,
            b_dec: g_bdec,
            log_threshold,
            fired,
            l0: on as f64 / rows.max(1) as f64,
            sq_err,
            min_kept,
        }
    }
}
