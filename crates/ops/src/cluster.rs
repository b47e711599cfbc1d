//! Past one machine: a stage split into tasks (a Slurm job array), the merge that folds them
//! into the workspace, the sbatch scripts that run both, and the task table (`saescope status`
//! and the app's workspace panel). See docs/CLUSTER.md.

use crate::analysis::index::split::{self as index_split, IndexMerge};
use crate::analysis::ood::split as ood_split;
use crate::error::{Error, Result};
use crate::fix::Opt;
use crate::lock::{Hold, writer};
use crate::store::Workspace;
use crate::store::split::{self, ActivationsMerge, TaskState};
pub use crate::store::tasks::{TaskSource, TaskSpec};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The task a run is, from `--task`/`--tasks` or the job array's environment.
pub fn task_of(
    task: Option<usize>,
    tasks: Option<usize>,
) -> Result<Option<(TaskSpec, TaskSource)>> {
    TaskSpec::resolve(task, tasks, &|name| std::env::var(name).ok())
}

/// A stage that splits into tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Extract,
    Index,
    Ood,
}
saescope_core::str_choices!(
    Stage: "extract" => Stage::Extract, "index" => Stage::Index, "ood" => Stage::Ood
);

#[derive(Clone, Debug, Default)]
pub struct MergeRequest {
    pub workspace: PathBuf,
    /// Which split (its number of tasks), when there are several.
    pub tasks: Option<usize>,
    /// None: the stage that has tasks not merged yet (extraction first).
    pub stage: Option<Stage>,
    /// The SAE whose index tasks are merged (default: the active one).
    pub sae: Option<PathBuf>,
}

#[derive(Clone, Debug, Serialize)]
pub struct MergeReport {
    pub workspace: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activations: Option<ActivationsMerge>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<IndexMerge>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ood: Option<OodMerge>,
}

#[derive(Clone, Debug, Serialize)]
pub struct OodMerge {
    pub tasks: usize,
    /// The results file had exactly these results already: nothing was written.
    pub already_merged: bool,
    pub summary: crate::analysis::ood::OodSummary,
}

/// Folds a split stage's finished tasks into the workspace. Takes the writer lock: merging is
/// one job, after the tasks.
pub fn merge(r: &MergeRequest) -> Result<MergeReport> {
    let ws = Workspace::open(&r.workspace)?;
    let lock = writer(&ws.dir, "merge", Hold::Job)?;
    let extract_splits = !split::splits(&split::tasks_dir(&ws)).is_empty();
    let stage = match r.stage {
        Some(s) => s,
        None => {
            let merged = crate::workspace::ActivationStore::open(&ws.activations_dir())
                .is_ok_and(|s| s.manifest.is_complete());
            let home = crate::sae::catalog::own_sae_dir(&ws, r.sae.as_deref())
                .ok()
                .flatten();
            let has = |dir: &dyn Fn(&Path) -> PathBuf| {
                home.as_deref()
                    .is_some_and(|h| !split::splits(&dir(h)).is_empty())
            };
            let index_splits = has(&index_split::tasks_dir);
            let ood_splits = has(&ood_split::tasks_dir);
            let index_merged = home
                .as_deref()
                .is_some_and(crate::analysis::index::is_complete);
            match (extract_splits, merged, index_splits, ood_splits) {
                (true, false, ..) | (true, true, false, false) => Stage::Extract,
                (_, _, true, false) => Stage::Index,
                (_, _, true, true) if !index_merged => Stage::Index,
                (_, _, _, true) => Stage::Ood,
                _ => {
                    return Err(Error::Workspace(format!(
                        "{}: no split tasks to merge (extract or index with --task/--tasks                          first)",
                        ws.dir.display()
                    )));
                }
            }
        }
    };
    let mut report = MergeReport {
        workspace: ws.dir.clone(),
        activations: None,
        index: None,
        ood: None,
    };
    match stage {
        Stage::Extract => {
            report.activations = Some(split::merge_activations(&ws, &lock, r.tasks)?);
        }
        Stage::Index => {
            let (home, sae) = crate::analyse::own_sae(&ws, r.sae.as_deref())?;
            report.index = Some(index_split::merge_index(&ws, &home, &sae, r.tasks)?);
        }
        Stage::Ood => {
            let (home, sae) = crate::analyse::own_sae(&ws, r.sae.as_deref())?;
            let tasks = split::chosen_split(&ood_split::tasks_dir(&home), r.tasks, "ood")?;
            let results = ood_split::merge_ood(&home, &sae, Some(tasks), &Default::default())?;
            let path = crate::analysis::ood::results_path(&home);
            // The bytes `save_results` would write (a JSON value would widen its f32s).
            let mut bytes = serde_json::to_vec_pretty(&results).unwrap_or_default();
            bytes.push(b'\n');
            let same = std::fs::read(&path).is_ok_and(|old| old == bytes);
            if !same {
                crate::analysis::ood::save_results(&home, &results)?;
            }
            report.ood = Some(OodMerge {
                tasks,
                already_merged: same,
                summary: crate::analysis::ood::summary(&results, &path, 10),
            });
        }
    }
    Ok(report)
}

