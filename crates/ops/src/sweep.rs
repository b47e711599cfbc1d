//! `sweep`: a grid of SAEs (architecture × width × k × learning rate) trained on one pass of
//! shuffled batches, each landing in `WS/saes/<name>/` as if trained alone. A sweep can be split
//! into groups that run in parallel (a Slurm array: `--group I --groups N`, or the array's
//! environment); each group trains every N-th SAE of the grid and claims its SAEs' folders.

use super::device_of;
use crate::device::DeviceChoice;
use crate::error::{Error, Result};
use crate::fix::Opt;
use crate::job::Job;
use crate::lock::{Hold, writer};
use crate::sae::train::TrainArch;
use crate::sae::workflow::{self, TrainOptions, TrainReport};
use crate::store::Workspace;
use crate::store::tasks::Claim;
use serde::Serialize;
use std::path::PathBuf;

/// Grids larger than this are refused (each SAE holds its weights and Adam state in memory).
pub const MAX_GRID: usize = 256;

#[derive(Clone, Debug)]
pub struct SweepRequest {
    pub workspace: PathBuf,
    pub device: DeviceChoice,
    /// Put before every SAE's name (`NAME-topk-1536-k32`).
    pub name_prefix: Option<String>,
    /// Architectures by CLI name (`topk`, `batchtopk`, `matryoshka`, `jumprelu`, `relu`).
    pub archs: Vec<String>,
    pub d_saes: Vec<usize>,
    /// k (top-k architectures) or the L0 target (JumpReLU); relu ignores it.
    pub ks: Vec<usize>,
    pub lrs: Vec<f32>,
    /// Matryoshka's `--prefixes` and JumpReLU's `--l0-coeff`, ReLU's `--l1`.
    pub prefixes: Option<String>,
    pub l0_coeff: Option<f32>,
    pub l1: f32,
    /// What every SAE shares: tokens, batch, seed, normalisation, CLS weight, images,
    /// checkpoints, restart.
    pub base: TrainOptions,
    pub group: Option<usize>,
    pub groups: Option<usize>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SweepReport {
    /// SAEs in the whole grid.
    pub grid: usize,
    pub group: usize,
    pub groups: usize,
    /// This group's SAEs, in grid order.
    pub saes: Vec<TrainReport>,
    pub seconds: f64,
}

/// The grid's SAEs, in order: architecture, then width, then k, then learning rate. ReLU takes
/// no k, so its repeats are dropped; names get `-lr{lr}` when the grid has several rates.
pub fn grid(r: &SweepRequest) -> Result<Vec<TrainOptions>> {
    let empty = |opt: Opt| Err(crate::fixable!([opt, " needs at least one value"]));
    if r.archs.is_empty() {
        return empty(Opt::Arch);
    }
    if r.d_saes.is_empty() {
        return empty(Opt::DSae);
    }
    if r.ks.is_empty() {
        return empty(Opt::K);
    }
    if r.lrs.is_empty() {
        return empty(Opt::Lr);
    }
    let mut out: Vec<TrainOptions> = Vec::new();
    for a in &r.archs {
        let base_arch = TrainArch::parse(a, r.l1)?;
        // --prefixes / --l0-coeff belong to one architecture; the others in the grid skip them.
        let prefixes = matches!(base_arch, TrainArch::Matryoshka { .. })
            .then_some(r.prefixes.as_deref())
            .flatten();
        let l0 = matches!(base_arch, TrainArch::JumpRelu { .. })
            .then_some(r.l0_coeff)
            .flatten();
        for &d_sae in &r.d_saes {
            for &k in &r.ks {
                for &lr in &r.lrs {
                    let arch = base_arch.clone().with_options(prefixes, l0, k)?;
                    let mut o = TrainOptions {
                        arch,
                        d_sae,
                        k,
                        lr,
                        name: None,
                        ..r.base.clone()
                    };
                    let mut name = match &r.name_prefix {
                        Some(p) => format!("{p}-{}", o.name()),
                        None => o.name(),
                    };
                    if r.lrs.len() > 1 {
                        name.push_str(&format!("-lr{lr}"));
                    }
                    o.name = Some(name);
                    if !out.iter().any(|p| p.name == o.name) {
                        out.push(o);
                    }
                }
            }
        }
    }
    if out.len() > MAX_GRID {
        return Err(crate::fixable!(
            [format!(
                "the grid has {} SAEs, more than {MAX_GRID}",
                out.len()
            )],
            ["split it into several sweeps"]
        ));
    }
    Ok(out)
}

/// Which group this process runs: the flags, or a Slurm array's task index.
fn group_of(group: Option<usize>, groups: Option<usize>) -> Result<(usize, usize)> {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<usize>().ok());
    let (g, n) = match (group, groups) {
        (None, None) | (None, Some(1)) => (0, 1),
        (g, Some(n)) => {
            let from_array = || {
                env("SLURM_ARRAY_TASK_ID")
                    .map(|id| id - env("SLURM_ARRAY_TASK_MIN").unwrap_or(0).min(id))
                    .or_else(|| env("JOB_COMPLETION_INDEX"))
            };
            match g.or_else(from_array) {
                Some(g) => (g, n),
                None => {
                    return Err(Error::Invalid(
                        "--groups needs --group (or a Slurm array's SLURM_ARRAY_TASK_ID)".into(),
                    ));
                }
            }
        }
        (Some(_), None) => {
            return Err(Error::Invalid("--group needs --groups".into()));
        }
    };
    if n == 0 || g >= n {
        return Err(Error::Invalid(format!(
            "--group must be below --groups, which must be at least 1 (got group {g} of {n})"
        )));
    }
    Ok((g, n))
}

/// Trains this group's SAEs of the grid (the whole grid with one group) on one stream.
pub fn sweep(r: &SweepRequest, job: &Job) -> Result<SweepReport> {
    let ws = Workspace::open(&r.workspace)?;
    let all = grid(r)?;
    let (group, groups) = group_of(r.group, r.groups)?;
    let device = device_of(r.device)?;
    let mine: Vec<TrainOptions> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| i % groups == group)
        .map(|(_, o)| TrainOptions {
            device: device.clone(),
            ..o.clone()
        })
        .collect();
    let start = std::time::Instant::now();
    let saes = if groups == 1 {
        let lock = writer(&ws.dir, "sweep", Hold::Job)?;
        let reports = workflow::train_members_in(&ws, &mine, job)?;
        drop(lock);
        reports
    } else {
        // Groups run at once on several nodes: each claims its own SAEs' folders instead of
        // the workspace lock (which would let only one group run).
        let _claims = mine
            .iter()
            .map(|o| {
                let name = o.name();
                Claim::take(
                    &ws.saes_dir().join(format!(".{name}.claim")),
                    &format!("sweep group {group} of {groups}: {name}"),
                )
            })
            .collect::<Result<Vec<Claim>>>()?;
        workflow::train_members_in(&ws, &mine, job)?
    };
    Ok(SweepReport {
        grid: all.len(),
        group,
        groups,
        saes,
        seconds: start.elapsed().as_secs_f64(),
    })
}
