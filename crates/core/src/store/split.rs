//! Extraction split into tasks: each task writes its shards (the same files, named by their
//! global index, that one run would write) and its own manifest under
//! `activations/tasks/<N>-tasks/task-<I>.json`; [`merge_activations`] folds the finished tasks
//! into `activations/manifest.json`. Shard k covers the same images however the work is split,
//! and batches never cross a shard, so every shard is bit-identical to one machine's.

use super::activations::{MANIFEST_FILE, Manifest};
use super::lock::WriterLock;
use super::tasks::{self, TaskSpec};
use super::workspace::{StoreDType, Workspace};
use crate::backbone::TokenSelection;
use crate::error::{Error, Result};
use crate::fix::{Command, Opt};
use crate::fsutil;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What a task was run with, so a merge refuses tasks of another model, layer or selection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskOrigin {
    pub model: String,
    pub layer: usize,
    pub tokens: TokenSelection,
    pub dtype: StoreDType,
}

impl TaskOrigin {
    pub fn of(ws: &Workspace) -> Self {
        TaskOrigin {
            model: ws.config.model.source.clone(),
            layer: ws.config.layer,
            tokens: ws.config.tokens,
            dtype: ws.config.dtype,
        }
    }
}

/// One task's part of the store: its shards, in the manifest's own form.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskManifest {
    pub task: TaskSpec,
    pub origin: TaskOrigin,
    pub manifest: Manifest,
}

impl TaskManifest {
    /// Whether every shard of the task's range is there.
    pub fn is_complete(&self) -> bool {
        let range = self.task.range(self.manifest.planned_shards());
        range
            .clone()
            .all(|k| self.manifest.shards.iter().any(|s| s.index == k))
    }
}

/// `activations/tasks`.
pub fn tasks_dir(ws: &Workspace) -> PathBuf {
    ws.activations_dir().join("tasks")
}

/// A task's manifest file.
pub fn task_manifest_path(ws: &Workspace, task: &TaskSpec) -> PathBuf {
    TaskSpec::split_dir(&tasks_dir(ws), task.tasks).join(format!("{}.json", task.stem()))
}

/// A task's claim file (see [`tasks::Claim`]).
pub fn task_claim_path(ws: &Workspace, task: &TaskSpec) -> PathBuf {
    TaskSpec::split_dir(&tasks_dir(ws), task.tasks).join(format!("{}.claim", task.stem()))
}

/// The splits (numbers of tasks) a stage's `tasks` folder holds.
pub fn splits(stage_tasks_dir: &Path) -> Vec<usize> {
    let mut out: Vec<usize> = std::fs::read_dir(stage_tasks_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_suffix("-tasks")
                .and_then(|n| n.parse().ok())
        })
        .collect();
    out.sort_unstable();
    out
}

/// The split to merge: `tasks` when given, else the only one there is.
pub fn chosen_split(stage_tasks_dir: &Path, tasks: Option<usize>, stage: &str) -> Result<usize> {
    if let Some(n) = tasks {
        TaskSpec::new(0, n)?;
        return Ok(n);
    }
    match splits(stage_tasks_dir).as_slice() {
        [n] => Ok(*n),
        [] => Err(Error::Workspace(format!(
            "{}: no {stage} tasks to merge",
            stage_tasks_dir.display()
        ))),
        many => Err(crate::fixable!(
            [
                stage_tasks_dir,
                format!(": {stage} was split several ways ({many:?} tasks)")
            ],
            ["say which to merge with ", Opt::Tasks]
        )),
    }
}

/// How one task stands, from its files.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TaskState {
    pub task: usize,
    /// `done`, `running`, `failed` (stopped before its end) or `missing` (never started).
    pub state: &'static str,
    pub shards_done: usize,
    pub shards: usize,
    /// Where it runs or ran, when its claim says.
    pub host: Option<String>,
}

/// What a task's file says: shards done, shards in its part, and whether it is complete
/// (None when there is no readable file).
pub type TaskProgress = Option<(usize, usize, bool)>;

/// Each task's state for the `tasks`-way split of a stage whose claims are `<stem>.claim` in
/// `split_dir`, with `done_of` reading how far a task's own files say it got.
pub fn task_states(
    split_dir: &Path,
    tasks: usize,
    done_of: &dyn Fn(&TaskSpec) -> TaskProgress,
) -> Vec<TaskState> {
    (0..tasks)
        .map(|task| {
            let spec = TaskSpec { task, tasks };
            let claim = split_dir.join(format!("{}.claim", spec.stem()));
            let holder = tasks::read_holder(&claim);
            let running = claim.exists()
                && holder
                    .as_ref()
                    .is_none_or(|h| tasks::holder_alive(&claim, h));
            let progress = done_of(&spec);
            let (shards_done, shards, complete) = progress.unwrap_or((0, 0, false));
            let state = if complete {
                "done"
            } else if running {
                "running"
            } else if progress.is_some() || claim.exists() {
                "failed"
            } else {
                "missing"
            };
            TaskState {
                task,
                state,
                shards_done,
                shards,
                host: holder.map(|h| h.host),
            }
        })
        .collect()
}

/// The extraction tasks' states (`saescope status`).
pub fn extract_task_states(ws: &Workspace, tasks: usize) -> Vec<TaskState> {
    let dir = TaskSpec::split_dir(&tasks_dir(ws), tasks);
    task_states(&dir, tasks, &|spec| {
        let m: TaskManifest = fsutil::read_json(&task_manifest_path(ws, spec)).ok()?;
        let range = spec.range(m.manifest.planned_shards());
        Some((m.manifest.shards.len(), range.len(), m.is_complete()))
    })
}

