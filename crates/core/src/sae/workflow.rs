//! SAE training over a workspace: `train` streams shuffled batches from the activation shards into
//! the trainer (memory bounded by the shuffle buffer), logs metrics, checkpoints and resumes, and
//! saves the SAE in the native format beside its `train.json`. Naming/import live in
//! `sae::catalog`, evaluation in `sae::evaluate`.

use super::SaeMeta;
use super::checkpoint::{self, RunSettings};
use super::formats::save_saelens;
use super::shuffle::ShuffleStream;
use super::train::{DecoderKind, DeviceTrainer, TrainArch, TrainConfig, Trainer};
use crate::error::{Error, Result};
use crate::fix::Opt;
use crate::fixable;
use crate::job::{Job, Progress};
use crate::store::Dataset;
use crate::store::Workspace;
use crate::store::activations::ActivationStore;
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

// Naming/import and evaluation have their own modules; their old paths stay valid.
pub use super::catalog::{import_sae, sae_home, workspace_sae};
pub use super::evaluate::{EvalReport, evaluate};

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
        let mut name = format!("{}-{}", self.arch.name(), self.d_sae);
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
        let bad = |option: Opt, rule: String| Err(fixable!([option, " ", rule]));
        if self.d_sae == 0 {
            return bad(Opt::DSae, "must be at least 1 (got 0)".into());
        }
        let needs_k = self.arch.uses_k()
            || matches!(
                self.arch,
                TrainArch::JumpRelu {
                    l0_target: Some(_),
                    ..
                }
            );
        if needs_k && !(1..=self.d_sae).contains(&self.k) {
            return Err(fixable!([
                Opt::K,
                " must be between 1 and ",
                Opt::DSae,
                format!(" ({}) (got {})", self.d_sae, self.k)
            ]));
        }
        if let TrainArch::Matryoshka { prefixes } = &self.arch {
            prefixes.clone().checked(self.d_sae)?;
        }
        if let TrainArch::JumpRelu {
            l0_coeff,
            l0_target,
            ..
        } = self.arch
        {
            if !(l0_coeff.is_finite() && l0_coeff >= 0.0) {
                return bad(
                    Opt::L0Coeff,
                    format!("must be a finite number of at least 0 (got {l0_coeff})"),
                );
            }
            if l0_coeff == 0.0 && l0_target.is_none() {
                return Err(fixable!(
                    [
                        Opt::Arch,
                        " jumprelu needs a sparsity term: an L0 target (",
                        Opt::K,
                        ") or a coefficient above 0"
                    ],
                    ["give ", Opt::L0Coeff, " a value above 0, or leave it out"]
                ));
            }
        }
        if self.batch == 0 {
            return bad(Opt::Batch, "must be at least 1 (got 0)".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(
                Opt::Lr,
                format!(
                    "must be a finite number above 0, e.g. 4e-4 (got {})",
                    self.lr
                ),
            );
        }
        if self.tokens == Some(0) {
            return bad(Opt::Tokens, "must be at least 1 (got 0)".into());
        }
        if !(1..=1024).contains(&self.cls_weight) {
            return bad(
                Opt::ClsWeight,
                format!("must be between 1 and 1024 (got {})", self.cls_weight),
            );
        }
        if self.checkpoint_every == Some(0) {
            return Err(Error::Invalid(
                "the checkpoint interval must be at least 1 step (got 0)".into(),
            ));
        }
        // Weights (encoder, decoder) and Adam's two moments for each, plus one batch's codes.
        let need =
            4.0 * (6.0 * d_in as f64 * self.d_sae as f64 + 2.0 * (self.batch * self.d_sae) as f64);
        if let Some(avail) = crate::memory::available_bytes()
            && need > 0.9 * avail as f64
        {
            return Err(fixable!(
                [
                    Opt::DSae,
                    format!(" {} with ", self.d_sae),
                    Opt::Batch,
                    format!(
                        " {} needs about {:.1} GB for weights, optimiser state and codes, but \
                         {:.1} GB of memory is available",
                        self.batch,
                        need / 1e9,
                        avail as f64 / 1e9
                    )
                ],
                ["lower ", Opt::DSae, " or ", Opt::Batch]
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
        return Err(crate::store::activations::unfinished(&ws.dir));
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
        return Err(fixable!(
            [
                Opt::Images,
                " ",
                dir,
                format!(
                    ": none of its {} images is one of this workspace's images (extracted from ",
                    wanted.len()
                ),
                &ds.root,
                ")"
            ],
            ["give a folder of the workspace's image files or links to them"]
        ));
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
            return Err(fixable!(
                [Opt::ClsWeight, " needs a store holding the CLS token"],
                [
                    "use a model with a CLS token, extracted with ",
                    Opt::Tokens,
                    " all or cls"
                ]
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
        arch: opts.arch.clone(),
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
        // A corrupt train.json is said as such, not taken for "other settings".
        return match finished_run(sae_dir)? {
            Some(f) if f.settings == settings => Ok(TrainReport {
                already_trained: true,
                ..f.report
            }),
            _ => Err(fixable!(
                [
                    sae_dir,
                    " already holds an SAE trained with other settings (or imported); it is kept"
                ],
                ["give this run another ", Opt::Name]
            )),
        };
    }
    std::fs::create_dir_all(sae_dir).map_err(|e| Error::io(sae_dir, e))?;
    let previous = checkpoint::read_index(sae_dir)?;
    if let Some(p) = &previous
        && p.settings != settings
        && !opts.restart
    {
        return Err(fixable!(
            [
                sae_dir,
                format!(
                    ": an unfinished training run with other settings ({}) is checkpointed there",
                    serde_json::to_string(&p.settings).unwrap_or_default()
                )
            ],
            [
                "re-run with those settings to resume it, or pass ",
                Opt::Restart,
                " to discard it"
            ]
        ));
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
            arch: resolved_arch(&opts.arch, opts.d_sae, &batch, d_in)?,
            d_in,
            d_sae: opts.d_sae,
            k: opts.k,
            k_aux: if opts.arch.uses_k() {
                (d_in / 2).min(opts.d_sae)
            } else {
                0
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
            let line = serde_json::json!({"step": step, "tokens": trainer.tokens_seen(), "loss": g.loss, "aux_loss": g.aux_loss, "sparsity_loss": g.sparsity_loss, "fve": last_fve, "l0": last_l0, "dead_fraction": dead, "lr": trainer.lr_at(step)});
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
        arch: opts.arch.clone(),
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
        threshold: matches!(
            opts.arch,
            TrainArch::BatchTopK | TrainArch::Matryoshka { .. }
        )
        .then_some(trainer.threshold),
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

/// The architecture as the trainer runs it. Matryoshka's fixed ends end at d_sae. JumpReLU's
/// kernel width and initial threshold are the paper's for inputs normalised to E‖x‖² = d_in, so
/// they are scaled by the data's root mean square per dimension (1 with `--normalize`); with an
/// L0 target and no coefficient, the coefficient is the per-row variance of the first sample, so
/// the term (L0/T − 1)² is on the scale of the reconstruction error.
fn resolved_arch(arch: &TrainArch, d_sae: usize, sample: &[f32], d_in: usize) -> Result<TrainArch> {
    let rows = (sample.len() / d_in).max(1) as f64;
    Ok(match arch.clone() {
        TrainArch::Matryoshka { prefixes } => TrainArch::Matryoshka {
            prefixes: prefixes.checked(d_sae)?,
        },
        TrainArch::JumpRelu {
            l0_coeff,
            l0_target,
            bandwidth,
            init_threshold,
        } => {
            let rms = (sample.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>()
                / (rows * d_in as f64))
                .sqrt()
                .max(1e-12);
            TrainArch::JumpRelu {
                l0_coeff: match l0_target {
                    Some(_) if l0_coeff == 0.0 => (batch_variance(sample, d_in) / rows) as f32,
                    _ => l0_coeff,
                },
                l0_target,
                bandwidth: (bandwidth as f64 * rms) as f32,
                init_threshold: (init_threshold as f64 * rms) as f32,
            }
        }
        other => other,
    })
}

/// What the metrics read from one training step.
struct StepStats {
    loss: f32,
    aux_loss: f32,
    sparsity_loss: f32,
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
            false
                if !matches!(
                    cpu.cfg.arch,
                    TrainArch::TopK | TrainArch::BatchTopK | TrainArch::Relu { .. }
                ) =>
            {
                return Err(fixable!(
                    [
                        Opt::Arch,
                        format!(
                            " {} trains on the CPU only in this version",
                            cpu.cfg.arch.name()
                        )
                    ],
                    ["choose ", Opt::Device.either(&["cpu"])]
                ));
            }
            false => Some(DeviceTrainer::new(&cpu, device, DecoderKind::Dense)?),
        };
        Ok(Steps { cpu, device })
    }

    fn train_step(&mut self, batch: &[f32]) -> Result<StepStats> {
        Ok(match &mut self.device {
            None => {
                let g = self.cpu.train_step(batch);
                StepStats {
                    loss: g.loss,
                    aux_loss: g.aux_loss,
                    sparsity_loss: g.sparsity_loss,
                    sq_err: g.sq_err,
                    l0: g.l0,
                }
            }
            Some(d) => {
                let d_in = self.cpu.cfg.d_in;
                let x = Tensor::from_slice(batch, (batch.len() / d_in, d_in), d.device())?;
                let g = d.train_step(&x)?;
                StepStats {
                    loss: g.loss,
                    aux_loss: g.aux_loss,
                    sparsity_loss: g.sparsity_loss,
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

/// The report of the finished training run that left the SAE in `home`: None for imported
/// SAEs, or ones trained before `train.json` was written; an error when the file is there but
/// cannot be read.
pub fn finished_report(home: &Path) -> Result<Option<TrainReport>> {
    Ok(finished_run(home)?.map(|f| f.report))
}

fn finished_run(home: &Path) -> Result<Option<FinishedRun>> {
    let path = home.join(FINISHED_FILE);
    if !path.exists() {
        return Ok(None);
    }
    crate::fsutil::read_json::<FinishedRun>(&path)
        .map(Some)
        .map_err(|e| {
            fixable!(
                [format!("{e}; this SAE's training report is damaged")],
                [
                    "retrain it under another ",
                    Opt::Name,
                    ", or delete ",
                    &path,
                    " to treat the SAE as imported"
                ]
            )
        })
}

#[cfg(test)]
#[path = "workflow_tests.rs"]
mod tests;
