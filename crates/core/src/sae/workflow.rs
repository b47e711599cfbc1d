//! SAE jobs over a workspace: `train` streams shuffled batches from the activation shards into
//! the TopK trainer (memory bounded by the shuffle buffer), logs metrics and saves the SAE in
//! the native format; `evaluate` runs the backbone on an image folder, replaces the tapped layer
//! by the SAE reconstruction and reports FVE, MSE, L0, dead/dense fractions and spliced accuracy.

use super::checkpoint::{self, RunSettings};
use super::formats::{load_sae, save_saelens};
use super::train::{DecoderKind, DeviceTrainer, TrainArch, TrainConfig, Trainer};
use super::{Sae, SaeMeta};
use crate::backbone::{Backbone, argmax_last};
use crate::error::{Error, Result};
use crate::job::{Job, Progress};
use crate::rng::Rng;
use crate::store::Dataset;
use crate::store::Workspace;
use crate::store::activations::ActivationStore;
use crate::store::reuse::{HiddenBatch, LayerActivations};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub const SAE_DIR: &str = "sae";
pub const METRICS_FILE: &str = "metrics.jsonl";

#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub arch: TrainArch,
    pub d_sae: usize,
    /// Active latents per token (TopK; BatchTopK on average).
    pub k: usize,
    /// Training tokens (rows); default: 10 passes over the store.
    pub tokens: Option<u64>,
    pub batch: usize,
    pub lr: f32,
    pub seed: u64,
    /// Scale activations so their mean norm is √d_in (SAELens `expected_average_only_in`);
    /// recorded in the checkpoint and folded into the saved weights.
    pub normalize: bool,
    /// Rows held for shuffling (bounds memory: buffer_rows × d_in × 4 bytes plus one shard).
    pub buffer_rows: usize,
    /// Checkpoint every this many steps; `None`: every 60 s of training.
    pub checkpoint_every: Option<u64>,
    /// Discard an unfinished run's checkpoint instead of resuming it.
    pub restart: bool,
    /// Each CLS row is drawn this many times as often as a patch row (1 = as stored). A store
    /// holds one CLS row per 256 patch rows, so an SAE spends little of its budget on the CLS
    /// token, which is what a pooled read-out (the probe, a classifier head) depends on.
    pub cls_weight: u32,
    /// The SAE's folder name under `WS/saes/`; default from the settings (see [`Self::name`]).
    pub name: Option<String>,
    /// Train only on the stored rows of the images under this folder (matched by file, links
    /// followed), e.g. to hold images out of the SAE's training for a selection split.
    pub images: Option<PathBuf>,
    /// Where the training steps run: the CPU trainer's sparse kernels on `Device::Cpu`, the
    /// device trainer (candle ops, dense codes) elsewhere. Checkpoints, metrics and resume are
    /// the same either way, so a run may resume on another device.
    pub device: Device,
}

impl TrainOptions {
    /// The SAE's name: given, or `{arch}-{d_sae}-k{k}` (`-cls{w}` with a CLS weight, `-seed{s}`
    /// with another seed).
    pub fn name(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        let arch = match self.arch {
            TrainArch::TopK => "topk",
            TrainArch::BatchTopK => "batchtopk",
            TrainArch::Relu { .. } => "relu",
        };
        let mut name = format!("{arch}-{}", self.d_sae);
        if !matches!(self.arch, TrainArch::Relu { .. }) {
            name.push_str(&format!("-k{}", self.k));
        }
        if self.cls_weight > 1 {
            name.push_str(&format!("-cls{}", self.cls_weight));
        }
        if self.seed != 0 {
            name.push_str(&format!("-seed{}", self.seed));
        }
        if let Some(dir) = &self.images {
            let folder = dir.file_name().map(|f| f.to_string_lossy().into_owned());
            name.push_str(&format!(
                "-on-{}",
                folder.unwrap_or_else(|| "subset".into())
            ));
        }
        name
    }

    /// Checks every option before any work or write: each error names the option, its valid
    /// range and the value given. `d_in` is the store's width (for the memory estimate).
    pub fn validate(&self, d_in: usize) -> Result<()> {
        let bad = |what: String| Err(Error::Invalid(what));
        if self.d_sae == 0 {
            return bad("--d-sae must be at least 1 (got 0)".into());
        }
        if matches!(self.arch, TrainArch::TopK | TrainArch::BatchTopK)
            && !(1..=self.d_sae).contains(&self.k)
        {
            return bad(format!(
                "--k must be between 1 and --d-sae ({}) (got {})",
                self.d_sae, self.k
            ));
        }
        if self.batch == 0 {
            return bad("--batch must be at least 1 (got 0)".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!(
                "--lr must be a finite number above 0, e.g. 4e-4 (got {})",
                self.lr
            ));
        }
        if self.tokens == Some(0) {
            return bad("--tokens must be at least 1 (got 0)".into());
        }
        if !(1..=1024).contains(&self.cls_weight) {
            return bad(format!(
                "--cls-weight must be between 1 and 1024 (got {})",
                self.cls_weight
            ));
        }
        if self.checkpoint_every == Some(0) {
            return bad("the checkpoint interval must be at least 1 step (got 0)".into());
        }
        // Weights (encoder, decoder) and Adam's two moments for each, plus one batch's codes.
        let need =
            4.0 * (6.0 * d_in as f64 * self.d_sae as f64 + 2.0 * (self.batch * self.d_sae) as f64);
        if let Some(avail) = crate::memory::available_bytes()
            && need > 0.9 * avail as f64
        {
            return bad(format!(
                "--d-sae {} with --batch {} needs about {:.1} GB for weights, optimiser state \
                 and codes, but {:.1} GB of memory is available: lower --d-sae or --batch",
                self.d_sae,
                self.batch,
                need / 1e9,
                avail as f64 / 1e9
            ));
        }
        Ok(())
    }

