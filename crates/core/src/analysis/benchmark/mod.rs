//! The SAE benchmark (`saescope eval`): the metrics vision-SAE papers report, for each SAE of a
//! workspace beside two controls at its width and sparsity (see [`controls`]), on images the
//! probes are fit on (`fit`) and images everything is scored on (`eval`):
//! - reconstruction: FVE, NMSE, L0, dead and dense latents ([`recon`]);
//! - downstream preservation: the linear probe on the model's pooled output with the tapped
//!   layer replaced by the reconstruction (the spliced probe of `saescope probe`);
//! - sparse probing: the class from the top-k latents alone ([`sparse_probe`]);
//! - monosemanticity (Pach et al. 2025) under the model's own pooled output ([`mono`]);
//! - spatial coherence: Moran's I of each latent's patch map ([`spatial`]).
//!
//! A metric on which the trained SAE does not beat both controls by two standard errors is
//! reported as not separating ([`Verdict`]).

pub mod controls;
pub mod estimate;
pub mod mono;
#[cfg(test)]
mod planted_tests;
pub mod recon;
mod report;
pub mod sparse_probe;
pub mod spatial;
mod variant;

pub use estimate::Estimate;
pub use report::{BenchmarkReport, SaeBenchmark, VariantScores, Verdict, csv};

use crate::analysis::probe::{ProbeOptions, fit_and_score};
use crate::backbone::{Backbone, TokenKind};
use crate::error::{Error, Result};
use crate::job::{Job, Progress};
use crate::sae::Sae;
use crate::store::activations::ActivationStore;
use crate::store::reuse::{HiddenBatch, LayerActivations};
use crate::store::{Dataset, Workspace};
use std::path::Path;
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct BenchmarkOptions {
    /// Images per forward batch.
    pub batch: usize,
    /// The linear probes' options (L2 grid search on a held-out fifth of the fit images).
    pub probe: ProbeOptions,
    /// Latents the sparse probe reads.
    pub probe_latents: usize,
    /// Run the spliced probe (the costly part: the model's last blocks once per SAE and control).
    pub spliced: bool,
    /// Training rows the controls' sparsity and the PCA basis are taken from.
    pub sample_rows: usize,
    /// Seed of the untrained control's initialisation.
    pub seed: u64,
}

impl Default for BenchmarkOptions {
    fn default() -> Self {
        BenchmarkOptions {
            batch: 32,
            probe: ProbeOptions::default(),
            probe_latents: 16,
            spliced: true,
            sample_rows: 50_000,
            seed: 0,
        }
    }
}

/// What a benchmark runs over.
pub struct Inputs<'a> {
    pub ws: &'a Workspace,
    pub backbone: &'a dyn Backbone,
    /// The SAEs, by name.
    pub saes: Vec<(String, Sae)>,
    /// Labelled images the probes are fit on.
    pub fit: &'a Path,
    /// Images everything is scored on.
    pub eval: &'a Path,
    /// Other workspaces whose stores hold these images' activations at this layer.
    pub stores: Vec<std::path::PathBuf>,
}

/// The readable images of one folder, their classes (fit-class indices) and clean pooled output.
struct Split {
    ds: Dataset,
    ids: Vec<usize>,
    labels: Vec<Option<usize>>,
    pooled: Vec<f32>,
}

/// Token layout shared by every pass: which selected rows are patches, and where.
pub(crate) struct Layout {
    pub tokens: Vec<usize>,
    /// Per selected token: its patch index in the row-major grid, None for CLS/registers.
    pub patch: Vec<Option<u32>>,
    /// (h, w) when every patch is selected, so maps can be drawn.
    pub grid: Option<(usize, usize)>,
    pub layer: usize,
}

