//! SAE quality on a folder of images: FVE, MSE, L0, dead and dense latents, and the classifier's
//! accuracy with the tapped layer replaced by the reconstruction.

use super::Sae;
use crate::backbone::{Backbone, argmax_last};
use crate::error::{Error, Result};
use crate::job::{Job, Progress};
use crate::store::Dataset;
use crate::store::Workspace;
use crate::store::reuse::{HiddenBatch, LayerActivations};
use candle_core::Tensor;
use serde::Serialize;
use std::path::Path;

#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    pub images: usize,
    pub tokens: usize,
    pub fve: f64,
    pub mse: f64,
    pub l0: f64,
    /// Latents that never fired on this data.
    pub dead_fraction: f64,
    /// Latents firing on more than 10% of tokens.
    pub dense_fraction: f64,
    pub accuracy: Option<f64>,
    pub spliced_accuracy: Option<f64>,
}

pub fn evaluate(
    ws: &Workspace,
    backbone: &dyn Backbone,
    sae: &Sae,
    images: &Path,
    batch: usize,
    job: &Job,
) -> Result<EvalReport> {
    let ds = Dataset::scan(images)?;
    let device = backbone.device().clone();
    let layer = ws.config.layer;
    let token_indices = ws.config.backbone.geometry.select(ws.config.tokens)?;
    let names = backbone.info().class_names.clone();
    // Folder class → logit index, worked out at the first batch with logits.
    let mut mapping: Option<Vec<usize>> = None;
    let (mut sq_err, mut n_tok, mut l0_sum) = (0f64, 0usize, 0f64);
    let mut sum = vec![0f64; sae.d_in];
    let mut sumsq = 0f64;
    let mut fired = vec![0u64; sae.d_sae];
    let (mut correct, mut correct_spliced, mut labelled) = (0usize, 0usize, 0usize);
    let mut n_images = 0usize;
    let ids: Vec<usize> = (0..ds.len()).collect();
    // Images the workspace already stores are read back, not recomputed.
    let source = LayerActivations::new(backbone, layer, std::slice::from_ref(ws))?;
    for (ci, chunk) in ids.chunks(batch.max(1)).enumerate() {
        job.check()?;
        let HiddenBatch {
            hidden: Some(hidden),
            ok,
            ..
        } = source.batch(&ds, chunk)?
        else {
            continue;
        };
        n_images += ok.len();
        // hidden: [B, T, D]
        let (b, t, d) = hidden.dims3()?;
        let h: Vec<f32> = hidden.flatten_all()?.to_vec1()?;
        // Encode/decode the selected tokens; splice reconstructions back into the stream.
        let mut spliced = h.clone();
        let mut sel = Vec::with_capacity(b * token_indices.len() * d);
        for bi in 0..b {
            for &ti in &token_indices {
                sel.extend_from_slice(&h[(bi * t + ti) * d..(bi * t + ti + 1) * d]);
            }
        }
        let f = sae.encode(&sel);
        let rec = sae.decode(&f);
        for (row, (x, xh)) in sel.chunks(d).zip(rec.chunks(d)).enumerate() {
            sq_err += x
                .iter()
                .zip(xh)
                .map(|(a, b)| ((a - b) as f64).powi(2))
                .sum::<f64>();
            sumsq += x.iter().map(|&a| (a as f64).powi(2)).sum::<f64>();
            sum.iter_mut().zip(x).for_each(|(s, &a)| *s += a as f64);
            let frow = &f[row * sae.d_sae..(row + 1) * sae.d_sae];
            for (j, &v) in frow.iter().enumerate() {
                if v > 0.0 {
                    fired[j] += 1;
                    l0_sum += 1.0;
                }
            }
        }
        n_tok += sel.len() / d;
        for bi in 0..b {
            for (si, &ti) in token_indices.iter().enumerate() {
                let src = &rec[(bi * token_indices.len() + si) * d..][..d];
                spliced[(bi * t + ti) * d..(bi * t + ti + 1) * d].copy_from_slice(src);
            }
        }
        let clean = backbone.finish_from(&hidden, layer)?;
        if let Some(logits) = clean.logits {
            let spliced_t = Tensor::from_vec(spliced, (b, t, d), &device)?;
            let logits_s = backbone
                .finish_from(&spliced_t, layer)?
                .logits
                .ok_or_else(|| Error::Invalid("no logits".into()))?;
            let mapping = match &mapping {
                Some(m) => m,
                None => mapping.insert(ds.class_mapping(names.as_deref(), logits.dim(1)?)?),
            };
            for ((p, ps), &i) in argmax_last(&logits)?
                .into_iter()
                .zip(argmax_last(&logits_s)?)
                .zip(&ok)
            {
                if let Some(c) = ds.images[i].class {
                    labelled += 1;
                    correct += (p as usize == mapping[c as usize]) as usize;
                    correct_spliced += (ps as usize == mapping[c as usize]) as usize;
                }
            }
        }
        job.report(Progress {
            done: ((ci + 1) * batch).min(ds.len()) as u64,
            total: ds.len() as u64,
            unit: "images",
            message: String::new(),
        });
    }
    let n = n_tok.max(1) as f64;
    let total_var = sumsq - sum.iter().map(|s| s * s).sum::<f64>() / n;
    Ok(EvalReport {
        images: n_images,
        tokens: n_tok,
        fve: 1.0 - sq_err / total_var.max(1e-12),
        mse: sq_err / (n * sae.d_in as f64),
        l0: l0_sum / n,
        dead_fraction: fired.iter().filter(|&&c| c == 0).count() as f64 / sae.d_sae as f64,
        dense_fraction: fired.iter().filter(|&&c| c as f64 > 0.1 * n).count() as f64
            / sae.d_sae as f64,
        accuracy: (labelled > 0).then(|| correct as f64 / labelled as f64),
        spliced_accuracy: (labelled > 0).then(|| correct_spliced as f64 / labelled as f64),
    })
}
