//! A training run over an activation store: one SAE (`train`) or several fed the same shuffled
//! batches (`sweep`: reading and shuffling the store is paid once). Each member checkpoints,
//! resumes, logs and saves exactly as a lone run would, so a member of a sweep ends with the
//! weights of the same SAE trained alone with the same seed.

use super::SaeMeta;
use super::checkpoint::{self, RunSettings};
use super::formats::save_saelens;
use super::shuffle::ShuffleStream;
use super::train::{DecoderKind, DeviceTrainer, TrainArch, TrainConfig, Trainer};
use super::workflow::{FinishedRun, ImageSubset, TrainOptions, TrainReport, finished_run};
use crate::error::{Error, Result};
use crate::fix::Opt;
use crate::fixable;
use crate::job::{Job, Progress};
use crate::store::activations::ActivationStore;
use candle_core::{Device, Tensor};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub const METRICS_FILE: &str = "metrics.jsonl";
const FINISHED_FILE: &str = "train.json";

/// One SAE of a run: where it lives, its metadata, its options. The options that shape the
/// batches (seed, batch, tokens, normalisation, CLS weight, image subset, buffer, checkpoint
/// interval, restart, device) must be the same for every member; the first member's are used.
pub struct Member<'a> {
    pub dir: PathBuf,
    pub meta: SaeMeta,
    pub opts: &'a TrainOptions,
}

/// A member being trained.
struct Live {
    index: usize,
    settings: RunSettings,
    steps: Steps,
    metrics: std::fs::File,
    seconds_before: f64,
    last: (f32, f64, f64),
    /// Dead share of its latents when the metrics were last logged.
    dead: f64,
    /// FVE averaged over recent batches (weight 0.1 on the newest): what divergence is judged on.
    fve_trend: Option<f64>,
}

impl Live {
    /// Whether its recent batches reconstruct at all (FVE finite and at least 0).
    fn healthy(&self) -> bool {
        self.fve_trend.is_none_or(|f| f.is_finite() && f >= 0.0)
    }
}

/// The error for a member whose training diverged: nothing of it is saved, its last good
/// checkpoint (if any) stays.
fn diverged(m: &Member, fve: f64, step: u64) -> Error {
    let kept = match checkpoint::read_index(&m.dir) {
        Ok(Some(p)) => format!("its checkpoint of step {} is kept", p.step),
        _ => "no checkpoint was taken".into(),
    };
    fixable!(
        [format!(
            "{}: training diverged (FVE {fve:.3e} over the recent batches at step {step}); the \
             SAE was not saved, and {kept}",
            m.dir.display()
        )],
        [
            "lower ",
            Opt::Lr,
            format!(" (it was {}) or raise ", m.opts.lr),
            Opt::Batch,
            format!(" (it was {})", m.opts.batch)
        ]
    )
}