pub fn benchmark(inputs: &Inputs, opts: &BenchmarkOptions, job: &Job) -> Result<BenchmarkReport> {
    let start = Instant::now();
    let Inputs {
        ws, backbone, saes, ..
    } = inputs;
    if saes.is_empty() {
        return Err(Error::Invalid("no SAE to benchmark".into()));
    }
    let d_model = backbone.info().d_model;
    for (name, sae) in saes {
        sae.check_fits(d_model, &format!("SAE {name}"))?;
    }
    let layout = layout(ws)?;
    let mut stores = vec![Workspace::open(&ws.dir)?];
    for dir in &inputs.stores {
        stores.push(Workspace::open(dir)?);
    }
    let source = LayerActivations::new(*backbone, layout.layer, &stores)?;
    let fit_ds = Dataset::scan(inputs.fit)?;
    let eval_ds = Dataset::scan(inputs.eval)?;
    let classes = fit_ds.classes.clone();
    if classes.len() < 2 {
        return Err(crate::fixable!(
            [
                inputs.fit,
                ": the probes need at least two class sub-folders"
            ],
            ["give a folder laid out as <folder>/<class>/<image>"]
        ));
    }
    let read = |ds, what| clean_split(ds, &classes, *backbone, &source, &layout, opts, job, what);
    let fit = read(fit_ds, "fit images")?;
    let eval = read(eval_ds, "eval images")?;
    let labelled_eval = eval.labels.iter().filter(|l| l.is_some()).count();
    if labelled_eval == 0 {
        return Err(crate::fixable!(
            [
                inputs.eval,
                ": no image sits in a class sub-folder named like the fit folder's"
            ],
            [
                "give evaluation images laid out as <folder>/<class>/<image>, classes as in the fit folder"
            ]
        ));
    }
    let (y_fit, y_eval) = (labels_of(&fit), labels_of(&eval));
    let c = classes.len();
    let clean = fit_and_score(
        &rows_of(&fit.pooled, &fit.labels, d_model),
        &y_fit,
        &rows_of(&eval.pooled, &eval.labels, d_model),
        &y_eval,
        d_model,
        c,
        &opts.probe,
    );
    let sample = training_sample(ws, opts.sample_rows)?;
    let pca = controls::pca(&sample, d_model, 1)?;
    let mut results = Vec::new();
    for (name, sae) in saes {
        let k = controls::matched_k(sae, &sample);
        let untrained = controls::untrained(sae, k, &sample, opts.seed);
        let mut pca = pca.clone();
        pca.activation = crate::sae::SaeActivation::TopK { k: k.min(d_model) };
        let mut scores = Vec::new();
        for (what, s) in [("trained", sae), ("untrained", &untrained), ("pca", &pca)] {
            let ctx = variant::Context {
                layout: &layout,
                source: &source,
                backbone: *backbone,
                opts,
                job,
                label: format!("{name} ({what})"),
            };
            let v = variant::run(
                &ctx,
                s,
                (&fit.ds, &fit.ids),
                (&eval.ds, &eval.ids),
                &eval.pooled,
            )?;
            scores.push(v.scores(&fit.labels, &eval.labels, &y_fit, &y_eval, c, &clean, opts));
        }
        let [trained, untrained, pca]: [VariantScores; 3] = scores
            .try_into()
            .map_err(|_| Error::Invalid("three variants expected".into()))?;
        results.push(SaeBenchmark::new(name, sae, k, trained, untrained, pca));
    }
    Ok(BenchmarkReport {
        layer: layout.layer,
        fit_images: inputs.fit.to_path_buf(),
        eval_images: inputs.eval.to_path_buf(),
        classes,
        n_fit: y_fit.len(),
        n_eval: eval.ids.len(),
        n_eval_labelled: y_eval.len(),
        embedding: format!(
            "the pooled final output of {}, one vector per image",
            ws.config.model.source
        ),
        chance: majority_share(&y_eval, c),
        clean_accuracy: Estimate::proportion(clean.accuracy, y_eval.len()),
        sample_rows: sample.len() / d_model,
        saes: results,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn layout(ws: &Workspace) -> Result<Layout> {
    let g = ws.config.backbone.geometry;
    let tokens = g.select(ws.config.tokens)?;
    let patch: Vec<Option<u32>> = tokens
        .iter()
        .map(|&t| match g.kind(t) {
            TokenKind::Patch { row, col } => Some((row * g.grid_w + col) as u32),
            _ => None,
        })
        .collect();
    let patches = patch.iter().flatten().count();
    Ok(Layout {
        grid: (patches == g.grid_h * g.grid_w && patches > 1).then_some((g.grid_h, g.grid_w)),
        tokens,
        patch,
        layer: ws.config.layer,
    })
}

/// Reads a folder's images once: which are readable, their classes, their clean pooled output.
#[allow(clippy::too_many_arguments)]
fn clean_split(
    ds: Dataset,
    classes: &[String],
    backbone: &dyn Backbone,
    source: &LayerActivations,
    layout: &Layout,
    opts: &BenchmarkOptions,
    job: &Job,
    what: &str,
) -> Result<Split> {
    let all: Vec<usize> = (0..ds.len()).collect();
    let (mut ids, mut labels, mut pooled) = (Vec::new(), Vec::new(), Vec::new());
    for (n, chunk) in all.chunks(opts.batch.max(1)).enumerate() {
        job.check()?;
        let HiddenBatch { hidden, ok, .. } = source.batch(&ds, chunk)?;
        if let Some(hidden) = hidden {
            let p = backbone.finish_from(&hidden, layout.layer)?.pooled;
            pooled.extend(p.flatten_all()?.to_vec1::<f32>()?);
            for &i in &ok {
                let class = ds.class_name(i);
                labels.push(class.and_then(|c| classes.iter().position(|k| k == c)));
            }
            ids.extend(ok);
        }
        job.report(Progress {
            done: ((n + 1) * opts.batch.max(1)).min(ds.len()) as u64,
            total: ds.len() as u64,
            unit: "images",
            message: what.into(),
        });
    }
    if ids.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: no readable images",
            ds.root.display()
        )));
    }
    Ok(Split {
        ds,
        ids,
        labels,
        pooled,
    })
}

