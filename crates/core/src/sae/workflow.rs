//! SAE training over a workspace: `train` streams shuffled batches from the activation shards into
//! the trainer (memory bounded by the shuffle buffer), logs metrics, checkpoints and resumes, and
//! saves the SAE in the native format beside its `train.json`. Naming/import live in
//! `sae::catalog`, evaluation in `sae::evaluate`.

use super::SaeMeta;
use super::checkpoint::RunSettings;
use super::train::TrainArch;
use crate::error::{Error, Result};
use crate::fix::Opt;
use crate::fixable;
use crate::job::Job;
use crate::store::Dataset;
use crate::store::Workspace;
use crate::store::activations::ActivationStore;
use candle_core::Device;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

// Naming/import and evaluation have their own modules; their old paths stay valid.
pub use super::catalog::{import_sae, sae_home, workspace_sae};
pub use super::evaluate::{EvalReport, evaluate};

pub const SAE_DIR: &str = "sae";
pub use super::run::METRICS_FILE;

/// `--max-hours` by default: three days.
pub const DEFAULT_MAX_HOURS: f64 = 72.0;
use super::run::{Member, train_members};

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
    /// Refuse a run whose estimate (timed on its first steps) exceeds this many hours.
    pub max_hours: f64,
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
        if !(self.max_hours.is_finite() && self.max_hours > 0.0) {
            return bad(
                Opt::MaxHours,
                format!("must be a number of hours above 0 (got {})", self.max_hours),
            );
        }
        if self.checkpoint_every == Some(0) {
            return Err(Error::Invalid(
                "the checkpoint interval must be at least 1 step (got 0)".into(),
            ));
        }
        let need = self.memory_need(d_in);
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

    /// Bytes a run holds: weights (encoder, decoder) and Adam's two moments for each, plus one
    /// batch's codes and their gradients.
    pub fn memory_need(&self, d_in: usize) -> f64 {
        4.0 * (6.0 * d_in as f64 * self.d_sae as f64 + 2.0 * (self.batch * self.d_sae) as f64)
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
            max_hours: DEFAULT_MAX_HOURS,
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
pub(super) struct FinishedRun {
    pub(super) settings: RunSettings,
    pub(super) report: TrainReport,
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
    let report = train_members_in(ws, std::slice::from_ref(opts), job)?
        .pop()
        .ok_or_else(|| Error::Invalid("the training run reported nothing".into()))?;
    ws.set_active_sae(&report.name)?;
    Ok(report)
}

/// Trains several SAEs into `WS/saes/<name>/` on one stream of batches (a sweep, or one group
/// of it), each as a lone `train` would; the active SAE is left as it is. The caller holds the
/// workspace's writer lock, or a claim on each member (a sweep group on a cluster).
pub fn train_members_in(
    ws: &Workspace,
    members: &[TrainOptions],
    job: &Job,
) -> Result<Vec<TrainReport>> {
    for m in members {
        crate::store::workspace::check_sae_name(&m.name())?;
    }
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
    let subset = match members.first().and_then(|m| m.images.as_ref()) {
        Some(dir) => Some(image_subset(ws, dir)?),
        None => None,
    };
    let runs: Vec<Member> = members
        .iter()
        .map(|opts| Member {
            dir: ws.sae_dir(&opts.name()),
            meta: meta.clone(),
            opts,
        })
        .collect();
    let mut reports = train_members(&store, &runs, cls_row, subset.as_ref(), job)?;
    for (r, m) in reports.iter_mut().zip(members) {
        r.name = m.name();
    }
    Ok(reports)
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
    let member = Member {
        dir: sae_dir.to_path_buf(),
        meta,
        opts,
    };
    train_members(store, &[member], cls_row, subset, job)?
        .pop()
        .ok_or_else(|| Error::Invalid("the training run reported nothing".into()))
}

/// The report of the finished training run that left the SAE in `home`: None for imported
/// SAEs, or ones trained before `train.json` was written; an error when the file is there but
/// cannot be read.
pub fn finished_report(home: &Path) -> Result<Option<TrainReport>> {
    Ok(finished_run(home)?.map(|f| f.report))
}

pub(super) fn finished_run(home: &Path) -> Result<Option<FinishedRun>> {
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