    /// Defaults for a TopK SAE of `d_sae` latents and `k` active per token.
    pub fn topk(d_sae: usize, k: usize) -> Self {
        TrainOptions {
            arch: TrainArch::TopK,
            d_sae,
            k,
            tokens: None,
            batch: 4096,
            lr: 1e-3,
            seed: 0,
            normalize: false,
            buffer_rows: 1 << 18,
            checkpoint_every: None,
            restart: false,
            cls_weight: 1,
            name: None,
            images: None,
            device: Device::Cpu,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainReport {
    pub sae: String,
    pub arch: TrainArch,
    pub steps: u64,
    pub tokens: u64,
    /// Step the run resumed from (0 for a fresh run).
    pub resumed_from_step: u64,
    pub seconds: f64,
    pub tokens_per_s: f64,
    pub final_loss: f32,
    pub final_fve: f64,
    pub final_l0: f64,
    pub dead_fraction: f64,
    pub input_scale: Option<f32>,
    /// BatchTopK: the learned inference threshold.
    pub threshold: Option<f32>,
    /// How many times as often each CLS row was drawn as a patch row.
    pub cls_weight: u32,
    /// Stored images the SAE was trained on (all of the store's unless `--images` was given).
    #[serde(default)]
    pub images: usize,
    /// The folder given with `--images`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images_from: Option<String>,
    /// The SAE's name in the workspace (`saes/<name>/`; empty outside a workspace).
    #[serde(default)]
    pub name: String,
    /// True when this SAE had already been trained with these settings: nothing was run, and
    /// this is the report of that run.
    #[serde(default)]
    pub already_trained: bool,
    /// Where the steps ran (`cpu`, `cuda:0`, `metal:0`).
    #[serde(default = "cpu_name")]
    pub device: String,
}

fn cpu_name() -> String {
    "cpu".into()
}

/// What a finished training run leaves beside its SAE (`train.json`): the settings it ran with
/// and its report, so a re-run with the same settings reports it instead of training again.
#[derive(Serialize, Deserialize)]
struct FinishedRun {
    settings: RunSettings,
    report: TrainReport,
}

const FINISHED_FILE: &str = "train.json";

/// The dataset images a run trains on when it is not every stored image (`--images`).
pub struct ImageSubset {
    /// Dataset image ids.
    pub ids: HashSet<u32>,
    /// The folder they were given by, and how many of the workspace's images it holds.
    pub label: String,
}

/// Random batches from all shards, reading one shard at a time into a bounded shuffle buffer.
struct ShuffleStream<'a> {
    store: &'a ActivationStore,
    rng: Rng,
    order: Vec<usize>,
    next_shard: usize,
    buffer: Vec<f32>,
    d: usize,
    cap_rows: usize,
    /// (position of the CLS row among an image's rows, extra copies of it per image).
    cls_extra: Option<(usize, usize)>,
    /// Only these images' rows are drawn.
    subset: Option<&'a HashSet<u32>>,
    /// Rows added since the current pass over the shards began (a pass adding none means the
    /// subset holds no stored image, which would otherwise loop forever).
    rows_this_pass: usize,
}

impl<'a> ShuffleStream<'a> {
    fn new(
        store: &'a ActivationStore,
        seed: u64,
        cap_rows: usize,
        cls_extra: Option<(usize, usize)>,
        subset: Option<&'a HashSet<u32>>,
    ) -> Self {
        ShuffleStream {
            store,
            rng: Rng::new(seed ^ 0x5eed),
            order: Vec::new(),
            next_shard: 0,
            buffer: Vec::new(),
            d: store.manifest.d_model,
            cap_rows,
            cls_extra,
            subset,
            rows_this_pass: 0,
        }
    }

    fn refill(&mut self) -> Result<()> {
        let per_image = self.store.manifest.tokens_per_image().max(1);
        while self.buffer.len() / self.d < self.cap_rows {
            if self.next_shard >= self.order.len() {
                // New pass: shuffle the shard order.
                self.order = (0..self.store.manifest.shards.len()).collect();
                for i in (1..self.order.len()).rev() {
                    let j = self.rng.below(i + 1);
                    self.order.swap(i, j);
                }
                self.next_shard = 0;
                self.rows_this_pass = 0;
            }
            let Some(&next) = self.order.get(self.next_shard) else {
                return Err(Error::Workspace("the activation store is empty".into()));
            };
            let shard = self.store.read_shard(next)?;
            self.next_shard += 1;
            // `image_ids` has one entry per stored image; its rows are `per_image` consecutive rows.
            let rows: Vec<&[f32]> = shard
                .activations
                .chunks(per_image * self.d)
                .zip(&shard.image_ids)
                .filter(|(_, id)| self.subset.is_none_or(|s| s.contains(id)))
                .map(|(rows, _)| rows)
                .collect();
            for image in rows {
                self.buffer.extend_from_slice(image);
                self.rows_this_pass += image.len() / self.d;
                if let Some((pos, extra)) = self.cls_extra {
                    let cls = &image[pos * self.d..(pos + 1) * self.d];
                    for _ in 0..extra {
                        self.buffer.extend_from_slice(cls);
                    }
                }
            }
            if self.next_shard == self.order.len() && self.rows_this_pass == 0 {
                return Err(Error::Workspace(
                    "none of the images chosen for training is in the activation store \
                     (all were skipped at extraction)"
                        .into(),
                ));
            }
            if self.store.manifest.shards.len() == 1 || self.buffer.len() / self.d >= self.cap_rows
            {
                break;
            }
        }
        Ok(())
    }

    /// Removes `n` random rows from the buffer (swap-remove), refilling it as needed.
    fn batch(&mut self, n: usize, out: &mut Vec<f32>) -> Result<()> {
        out.clear();
        let d = self.d;
        for _ in 0..n {
            if self.buffer.len() < d * n.max(self.cap_rows / 2).min(self.cap_rows) {
                self.refill()?;
            }
            let rows = self.buffer.len() / d;
            if rows == 0 {
                return Err(Error::Workspace("the activation store is empty".into()));
            }
            let r = self.rng.below(rows);
            out.extend_from_slice(&self.buffer[r * d..(r + 1) * d]);
            let last = rows - 1;
            if r != last {
                let (head, tail) = self.buffer.split_at_mut(last * d);
                head[r * d..(r + 1) * d].copy_from_slice(&tail[..d]);
            }
            self.buffer.truncate(last * d);
        }
        Ok(())
    }
}

/// Trains an SAE into `WS/saes/<name>/` and makes it the workspace's active SAE. Never replaces
/// another SAE: a finished one of that name with the same settings is reported as trained, one
/// with other settings is an error asking for another `--name`. The caller holds the workspace's
/// writer lock (`saescope-ops` takes it).
pub fn train(
    ws: &Workspace,
    _held: &crate::store::lock::WriterLock,
    opts: &TrainOptions,
    job: &Job,
) -> Result<TrainReport> {
    let name = opts.name();
    crate::store::workspace::check_sae_name(&name)?;
    let home = ws.sae_dir(&name);
    let store = ActivationStore::open(&ws.activations_dir())?;
    if !store.manifest.is_complete() {
        return Err(Error::Workspace(format!(
            "{}: extraction is not finished; re-run `saescope extract` to complete it",
            ws.dir.display()
        )));
    }
    let meta = SaeMeta {
        model_name: Some(ws.config.model.source.clone()),
        hook_name: Some(format!("blocks.{}.hook_resid_post", ws.config.layer)),
        pos_interpolation: ws
            .config
            .backbone
            .pos_interpolation
            .map(|p| p.as_str().to_string()),
        ..Default::default()
    };
    // Where the CLS row sits among each image's stored rows (token 0, when the model has one).
    let cls_row = ws
        .config
        .backbone
        .geometry
        .has_cls
        .then(|| store.manifest.token_indices.iter().position(|&t| t == 0))
        .flatten();
    let subset = match &opts.images {
        Some(dir) => Some(image_subset(ws, dir)?),
        None => None,
    };
    let mut report = train_on_store(&store, &home, meta, cls_row, subset.as_ref(), opts, job)?;
    report.name = name.clone();
    ws.set_active_sae(&name)?;
    Ok(report)
}

/// The workspace's images under `dir` (its files or links to them), for `--images`.
fn image_subset(ws: &Workspace, dir: &Path) -> Result<ImageSubset> {
    let wanted: HashSet<PathBuf> = {
        let given = Dataset::scan(dir)?;
        (0..given.len())
            .filter_map(|i| given.abs_path(i).canonicalize().ok())
            .collect()
    };
    let ds = ws.dataset()?;
    let ids: HashSet<u32> = (0..ds.len())
        .filter(|&i| {
            ds.abs_path(i)
                .canonicalize()
                .is_ok_and(|p| wanted.contains(&p))
        })
        .map(|i| i as u32)
        .collect();
    if ids.is_empty() {
        return Err(Error::Invalid(format!(
            "--images {}: none of its {} images is one of this workspace's images (extracted from \
             {}); give a folder of the workspace's image files or links to them",
            dir.display(),
            wanted.len(),
            ds.root.display()
        )));
    }
    Ok(ImageSubset {
        label: format!("{} ({} images)", dir.display(), ids.len()),
        ids,
    })
}

/// Trains on any complete activation store, checkpointing into (and saving the SAE to) `sae_dir`.
/// `cls_row`: the CLS row's position among each image's rows, if the store holds it; `subset`:
/// the images to train on, when not all of the store's.
pub fn train_on_store(
    store: &ActivationStore,
    sae_dir: &Path,
    meta: SaeMeta,
    cls_row: Option<usize>,
    subset: Option<&ImageSubset>,
    opts: &TrainOptions,
    job: &Job,
) -> Result<TrainReport> {
    let d_in = store.manifest.d_model;
    opts.validate(d_in)?;
    let cls_extra = match (opts.cls_weight, cls_row) {
        (1, _) => None,
        (w, Some(pos)) => Some((pos, w as usize - 1)),
        (_, None) => {
            return Err(Error::Invalid(
                "--cls-weight needs a store holding the CLS token: a model with a CLS token, \
                 extracted with --tokens all or cls"
                    .into(),
            ));
        }
    };
    let stored_images: usize = store.manifest.shards.iter().map(|s| s.images).sum();
    let images = subset.map_or(stored_images, |s| s.ids.len().min(stored_images));
    let total_rows = match subset {
        Some(_) => (images * store.manifest.tokens_per_image()) as u64,
        None => store.manifest.rows() as u64,
    };
    let tokens = opts.tokens.unwrap_or(total_rows * 10);
    let steps = tokens.div_ceil(opts.batch as u64);
    let settings = RunSettings {
        arch: opts.arch,
        d_sae: opts.d_sae,
        k: opts.k,
        tokens,
        batch: opts.batch,
        lr: opts.lr,
        seed: opts.seed,
        normalize: opts.normalize,
        cls_weight: opts.cls_weight,
        images: subset.map(|s| s.label.clone()),
    };
    if sae_dir.join("cfg.json").is_file() {
        let finished: Option<FinishedRun> =
            crate::fsutil::read_json(&sae_dir.join(FINISHED_FILE)).ok();
        return match finished {
            Some(f) if f.settings == settings => Ok(TrainReport {
                already_trained: true,
                ..f.report
            }),
            _ => Err(Error::Workspace(format!(
                "{} already holds an SAE trained with other settings (or imported); it is kept: \
                 give this run another --name",
                sae_dir.display()
            ))),
        };
    }
    std::fs::create_dir_all(sae_dir).map_err(|e| Error::io(sae_dir, e))?;
    let previous = checkpoint::read_index(sae_dir)?;
    if let Some(p) = &previous
        && p.settings != settings
        && !opts.restart
    {
        return Err(Error::Workspace(format!(
            "{}: an unfinished training run with other settings ({}) is checkpointed there; \
                 re-run with those settings to resume it, or pass --restart to discard it",
            sae_dir.display(),
            serde_json::to_string(&p.settings).unwrap_or_default()
        )));
    }
    let resume = previous.filter(|p| p.settings == settings && !opts.restart);
    if resume.is_none() {
        checkpoint::remove(sae_dir)?;
    }
    let resumed_from_step = resume.as_ref().map_or(0, |p| p.step);
    // A resumed run draws a fresh shuffle stream; it is deterministic given where it resumed.
    let stream_seed = opts.seed ^ resumed_from_step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut stream = ShuffleStream::new(
        store,
        stream_seed,
        opts.buffer_rows,
        cls_extra,
        subset.map(|s| &s.ids),
    );
    let mut batch = Vec::new();
    stream.batch(opts.batch.min(4096), &mut batch)?;
    let input_scale = match &resume {
        Some(p) => p.input_scale,
        // √d_in / mean‖x‖, from the first sample.
        None if opts.normalize => {
            let rows = batch.len() / d_in;
            let mean_norm = batch
                .chunks(d_in)
                .map(|r| r.iter().map(|v| (v * v) as f64).sum::<f64>().sqrt())
                .sum::<f64>()
                / rows.max(1) as f64;
            Some(((d_in as f64).sqrt() / mean_norm.max(1e-12)) as f32)
        }
        None => None,
    };
    let scale = |b: &mut Vec<f32>| {
        if let Some(s) = input_scale {
            b.iter_mut().for_each(|v| *v *= s);
        }
    };
    scale(&mut batch);
    let cfg = match &resume {
        Some(p) => p.config.clone(),
        None => TrainConfig {
            arch: opts.arch,
            d_in,
            d_sae: opts.d_sae,
            k: opts.k,
            k_aux: if matches!(opts.arch, TrainArch::Relu { .. }) {
                0
            } else {
                (d_in / 2).min(opts.d_sae)
            },
            aux_coeff: 1.0 / 32.0,
            dead_after_tokens: (total_rows / 4).clamp(1, 10_000_000),
            lr: opts.lr,
            warmup_steps: (steps / 20).max(1),
            total_steps: steps,
            l1_warmup_steps: (steps / 20).max(1),
            seed: opts.seed,
        },
    };
    let mut trainer = Trainer::new(cfg, &batch);
    let mut seconds_before = 0.0;
    if let Some(p) = &resume {
        checkpoint::restore(sae_dir, p, &mut trainer)?;
        seconds_before = p.seconds;
    }
    let mut trainer = Steps::new(trainer, &opts.device)?;
    let metrics_path = sae_dir.join(METRICS_FILE);
    let mut metrics = open_metrics(&metrics_path, resumed_from_step)?;
    let crash_after: Option<u64> = std::env::var("SAESCOPE_CRASH_AFTER_CHECKPOINT")
        .ok()
        .and_then(|v| v.parse().ok());
    let mut checkpoints_written = 0u64;
    let start = Instant::now();
    let mut last_checkpoint = Instant::now();
    let (mut last_loss, mut last_fve, mut last_l0) = (0f32, 0f64, 0f64);
    for step in trainer.step()..steps {
        if let Err(e) = job.check() {
            // Cancelled: keep the progress so the next run resumes here.
            let secs = seconds_before + start.elapsed().as_secs_f64();
            checkpoint::save(sae_dir, trainer.synced()?, &settings, input_scale, secs)?;
            return Err(e);
        }
        stream.batch(opts.batch, &mut batch)?;
        scale(&mut batch);
        let g = trainer.train_step(&batch)?;
        last_loss = g.loss;
        last_fve = 1.0 - g.sq_err / batch_variance(&batch, d_in).max(1e-12);
        last_l0 = g.l0;
        if step % 20 == 0 || step + 1 == steps {
            let dead =
                trainer.dead_mask().iter().filter(|&&d| d).count() as f64 / opts.d_sae as f64;
            let line = serde_json::json!({"step": step, "tokens": trainer.tokens_seen(), "loss": g.loss, "aux_loss": g.aux_loss, "l1_loss": g.l1_loss, "fve": last_fve, "l0": last_l0, "dead_fraction": dead, "lr": trainer.lr_at(step)});
            let _ = writeln!(metrics, "{line}");
            job.report(Progress {
                done: step + 1,
                total: steps,
                unit: "steps",
                message: format!(
                    "loss {:.4} · FVE {:.3} · L0 {:.1} · dead {:.1}%",
                    g.loss,
                    last_fve,
                    last_l0,
                    dead * 100.0
                ),
            });
        }
        let due = match opts.checkpoint_every {
            Some(n) => trainer.step().is_multiple_of(n.max(1)),
            None => last_checkpoint.elapsed().as_secs() >= 60,
        };
        if due && step + 1 < steps {
            let _ = metrics.flush();
            let secs = seconds_before + start.elapsed().as_secs_f64();
            checkpoint::save(sae_dir, trainer.synced()?, &settings, input_scale, secs)?;
            last_checkpoint = Instant::now();
            checkpoints_written += 1;
            if crash_after == Some(checkpoints_written) {
                // Fault injection for the resume test: die like a killed process would.
                std::process::abort();
            }
        }
    }
    let trainer = trainer.synced()?;
    let dead = trainer.dead_mask().iter().filter(|&&d| d).count() as f64 / opts.d_sae as f64;
    let mut sae = trainer.to_sae(SaeMeta {
        source_format: Some("saelens".into()),
        cls_weight: (opts.cls_weight > 1).then_some(opts.cls_weight),
        training_images: subset.map(|s| s.label.clone()),
        ..meta
    });
    sae.input_scale = input_scale;
    save_saelens(&sae, sae_dir)?;
    checkpoint::remove(sae_dir)?;
    let seconds = seconds_before + start.elapsed().as_secs_f64();
    let run_tokens = trainer.tokens_seen - resumed_from_step * opts.batch as u64;
    let report = TrainReport {
        sae: sae_dir.display().to_string(),
        arch: opts.arch,
        steps,
        tokens: trainer.tokens_seen,
        resumed_from_step,
        seconds,
        tokens_per_s: run_tokens as f64 / start.elapsed().as_secs_f64().max(1e-9),
        final_loss: last_loss,
        final_fve: last_fve,
        final_l0: last_l0,
        dead_fraction: dead,
        input_scale,
        threshold: matches!(opts.arch, TrainArch::BatchTopK).then_some(trainer.threshold),
        cls_weight: opts.cls_weight,
        images,
        images_from: opts.images.as_ref().map(|d| d.display().to_string()),
        name: String::new(),
        already_trained: false,
        device: crate::device::name(&opts.device),
    };
    // After the SAE itself: a crash in between leaves an SAE that a re-run will not replace.
    crate::fsutil::write_json_atomic(
        &sae_dir.join(FINISHED_FILE),
        &FinishedRun {
            settings,
            report: report.clone(),
        },
    )?;
    Ok(report)
}

/// What the metrics read from one training step.
struct StepStats {
    loss: f32,
    aux_loss: f32,
    l1_loss: f32,
    sq_err: f64,
    /// Active latents per row, on average.
    l0: f64,
}

/// The training steps: the CPU trainer, or a device trainer whose state is written back into
/// the CPU one for checkpoints and the saved SAE.
struct Steps {
    cpu: Trainer,
    device: Option<DeviceTrainer>,
}

impl Steps {
    /// On a GPU the codes are dense: GEMMs are what it is fast at, while candle's CUDA
    /// `index_add` (the sparse form's gradient scatter) runs one thread per column.
    fn new(cpu: Trainer, device: &Device) -> Result<Self> {
        let device = match device.is_cpu() {
            true => None,
            false => Some(DeviceTrainer::new(&cpu, device, DecoderKind::Dense)?),
        };
        Ok(Steps { cpu, device })
    }

    fn train_step(&mut self, batch: &[f32]) -> Result<StepStats> {
        Ok(match &mut self.device {
            None => {
                let g = self.cpu.train_step(batch);
                let rows = batch.len() / self.cpu.cfg.d_in;
                StepStats {
                    loss: g.loss,
                    aux_loss: g.aux_loss,
                    l1_loss: g.l1_loss,
                    sq_err: g.sq_err,
                    l0: g.values.iter().filter(|&&v| v > 0.0).count() as f64 / rows as f64,
                }
            }
            Some(d) => {
                let d_in = self.cpu.cfg.d_in;
                let x = Tensor::from_slice(batch, (batch.len() / d_in, d_in), d.device())?;
                let g = d.train_step(&x)?;
                StepStats {
                    loss: g.loss,
                    aux_loss: g.aux_loss,
                    l1_loss: g.l1_loss,
                    sq_err: g.sq_err,
                    l0: g.l0,
                }
            }
        })
    }

    fn step(&self) -> u64 {
        self.device.as_ref().map_or(self.cpu.step, |d| d.step())
    }

    fn tokens_seen(&self) -> u64 {
        self.device
            .as_ref()
            .map_or(self.cpu.tokens_seen, |d| d.tokens_seen())
    }

    fn lr_at(&self, step: u64) -> f32 {
        self.cpu.lr_at(step)
    }

    fn dead_mask(&self) -> Vec<bool> {
        match &self.device {
            None => self.cpu.dead_mask(),
            Some(d) => d.dead_mask(),
        }
    }

    /// The CPU trainer, holding the device trainer's state when there is one.
    fn synced(&mut self) -> Result<&Trainer> {
        if let Some(d) = &self.device {
            d.write_back(&mut self.cpu)?;
        }
        Ok(&self.cpu)
    }
}

/// Σ‖x − mean‖² over a batch (the FVE denominator).
fn batch_variance(batch: &[f32], d_in: usize) -> f64 {
    let rows = batch.len() / d_in;
    let mut mean = vec![0f64; d_in];
    for r in batch.chunks(d_in) {
        mean.iter_mut()
            .zip(r)
            .for_each(|(m, &v)| *m += v as f64 / rows as f64);
    }
    batch
        .chunks(d_in)
        .map(|r| {
            r.iter()
                .zip(&mean)
                .map(|(&v, m)| (v as f64 - m).powi(2))
                .sum::<f64>()
        })
        .sum()
}

/// The metrics log, truncated for a fresh run; for a resumed run, lines up to the resume step
/// are kept (those after it were computed after the checkpoint and are recomputed).
fn open_metrics(path: &Path, resumed_from_step: u64) -> Result<std::fs::File> {
    let keep: String = if resumed_from_step > 0 {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .ok()
                    .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                    .is_some_and(|s| s < resumed_from_step)
            })
            .map(|l| format!("{l}\n"))
            .collect()
    } else {
        String::new()
    };
    crate::fsutil::write_atomic(path, keep.as_bytes())?;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))
}

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

