//! OOD scoring split into tasks. The costly part of an OOD run is the model and the SAE over
//! every image of every folder; task I of N does that for a contiguous range of each folder's
//! batches and stores what fitting and scoring need of each image
//! (`ood/tasks/N-tasks/task-IIII/folder-K.safetensors`, one per folder, resumable folder by
//! folder). [`merge_ood`] then fits and scores from the stored outputs, batch by batch in the
//! one-machine order, so its results equal one machine's bit for bit. Memory of the merge: the
//! fit's moments plus one task's outputs for one folder at a time.

use super::run::{Folders, run_from};
use super::*;
use crate::analysis::index::state::{Tensor, serialize};
use crate::fsutil;
use crate::store::split::{TaskProgress, TaskState, cannot_merge, chosen_split, task_states};
use crate::store::tasks::{Claim, TaskSpec};
use std::time::Instant;

/// What a split OOD run was asked; every task records it, and the merge refuses tasks that
/// differ from each other or from the SAE and folders it finds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OodTaskSettings {
    pub fit: PathBuf,
    pub id: PathBuf,
    pub ood: Vec<PathBuf>,
    pub batch: usize,
    pub ridge_codes: Option<f64>,
    pub ridge_raw: Option<f64>,
    pub sae_fingerprint: String,
    pub layer: usize,
    pub dims: Dims,
    /// Images in each folder (fit, id, OOD…) when the task listed it.
    pub images: Vec<usize>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct TaskFile {
    task: TaskSpec,
    settings: OodTaskSettings,
    folders_done: usize,
    complete: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct OodTaskReport {
    pub task: TaskSpec,
    pub folders: usize,
    /// Images this task ran, over all folders.
    pub images: usize,
    pub resumed_at_folder: usize,
    pub complete: bool,
    pub seconds: f64,
}

/// `ood/tasks` of the SAE in `home`.
pub fn tasks_dir(home: &Path) -> PathBuf {
    home.join("ood").join("tasks")
}

fn task_dir(home: &Path, t: &TaskSpec) -> PathBuf {
    TaskSpec::split_dir(&tasks_dir(home), t.tasks).join(t.stem())
}

const PROGRESS: &str = "progress.json";

fn folder_file(k: usize) -> String {
    format!("folder-{k}.safetensors")
}

/// Runs task `task` of a split OOD run: the model and SAE over its part of every folder.
#[allow(clippy::too_many_arguments)]
pub fn run_task(
    backbone: &dyn Backbone,
    sae: &Sae,
    layer: usize,
    home: &Path,
    fit_dir: &Path,
    id_dir: &Path,
    ood_dirs: &[PathBuf],
    opts: &OodOptions,
    task: TaskSpec,
    job: &Job,
) -> Result<OodTaskReport> {
    let start = Instant::now();
    let folders = Folders::scan(fit_dir, id_dir, ood_dirs)?;
    sae.check_fits(
        backbone.info().d_model,
        &format!("layer {layer} of {}", backbone.info().name),
    )?;
    let settings = OodTaskSettings {
        fit: fit_dir.to_path_buf(),
        id: id_dir.to_path_buf(),
        ood: ood_dirs.to_vec(),
        batch: opts.batch,
        ridge_codes: opts.ridge_codes,
        ridge_raw: opts.ridge_raw,
        sae_fingerprint: sae.fingerprint(),
        layer,
        dims: Dims::of(backbone, sae),
        images: folders.sets.iter().map(|s| s.len()).collect(),
    };
    let split = TaskSpec::split_dir(&tasks_dir(home), task.tasks);
    let _claim = Claim::take(
        &split.join(format!("{}.claim", task.stem())),
        &format!("ood task {} of {}", task.task, task.tasks),
    )?;
    let dir = task_dir(home, &task);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let progress_path = dir.join(PROGRESS);
    let done = match fsutil::read_json::<TaskFile>(&progress_path) {
        Ok(p) if p.settings == settings && p.task == task => p.folders_done,
        Ok(_) => {
            return Err(crate::fixable!(
                [
                    &dir,
                    ": holds this task's outputs for other settings (folders, SAE, batch or ridges)"
                ],
                ["delete that folder to redo the task with these"]
            ));
        }
        Err(_) => 0,
    };
    let mut images = 0;
    for (k, ds) in folders.sets.iter().enumerate().skip(done) {
        let mut batches: Vec<(Vec<usize>, Vec<ImageOut>)> = Vec::new();
        let reuse = &opts.reuse_stores;
        let what = folders.names[k].as_str();
        images += for_each_batch(
            backbone,
            sae,
            ds,
            layer,
            opts.batch,
            Some(task),
            job,
            what,
            k > 0,
            reuse,
            &mut |ids, outs| {
                batches.push((ids.to_vec(), outs));
                Ok(())
            },
        )?;
        write_outputs(&dir.join(folder_file(k)), &batches)?;
        fsutil::write_json_atomic(
            &progress_path,
            &TaskFile {
                task,
                settings: settings.clone(),
                folders_done: k + 1,
                complete: k + 1 == folders.sets.len(),
            },
        )?;
    }
    Ok(OodTaskReport {
        task,
        folders: folders.sets.len(),
        images,
        resumed_at_folder: done,
        complete: true,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Each OOD task's state for the `tasks`-way split (`saescope status`).
pub fn ood_task_states(home: &Path, tasks: usize) -> Vec<TaskState> {
    let split = TaskSpec::split_dir(&tasks_dir(home), tasks);
    task_states(&split, tasks, &|t| -> TaskProgress {
        let p: TaskFile = fsutil::read_json(&task_dir(home, t).join(PROGRESS)).ok()?;
        let folders = 2 + p.settings.ood.len();
        Some((p.folders_done, folders, p.complete))
    })
}

/// Fits and scores from the finished tasks of a split OOD run of the SAE in `home` (the caller
/// holds the writer lock and saves the results). Refuses missing, unfinished or foreign tasks.
pub fn merge_ood(home: &Path, sae: &Sae, tasks: Option<usize>, job: &Job) -> Result<OodResults> {
    let n = chosen_split(&tasks_dir(home), tasks, "ood")?;
    let split = TaskSpec::split_dir(&tasks_dir(home), n);
    let (mut missing, mut unfinished) = (Vec::new(), Vec::new());
    for s in ood_task_states(home, n) {
        match s.state {
            "missing" => missing.push(s.task),
            "done" => {}
            other => unfinished.push(format!(
                "{} ({other}, {} of {} folders)",
                s.task, s.shards_done, s.shards
            )),
        }
    }
    if !missing.is_empty() || !unfinished.is_empty() {
        return Err(cannot_merge(
            &split,
            format!(
                "{n} OOD tasks; never ran: {missing:?}; not finished: [{}]",
                unfinished.join(", ")
            ),
            n,
        ));
    }
    let files: Vec<TaskFile> = (0..n)
        .map(|task| fsutil::read_json(&task_dir(home, &TaskSpec { task, tasks: n }).join(PROGRESS)))
        .collect::<Result<_>>()?;
    let settings = files[0].settings.clone();
    let foreign: Vec<usize> = files
        .iter()
        .filter(|f| f.settings != settings)
        .map(|f| f.task.task)
        .collect();
    if !foreign.is_empty() || settings.sae_fingerprint != sae.fingerprint() {
        return Err(Error::Workspace(format!(
            "{}: tasks {foreign:?} were run with other folders, batch or ridges than task 0, or \
             task 0 with another SAE than this one; delete their folders and run them again",
            split.display()
        )));
    }
    let folders = Folders::scan(&settings.fit, &settings.id, &settings.ood)?;
    let now: Vec<usize> = folders.sets.iter().map(|s| s.len()).collect();
    if now != settings.images {
        return Err(Error::Workspace(format!(
            "the folders changed since the tasks ran ({:?} images then, {now:?} now); run the \
             tasks again",
            settings.images
        )));
    }
    let opts = OodOptions {
        batch: settings.batch,
        ridge_codes: settings.ridge_codes,
        ridge_raw: settings.ridge_raw,
        reuse_stores: Vec::new(),
    };
    let dims = settings.dims;
    run_from(sae, dims, &folders, &opts, job, &mut |k, _, sink| {
        let mut fed = 0;
        for task in 0..n {
            let path = task_dir(home, &TaskSpec { task, tasks: n }).join(folder_file(k));
            for (ids, outs) in read_outputs(&path, dims)? {
                fed += ids.len();
                sink(&ids, outs)?;
            }
        }
        Ok(fed)
    })
}

/// Writes a task's outputs for one folder: its batches (dataset ids and per-image outputs).
fn write_outputs(path: &Path, batches: &[(Vec<usize>, Vec<ImageOut>)]) -> Result<()> {
    let outs = || batches.iter().flat_map(|(_, o)| o.iter());
    let f32s = |f: &dyn Fn(&ImageOut) -> &[f32]| -> Vec<f32> {
        outs().flat_map(|o| f(o).iter().copied()).collect()
    };
    let bytes = serialize(vec![
        (
            "batch_len",
            Tensor::U32(batches.iter().map(|(ids, _)| ids.len() as u32).collect()),
        ),
        (
            "ids",
            Tensor::U32(
                batches
                    .iter()
                    .flat_map(|(ids, _)| ids.iter().map(|&i| i as u32))
                    .collect(),
            ),
        ),
        (
            "sq",
            Tensor::U64(
                outs()
                    .flat_map(|o| [o.sq_err.to_bits(), o.sq_norm.to_bits()])
                    .collect(),
            ),
        ),
        ("code_mean", Tensor::F32(f32s(&|o| &o.code_mean))),
        ("residual_mean", Tensor::F32(f32s(&|o| &o.residual_mean))),
        ("cls", Tensor::F32(f32s(&|o| &o.cls))),
        (
            "cls_code",
            Tensor::F32(f32s(&|o| o.cls_code.as_deref().unwrap_or(&[]))),
        ),
        (
            "has_msp",
            Tensor::U32(outs().map(|o| o.msp.is_some() as u32).collect()),
        ),
        (
            "msp",
            Tensor::F32(outs().map(|o| o.msp.unwrap_or(0.0)).collect()),
        ),
        (
            "active_len",
            Tensor::U32(outs().map(|o| o.active_max.len() as u32).collect()),
        ),
        (
            "active_feature",
            Tensor::U32(
                outs()
                    .flat_map(|o| o.active_max.iter().map(|a| a.0))
                    .collect(),
            ),
        ),
        (
            "active_value",
            Tensor::F32(
                outs()
                    .flat_map(|o| o.active_max.iter().map(|a| a.1))
                    .collect(),
            ),
        ),
    ])?;
    fsutil::write_atomic(path, &bytes)
}

/// Reads what [`write_outputs`] wrote, checking every length against the widths.
fn read_outputs(path: &Path, dims: Dims) -> Result<Vec<(Vec<usize>, Vec<ImageOut>)>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |why: String| {
        crate::fixable!(
            [path, format!(": damaged OOD task output ({why})")],
            ["delete its task folder and run that task again"]
        )
    };
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    fn arr<T: bytemuck::Pod>(
        st: &safetensors::SafeTensors,
        name: &str,
        bad: &dyn Fn(String) -> Error,
    ) -> Result<Vec<T>> {
        let t = st.tensor(name).map_err(|e| bad(e.to_string()))?;
        crate::pod::from_le_bytes(t.data()).ok_or_else(|| bad(format!("`{name}` is not whole")))
    }
    let batch_len: Vec<u32> = arr(&st, "batch_len", &bad)?;
    let ids: Vec<u32> = arr(&st, "ids", &bad)?;
    let sq: Vec<u64> = arr(&st, "sq", &bad)?;
    let code_mean: Vec<f32> = arr(&st, "code_mean", &bad)?;
    let residual_mean: Vec<f32> = arr(&st, "residual_mean", &bad)?;
    let cls: Vec<f32> = arr(&st, "cls", &bad)?;
    let cls_code: Vec<f32> = arr(&st, "cls_code", &bad)?;
    let has_msp: Vec<u32> = arr(&st, "has_msp", &bad)?;
    let msp: Vec<f32> = arr(&st, "msp", &bad)?;
    let active_len: Vec<u32> = arr(&st, "active_len", &bad)?;
    let active_feature: Vec<u32> = arr(&st, "active_feature", &bad)?;
    let active_value: Vec<f32> = arr(&st, "active_value", &bad)?;
    let n = ids.len();
    let Dims { d, d_sae, has_cls } = dims;
    let n_active: usize = active_len.iter().map(|&l| l as usize).sum();
    if batch_len.iter().map(|&l| l as usize).sum::<usize>() != n
        || sq.len() != 2 * n
        || code_mean.len() != n * d_sae
        || residual_mean.len() != n * d
        || cls.len() != n * d
        || cls_code.len() != if has_cls { n * d_sae } else { 0 }
        || has_msp.len() != n
        || msp.len() != n
        || active_len.len() != n
        || active_feature.len() != n_active
        || active_value.len() != n_active
        || active_feature.iter().any(|&j| j as usize >= d_sae)
    {
        return Err(bad(
            "table sizes disagree with the SAE and layer widths".into()
        ));
    }
    let mut out = Vec::with_capacity(batch_len.len());
    let (mut i, mut a) = (0usize, 0usize);
    for &len in &batch_len {
        let mut batch_ids = Vec::with_capacity(len as usize);
        let mut outs = Vec::with_capacity(len as usize);
        for _ in 0..len {
            let na = active_len[i] as usize;
            batch_ids.push(ids[i] as usize);
            outs.push(ImageOut {
                sq_err: f64::from_bits(sq[2 * i]),
                sq_norm: f64::from_bits(sq[2 * i + 1]),
                code_mean: code_mean[i * d_sae..(i + 1) * d_sae].to_vec(),
                active_max: active_feature[a..a + na]
                    .iter()
                    .copied()
                    .zip(active_value[a..a + na].iter().copied())
                    .collect(),
                residual_mean: residual_mean[i * d..(i + 1) * d].to_vec(),
                cls: cls[i * d..(i + 1) * d].to_vec(),
                cls_code: has_cls.then(|| cls_code[i * d_sae..(i + 1) * d_sae].to_vec()),
                msp: (has_msp[i] == 1).then_some(msp[i]),
            });
            i += 1;
            a += na;
        }
        out.push((batch_ids, outs));
    }
    Ok(out)
}
