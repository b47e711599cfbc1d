//! Work split into tasks for a cluster (a Slurm job array, a Kubernetes indexed job): task I of
//! N does a fixed, contiguous range of a stage's shards and writes only its own files, so tasks
//! on different machines never write the same file and never wait for each other.
//!
//! Shared cluster file systems (NFS, Lustre) may not honour `flock` across machines, so tasks
//! do not lock the workspace. A task owns its part through a claim file created with `O_EXCL`
//! (atomic on NFS v3+ and Lustre) and kept fresh by a heartbeat: a second live run of the same
//! task is refused, and a run killed without cleaning up is taken over once its claim is stale
//! (at once on the same machine when its process is gone). `saescope merge`, one job after
//! the tasks, is the only writer of the workspace's shared files and takes the writer lock.

use crate::error::{Error, IoContext, Result};
use crate::fix::Opt;
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

/// How often a running task refreshes its claim.
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// A claim not refreshed for this long belongs to a run that is gone (machines' clocks are
/// assumed within a minute of each other, as NTP keeps them on a cluster).
pub const STALE_AFTER: Duration = Duration::from_secs(90);

/// Task `task` of `tasks` (0-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub task: usize,
    pub tasks: usize,
}

/// Where a task's number came from, for the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskSource {
    Flags,
    SlurmArray,
    IndexedJob,
}

impl TaskSpec {
    /// Checks `task < tasks` and `tasks ≥ 1`.
    pub fn new(task: usize, tasks: usize) -> Result<Self> {
        if tasks == 0 {
            return Err(crate::fix::at_least_one(Opt::Tasks));
        }
        if task >= tasks {
            return Err(crate::fixable!([
                Opt::Task,
                format!(" {task} does not exist with "),
                Opt::Tasks,
                format!(" {tasks}: tasks are numbered 0 to {}", tasks - 1)
            ]));
        }
        Ok(TaskSpec { task, tasks })
    }

    /// The task a run is: from `--task`/`--tasks`, else from the environment a job array sets
    /// (`SLURM_ARRAY_TASK_ID` − `SLURM_ARRAY_TASK_MIN` of `SLURM_ARRAY_TASK_COUNT`, or a
    /// Kubernetes `JOB_COMPLETION_INDEX` with `--tasks`). None: the whole work, on one machine.
    pub fn resolve(
        task: Option<usize>,
        tasks: Option<usize>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<(TaskSpec, TaskSource)>> {
        let number = |name: &str| -> Result<Option<usize>> {
            env(name)
                .map(|v| {
                    v.trim().parse::<usize>().map_err(|_| {
                        Error::Invalid(format!(
                            "{name}={v} in the environment is not a task number"
                        ))
                    })
                })
                .transpose()
        };
        let slurm_tasks = || number("SLURM_ARRAY_TASK_COUNT");
        let (task, source) = match task {
            Some(t) => (t, TaskSource::Flags),
            None => match number("SLURM_ARRAY_TASK_ID")? {
                Some(id) => {
                    let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
                    (id.saturating_sub(min), TaskSource::SlurmArray)
                }
                None => match number("JOB_COMPLETION_INDEX")? {
                    Some(i) => (i, TaskSource::IndexedJob),
                    None if tasks.is_some() => {
                        return Err(crate::fixable!(
                            [Opt::Tasks, " was given without a task number"],
                            [
                                "pass ",
                                Opt::Task,
                                " or run it as a job array (SLURM_ARRAY_TASK_ID)"
                            ]
                        ));
                    }
                    None => return Ok(None),
                },
            },
        };
        let tasks = match (tasks, source) {
            (Some(n), _) => n,
            (None, TaskSource::SlurmArray | TaskSource::Flags) => {
                slurm_tasks()?.ok_or_else(|| {
                    crate::fixable!(["the number of tasks is not known"], ["pass ", Opt::Tasks])
                })?
            }
            (None, TaskSource::IndexedJob) => {
                return Err(crate::fixable!(
                    ["JOB_COMPLETION_INDEX gives the task but not how many there are"],
                    ["pass ", Opt::Tasks]
                ));
            }
        };
        Ok(Some((TaskSpec::new(task, tasks)?, source)))
    }

    /// This task's contiguous part of `total` items: the first `total mod tasks` tasks get one
    /// more, so parts differ by at most one.
    pub fn range(&self, total: usize) -> Range<usize> {
        let (t, n) = (self.task, self.tasks);
        (total * t / n)..(total * (t + 1) / n)
    }

    /// The folder of a split into `tasks` tasks under a stage's `tasks/` folder.
    pub fn split_dir(stage_tasks_dir: &Path, tasks: usize) -> PathBuf {
        stage_tasks_dir.join(format!("{tasks}-tasks"))
    }

    /// This task's file stem inside its split folder.
    pub fn stem(&self) -> String {
        format!("task-{:04}", self.task)
    }
}

/// Who holds a claim.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
    /// Seconds since the Unix epoch.
    pub started: u64,
    pub what: String,
}

impl Holder {
    fn me(what: &str) -> Self {
        Holder {
            host: host_name(),
            pid: std::process::id(),
            started: unix_now(),
            what: what.into(),
        }
    }
}

pub use crate::fsutil::host_name;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether the run that holds a claim file is alive: on this machine its process is asked;
/// elsewhere its heartbeat must be recent.
pub fn holder_alive(path: &Path, holder: &Holder) -> bool {
    let proc_fs = Path::new("/proc/self").exists();
    if proc_fs && holder.host == host_name() {
        return holder.pid == std::process::id()
            || Path::new(&format!("/proc/{}", holder.pid)).exists();
    }
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age < STALE_AFTER)
}