/// The folder of the SAE that `--sae` names: an SAE of the workspace by name or by its folder,
/// or (None) the active one. An SAE folder or file from elsewhere is imported first (copied into
/// `saes/<its file name>/`), because its analyses are written beside it.
pub fn sae_home(ws: &Workspace, sae_arg: Option<&Path>) -> Result<PathBuf> {
    match sae_arg {
        None => ws.sae_home(None),
        Some(p) => {
            if let Some(name) = plain_name(p)
                && ws.sae_dir(name).join("cfg.json").is_file()
            {
                return Ok(ws.sae_dir(name));
            }
            if !p.exists() {
                if plain_name(p).is_none() {
                    return Err(Error::Invalid(format!(
                        "{}: no such SAE file or folder",
                        p.display()
                    )));
                }
                // Neither a name nor a path: report it as a name (the error lists the SAEs).
                return ws.sae_home(Some(&p.to_string_lossy()));
            }
            // A SAELens weights file stands for its folder (and gives the SAE its name).
            let folder = crate::sae::formats::saelens_folder_of(p);
            let p = folder.as_deref().unwrap_or(p);
            let inside = std::fs::canonicalize(p)
                .ok()
                .zip(std::fs::canonicalize(ws.saes_dir()).ok())
                .is_some_and(|(p, saes)| p.parent() == Some(saes.as_path()));
            if inside {
                return Ok(p.to_path_buf());
            }
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "imported".into());
            import_sae(ws, p, &name)
        }
    }
}

