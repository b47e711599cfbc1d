//! The feature index split into tasks and merged. Task I of N indexes a contiguous range of the
//! store's shards into `index/tasks/N-tasks/task-IIII/` (its own progress, state and per-shard
//! image files, resumable like the whole index); [`merge_index`] folds the tasks' states in
//! shard order into the index one pass would have built:
//! - counts, histograms and class tables are summed (sums are exact, see [`super::exact`]);
//! - maxima are taken;
//! - each feature's top list is a k-way merge ordered by activation, ties to the earlier image
//!   (the one pass keeps the earlier image of a tie too);
//! - each feature's random sample keeps the smallest sampling keys (bottom-k sampling does not
//!   depend on the order images arrive in).
//!
//! Memory: the merged state and one task's state at a time (2 × the state bound of
//! [`super::state_bytes_bound`]), whatever the number of tasks.

use super::*;
use crate::store::split::{TaskProgress, TaskState, cannot_merge, chosen_split, task_states};
use crate::store::tasks::TaskSpec;

/// `index/tasks` of the SAE in `home`.
pub fn tasks_dir(home: &Path) -> PathBuf {
    index_dir(home).join("tasks")
}

/// Task `t`'s folder.
pub fn task_dir(home: &Path, t: &TaskSpec) -> PathBuf {
    TaskSpec::split_dir(&tasks_dir(home), t.tasks).join(t.stem())
}

/// Task `t`'s claim file.
pub fn task_claim(home: &Path, t: &TaskSpec) -> PathBuf {
    TaskSpec::split_dir(&tasks_dir(home), t.tasks).join(format!("{}.claim", t.stem()))
}

impl FeatureIndex {
    /// Adds the index of the next images (`later`: built over shards after this one's), so the
    /// result is what one pass over both would have built.
    pub fn merge(&mut self, later: &FeatureIndex) -> Result<()> {
        let shape = |i: &FeatureIndex| (i.d_sae, i.top_n, i.tokens_per_image, i.n_classes, i.d_in);
        if shape(self) != shape(later) {
            return Err(Error::Invalid(format!(
                "index parts of different shapes cannot be merged: {:?} and {:?} (features, \
                 top list, tokens, classes, width)",
                shape(self),
                shape(later)
            )));
        }
        self.n_images += later.n_images;
        self.n_tokens += later.n_tokens;
        let add = |a: &mut Vec<u64>, b: &Vec<u64>| a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        add(&mut self.token_count, &later.token_count);
        add(&mut self.image_count, &later.image_count);
        add(&mut self.hist, &later.hist);
        add(&mut self.class_images, &later.class_images);
        add(&mut self.class_sizes, &later.class_sizes);
        self.act_sum.add_all(&later.act_sum);
        self.class_act.add_all(&later.class_act);
        self.class_raw.add_all(&later.class_raw);
        for (m, o) in self.max_act.iter_mut().zip(&later.max_act) {
            *m = m.max(*o);
        }
        for (top, more) in self.top.iter_mut().zip(&later.top) {
            top.extend(more.iter().cloned());
            // Stable: of equal activations, the earlier image (this part's) stays first.
            top.sort_by(|a, b| b.value.total_cmp(&a.value));
            top.truncate(self.top_n);
        }
        for (j, (sample, more)) in self.samples.iter_mut().zip(&later.samples).enumerate() {
            sample.extend(more.iter().copied());
            sample.sort_by_key(|e| sample_key(j as u32, e.image));
            sample.truncate(SAMPLES);
        }
        self.has_samples &= later.has_samples;
        Ok(())
    }
}

/// What a task's progress file says (None without one).
fn task_progress(home: &Path, t: &TaskSpec) -> Option<ProgressFile> {
    fsutil::read_json(&task_dir(home, t).join(PROGRESS)).ok()
}

/// Each index task's state for the `tasks`-way split (`saescope status`).
pub fn index_task_states(home: &Path, tasks: usize) -> Vec<TaskState> {
    let split = TaskSpec::split_dir(&tasks_dir(home), tasks);
    task_states(&split, tasks, &|t| -> TaskProgress {
        let p = task_progress(home, t)?;
        let (first, end) = (p.first_shard, p.end_shard.unwrap_or(p.shards_done));
        Some((p.shards_done.saturating_sub(first), end - first, p.complete))
    })
}

#[derive(Clone, Debug, Serialize)]
pub struct IndexMerge {
    pub index: String,
    pub tasks: usize,
    pub shards: usize,
    pub images: u64,
    pub seconds: f64,
    /// The index already was this merge: nothing was written.
    pub already_merged: bool,
}

