//! One pass of one SAE (or control) over the fit and evaluation images: its codes, its
//! reconstructions spliced back into the model, and every metric's running sums.

use super::mono::Monosemanticity;
use super::recon::Reconstruction;
use super::report::VariantScores;
use super::sparse_probe::sparse_probe;
use super::spatial::Spatial;
use super::{BenchmarkOptions, Estimate, Layout, rows_of};
use crate::analysis::probe::{ProbeScores, fit_and_score};
use crate::backbone::Backbone;
use crate::error::{Error, Result};
use crate::job::{Job, Progress};
use crate::sae::{Sae, SparseCodes};
use crate::store::Dataset;
use crate::store::reuse::{HiddenBatch, LayerActivations};
use candle_core::Tensor;
use rayon::prelude::*;

pub(super) struct Context<'a> {
    pub layout: &'a Layout,
    pub source: &'a LayerActivations<'a>,
    pub backbone: &'a dyn Backbone,
    pub opts: &'a BenchmarkOptions,
    pub job: &'a Job,
    /// What the progress line names ("name (trained)").
    pub label: String,
}

/// What one variant's pass leaves: running sums, per-image codes and spliced outputs.
pub(super) struct VariantRun {
    recon: Reconstruction,
    mono: Monosemanticity,
    spatial: Option<Spatial>,
    /// Per image: each fired latent's mean over the image's tokens (the sparse probe's input).
    fit_codes: SparseCodes,
    eval_codes: SparseCodes,
    fit_spliced: Vec<f32>,
    eval_spliced: Vec<f32>,
    d_sae: usize,
    d_model: usize,
}

/// Runs `sae` over the fit images (`ids` of `ds`, all readable) and then the evaluation images,
/// whose clean pooled outputs `eval_pooled` are the monosemanticity embedding.
pub(super) fn run(
    ctx: &Context,
    sae: &Sae,
    fit: (&Dataset, &[usize]),
    eval: (&Dataset, &[usize]),
    eval_pooled: &[f32],
) -> Result<VariantRun> {
    let d_model = ctx.backbone.info().d_model;
    let mut run = VariantRun {
        recon: Reconstruction::new(sae.d_in, sae.d_sae),
        mono: Monosemanticity::new(sae.d_sae, d_model),
        spatial: ctx.layout.grid.map(|(h, w)| Spatial::new(sae.d_sae, h, w)),
        fit_codes: empty_codes(),
        eval_codes: empty_codes(),
        fit_spliced: Vec::new(),
        eval_spliced: Vec::new(),
        d_sae: sae.d_sae,
        d_model,
    };
    let total = (fit.1.len() + eval.1.len()) as u64;
    let mut done = 0u64;
    for (is_eval, (ds, ids)) in [(false, fit), (true, eval)] {
        let mut position = 0usize;
        for chunk in ids.chunks(ctx.opts.batch.max(1)) {
            ctx.job.check()?;
            let HiddenBatch { hidden, ok, .. } = ctx.source.batch(ds, chunk)?;
            let hidden = match hidden {
                Some(h) if ok.len() == chunk.len() => h,
                _ => {
                    let lost = chunk.iter().find(|i| !ok.contains(i)).copied();
                    return Err(Error::Invalid(format!(
                        "{}: could be read at the start of the benchmark but not now; keep the \
                         image folders unchanged while it runs",
                        lost.map_or(ds.root.clone(), |i| ds.abs_path(i)).display()
                    )));
                }
            };
            run.add_batch(ctx, sae, &hidden, is_eval, position, eval_pooled)?;
            position += chunk.len();
            done += chunk.len() as u64;
            ctx.job.report(Progress {
                done,
                total,
                unit: "images",
                message: ctx.label.clone(),
            });
        }
    }
    Ok(run)
}

fn empty_codes() -> SparseCodes {
    SparseCodes {
        row_start: vec![0],
        ..SparseCodes::default()
    }
}

/// Reconstructions [rows, d_in] from sparse codes (the same sum as [`Sae::decode`], without the
/// dense [rows, d_sae] matrix).
pub(crate) fn decode_sparse(sae: &Sae, codes: &SparseCodes) -> Vec<f32> {
    let d = sae.d_in;
    let mut out = vec![0f32; codes.rows() * d];
    out.par_chunks_mut(d).enumerate().for_each(|(r, row)| {
        row.copy_from_slice(&sae.b_dec);
        for (j, v) in codes.row(r) {
            let w = &sae.w_dec[j as usize * d..(j as usize + 1) * d];
            row.iter_mut().zip(w).for_each(|(o, &w)| *o += v * w);
        }
        if let Some(s) = sae.input_scale {
            row.iter_mut().for_each(|o| *o /= s);
        }
    });
    out
}