/// The report of the finished training run that left the SAE in `home` (None for imported
/// SAEs, or ones trained before `train.json` was written).
pub fn finished_report(home: &Path) -> Option<TrainReport> {
    crate::fsutil::read_json::<FinishedRun>(&home.join(FINISHED_FILE))
        .ok()
        .map(|f| f.report)
}

/// A one-component path that can be an SAE name.
fn plain_name(p: &Path) -> Option<&str> {
    let mut c = p.components();
    match (c.next(), c.next()) {
        (Some(std::path::Component::Normal(n)), None) => n.to_str(),
        _ => None,
    }
}

/// Copies the SAE in `from` (any supported format) into `WS/saes/<name>/` in SAELens layout and
/// returns that folder. Importing the same weights again is a no-op; a different SAE under an
/// existing name is refused (nothing is overwritten).
pub fn import_sae(ws: &Workspace, from: &Path, name: &str) -> Result<PathBuf> {
    crate::store::workspace::check_sae_name(name)?;
    let sae = checked_sae(ws, &load_sae(from)?, from)?;
    let home = ws.sae_dir(name);
    if home.join("cfg.json").is_file() {
        let existing = load_sae(&home)?;
        if existing.fingerprint() == sae.fingerprint() {
            return Ok(home);
        }
        return Err(Error::Workspace(format!(
            "{} already holds another SAE called `{name}`; it is kept. Copy {} to a folder of \
             another name and pass that",
            ws.dir.display(),
            from.display()
        )));
    }
    save_saelens(&sae, &home)?;
    Ok(home)
}