/// Folds the finished index tasks of the SAE in `home` into its index (the caller holds the
/// writer lock). Refuses missing, unfinished, running or foreign tasks, naming them; merging
/// again is a no-op.
pub fn merge_index(
    ws: &Workspace,
    home: &Path,
    sae: &Sae,
    tasks: Option<usize>,
) -> Result<IndexMerge> {
    let start = Instant::now();
    let n = chosen_split(&tasks_dir(home), tasks, "index")?;
    let store = ActivationStore::open(&ws.activations_dir())?;
    let n_shards = store.manifest.shards.len();
    let dir = index_dir(home);
    let fingerprint = sae_fingerprint(sae);
    if let Ok(p) = fsutil::read_json::<ProgressFile>(&dir.join(PROGRESS))
        && p.complete
        && p.merged_from == Some(n)
        && p.settings.sae_fingerprint == fingerprint
    {
        return Ok(IndexMerge {
            index: dir.display().to_string(),
            tasks: n,
            shards: n_shards,
            images: read_state(&dir.join(&p.state_file))?.n_images,
            seconds: p.seconds,
            already_merged: true,
        });
    }
    let (mut missing, mut unfinished, mut foreign) = (Vec::new(), Vec::new(), Vec::new());
    let mut progress = Vec::with_capacity(n);
    for state in index_task_states(home, n) {
        let t = TaskSpec {
            task: state.task,
            tasks: n,
        };
        match state.state {
            "missing" => missing.push(t.task),
            "running" | "failed" => unfinished.push(format!(
                "{} ({}, {} of {} shards)",
                t.task, state.state, state.shards_done, state.shards
            )),
            _ => match task_progress(home, &t) {
                Some(p)
                    if p.settings.sae_fingerprint == fingerprint
                        && p.format == FORMAT
                        && (p.first_shard..p.shards_done) == t.range(n_shards) =>
                {
                    progress.push(p)
                }
                _ => foreign.push(t.task),
            },
        }
    }
    let split = TaskSpec::split_dir(&tasks_dir(home), n);
    if !missing.is_empty() || !unfinished.is_empty() {
        return Err(cannot_merge(
            &split,
            format!(
                "{n} index tasks; never ran: {missing:?}; not finished: [{}]",
                unfinished.join(", ")
            ),
            n,
        ));
    }
    if !foreign.is_empty() {
        return Err(Error::Workspace(format!(
            "{}: index tasks {foreign:?} were built with another SAE, top-list length or store \
             ({n_shards} shards now); delete their folders and run them again",
            split.display()
        )));
    }
    let top_n = progress[0].settings.top_n;
    if progress.iter().any(|p| p.settings.top_n != top_n) {
        return Err(Error::Workspace(format!(
            "{}: the tasks kept top lists of different lengths; run them again with one --top-n",
            split.display()
        )));
    }
    let mut merged: Option<FeatureIndex> = None;
    for (task, p) in progress.iter().enumerate() {
        let t = TaskSpec { task, tasks: n };
        let part = read_state(&task_dir(home, &t).join(&p.state_file))?;
        match &mut merged {
            None => merged = Some(part),
            Some(m) => m.merge(&part)?,
        }
        // The per-image top features: one file per shard, whoever wrote it.
        for s in t.range(n_shards) {
            let (from, to) = (
                task_dir(home, &t).join(image_top_file(s)),
                dir.join(image_top_file(s)),
            );
            let bytes = std::fs::read(&from).at(&from)?;
            fsutil::write_atomic(&to, &bytes)?;
        }
    }
    let Some(merged) = merged else {
        return Err(Error::Invalid("no index tasks to merge".into()));
    };
    let state_file = format!("state-{:05}.safetensors", n_shards.saturating_sub(1));
    write_state(&dir.join(&state_file), &merged)?;
    let seconds: f64 = progress.iter().map(|p| p.seconds).sum();
    fsutil::write_json_atomic(
        &dir.join(PROGRESS),
        &ProgressFile {
            format: FORMAT.into(),
            settings: IndexSettings {
                top_n,
                sae_fingerprint: fingerprint,
            },
            shards_done: n_shards,
            complete: true,
            state_file: state_file.clone(),
            seconds,
            first_shard: 0,
            end_shard: None,
            merged_from: Some(n),
        },
    )?;
    remove_other_states(&dir, &state_file);
    Ok(IndexMerge {
        index: dir.display().to_string(),
        tasks: n,
        shards: n_shards,
        images: merged.n_images,
        seconds: start.elapsed().as_secs_f64(),
        already_merged: false,
    })
}
