//! `saescope extract`: image folder → backbone (stopped at the tapped layer) → activation shards.
//! Resumable: finished shards are kept and only missing ones are computed.

use super::activations::{self, MANIFEST_FILE, Manifest, ShardInfo};
use super::dataset::{Dataset, Skipped};
use super::lock::WriterLock;
use super::split;
use super::tasks::{Claim, TaskSpec};
use super::workspace::{StoreDType, Workspace, WorkspaceConfig};
use crate::backbone::{Backbone, ModelSpec, TokenSelection};
use crate::error::{Error, Result};
use crate::fix::Opt;
use crate::fsutil;
use crate::job::{Job, Progress};
use candle_core::{Device, Tensor};
use image::RgbImage;
use rayon::prelude::*;
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// Default shard size target: keeps each shard file (and its write) around this many bytes.
pub const SHARD_TARGET_BYTES: usize = 64 << 20;

#[derive(Clone, Debug)]
pub struct ExtractOptions {
    pub layer: usize,
    pub tokens: TokenSelection,
    pub dtype: StoreDType,
    pub batch_size: usize,
    /// Images per shard; None picks a size near [`SHARD_TARGET_BYTES`].
    pub images_per_shard: Option<usize>,
}

impl ExtractOptions {
    /// Checks the numeric options before the workspace is touched.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(crate::fix::at_least_one(Opt::Batch));
        }
        if self.images_per_shard == Some(0) {
            return Err(crate::fixable!(
                [Opt::ShardImages, " must be at least 1 (got 0)"],
                ["leave it out for shards near 64 MB"]
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ExtractReport {
    pub workspace: String,
    pub model: String,
    pub layer: usize,
    pub dataset_images: usize,
    pub extracted_images: usize,
    pub skipped: Vec<Skipped>,
    pub rows: usize,
    pub d_model: usize,
    pub tokens_per_image: usize,
    pub dtype: StoreDType,
    pub shards: usize,
    pub shards_reused: usize,
    /// Shards found damaged and extracted again, each with what was wrong.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub repaired: Vec<String>,
    pub seconds: f64,
    /// Images per second over the shards computed in this run.
    pub images_per_s: f64,
    /// Complete: every shard of the store (of this task's part, for a task).
    pub complete: bool,
    /// The task this run was, when the work is split (`saescope merge` folds the tasks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskSpec>,
}

/// Writes the manifest that commits a shard (the workspace's, or a task's).
type ManifestWriter = Box<dyn Fn(&Path, &Manifest) -> Result<()>>;

/// Decodes the given dataset images in parallel; unreadable ones are returned as skipped.
pub fn decode_images(ds: &Dataset, ids: &[usize]) -> (Vec<RgbImage>, Vec<usize>, Vec<Skipped>) {
    let results: Vec<(usize, std::result::Result<RgbImage, String>)> =
        ids.par_iter().map(|&i| (i, ds.load(i))).collect();
    let mut images = Vec::with_capacity(ids.len());
    let mut ok = Vec::with_capacity(ids.len());
    let mut skipped = Vec::new();
    for (i, r) in results {
        match r {
            Ok(img) => {
                images.push(img);
                ok.push(i);
            }
            Err(reason) => skipped.push(Skipped {
                path: ds.images[i].path.clone(),
                reason,
            }),
        }
    }
    (images, ok, skipped)
}

/// Decoded images of one batch: the images, their dataset ids, and those that failed.
type Decoded = (Vec<RgbImage>, Vec<usize>, Vec<Skipped>);

/// Calls `work` on each batch in order while the next batch is decoded on another thread, so
/// the forward pass (on a GPU above all) does not wait for JPEG decoding. Decoding stops as soon
/// as `work` fails.
pub fn for_each_decoded(
    ds: &Dataset,
    batches: Vec<Vec<usize>>,
    mut work: impl FnMut(Vec<usize>, Decoded) -> Result<()>,
) -> Result<()> {
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(Vec<usize>, Decoded)>(1);
        s.spawn(move || {
            for ids in batches {
                let decoded = decode_images(ds, &ids);
                if tx.send((ids, decoded)).is_err() {
                    return; // the consumer stopped
                }
            }
        });
        for (ids, decoded) in rx {
            work(ids, decoded)?;
        }
        Ok(())
    })
}

/// Runs the backbone to `layer` on images and keeps the selected tokens: [B, tokens, D].
pub fn activations_for(
    backbone: &dyn Backbone,
    images: &[RgbImage],
    layer: usize,
    token_indices: &[usize],
    device: &Device,
) -> Result<Tensor> {
    let (pixels, _) = backbone.preprocessor().batch(images, device)?;
    let hidden = backbone.forward_to(&pixels, layer)?;
    // Token selections are contiguous ranges (all, patches after the prefix, or CLS).
    Ok(hidden.narrow(1, token_indices[0], token_indices.len())?)
}

/// Who may write a workspace's activations: the holder of its writer lock (the whole store;
/// `saescope-ops` takes the lock), or one task of a split extraction (its part only; the task
/// takes its own claim, see [`super::split`]).
pub enum Writer<'a> {
    Lock(&'a WriterLock),
    Task(TaskSpec),
}

/// Extracts (or resumes extracting) a workspace's activations into `ws_dir`, which the caller
/// has created: all of them under the writer lock, or one task's shards and task manifest.
pub fn extract(
    ws_dir: &Path,
    writer: Writer,
    spec: &ModelSpec,
    backbone: &dyn Backbone,
    images_dir: &Path,
    opts: &ExtractOptions,
    job: &Job,
) -> Result<ExtractReport> {
    opts.validate()?;
    let task = match writer {
        Writer::Lock(_) => None,
        Writer::Task(t) => Some(t),
    };
    extract_into(ws_dir, spec, backbone, images_dir, opts, task, job)
}

/// Whether a workspace folder holds any activation shard yet (a failed first run that wrote
/// none is removed again, so the corrected run is not refused by a half-made `workspace.json`).
pub fn has_shards(ws_dir: &Path) -> bool {
    has_shard_files(&ws_dir.join(super::workspace::ACTIVATIONS_DIR))
}

fn has_shard_files(act_dir: &Path) -> bool {
    std::fs::read_dir(act_dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
    })
}