/// The SAE that `--sae` names (see [`sae_home`]; a folder from elsewhere is read in place, not
/// imported), checked against the workspace's layer width and position interpolation.
pub fn workspace_sae(ws: &Workspace, sae_path: Option<&Path>) -> Result<Sae> {
    let p: PathBuf = match sae_path {
        None => ws.sae_home(None)?,
        Some(p) => match plain_name(p) {
            Some(name) if ws.sae_dir(name).join("cfg.json").is_file() => ws.sae_dir(name),
            _ if p.exists() => p.to_path_buf(),
            _ => ws.sae_home(Some(&p.to_string_lossy()))?,
        },
    };
    checked_sae(ws, &load_sae(&p)?, &p)
}

/// `sae` if it fits the workspace's layer (width, position interpolation).
fn checked_sae(ws: &Workspace, sae: &Sae, p: &Path) -> Result<Sae> {
    let sae = sae.clone();

    sae.check_fits(
        ws.config.backbone.d_model,
        &format!("layer {} of {}", ws.config.layer, ws.config.backbone.name),
    )?;
    let ws_interp = ws.config.backbone.pos_interpolation.map(|p| p.as_str());
    if let (Some(trained), Some(here)) = (sae.meta.pos_interpolation.as_deref(), ws_interp)
        && trained != here
    {
        return Err(Error::Invalid(format!(
            "{}: this SAE was trained on activations with `{trained}` position interpolation, but \
             the workspace uses `{here}`; re-extract with --pos-interpolation {trained}",
            p.display()
        )));
    }
    Ok(sae)
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
    let source = LayerActivations::new(backbone, layer, std::slice::from_ref(ws));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A store of 10 images × 4 tokens (row = [image id, token]; the CLS row, token 0, holds
    /// 100 + id) and 10,000 rows drawn from it by the shuffle stream.
    fn draws(
        cls_extra: Option<(usize, usize)>,
        subset: Option<&HashSet<u32>>,
    ) -> Result<Vec<[f32; 2]>> {
        let dir = tempfile::tempdir().unwrap();
        let (d, images, tokens) = (2, 10, 4);
        let mut rows = Vec::new();
        let mut ids = Vec::new();
        for i in 0..images {
            for t in 0..tokens {
                rows.extend([if t == 0 { 100.0 + i as f32 } else { i as f32 }, t as f32]);
            }
            ids.push(i as u32);
        }
        let store_dir = dir.path().join("acts");
        crate::store::activations::write_single_shard_store(&store_dir, &rows, d, &ids, images)
            .unwrap();
        let manifest = store_dir.join("manifest.json");
        let mut m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
        m["token_indices"] = serde_json::json!([0, 1, 2, 3]);
        std::fs::write(&manifest, m.to_string()).unwrap();
        let store = ActivationStore::open(&store_dir).unwrap();
        let mut stream = ShuffleStream::new(&store, 1, 64, cls_extra, subset);
        let mut out = Vec::new();
        let mut drawn = Vec::new();
        for _ in 0..200 {
            stream.batch(50, &mut out)?;
            drawn.extend(out.chunks(d).map(|r| [r[0], r[1]]));
        }
        Ok(drawn)
    }

    fn cls_share(cls_extra: Option<(usize, usize)>) -> f64 {
        let drawn = draws(cls_extra, None).unwrap();
        drawn.iter().filter(|r| r[0] >= 100.0).count() as f64 / drawn.len() as f64
    }

    #[test]
    fn cls_weight_draws_cls_rows_that_many_times_as_often() {
        let plain = cls_share(None);
        assert!((plain - 0.25).abs() < 0.03, "1 CLS row in 4: {plain}");
        // Weight 4: 4 CLS draws for every 3 patch rows of an image.
        let weighted = cls_share(Some((0, 3)));
        assert!((weighted - 4.0 / 7.0).abs() < 0.03, "4 in 7: {weighted}");
    }

    #[test]
    fn an_image_subset_draws_only_its_images_rows() {
        let subset: HashSet<u32> = [2, 7].into();
        let drawn = draws(Some((0, 1)), Some(&subset)).unwrap();
        let image = |r: &[f32; 2]| (r[0] as u32) % 100;
        assert!(drawn.iter().all(|r| subset.contains(&image(r))));
        for id in [2, 7] {
            let n = drawn.iter().filter(|r| image(r) == id).count();
            assert!(
                (n as f64 / drawn.len() as f64 - 0.5).abs() < 0.05,
                "{id}: {n}"
            );
        }
        // Weight 2 on the subset: 2 CLS draws for every 3 patch rows.
        let cls = drawn.iter().filter(|r| r[0] >= 100.0).count() as f64 / drawn.len() as f64;
        assert!((cls - 0.4).abs() < 0.03, "{cls}");
        // A subset the store does not hold is an error, not an endless loop.
        let absent: HashSet<u32> = [42].into();
        let err = draws(None, Some(&absent)).unwrap_err().to_string();
        assert!(err.contains("none of the images"), "{err}");
    }

    /// The training loop's device branch (here a device trainer on the CPU device) reports the
    /// same step statistics as the CPU branch, and `synced` hands checkpoints the same state.
    #[test]
    fn steps_on_a_device_trainer_match_the_cpu_trainer() {
        let cfg = TrainConfig {
            arch: TrainArch::TopK,
            d_in: 16,
            d_sae: 64,
            k: 4,
            k_aux: 8,
            aux_coeff: 1.0 / 32.0,
            dead_after_tokens: 32,
            lr: 1e-3,
            warmup_steps: 1,
            total_steps: 4,
            l1_warmup_steps: 1,
            seed: 2,
        };
        let mut rng = Rng::new(4);
        let data: Vec<f32> = (0..4 * 32 * 16).map(|_| rng.normal()).collect();
        let mut cpu = Steps::new(Trainer::new(cfg.clone(), &data), &Device::Cpu).unwrap();
        let start = Trainer::new(cfg, &data);
        let device = DeviceTrainer::new(&start, &Device::Cpu, DecoderKind::Dense).unwrap();
        let mut dev = Steps {
            cpu: start,
            device: Some(device),
        };
        for batch in data.chunks(32 * 16) {
            let (a, b) = (
                cpu.train_step(batch).unwrap(),
                dev.train_step(batch).unwrap(),
            );
            assert!((a.loss - b.loss).abs() <= 1e-4 * a.loss);
            assert!((a.aux_loss - b.aux_loss).abs() <= 1e-4 * a.aux_loss);
            assert!((a.sq_err - b.sq_err).abs() <= 1e-4 * a.sq_err);
            assert_eq!(a.l0, b.l0);
            assert_eq!(cpu.dead_mask(), dev.dead_mask());
        }
        assert_eq!((dev.step(), dev.tokens_seen()), (4, 128));
        // Before `synced` the CPU copy still holds the initial state.
        assert_eq!(dev.cpu.step, 0);
        let (a, b) = (cpu.synced().unwrap(), dev.synced().unwrap());
        assert_eq!((a.step, a.tokens_seen), (b.step, b.tokens_seen));
        assert_eq!(a.last_fired, b.last_fired);
        for ((name, x), (_, y)) in a.state().into_iter().zip(b.state()) {
            let scale = x.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
            let err = x
                .iter()
                .zip(y)
                .map(|(p, q)| (p - q).abs())
                .fold(0f32, f32::max);
            assert!(err <= 1e-4 * scale, "{name}: {err}");
        }
    }

    #[test]
    fn cls_weight_is_range_checked() {
        let mut opts = TrainOptions::topk(8, 2);
        opts.cls_weight = 0;
        let err = opts.validate(4).unwrap_err().to_string();
        assert!(
            err.contains("--cls-weight") && err.contains("1 and 1024"),
            "{err}"
        );
    }
}