/// Reads a claim file (None when there is none or it is unreadable, as a half-written one is).
pub fn read_holder(path: &Path) -> Option<Holder> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A task's claim: held while the run lives; the heartbeat stops and the file goes on drop.
pub struct Claim {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    beat: Option<std::thread::JoinHandle<()>>,
}

impl Claim {
    /// Claims the task whose claim file is `path` for `what`; refuses while another live run
    /// holds it, naming that run; takes over a dead run's claim.
    pub fn take(path: &Path, what: &str) -> Result<Claim> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).at(dir)?;
        let me = Holder::me(what);
        for _ in 0..5 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
            {
                Ok(mut f) => {
                    use std::io::Write;
                    let bytes = serde_json::to_vec(&me).unwrap_or_default();
                    f.write_all(&bytes).at(path)?;
                    f.sync_all().at(path)?;
                    return Ok(Claim::hold(path));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = read_holder(path);
                    let alive = match &holder {
                        Some(h) => holder_alive(path, h),
                        // Half-written just now, or damaged: alive while fresh.
                        None => holder_alive(
                            path,
                            &Holder {
                                host: String::new(),
                                ..me.clone()
                            },
                        ),
                    };
                    if alive {
                        let who = holder.map_or("a run whose claim is being written".into(), |h| {
                            format!(
                                "{} on {} (pid {}) since {}",
                                h.what, h.host, h.pid, h.started
                            )
                        });
                        return Err(Error::Workspace(format!(
                            "{}: this task is already running: {who}; wait for it, or cancel it \
                             (scancel) and run the task again to resume it",
                            path.display()
                        )));
                    }
                    // Take over a dead run's claim: only one taker's rename succeeds.
                    let aside = path.with_extension(format!("stale-{}-{}", me.pid, me.host));
                    if std::fs::rename(path, &aside).is_ok() {
                        let _ = std::fs::remove_file(&aside);
                    }
                }
                Err(e) => return Err(Error::io(path, e)),
            }
        }
        Err(Error::Workspace(format!(
            "{}: could not claim this task (other runs keep taking it); run it again",
            path.display()
        )))
    }

    fn hold(path: &Path) -> Claim {
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (path.to_path_buf(), stop.clone());
        let beat = std::thread::spawn(move || {
            let step = Duration::from_millis(200);
            let mut waited = Duration::ZERO;
            while !s.load(Ordering::Relaxed) {
                std::thread::sleep(step);
                waited += step;
                if waited >= HEARTBEAT {
                    waited = Duration::ZERO;
                    if let Ok(f) = std::fs::OpenOptions::new().append(true).open(&p) {
                        let _ = f.set_modified(SystemTime::now());
                    }
                }
            }
        });
        Claim {
            path: path.to_path_buf(),
            stop,
            beat: Some(beat),
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(b) = self.beat.take() {
            let _ = b.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn tasks_come_from_flags_or_the_job_array() {
        let none = env(&[]);
        assert_eq!(TaskSpec::resolve(None, None, &none).unwrap(), None);
        assert_eq!(
            TaskSpec::resolve(Some(1), Some(4), &none).unwrap(),
            Some((TaskSpec { task: 1, tasks: 4 }, TaskSource::Flags))
        );
        let slurm = env(&[
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_MIN", "5"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        assert_eq!(
            TaskSpec::resolve(None, None, &slurm).unwrap(),
            Some((TaskSpec { task: 2, tasks: 4 }, TaskSource::SlurmArray))
        );
        let k8s = env(&[("JOB_COMPLETION_INDEX", "3")]);
        assert!(TaskSpec::resolve(None, None, &k8s).is_err());
        assert_eq!(
            TaskSpec::resolve(None, Some(8), &k8s).unwrap(),
            Some((TaskSpec { task: 3, tasks: 8 }, TaskSource::IndexedJob))
        );
        for (task, tasks) in [(Some(7), Some(4)), (Some(0), Some(0)), (None, Some(2))] {
            let e = TaskSpec::resolve(task, tasks, &none)
                .unwrap_err()
                .to_string();
            assert!(e.contains("--task"), "{e}");
        }
    }

    #[test]
    fn ranges_cover_the_work_once() {
        for total in [0, 1, 5, 17, 100] {
            for tasks in 1..9 {
                let mut next = 0;
                for task in 0..tasks {
                    let r = TaskSpec { task, tasks }.range(total);
                    assert_eq!(r.start, next);
                    assert!(r.len() <= total.div_ceil(tasks));
                    next = r.end;
                }
                assert_eq!(next, total);
            }
        }
    }

    #[test]
    fn a_live_claim_is_refused_and_a_dead_one_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("task-0001.claim");
        let claim = Claim::take(&path, "extract").unwrap();
        let e = Claim::take(&path, "extract").err().unwrap().to_string();
        assert!(e.contains("already running"), "{e}");
        drop(claim);
        assert!(!path.exists());
        // A killed run's claim: a process of this machine that is gone.
        let dead = Holder {
            host: host_name(),
            pid: u32::MAX - 1,
            started: 0,
            what: "extract".into(),
        };
        std::fs::write(&path, serde_json::to_vec(&dead).unwrap()).unwrap();
        let claim = Claim::take(&path, "extract").unwrap();
        assert_eq!(read_holder(&path).unwrap().pid, std::process::id());
        drop(claim);
        // Another machine's claim: alive while its heartbeat is fresh.
        let other = Holder {
            host: "elsewhere".into(),
            ..dead
        };
        std::fs::write(&path, serde_json::to_vec(&other).unwrap()).unwrap();
        assert!(Claim::take(&path, "extract").is_err());
        let old = SystemTime::now() - STALE_AFTER - Duration::from_secs(1);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(Claim::take(&path, "extract").is_ok());
    }
}