fn labels_of(s: &Split) -> Vec<usize> {
    s.labels.iter().flatten().copied().collect()
}

/// The rows [n, d] of the images that have a class.
pub(crate) fn rows_of(x: &[f32], labels: &[Option<usize>], d: usize) -> Vec<f32> {
    x.chunks(d)
        .zip(labels)
        .filter(|(_, l)| l.is_some())
        .flat_map(|(r, _)| r.iter().copied())
        .collect()
}

fn majority_share(y: &[usize], c: usize) -> f64 {
    let mut n = vec![0usize; c];
    y.iter().for_each(|&k| n[k] += 1);
    *n.iter().max().unwrap_or(&0) as f64 / y.len().max(1) as f64
}

/// An SAE's reconstruction (FVE, NMSE, L0, dead and dense shares) on up to `rows` of the
/// workspace's stored rows, strided evenly over its shards: the figures of an SAE loaded from
/// elsewhere, which has no training report. Folds are blocks of 512 rows in the order read.
/// Returns the scores and the rows they were measured on.
pub fn store_fit(ws: &Workspace, sae: &Sae, rows: usize) -> Result<(recon::ReconScores, usize)> {
    let d = sae.d_in;
    let d_model = ActivationStore::open(&ws.activations_dir())?
        .manifest
        .d_model;
    sae.check_fits(d_model, "the workspace's activations")?;
    let sample = training_sample(ws, rows)?;
    let mut r = recon::Reconstruction::new(d, sae.d_sae);
    for (block, x) in sample.chunks(512 * d).enumerate() {
        let codes = sae.encode_sparse(x);
        let rec = variant::decode_sparse(sae, &codes);
        r.add_image(block, x, &rec, &codes.ids, codes.rows());
    }
    Ok((r.finish(), sample.len() / d.max(1)))
}

/// Up to `rows` training rows, evenly strided over up to eight evenly spaced shards (the first
/// shard alone may hold a single class).
fn training_sample(ws: &Workspace, rows: usize) -> Result<Vec<f32>> {
    let store = ActivationStore::open(&ws.activations_dir())?;
    let shards = store.manifest.shards.len();
    if shards == 0 {
        return Err(crate::store::activations::unfinished(&ws.dir));
    }
    let picks: Vec<usize> = (0..shards.min(8))
        .map(|i| i * shards / shards.min(8))
        .collect();
    let per_shard = rows.div_ceil(picks.len()).max(1);
    let mut out = Vec::new();
    for i in picks {
        let data = store.read_shard(i)?;
        let step = (data.rows() / per_shard).max(1);
        for r in (0..data.rows()).step_by(step).take(per_shard) {
            out.extend_from_slice(data.row(r));
        }
    }
    Ok(out)
}