impl VariantRun {
    fn add_batch(
        &mut self,
        ctx: &Context,
        sae: &Sae,
        hidden: &Tensor,
        is_eval: bool,
        first: usize,
        eval_pooled: &[f32],
    ) -> Result<()> {
        let (b, t, d) = hidden.dims3()?;
        let h: Vec<f32> = hidden.flatten_all()?.to_vec1()?;
        let tokens = &ctx.layout.tokens;
        let ts = tokens.len();
        let mut sel = Vec::with_capacity(b * ts * d);
        for bi in 0..b {
            for &ti in tokens {
                sel.extend_from_slice(&h[(bi * t + ti) * d..(bi * t + ti + 1) * d]);
            }
        }
        let codes = sae.encode_sparse(&sel);
        let rec = decode_sparse(sae, &codes);
        let mut sum = vec![0f32; self.d_sae];
        let mut max = vec![0f32; self.d_sae];
        for bi in 0..b {
            let rows = bi * ts..(bi + 1) * ts;
            let (mut touched, mut spatial) = (Vec::new(), Vec::new());
            for (r, patch) in rows.clone().zip(&ctx.layout.patch) {
                for (j, v) in codes.row(r) {
                    let ju = j as usize;
                    if sum[ju] == 0.0 && max[ju] == 0.0 {
                        touched.push(j);
                    }
                    sum[ju] += v;
                    max[ju] = max[ju].max(v);
                    if let Some(p) = patch {
                        spatial.push((*p, j, v));
                    }
                }
            }
            touched.sort_unstable();
            let target = if is_eval {
                &mut self.eval_codes
            } else {
                &mut self.fit_codes
            };
            for &j in &touched {
                target.ids.push(j);
                target.vals.push(sum[j as usize] / ts as f32);
            }
            target.row_start.push(target.ids.len());
            if is_eval {
                let image = first + bi;
                let image_ids = &codes.ids[codes.row_start[rows.start]..codes.row_start[rows.end]];
                self.recon.add_image(
                    image,
                    &sel[rows.start * d..rows.end * d],
                    &rec[rows.start * d..rows.end * d],
                    image_ids,
                    ts,
                );
                let active: Vec<(u32, f32)> =
                    touched.iter().map(|&j| (j, max[j as usize])).collect();
                self.mono.add_image(
                    &eval_pooled[image * self.d_model..][..self.d_model],
                    &active,
                );
                if let Some(s) = self.spatial.as_mut() {
                    s.add_image(spatial);
                }
            }
            for &j in &touched {
                sum[j as usize] = 0.0;
                max[j as usize] = 0.0;
            }
        }
        if ctx.opts.spliced {
            let mut spliced = h;
            for bi in 0..b {
                for (si, &ti) in tokens.iter().enumerate() {
                    let src = &rec[(bi * ts + si) * d..][..d];
                    spliced[(bi * t + ti) * d..(bi * t + ti + 1) * d].copy_from_slice(src);
                }
            }
            let spliced = Tensor::from_vec(spliced, (b, t, d), hidden.device())?;
            let pooled = ctx.backbone.finish_from(&spliced, ctx.layout.layer)?.pooled;
            let out = if is_eval {
                &mut self.eval_spliced
            } else {
                &mut self.fit_spliced
            };
            out.extend(pooled.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(())
    }

    /// Every figure of this variant; `clean` is the unspliced probe the drop is measured from.
    #[allow(clippy::too_many_arguments)]
    pub fn scores(
        &self,
        fit_labels: &[Option<usize>],
        eval_labels: &[Option<usize>],
        y_fit: &[usize],
        y_eval: &[usize],
        c: usize,
        clean: &ProbeScores,
        opts: &BenchmarkOptions,
    ) -> VariantScores {
        let spliced = opts.spliced.then(|| {
            fit_and_score(
                &rows_of(&self.fit_spliced, fit_labels, self.d_model),
                y_fit,
                &rows_of(&self.eval_spliced, eval_labels, self.d_model),
                y_eval,
                self.d_model,
                c,
                &opts.probe,
            )
        });
        let probe = sparse_probe(
            &labelled(&self.fit_codes, fit_labels),
            y_fit,
            &labelled(&self.eval_codes, eval_labels),
            y_eval,
            c,
            self.d_sae,
            opts.probe_latents,
            &opts.probe,
        );
        VariantScores {
            width: self.d_sae,
            reconstruction: self.recon.finish(),
            spliced_accuracy: spliced
                .as_ref()
                .map(|s| Estimate::proportion(s.accuracy, y_eval.len())),
            spliced_drop: spliced.as_ref().map(|s| clean.accuracy - s.accuracy),
            sparse_probe: Estimate::proportion(probe.accuracy, y_eval.len()),
            sparse_probe_latents: probe.latents,
            monosemanticity: self.mono.finish(),
            morans_i: self.spatial.as_ref().and_then(Spatial::finish),
        }
    }
}

/// The rows of `codes` whose image has a class.
fn labelled(codes: &SparseCodes, labels: &[Option<usize>]) -> SparseCodes {
    let mut out = empty_codes();
    for (r, l) in labels.iter().enumerate() {
        if l.is_some() {
            for (j, v) in codes.row(r) {
                out.ids.push(j);
                out.vals.push(v);
            }
            out.row_start.push(out.ids.len());
        }
    }
    out
}