/// The error of a merge with tasks missing or unfinished: `what` says which.
pub fn cannot_merge(split_dir: &Path, what: String, tasks: usize) -> Error {
    crate::fixable!(
        [split_dir, format!(": cannot merge {what}")],
        [
            "run those tasks (",
            Command::SubmitResume,
            ", or ",
            Opt::Task,
            " I ",
            Opt::Tasks,
            format!(" {tasks} for each), then merge again")
        ]
    )
}

#[derive(Clone, Debug, Serialize)]
pub struct ActivationsMerge {
    pub tasks: usize,
    pub shards: usize,
    pub rows: usize,
    /// The manifest already said exactly this: nothing was written.
    pub already_merged: bool,
}

/// Folds the `tasks`-way split's finished tasks into `activations/manifest.json` (under the
/// writer lock). Refuses, naming them, missing, unfinished, running or foreign tasks. Merging
/// again is a no-op. Memory: the task manifests (a few hundred bytes per shard).
pub fn merge_activations(
    ws: &Workspace,
    _held: &WriterLock,
    tasks: Option<usize>,
) -> Result<ActivationsMerge> {
    let n = chosen_split(&tasks_dir(ws), tasks, "extract")?;
    let ds = ws.dataset()?;
    let origin = TaskOrigin::of(ws);
    let (mut missing, mut unfinished, mut foreign) = (Vec::new(), Vec::new(), Vec::new());
    let mut parts: Vec<TaskManifest> = Vec::with_capacity(n);
    for (task, state) in extract_task_states(ws, n).into_iter().enumerate() {
        let spec = TaskSpec { task, tasks: n };
        let path = task_manifest_path(ws, &spec);
        match state.state {
            "missing" => missing.push(task),
            "running" => unfinished.push(format!(
                "{task} (running on {})",
                state.host.unwrap_or_default()
            )),
            "failed" => unfinished.push(format!(
                "{task} ({} of {} shards)",
                state.shards_done, state.shards
            )),
            _ => {
                let m: TaskManifest = fsutil::read_json(&path)?;
                if m.origin != origin || m.task != spec {
                    foreign.push(format!(
                        "{task} ({} layer {}, {:?} tokens, {:?})",
                        m.origin.model, m.origin.layer, m.origin.tokens, m.origin.dtype
                    ));
                } else if m.manifest.dataset_images != ds.len() {
                    foreign.push(format!(
                        "{task} (over {} images; the workspace lists {})",
                        m.manifest.dataset_images,
                        ds.len()
                    ));
                }
                parts.push(m);
            }
        }
    }
    let split_dir = TaskSpec::split_dir(&tasks_dir(ws), n);
    if !missing.is_empty() || !unfinished.is_empty() {
        let mut what = Vec::new();
        if !missing.is_empty() {
            what.push(format!("never ran: tasks {missing:?}"));
        }
        if !unfinished.is_empty() {
            what.push(format!("not finished: tasks {}", unfinished.join(", ")));
        }
        return Err(cannot_merge(
            &split_dir,
            format!("{n} extraction tasks; {}", what.join("; ")),
            n,
        ));
    }
    if !foreign.is_empty() {
        return Err(Error::Workspace(format!(
            "{}: tasks {} do not belong to this workspace ({} layer {}, {:?} tokens, {:?}, {} \
             images); delete their files and run them again",
            split_dir.display(),
            foreign.join(", "),
            origin.model,
            origin.layer,
            origin.tokens,
            origin.dtype,
            ds.len()
        )));
    }
    let first = &parts[0].manifest;
    let mut merged = Manifest {
        shards: Vec::new(),
        ..first.clone()
    };
    for p in &parts {
        let m = &p.manifest;
        if (m.d_model, &m.token_indices, m.images_per_shard)
            != (first.d_model, &first.token_indices, first.images_per_shard)
        {
            return Err(Error::Workspace(format!(
                "{}: task {} was run with other store settings ({} images per shard, width {}) \
                 than task 0 ({}, {}); run it again with the same --shard-images",
                split_dir.display(),
                p.task.task,
                m.images_per_shard,
                m.d_model,
                first.images_per_shard,
                first.d_model
            )));
        }
        let range = p.task.range(m.planned_shards());
        merged.shards.extend(
            m.shards
                .iter()
                .filter(|s| range.contains(&s.index))
                .cloned(),
        );
    }
    merged.shards.sort_by_key(|s| s.index);
    let act_dir = ws.activations_dir();
    for s in &merged.shards {
        let len = std::fs::metadata(act_dir.join(&s.file))
            .map(|m| m.len())
            .ok();
        if len != Some(s.bytes) {
            return Err(crate::fixable!(
                [
                    act_dir.join(&s.file),
                    format!(
                        ": shard {} is missing or of another size than its task wrote",
                        s.index
                    )
                ],
                ["run its task again (it redoes the shard), then merge again"]
            ));
        }
    }
    let path = act_dir.join(MANIFEST_FILE);
    let current: Option<Manifest> = fsutil::read_json(&path).ok();
    let already_merged = current.as_ref() == Some(&merged);
    if !already_merged {
        fsutil::write_json_atomic(&path, &merged)?;
    }
    Ok(ActivationsMerge {
        tasks: n,
        shards: merged.shards.len(),
        rows: merged.rows(),
        already_merged,
    })
}