#[derive(Clone, Debug, Serialize)]
pub struct StageStatus {
    pub stage: Stage,
    /// The SAE, for an index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sae: Option<String>,
    pub tasks: usize,
    pub merged: bool,
    pub states: Vec<TaskState>,
}

#[derive(Clone, Debug, Serialize)]
pub struct StatusReport {
    pub workspace: PathBuf,
    pub stages: Vec<StageStatus>,
    /// `squeue`'s lines for this workspace's jobs, when Slurm's tools are on PATH.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub squeue: Option<Vec<String>>,
}

/// Each split stage's tasks, from the files, and with `ask_slurm` Slurm's queue when `squeue`
/// is on PATH (a call that can take seconds on a busy controller).
pub fn status(workspace: &Path, ask_slurm: bool) -> Result<StatusReport> {
    let ws = Workspace::open(workspace)?;
    let merged = crate::workspace::ActivationStore::open(&ws.activations_dir())
        .is_ok_and(|s| s.manifest.is_complete());
    let mut stages: Vec<StageStatus> = split::splits(&split::tasks_dir(&ws))
        .into_iter()
        .map(|n| StageStatus {
            stage: Stage::Extract,
            sae: None,
            tasks: n,
            merged,
            states: split::extract_task_states(&ws, n),
        })
        .collect();
    for name in ws.sae_names() {
        let home = ws.sae_dir(&name);
        for n in split::splits(&index_split::tasks_dir(&home)) {
            stages.push(StageStatus {
                stage: Stage::Index,
                sae: Some(name.clone()),
                tasks: n,
                merged: crate::analysis::index::is_complete(&home),
                states: index_split::index_task_states(&home, n),
            });
        }
        for n in split::splits(&ood_split::tasks_dir(&home)) {
            stages.push(StageStatus {
                stage: Stage::Ood,
                sae: Some(name.clone()),
                tasks: n,
                merged: crate::analysis::ood::results_path(&home).is_file(),
                states: ood_split::ood_task_states(&home, n),
            });
        }
    }
    Ok(StatusReport {
        workspace: ws.dir.clone(),
        stages,
        squeue: ask_slurm.then(|| squeue(&ws.dir)).flatten(),
    })
}

/// The queue's lines for jobs named after this workspace (None without `squeue`).
fn squeue(ws_dir: &Path) -> Option<Vec<String>> {
    let names: Vec<String> = ["extract", "index", "ood", "merge"]
        .iter()
        .map(|s| job_name(s, ws_dir))
        .collect();
    let out = std::process::Command::new("squeue")
        .args(["-h", "-o", "%i %j %T %M %R", "-n"])
        .arg(names.join(","))
        .output()
        .ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    })
}