/// Trains every member on one stream of batches from `store`. Finished members (same settings)
/// are reported as trained; a folder holding another SAE is an error naming it. Reports come in
/// member order. `cls_row`: the CLS row's position among each image's rows; `subset`: the
/// images to train on, when not all of the store's.
pub fn train_members(
    store: &ActivationStore,
    members: &[Member],
    cls_row: Option<usize>,
    subset: Option<&ImageSubset>,
    job: &Job,
) -> Result<Vec<TrainReport>> {
    let Some(first) = members.first() else {
        return Ok(Vec::new());
    };
    let shared = first.opts;
    let d_in = store.manifest.d_model;
    for m in members {
        m.opts.validate(d_in)?;
        if !same_stream(m.opts, shared) {
            return Err(Error::Invalid(format!(
                "{}: a run's SAEs must share seed, batch, tokens, normalisation, CLS weight, \
                 images and device",
                m.dir.display()
            )));
        }
    }
    let need: f64 = members.iter().map(|m| m.opts.memory_need(d_in)).sum();
    if members.len() > 1
        && let Some(avail) = crate::memory::available_bytes()
        && need > 0.9 * avail as f64
    {
        return Err(fixable!(
            [format!(
                "these {} SAEs need about {:.1} GB together for weights, optimiser state and \
                 codes, but {:.1} GB of memory is available",
                members.len(),
                need / 1e9,
                avail as f64 / 1e9
            )],
            [
                "train fewer at once (more groups), or lower ",
                Opt::DSae,
                " or ",
                Opt::Batch
            ]
        ));
    }
    let cls_extra = match (shared.cls_weight, cls_row) {
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
    let tokens = shared.tokens.unwrap_or(total_rows * 10);
    let steps = tokens.div_ceil(shared.batch as u64);
    let settings_of = |o: &TrainOptions| RunSettings {
        arch: o.arch.clone(),
        d_sae: o.d_sae,
        k: o.k,
        tokens,
        batch: o.batch,
        lr: o.lr,
        seed: o.seed,
        normalize: o.normalize,
        cls_weight: o.cls_weight,
        images: subset.map(|s| s.label.clone()),
    };
    // Finished members are reported; the others resume from a common step or start over.
    let mut reports: Vec<Option<TrainReport>> = vec![None; members.len()];
    let mut todo = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let settings = settings_of(m.opts);
        if m.dir.join("cfg.json").is_file() {
            // A corrupt train.json is said as such, not taken for "other settings".
            match finished_run(&m.dir)? {
                Some(f) if f.settings == settings => {
                    // A run stopped after its report and SAE but before removing its checkpoint.
                    checkpoint::remove(&m.dir)?;
                    reports[i] = Some(TrainReport {
                        already_trained: true,
                        ..f.report
                    });
                    continue;
                }
                // D9: an SAE saved by a run of these settings that was stopped before its report
                // (the order before the report came first): its checkpoint is still there.
                None if checkpoint::read_index(&m.dir)?.is_some_and(|p| p.settings == settings) => {
                    if !shared.restart {
                        return Err(fixable!(
                            [
                                &m.dir,
                                " holds an SAE whose training run was stopped before it wrote its \
                                 report (train.json)"
                            ],
                            ["pass ", Opt::Restart, " to train it again from the start"]
                        ));
                    }
                    crate::sae::formats::remove_saelens(&m.dir)?;
                }
                _ => {
                    return Err(fixable!(
                        [
                            &m.dir,
                            " already holds an SAE trained with other settings (or imported); it is kept"
                        ],
                        ["give this run another ", Opt::Name]
                    ));
                }
            }
        }
        std::fs::create_dir_all(&m.dir).map_err(|e| Error::io(&m.dir, e))?;
        let previous = checkpoint::read_index(&m.dir)?;
        if let Some(p) = &previous
            && p.settings != settings
            && !shared.restart
        {
            return Err(fixable!(
                [
                    &m.dir,
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
        let resume = previous.filter(|p| p.settings == settings && !shared.restart);
        todo.push((i, settings, resume));
    }
    if todo.is_empty() {
        return Ok(reports.into_iter().flatten().collect());
    }
    // One stream feeds every member, so they resume together or start together.
    let step_of = |r: &Option<checkpoint::CheckpointIndex>| r.as_ref().map_or(0, |p| p.step);
    if todo
        .iter()
        .any(|(_, _, r)| step_of(r) != step_of(&todo[0].2))
    {
        todo.iter_mut().for_each(|(_, _, r)| *r = None);
    }
    for (i, _, r) in &todo {
        if r.is_none() {
            checkpoint::remove(&members[*i].dir)?;
        }
    }
    let resumed_from_step = step_of(&todo[0].2);
    // A resumed run draws a fresh shuffle stream; it is deterministic given where it resumed.
    let stream_seed = shared.seed ^ resumed_from_step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut stream = ShuffleStream::new(
        store,
        stream_seed,
        shared.buffer_rows,
        cls_extra,
        subset.map(|s| &s.ids),
    );
    let mut batch = Vec::new();
    stream.batch(shared.batch.min(4096), &mut batch)?;
    let input_scale = match &todo[0].2 {
        Some(p) => p.input_scale,
        // √d_in / mean‖x‖, from the first sample.
        None if shared.normalize => {
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
    let mut live = Vec::with_capacity(todo.len());
    for (i, settings, resume) in todo {
        let m = &members[i];
        let cfg = match &resume {
            Some(p) => p.config.clone(),
            None => TrainConfig {
                arch: resolved_arch(&m.opts.arch, m.opts.d_sae, &batch, d_in)?,
                d_in,
                d_sae: m.opts.d_sae,
                k: m.opts.k,
                k_aux: if m.opts.arch.uses_k() {
                    (d_in / 2).min(m.opts.d_sae)
                } else {
                    0
                },
                aux_coeff: 1.0 / 32.0,
                dead_after_tokens: (total_rows / 4).clamp(1, 10_000_000),
                lr: m.opts.lr,
                warmup_steps: (steps / 20).max(1),
                total_steps: steps,
                l1_warmup_steps: (steps / 20).max(1),
                seed: m.opts.seed,
            },
        };
        let mut trainer = Trainer::new(cfg, &batch);
        let mut seconds_before = 0.0;
        match &resume {
            Some(p) => {
                checkpoint::restore(&m.dir, p, &mut trainer)?;
                seconds_before = p.seconds;
            }
            None => {
                if let TrainArch::JumpRelu {
                    l0_target: Some(t), ..
                } = trainer.cfg.arch
                {
                    trainer.start_thresholds_at_l0(&batch, t);
                }
            }
        }
        live.push(Live {
            index: i,
            settings,
            steps: Steps::new(trainer, &shared.device)?,
            metrics: open_metrics(&m.dir.join(METRICS_FILE), resumed_from_step)?,
            seconds_before,
            last: (0.0, 0.0, 0.0),
            dead: 0.0,
            fve_trend: None,
        });
    }
    let crash_after: Option<u64> = std::env::var("SAESCOPE_CRASH_AFTER_CHECKPOINT")
        .ok()
        .and_then(|v| v.parse().ok());
    let mut checkpoints_written = 0u64;
    let start = Instant::now();
    let mut last_checkpoint = Instant::now();
    let save_all = |live: &mut [Live]| -> Result<()> {
        let secs = start.elapsed().as_secs_f64();
        // A member that no longer reconstructs keeps its previous (good) checkpoint.
        for l in live.iter_mut().filter(|l| l.healthy()) {
            let _ = l.metrics.flush();
            let dir = &members[l.index].dir;
            checkpoint::save(
                dir,
                l.steps.synced()?,
                &l.settings,
                input_scale,
                l.seconds_before + secs,
            )?;
        }
        Ok(())
    };
    let mut failed: Vec<Error> = Vec::new();
    // D12: the run's time, estimated from its first steps (after the first, which warms up).
    let timed_steps = 3u64;
    let mut timer: Option<Instant> = None;
    for step in resumed_from_step..steps {
        if step == resumed_from_step + 1 {
            timer = Some(Instant::now());
        }
        if let Some(t) = timer
            && step == resumed_from_step + 1 + timed_steps
        {
            let per_step = t.elapsed().as_secs_f64() / timed_steps as f64;
            let hours = per_step * (steps - step) as f64 / 3600.0;
            job.report(Progress {
                done: step,
                total: steps,
                unit: "steps",
                message: format!("about {} left ({per_step:.2} s a step)", duration(hours)),
            });
            if hours > shared.max_hours {
                save_all(&mut live)?;
                return Err(fixable!(
                    [
                        format!(
                            "this run would take about {} more ({} steps at {per_step:.2} s), \
                             more than ",
                            duration(hours),
                            steps - step
                        ),
                        Opt::MaxHours,
                        format!(" {} allows; its progress is checkpointed", shared.max_hours)
                    ],
                    ["lower ", Opt::Tokens, " or raise ", Opt::MaxHours]
                ));
            }
        }
        if let Err(e) = job.check() {
            // Cancelled: keep the progress so the next run resumes here.
            save_all(&mut live)?;
            return Err(e);
        }
        stream.batch(shared.batch, &mut batch)?;
        scale(&mut batch);
        let variance = batch_variance(&batch, d_in).max(1e-12);
        for l in live.iter_mut() {
            let g = l.steps.train_step(&batch)?;
            let fve = 1.0 - g.sq_err / variance;
            l.last = (g.loss, fve, g.l0);
            l.fve_trend = Some(match l.fve_trend {
                Some(t) if fve.is_finite() => 0.9 * t + 0.1 * fve,
                _ => fve,
            });
            if step % 20 == 0 || step + 1 == steps {
                let d_sae = members[l.index].opts.d_sae;
                let dead = l.steps.dead_mask().iter().filter(|&&d| d).count() as f64 / d_sae as f64;
                l.dead = dead;
                let line = serde_json::json!({"step": step, "tokens": l.steps.tokens_seen(), "loss": g.loss, "aux_loss": g.aux_loss, "sparsity_loss": g.sparsity_loss, "fve": fve, "l0": g.l0, "dead_fraction": dead, "lr": l.steps.lr_at(step)});
                let _ = writeln!(l.metrics, "{line}");
            }
        }
        // Non-finite is diverged at once; a negative trend only at the end (FVE starts below 0
        // for some architectures and recovers).
        let mut i = 0;
        while i < live.len() {
            let l = &live[i];
            let trend = l.fve_trend.unwrap_or(0.0);
            let broken = !l.last.0.is_finite() || !trend.is_finite();
            if broken || (step + 1 == steps && trend < 0.0) {
                failed.push(diverged(&members[l.index], trend, step));
                live.remove(i);
            } else {
                i += 1;
            }
        }
        if live.is_empty() {
            break;
        }
        if step % 20 == 0 || step + 1 == steps {
            job.report(Progress {
                done: step + 1,
                total: steps,
                unit: "steps",
                message: progress_line(&live),
            });
        }
        let due = match shared.checkpoint_every {
            Some(n) => (step + 1).is_multiple_of(n.max(1)),
            None => last_checkpoint.elapsed().as_secs() >= 60,
        };
        if due && step + 1 < steps {
            save_all(&mut live)?;
            last_checkpoint = Instant::now();
            checkpoints_written += 1;
            if crash_after == Some(checkpoints_written) {
                // Fault injection for the resume test: die like a killed process would.
                std::process::abort();
            }
        }
    }
    let run_seconds = start.elapsed().as_secs_f64();
    for l in &mut live {
        let m = &members[l.index];
        let trainer = l.steps.synced()?;
        let dead = trainer.dead_mask().iter().filter(|&&d| d).count() as f64 / m.opts.d_sae as f64;
        let mut sae = trainer.to_sae(SaeMeta {
            source_format: Some("saelens".into()),
            cls_weight: (m.opts.cls_weight > 1).then_some(m.opts.cls_weight),
            training_images: subset.map(|s| s.label.clone()),
            ..m.meta.clone()
        });
        sae.input_scale = input_scale;
        let run_tokens = trainer.tokens_seen - resumed_from_step * m.opts.batch as u64;
        let (final_loss, final_fve, final_l0) = l.last;
        let report = TrainReport {
            sae: m.dir.display().to_string(),
            arch: m.opts.arch.clone(),
            steps,
            tokens: trainer.tokens_seen,
            resumed_from_step,
            seconds: l.seconds_before + run_seconds,
            tokens_per_s: run_tokens as f64 / run_seconds.max(1e-9),
            final_loss,
            final_fve,
            final_l0,
            dead_fraction: dead,
            input_scale,
            threshold: matches!(
                m.opts.arch,
                TrainArch::BatchTopK | TrainArch::Matryoshka { .. }
            )
            .then_some(trainer.threshold),
            cls_weight: m.opts.cls_weight,
            images,
            images_from: m.opts.images.as_ref().map(|d| d.display().to_string()),
            name: String::new(),
            already_trained: false,
            device: crate::device::name(&m.opts.device),
        };
        // The report first, then the SAE (cfg.json last), then the checkpoint goes. A crash
        // before the SAE is complete leaves the checkpoint, so the re-run resumes and finishes;
        // one after it leaves a finished SAE the re-run reports (and cleans up after).
        crate::fsutil::write_json_atomic(
            &m.dir.join(FINISHED_FILE),
            &FinishedRun {
                settings: l.settings.clone(),
                report: report.clone(),
            },
        )?;
        save_saelens(&sae, &m.dir)?;
        checkpoint::remove(&m.dir)?;
        reports[l.index] = Some(report);
    }
    match failed.len() {
        0 => Ok(reports.into_iter().flatten().collect()),
        1 if members.len() == 1 => Err(failed.remove(0)),
        _ => Err(Error::Invalid(format!(
            "{} of the {} SAEs diverged (the others are saved; a re-run reports them): {}",
            failed.len(),
            members.len(),
            failed
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        ))),
    }
}

/// Hours as "40 s", "12 min", "3.2 h" or "2000 years".
fn duration(hours: f64) -> String {
    if hours < 1.0 / 60.0 {
        format!("{:.0} s", hours * 3600.0)
    } else if hours < 1.0 {
        format!("{:.0} min", hours * 60.0)
    } else if hours < 24.0 * 365.0 {
        format!("{hours:.1} h")
    } else {
        format!("{:.0} years", hours / (24.0 * 365.0))
    }
}

/// Whether two members' options draw the same batches.
fn same_stream(a: &TrainOptions, b: &TrainOptions) -> bool {
    (
        a.seed,
        a.batch,
        a.tokens,
        a.normalize,
        a.cls_weight,
        &a.images,
        a.buffer_rows,
        a.checkpoint_every,
        a.restart,
    ) == (
        b.seed,
        b.batch,
        b.tokens,
        b.normalize,
        b.cls_weight,
        &b.images,
        b.buffer_rows,
        b.checkpoint_every,
        b.restart,
    ) && crate::device::name(&a.device) == crate::device::name(&b.device)
}

/// The job line: one member's figures, or the spread over a sweep's.
fn progress_line(live: &[Live]) -> String {
    match live {
        [l] => {
            format!(
                "loss {:.4} · FVE {:.3} · L0 {:.1} · dead {:.1}%",
                l.last.0,
                l.last.1,
                l.last.2,
                l.dead * 100.0
            )
        }
        many => {
            let range = |f: &dyn Fn(&Live) -> f64| {
                many.iter()
                    .map(f)
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                        (a.min(v), b.max(v))
                    })
            };
            let (f0, f1) = range(&|l| l.last.1);
            let (l0, l1) = range(&|l| l.last.2);
            format!(
                "{} SAEs · FVE {f0:.3}–{f1:.3} · L0 {l0:.1}–{l1:.1}",
                many.len()
            )
        }
    }
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

    #[cfg(test)]
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

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