fn extract_into(
    ws_dir: &Path,
    spec: &ModelSpec,
    backbone: &dyn Backbone,
    images_dir: &Path,
    opts: &ExtractOptions,
    task: Option<TaskSpec>,
    job: &Job,
) -> Result<ExtractReport> {
    let start = Instant::now();
    let info = backbone.info().clone();
    if opts.layer >= info.n_layers {
        return Err(Error::Invalid(format!(
            "layer {} does not exist: {} has layers 0..={}",
            opts.layer,
            info.name,
            info.n_layers - 1
        )));
    }
    let token_indices = info.geometry.select(opts.tokens)?;
    let images_abs = std::fs::canonicalize(images_dir).map_err(|e| Error::io(images_dir, e))?;
    let ws = Workspace::open_or_create(
        ws_dir,
        WorkspaceConfig {
            format_version: super::workspace::FORMAT_VERSION,
            model: spec.clone(),
            layer: opts.layer,
            images: images_abs.clone(),
            tokens: opts.tokens,
            dtype: opts.dtype,
            backbone: info.clone(),
            preprocessor: Some(backbone.preprocessor().clone()),
        },
    )?;
    // The image listing is fixed by the first run so a resumed run sees the same order.
    // A damaged listing is an error, never silently replaced by a new scan.
    let ds = if ws.dir.join(super::workspace::DATASET_FILE).is_file() {
        ws.dataset()?
    } else {
        let ds = Dataset::scan(&images_abs)?;
        ws.save_dataset(&ds)?;
        ds
    };
    let act_dir = ws.activations_dir();
    std::fs::create_dir_all(&act_dir).map_err(|e| Error::io(&act_dir, e))?;
    // Under the writer lock no other writer is running; a task leaves other tasks' files be.
    crate::fsutil::remove_stale_temp_files(&act_dir, 0, task.is_none());
    let _claim = match &task {
        Some(t) => Some(Claim::take(
            &split::task_claim_path(&ws, t),
            &format!("extract task {} of {}", t.task, t.tasks),
        )?),
        None => None,
    };

    let bytes_per_image = token_indices.len() * info.d_model * opts.dtype.bytes();
    let main_manifest = act_dir.join(MANIFEST_FILE);
    let manifest_path = match &task {
        Some(t) => split::task_manifest_path(&ws, t),
        None => main_manifest.clone(),
    };
    let task_file: Option<split::TaskManifest> = match &task {
        Some(_) if manifest_path.is_file() => Some(fsutil::read_json(&manifest_path)?),
        _ => None,
    };
    let origin = split::TaskOrigin::of(&ws);
    if let (Some(t), Some(tm)) = (&task, &task_file)
        && (tm.origin != origin || tm.task != *t)
    {
        return Err(Error::Workspace(format!(
            "{}: written by a task of another run ({} layer {}); delete it to redo this task",
            manifest_path.display(),
            tm.origin.model,
            tm.origin.layer
        )));
    }
    // A task resumes from its own manifest, else starts from what the workspace's manifest
    // already holds (a one-machine run's shards are the same files).
    let existing = match (&task_file, main_manifest.is_file()) {
        (Some(tm), _) => Some(tm.manifest.clone()),
        (None, true) => Some(fsutil::read_json::<Manifest>(&main_manifest)?),
        (None, false) => None,
    };
    let mut manifest = if let Some(m) = existing {
        if m.d_model != info.d_model
            || m.token_indices != token_indices
            || m.dataset_images != ds.len()
        {
            return Err(crate::fixable!(
                [&manifest_path, ": does not match this model/dataset"],
                ["give a new folder with ", Opt::Workspace]
            ));
        }
        m
    } else {
        Manifest {
            d_model: info.d_model,
            dtype: opts.dtype,
            token_indices: token_indices.clone(),
            images_per_shard: opts
                .images_per_shard
                .unwrap_or((SHARD_TARGET_BYTES / bytes_per_image.max(1)).max(1)),
            dataset_images: ds.len(),
            shards: Vec::new(),
        }
    };
    // Keep only shards whose files are really there, whole and readable: a shard whose bytes
    // were damaged (D14: overwritten with 0xFF, read as NaN) is named and extracted again.
    let mut repaired = Vec::new();
    manifest.shards.retain(|s| {
        let path = act_dir.join(&s.file);
        if !std::fs::metadata(&path).is_ok_and(|m| m.len() == s.bytes) {
            return false;
        }
        match super::activations::decode_shard(&path) {
            Ok(_) => true,
            Err(e) => {
                repaired.push(format!("{}: {e}", s.file));
                false
            }
        }
    });
    let per_shard = manifest.images_per_shard;
    let planned = manifest.planned_shards();
    let range = task.map_or(0..planned, |t| t.range(planned));
    if task.is_some() {
        manifest.shards.retain(|s| range.contains(&s.index));
    }
    let reused = manifest.shards.len();
    let save: ManifestWriter = match task {
        Some(t) => Box::new(move |path: &Path, m: &Manifest| {
            fsutil::write_json_atomic(
                path,
                &split::TaskManifest {
                    task: t,
                    origin: origin.clone(),
                    manifest: m.clone(),
                },
            )
        }),
        None => Box::new(|path: &Path, m: &Manifest| fsutil::write_json_atomic(path, m)),
    };
    let device = backbone.device().clone();

    let total = (range.start * per_shard..(range.end * per_shard).min(ds.len())).len() as u64;
    let mut done: u64 = manifest
        .shards
        .iter()
        .map(|s| s.planned_images as u64)
        .sum();
    let mut computed_images = 0usize;
    let compute_start = Instant::now();
    job.report(Progress {
        done,
        total,
        unit: "images",
        message: format!("{reused}/{planned} shards already done"),
    });
    // Each shard is encoded and written on another thread while the next one is computed; it
    // enters the manifest (the commit point) once its file is whole.
    let mut pending: Option<PendingShard> = None;
    let result = (|| -> Result<()> {
        for k in range.clone() {
            if manifest.shards.iter().any(|s| s.index == k) {
                continue;
            }
            let first = k * per_shard;
            let last = ((k + 1) * per_shard).min(ds.len());
            let mut acts: Vec<f32> =
                Vec::with_capacity((last - first) * token_indices.len() * info.d_model);
            let mut image_ids: Vec<u32> = Vec::with_capacity(last - first);
            let mut skipped = Vec::new();
            let batches: Vec<Vec<usize>> = (first..last)
                .step_by(opts.batch_size.max(1))
                .map(|s| (s..(s + opts.batch_size).min(last)).collect())
                .collect();
            for_each_decoded(&ds, batches, |ids, (images, ok, bad)| {
                job.check()?;
                skipped.extend(bad);
                if !images.is_empty() {
                    let t =
                        activations_for(backbone, &images, opts.layer, &token_indices, &device)?;
                    acts.extend(t.flatten_all()?.to_vec1::<f32>()?);
                    image_ids.extend(ok.iter().map(|&i| i as u32));
                }
                done += ids.len() as u64;
                computed_images += ids.len();
                job.report(Progress {
                    done,
                    total,
                    unit: "images",
                    message: format!("shard {}/{planned}", k + 1),
                });
                Ok(())
            })?;
            commit_shard(&mut manifest, &manifest_path, &save, pending.take())?;
            let file = activations::shard_file_name(k);
            let shard = ShardInfo {
                index: k,
                file: file.clone(),
                first_image: first,
                planned_images: last - first,
                images: image_ids.len(),
                rows: acts.len() / info.d_model,
                bytes: 0,
                skipped,
            };
            let (path, d_model, dtype) = (act_dir.join(&file), info.d_model, opts.dtype);
            let writer = std::thread::spawn(move || -> Result<u64> {
                let bytes = activations::encode_shard(&acts, d_model, &image_ids, dtype)?;
                fsutil::write_atomic(&path, &bytes)?;
                Ok(bytes.len() as u64)
            });
            pending = Some(PendingShard { shard, writer });
        }
        Ok(())
    })();
    // A shard already computed is kept even when a later one failed or was cancelled.
    let committed = commit_shard(&mut manifest, &manifest_path, &save, pending.take());
    result?;
    committed?;
    let compute_secs = compute_start.elapsed().as_secs_f64();
    let skipped = manifest.skipped();
    Ok(ExtractReport {
        workspace: ws.dir.display().to_string(),
        model: spec.source.clone(),
        layer: opts.layer,
        dataset_images: ds.len(),
        extracted_images: manifest.shards.iter().map(|s| s.images).sum(),
        skipped,
        rows: manifest.rows(),
        d_model: info.d_model,
        tokens_per_image: token_indices.len(),
        dtype: manifest.dtype,
        shards: manifest.shards.len(),
        shards_reused: reused,
        repaired,
        seconds: start.elapsed().as_secs_f64(),
        images_per_s: if compute_secs > 0.0 {
            computed_images as f64 / compute_secs
        } else {
            0.0
        },
        complete: range
            .clone()
            .all(|k| manifest.shards.iter().any(|s| s.index == k)),
        task,
    })
}