/// A job's name: the stage and the workspace folder's name, so `squeue -n` finds it.
fn job_name(stage: &str, ws_dir: &Path) -> String {
    let ws = ws_dir
        .file_name()
        .map_or("ws".into(), |n| n.to_string_lossy().into_owned());
    format!("saescope-{stage}-{ws}")
}

#[derive(Clone, Debug)]
pub struct SubmitRequest {
    /// The saescope binary the jobs run (on a file system every node sees).
    pub exe: PathBuf,
    /// The command and its arguments, as given to saescope (`extract --model … --workspace W`).
    pub command: Vec<String>,
    pub tasks: Option<usize>,
    /// Passed to sbatch as `#SBATCH` lines (partition, GPUs, time, account).
    pub sbatch: Vec<String>,
    pub dry_run: bool,
    /// Only the tasks not done yet (then the merge).
    pub resume: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct SubmitReport {
    pub workspace: PathBuf,
    pub stage: String,
    /// The scripts written (array or single job first, then the merge).
    pub scripts: Vec<PathBuf>,
    /// Tasks submitted (empty for a single job).
    pub tasks: Vec<usize>,
    /// Job ids (array or single job, then the merge); empty on a dry run.
    pub jobs: Vec<String>,
    pub dry_run: bool,
    /// The scripts' text, on a dry run (nothing is written or submitted).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub script_texts: Vec<String>,
}

/// Stages that split into tasks.
const SPLITTABLE: [&str; 3] = ["extract", "index", "ood"];

/// Writes the sbatch scripts for `command` into `WS/slurm/` and submits them: a split stage
/// as an array of tasks plus a merge that runs after all of them succeed (`afterok`), any other
/// command as one job. Prints (returns) the job ids.
pub fn submit(r: &SubmitRequest) -> Result<SubmitReport> {
    let Some(stage) = r.command.first().cloned() else {
        return Err(Error::Invalid(
            "name the command to submit, e.g. `saescope submit --tasks 4 -- extract --model … --workspace W …`".into(),
        ));
    };
    let workspace = flag_value(&r.command, "--workspace").ok_or_else(|| {
        crate::fixable!(
            [format!("`{stage}` is submitted without a workspace")],
            [
                "add ",
                Opt::Workspace,
                " to its arguments (its scripts and logs go there)"
            ]
        )
    })?;
    if r.command.iter().any(|a| {
        ["--task", "--tasks"]
            .iter()
            .any(|f| a == f || a.starts_with(&format!("{f}=")))
    }) {
        return Err(crate::fixable!(
            [
                format!("`{stage}`'s arguments carry "),
                Opt::Task,
                " or ",
                Opt::Tasks
            ],
            [
                "give ",
                Opt::Tasks,
                " to submit instead: it numbers the tasks itself"
            ]
        ));
    }
    for a in &r.sbatch {
        if !a.starts_with('-') {
            return Err(Error::Invalid(format!(
                "--sbatch `{a}`: pass sbatch options such as --sbatch=--partition=gpu or \
                 --sbatch=--gres=gpu:1"
            )));
        }
    }
    let splittable = SPLITTABLE.contains(&stage.as_str());
    let ws_dir = std::path::absolute(&workspace).map_err(|e| Error::io(&workspace, e))?;
    let slurm_dir = ws_dir.join("slurm");
    let exe = std::path::absolute(&r.exe).map_err(|e| Error::io(&r.exe, e))?;
    let (scripts, tasks) = match (splittable, r.tasks) {
        (true, Some(n)) => {
            TaskSpec::new(0, n)?;
            let todo: Vec<usize> = if r.resume {
                resume_tasks(
                    &ws_dir,
                    &stage,
                    flag_value(&r.command, "--sae").as_deref(),
                    n,
                )
            } else {
                (0..n).collect()
            };
            let mut scripts = Vec::new();
            if !todo.is_empty() {
                let mut args = r.command.clone();
                args.extend(["--task".into(), "$SLURM_ARRAY_TASK_ID".into()]);
                args.extend(["--tasks".into(), n.to_string()]);
                scripts.push((
                    slurm_dir.join(format!("{stage}-{n}-tasks.sbatch")),
                    script(&exe, &stage, &ws_dir, &args, &r.sbatch, Some(&todo))?,
                ));
            }
            let mut merge_args = vec![
                "merge".to_string(),
                "--workspace".into(),
                ws_dir.display().to_string(),
                "--tasks".into(),
                n.to_string(),
                "--stage".into(),
                stage.clone(),
            ];
            if let Some(sae) = flag_value(&r.command, "--sae") {
                merge_args.extend(["--sae".into(), sae.display().to_string()]);
            }
            scripts.push((
                slurm_dir.join(format!("merge-{stage}-{n}-tasks.sbatch")),
                script(&exe, "merge", &ws_dir, &merge_args, &[], None)?,
            ));
            (scripts, todo)
        }
        (true, None) => {
            return Err(crate::fixable!(
                [format!("`{stage}` runs as tasks on a cluster")],
                ["say how many with ", Opt::Tasks]
            ));
        }
        // A sweep splits into groups that need no merge: each saves its own SAEs, and a
        // re-run of a group reports the finished ones and resumes the rest.
        (false, Some(n)) if stage == "sweep" => {
            TaskSpec::new(0, n)?;
            if r.command.iter().any(|a| a.starts_with("--group")) {
                return Err(Error::Invalid(
                    "`sweep`'s arguments carry --group or --groups: give --tasks to submit \
                     instead, it numbers the groups itself"
                        .into(),
                ));
            }
            let mut args = r.command.clone();
            args.extend(["--group".into(), "$SLURM_ARRAY_TASK_ID".into()]);
            args.extend(["--groups".into(), n.to_string()]);
            let todo: Vec<usize> = (0..n).collect();
            (
                vec![(
                    slurm_dir.join(format!("{stage}-{n}-groups.sbatch")),
                    script(&exe, &stage, &ws_dir, &args, &r.sbatch, Some(&todo))?,
                )],
                todo,
            )
        }
        (false, Some(_)) => {
            return Err(crate::fixable!(
                [format!(
                    "`{stage}` is one job and cannot be split (these can: {}, and sweep into \
                     groups)",
                    SPLITTABLE.join(", ")
                )],
                ["leave out ", Opt::Tasks]
            ));
        }
        (false, None) => (
            vec![(
                slurm_dir.join(format!("{stage}.sbatch")),
                script(&exe, &stage, &ws_dir, &r.command, &r.sbatch, None)?,
            )],
            Vec::new(),
        ),
    };
    let mut report = SubmitReport {
        workspace: ws_dir.clone(),
        stage: stage.clone(),
        scripts: scripts.iter().map(|(p, _)| p.clone()).collect(),
        tasks,
        jobs: Vec::new(),
        dry_run: r.dry_run,
        script_texts: Vec::new(),
    };
    if r.dry_run {
        report.script_texts = scripts.into_iter().map(|(_, text)| text).collect();
        return Ok(report);
    }
    std::fs::create_dir_all(&slurm_dir).map_err(|e| Error::io(&slurm_dir, e))?;
    for (path, text) in &scripts {
        crate::fsutil::write_atomic(path, text.as_bytes())?;
    }
    let mut previous: Option<String> = None;
    for (path, _) in &scripts {
        let mut cmd = std::process::Command::new("sbatch");
        cmd.arg("--parsable");
        // The merge waits for every task of the array to succeed.
        if let Some(id) = &previous {
            cmd.arg(format!("--dependency=afterok:{id}"));
        }
        let out = cmd.arg(path).output().map_err(|e| {
            Error::Invalid(format!(
                "cannot run sbatch ({e}): submit on a Slurm login node, or run the script {} \
                 yourself",
                path.display()
            ))
        })?;
        if !out.status.success() {
            return Err(Error::Invalid(format!(
                "sbatch refused {}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        // `--parsable` prints "id" or "id;cluster".
        let id = String::from_utf8_lossy(&out.stdout)
            .trim()
            .split(';')
            .next()
            .unwrap_or_default()
            .to_string();
        report.jobs.push(id.clone());
        previous = Some(id);
    }
    Ok(report)
}

/// Tasks of the split not done yet (`sae`: the index's SAE, for an index).
fn resume_tasks(ws_dir: &Path, stage: &str, sae: Option<&Path>, tasks: usize) -> Vec<usize> {
    let Ok(ws) = Workspace::open(ws_dir) else {
        return (0..tasks).collect();
    };
    let states = match stage {
        "index" | "ood" => match crate::sae::catalog::own_sae_dir(&ws, sae) {
            Ok(Some(home)) if stage == "index" => index_split::index_task_states(&home, tasks),
            Ok(Some(home)) => ood_split::ood_task_states(&home, tasks),
            _ => return (0..tasks).collect(),
        },
        _ => split::extract_task_states(&ws, tasks),
    };
    states
        .into_iter()
        .filter(|s| s.state != "done")
        .map(|s| s.task)
        .collect()
}

/// The value of `--flag V` or `--flag=V` in `args`.
fn flag_value(args: &[String], flag: &str) -> Option<PathBuf> {
    let eq = format!("{flag}=");
    args.iter().enumerate().find_map(|(i, a)| {
        if a == flag {
            args.get(i + 1).map(PathBuf::from)
        } else {
            a.strip_prefix(&eq).map(PathBuf::from)
        }
    })
}

/// An sbatch script that runs `exe args…` (as an array over `array` when given), logging to
/// `WS/slurm/`. `$SLURM_ARRAY_TASK_ID` in an argument is left to the shell; everything else
/// is quoted.
fn script(
    exe: &Path,
    stage: &str,
    ws_dir: &Path,
    args: &[String],
    sbatch: &[String],
    array: Option<&[usize]>,
) -> Result<String> {
    let quote = |s: &str| -> Result<String> {
        if s == "$SLURM_ARRAY_TASK_ID" {
            return Ok("\"$SLURM_ARRAY_TASK_ID\"".into());
        }
        shlex::try_quote(s).map(|q| q.into_owned()).map_err(|_| {
            Error::Invalid(format!(
                "`{s}` cannot be written into a shell script (it holds a NUL byte)"
            ))
        })
    };
    let log = ws_dir.join("slurm").join(match array {
        Some(_) => format!("{stage}-%A_%a.out"),
        None => format!("{stage}-%j.out"),
    });
    let mut s = String::from("#!/bin/bash\n");
    s.push_str(&format!(
        "# Written by `saescope submit`: {stage}{}. Submit again with `saescope submit`, or \
         by hand with sbatch.\n",
        array.map_or(String::new(), |a| format!(
            " as {} tasks of a job array",
            a.len()
        ))
    ));
    s.push_str(&format!("#SBATCH --job-name={}\n", job_name(stage, ws_dir)));
    s.push_str(&format!(
        "#SBATCH --output={}\n",
        quote(&log.display().to_string())?
    ));
    if let Some(a) = array {
        let list: Vec<String> = a.iter().map(usize::to_string).collect();
        s.push_str(&format!("#SBATCH --array={}\n", list.join(",")));
    }
    for a in sbatch {
        s.push_str(&format!("#SBATCH {a}\n"));
    }
    s.push_str("set -eu\n");
    let mut line = vec![quote(&exe.display().to_string())?];
    for a in args {
        line.push(quote(a)?);
    }
    s.push_str(&format!("exec {}\n", line.join(" ")));
    Ok(s)
}
