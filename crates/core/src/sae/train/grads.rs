//! One batch's loss and gradients: sparse encoder/decoder products over the active latents
//! only, plus the auxiliary loss that revives dead latents.

use super::*;

/// Loss and gradients of one batch (what the sparse kernels compute; the tests compare these to
/// a dense autograd implementation).
pub struct Grads {
    /// Mean over rows of ‖x − x̂‖².
    pub loss: f32,
    pub aux_loss: f32,
    /// ReLU: the (warmed-up) L1 term.
    pub l1_loss: f32,
    /// [d_sae, d_in] (encoder stored latent-major).
    pub w_enc_t: Vec<f32>,
    pub b_enc: Vec<f32>,
    pub w_dec: Vec<f32>,
    pub b_dec: Vec<f32>,
    /// Active latent ids and values, row by row; row r owns `row_start[r]..row_start[r + 1]`.
    pub active: Vec<u32>,
    pub values: Vec<f32>,
    pub row_start: Vec<usize>,
    /// Σ‖x − x̂‖² over the batch.
    pub sq_err: f64,
    /// BatchTopK: the smallest activation kept in this batch.
    pub min_kept: Option<f32>,
}

const AUX_BIT: u32 = 1 << 31;

impl Trainer {
    /// Loss and exact gradients for a batch x [rows, d_in].
    pub fn grads(&mut self, x: &[f32], dead: &[bool]) -> Grads {
        let (d_in, d_sae, k) = (self.cfg.d_in, self.cfg.d_sae, self.cfg.k);
        let rows = x.len() / d_in;
        let n = rows as f32;
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
        let (top, min_kept) = select_active(self.cfg.arch, &pre, &self.b_enc, k);
        // AuxK: the top k_aux dead latents per row reconstruct the residual.
        let use_aux = self.cfg.k_aux > 0 && dead.iter().any(|&d| d);
        let aux: Vec<Vec<(u32, f32)>> = if use_aux {
            pre.par_chunks(d_sae)
                .map(|row| top_k_biased(row, &self.b_enc, self.cfg.k_aux, Some(dead)))
                .collect()
        } else {
            vec![Vec::new(); rows]
        };
        self.scratch = pre;
        // ReLU's L1 penalty λ/n·Σ f_j‖W_dec[j]‖ needs the decoder norms.
        let l1 = self.l1_at(self.step);
        let dec_norms: Vec<f32> = if l1 > 0.0 {
            self.w_dec
                .par_chunks(d_in)
                .map(|r| r.iter().map(|v| v * v).sum::<f32>().sqrt())
                .collect()
        } else {
            Vec::new()
        };
        // Decode by gathering the active rows: x̂ = Σ f_j W_dec[j] + b_dec; residual e = x̂ − x.
        let mut dxhat = vec![0f32; rows * d_in];
        let mut aux_dxhat = vec![0f32; if use_aux { rows * d_in } else { 0 }];
        let aux_chunk = if use_aux { d_in } else { 1 };
        let mut aux_dummy = vec![0f32; rows];
        let aux_buf = if use_aux {
            &mut aux_dxhat
        } else {
            &mut aux_dummy
        };
        let (sq_err, aux_sq, l1_sum): (f64, f64, f64) = dxhat
            .par_chunks_mut(d_in)
            .zip(x.par_chunks(d_in))
            .zip(top.par_iter().zip(aux.par_iter()))
            .zip(aux_buf.par_chunks_mut(aux_chunk))
            .map(|(((dx, xr), (top, aux)), adx)| {
                dx.copy_from_slice(&self.b_dec);
                let mut l1_row = 0f64;
                for &(j, v) in top {
                    let wd = &self.w_dec[j as usize * d_in..(j as usize + 1) * d_in];
                    dx.iter_mut().zip(wd).for_each(|(a, w)| *a += v * w);
                    if l1 > 0.0 {
                        l1_row += (v * dec_norms[j as usize]) as f64;
                    }
                }
                let mut se = 0f64;
                for (a, &xv) in dx.iter_mut().zip(xr) {
                    *a -= xv; // now e = x̂ − x
                    se += (*a as f64) * (*a as f64);
                }
                let mut aux_se = 0f64;
                if use_aux {
                    // ê = Σ_aux f_j W_dec[j] should predict −e (= x − x̂).
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
                (se, aux_se, l1_row)
            })
            .reduce(|| (0.0, 0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2));
        let loss = (sq_err / rows as f64) as f32;
        let aux_loss = if use_aux {
            self.cfg.aux_coeff * (aux_sq / rows as f64) as f32
        } else {
            0.0
        };
        let l1_loss = (l1 as f64 * l1_sum / rows as f64) as f32;
        // dL/dx̂ = 2e/n; dLaux/dê = 2·c·(ê − (x − x̂))/n (the aux target is treated as constant).
        dxhat.par_iter_mut().for_each(|v| *v *= 2.0 / n);
        let aux_scale = 2.0 * self.cfg.aux_coeff / n;
        aux_dxhat.par_iter_mut().for_each(|v| *v *= aux_scale);

        // Per-row sparse gradients w.r.t. the active latents' pre-activations:
        // (row | AUX_BIT, latent, activation value, dL/dpre).
        let row_entries: Vec<Vec<(u32, u32, f32, f32)>> = (0..rows)
            .into_par_iter()
            .map(|b| {
                let mut out = Vec::with_capacity(top[b].len() + aux[b].len());
                let dx = &dxhat[b * d_in..(b + 1) * d_in];
                for &(j, v) in &top[b] {
                    let wd = &self.w_dec[j as usize * d_in..(j as usize + 1) * d_in];
                    let mut df: f32 = dx.iter().zip(wd).map(|(a, w)| a * w).sum();
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
                    let up = if is_aux {
                        &aux_dxhat[b * d_in..(b + 1) * d_in]
                    } else {
                        f_sum += v;
                        &dxhat[b * d_in..(b + 1) * d_in]
                    };
                    gd.iter_mut().zip(up).for_each(|(g, u)| *g += v * u);
                }
                // d/dW_dec[j] of λ/n·Σ_b f_bj‖W_dec[j]‖ = λ/n·(Σ_b f_bj)·W_dec[j]/‖W_dec[j]‖.
                if l1 > 0.0 && f_sum > 0.0 {
                    let wd = &self.w_dec[j * d_in..(j + 1) * d_in];
                    let c = l1 / n * f_sum / dec_norms[j].max(1e-12);
                    gd.iter_mut().zip(wd).for_each(|(g, w)| *g += c * w);
                }
            });
        // b_dec: decoder side Σ dx̂, encoder side −Σ_b Σ_j dpre W_enc[j].
        let mut g_bdec = vec![0f32; d_in];
        for r in dxhat.chunks(d_in) {
            g_bdec.iter_mut().zip(r).for_each(|(g, v)| *g += v);
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
        let mut row_start = Vec::with_capacity(rows + 1);
        let (mut active, mut values) = (Vec::new(), Vec::new());
        row_start.push(0);
        for list in &top {
            for &(j, v) in list {
                active.push(j);
                values.push(v);
            }
            row_start.push(active.len());
        }
        Grads {
            loss,
            aux_loss,
            l1_loss,
            w_enc_t: g_wenc,
            b_enc: g_benc,
            w_dec: g_wdec,
            b_dec: g_bdec,
            active,
            values,
            row_start,
            sq_err,
            min_kept,
        }
    }
}