/// A shard whose file is being encoded and written on another thread.
struct PendingShard {
    shard: ShardInfo,
    /// Returns the file's size once it is written.
    writer: std::thread::JoinHandle<Result<u64>>,
}

/// Waits for a pending shard's file and records the shard in the manifest (the commit point).
fn commit_shard(
    manifest: &mut Manifest,
    manifest_path: &Path,
    save: &ManifestWriter,
    pending: Option<PendingShard>,
) -> Result<()> {
    let Some(PendingShard { mut shard, writer }) = pending else {
        return Ok(());
    };
    shard.bytes = writer
        .join()
        .map_err(|_| Error::Invalid(format!("writing {} stopped unexpectedly", shard.file)))??;
    crash_point_for_tests(shard.index);
    let shard_index = shard.index;
    manifest.shards.push(shard);
    manifest.shards.sort_by_key(|s| s.index);
    save(manifest_path, manifest)?;
    pause_point_for_tests(shard_index);
    Ok(())
}

/// For the cluster tests, which cancel a task mid-run: `SAESCOPE_PAUSE_AFTER_SHARD=k` waits
/// two minutes once shard k is committed.
fn pause_point_for_tests(shard: usize) {
    if std::env::var("SAESCOPE_PAUSE_AFTER_SHARD")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        == Some(shard)
    {
        std::thread::sleep(std::time::Duration::from_secs(120));
    }
}

/// Fault injection for the resume tests: `SAESCOPE_CRASH_AFTER_SHARD=k` aborts the process right
/// after shard k's file is written and before the manifest lists it — the worst moment to die.
fn crash_point_for_tests(shard: usize) {
    if std::env::var("SAESCOPE_CRASH_AFTER_SHARD")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        == Some(shard)
    {
        std::process::abort();
    }
}
