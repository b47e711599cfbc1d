//! Background jobs for the app: a library call on its own thread (a `poll_promise::Promise`),
//! with live progress, rate, ETA and a cancel flag on top. The UI thread polls the promise and
//! reads a mutex-guarded progress snapshot each frame. Every piece
//! of background work in the app (workspace creation, analyses, pipeline loading, generations,
//! interventions, image encodings) is one of these; a job that hands a value back to its view
//! does so through its typed [`JobOutput`].

use crate::job::{Job, Progress};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Clone, Debug)]
pub enum JobState {
    Running,
    Done(String),
    /// The error itself, shared: each view words it for the app ([`crate::words::shown`]).
    Failed(Arc<crate::Error>),
    Cancelled,
}

impl PartialEq for JobState {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (JobState::Running, JobState::Running) | (JobState::Cancelled, JobState::Cancelled) => {
                true
            }
            (JobState::Done(a), JobState::Done(b)) => a == b,
            (JobState::Failed(a), JobState::Failed(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

pub struct BackgroundJob {
    pub title: String,
    cancel: Arc<AtomicBool>,
    progress: Arc<Mutex<Option<Progress>>>,
    /// How the work ended (`JobState::Running` is never its value).
    ended: poll_promise::Promise<JobState>,
    /// When the current stage began ([`starts_stage`]), and its count then: rate and ETA are per
    /// stage, so a job of several stages (extract → train → index) or a resumed one reads right.
    stage: Arc<Mutex<(Instant, u64)>>,
    /// Whether the view holding the job has acted on its success ([`Self::newly_done`]).
    acted_on: AtomicBool,
}

/// The value a finished job hands back to the view that started it, taken once. It is in place
/// before the job's state turns to `Done`.
pub struct JobOutput<T>(Arc<Mutex<Option<T>>>);

/// How a job that hands back a value ended.
pub enum Ended<T> {
    Done(T),
    Failed(Arc<crate::Error>),
    Cancelled,
}

impl<T> JobOutput<T> {
    pub fn take(&self) -> Option<T> {
        self.0.lock().ok()?.take()
    }

    /// How `job` (the job this output came with) ended, with its value; `None` while it runs.
    /// It answers once for a job that is done: the value is taken.
    pub fn ended(&self, job: &BackgroundJob) -> Option<Ended<T>> {
        match job.state() {
            JobState::Running => None,
            JobState::Done(_) => self.take().map(Ended::Done),
            JobState::Failed(e) => Some(Ended::Failed(e)),
            JobState::Cancelled => Some(Ended::Cancelled),
        }
    }
}

/// Whether report `new` begins a stage after `old`: another unit or total, or a count that went
/// back (the benchmark counts the same images again for each SAE and control; its rate and ETA
/// read from the first one's start, far off).
fn starts_stage(old: Option<&Progress>, new: &Progress) -> bool {
    old.is_none_or(|old| old.unit != new.unit || old.total != new.total || new.done < old.done)
}

impl BackgroundJob {
    /// Runs `work` on a new thread; its `Ok` text is shown when it finishes.
    pub fn spawn(
        title: &str,
        ctx: &egui::Context,
        work: impl FnOnce(&Job) -> crate::Result<String> + Send + 'static,
    ) -> Self {
        Self::spawn_with_output(title, ctx, move |job| work(job).map(|msg| ((), msg))).0
    }

    /// Runs `work` on a new thread; it returns a value for the view (through the [`JobOutput`])
    /// and the text shown when it finishes.
    pub fn spawn_with_output<T: Send + 'static>(
        title: &str,
        ctx: &egui::Context,
        work: impl FnOnce(&Job) -> crate::Result<(T, String)> + Send + 'static,
    ) -> (Self, JobOutput<T>) {
        let output = Arc::new(Mutex::new(None));
        let out = output.clone();
        let cancel = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(Mutex::new(None));
        let stage = Arc::new(Mutex::new((Instant::now(), 0)));
        let (p, c2, st) = (progress.clone(), ctx.clone(), stage.clone());
        let c3 = ctx.clone();
        let job = Job::new(cancel.clone(), move |pr: &Progress| {
            if let Ok(mut g) = p.lock() {
                if starts_stage(g.as_ref(), pr)
                    && let Ok(mut t) = st.lock()
                {
                    *t = (Instant::now(), pr.done);
                }
                *g = Some(pr.clone());
            }
            c2.request_repaint();
        });
        let ended = poll_promise::Promise::spawn_thread(title, move || {
            // A panic in the work is a failed job, not a promise that never answers (polling
            // one whose thread died would panic the UI).
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&job)))
                .unwrap_or_else(|_| {
                    Err(crate::Error::Invalid(
                        "the job stopped on an internal error (a bug: please report it)".into(),
                    ))
                });
            let next = match result {
                Ok((value, msg)) => {
                    if let Ok(mut g) = out.lock() {
                        *g = Some(value);
                    }
                    JobState::Done(msg)
                }
                Err(crate::Error::Cancelled) => JobState::Cancelled,
                Err(e) => JobState::Failed(Arc::new(e)),
            };
            c3.request_repaint();
            next
        });
        let job = BackgroundJob {
            title: title.to_string(),
            cancel,
            progress,
            ended,
            stage,
            acted_on: AtomicBool::new(false),
        };
        (job, JobOutput(output))
    }

    pub fn is_running(&self) -> bool {
        self.state() == JobState::Running
    }

    /// The last progress the work reported.
    pub fn progress(&self) -> Option<Progress> {
        self.progress.lock().ok().and_then(|g| g.clone())
    }

    /// True once, on the first call after the job succeeded: the view acts on what it produced
    /// then, and never again when later jobs end.
    pub fn newly_done(&self) -> bool {
        matches!(self.state(), JobState::Done(_)) && !self.acted_on.swap(true, Ordering::Relaxed)
    }

    pub fn state(&self) -> JobState {
        self.ended.ready().cloned().unwrap_or(JobState::Running)
    }

    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// Progress bar, rate, ETA, message and a cancel button.
    pub fn ui(&self, ui: &mut egui::Ui) {
        self.line(ui, false);
    }

    /// The job's line; `compact` keeps it to one line (long texts are cut, in full on hover).
    fn line(&self, ui: &mut egui::Ui, compact: bool) {
        let p = self.progress();
        let text = |ui: &mut egui::Ui, t: egui::RichText| {
            let l = egui::Label::new(t);
            ui.add(if compact { l.truncate() } else { l.wrap() });
        };
        ui.horizontal(|ui| {
            ui.label(egui::RichText::new(&self.title).strong());
            match self.state() {
                JobState::Running => {
                    let (done, total) = p.as_ref().map_or((0, 0), |p| (p.done, p.total));
                    let frac = if total > 0 {
                        done as f32 / total as f32
                    } else {
                        0.0
                    };
                    let (since, done0) =
                        self.stage.lock().map(|g| *g).unwrap_or((Instant::now(), 0));
                    let secs = since.elapsed().as_secs_f64();
                    let rate = done.saturating_sub(done0) as f64 / secs.max(1e-3);
                    // A rate only once this stage has counted something over a moment (it read
                    // "0.0/s" at a stage's start and on a stage done in one step).
                    let speed = if done > done0 && secs >= 0.5 {
                        format!(" · {rate:.1}/s")
                    } else {
                        String::new()
                    };
                    let eta = if rate > 0.0 && total > done {
                        format!(" · ETA {:.0} s", (total - done) as f64 / rate)
                    } else {
                        String::new()
                    };
                    let unit = p.as_ref().map_or("", |p| p.unit);
                    if total > 0 {
                        ui.add(
                            egui::ProgressBar::new(frac)
                                .desired_width(360f32.min(ui.available_width() * 0.5))
                                .text(format!("{done}/{total} {unit}{speed}{eta}")),
                        );
                    } else {
                        // No count yet (or a job that cannot count): say so, not "0/0". A
                        // static line: the job's own reports repaint it when they come.
                        ui.label("starting…");
                    }
                    // Cancel before the message, so a cut message never hides it.
                    if ui
                        .button("Cancel")
                        .on_hover_text("Stop this job; it resumes where it stopped next time")
                        .clicked()
                    {
                        self.cancel();
                    }
                    if let Some(p) = &p {
                        text(ui, egui::RichText::new(&p.message).weak());
                    }
                }
                JobState::Done(msg) => text(ui, egui::RichText::new(format!("done — {msg}"))),
                JobState::Cancelled => text(
                    ui,
                    egui::RichText::new("cancelled (run it again to resume)"),
                ),
                JobState::Failed(e) => {
                    let color = ui.visuals().error_fg_color;
                    text(
                        ui,
                        egui::RichText::new(crate::words::shown(&e)).color(color),
                    );
                }
            }
        });
    }
}

/// A view's jobs in one row that never grows, so starting or finishing a job never pushes the
/// page down: the newest running job (else the newest one) on one line, and "All jobs (N)",
/// which opens every job in full in a window over the page. `idle` is the row's text while the
/// view has no job (empty where the view shows other work's progress itself).
pub fn status_area(
    ui: &mut egui::Ui,
    view: &str,
    idle: &str,
    jobs: &[BackgroundJob],
    show_all: &mut bool,
) {
    let running = jobs.iter().filter(|j| j.is_running()).count();
    ui.horizontal(|ui| {
        ui.set_min_height(ui.spacing().interact_size.y);
        let shown = jobs.iter().rev().find(|j| j.is_running()).or(jobs.last());
        if jobs.len() > 1 {
            let all = if running > 1 {
                format!("All jobs ({running} running)")
            } else {
                format!("All jobs ({})", jobs.len())
            };
            ui.toggle_value(show_all, all)
                .on_hover_text("Every job of this view, in full, in a window over the page");
        }
        match shown {
            Some(j) => j.line(ui, true),
            None => {
                ui.label(egui::RichText::new(idle).weak());
            }
        }
    });
    if *show_all && !jobs.is_empty() {
        egui::Window::new("Jobs")
            .id(egui::Id::unique(("all_jobs", view)))
            .open(show_all)
            .default_width(560.0)
            .show(ui.ctx(), |ui| {
                egui::ScrollArea::vertical()
                    .max_height(ui.ctx().content_rect().height() * 0.6)
                    .show(ui, |ui| {
                        for j in jobs.iter().rev() {
                            j.line(ui, false);
                        }
                    });
            });
    }
}

/// Runs `work` off the UI thread with no progress, cancel or result (a file dialog, a quick check
/// of a typed path, which hand their answers over themselves): the app's one other way to start
/// a thread, so every thread starts here.
pub fn run_detached(work: impl FnOnce() + Send + 'static) {
    #[allow(clippy::disallowed_methods)] // the job module is where the app's threads start
    std::thread::spawn(work);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait(job: &BackgroundJob) -> JobState {
        let start = Instant::now();
        while job.is_running() && start.elapsed().as_secs() < 10 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        job.state()
    }

    #[test]
    fn a_stage_starts_on_a_new_unit_or_total_or_a_count_that_went_back() {
        let at = |done, total, unit| Progress {
            done,
            total,
            unit,
            message: String::new(),
        };
        let old = at(90, 100, "images");
        assert!(starts_stage(None, &old));
        assert!(!starts_stage(Some(&old), &at(95, 100, "images")));
        assert!(starts_stage(Some(&old), &at(10, 100, "images")));
        assert!(starts_stage(Some(&old), &at(95, 200, "images")));
        assert!(starts_stage(Some(&old), &at(95, 100, "tokens")));
    }

    #[test]
    fn a_job_hands_back_its_value_and_a_panic_is_a_failure() {
        let ctx = egui::Context::default();
        let (job, out) =
            BackgroundJob::spawn_with_output("sum", &ctx, |_| Ok((41 + 1, "ok".into())));
        assert_eq!(wait(&job), JobState::Done("ok".into()));
        assert!(matches!(out.ended(&job), Some(Ended::Done(42))));
        assert!(job.newly_done(), "a finished job is new once");
        assert!(!job.newly_done(), "and never again");
        let job = BackgroundJob::spawn("boom", &ctx, |_| -> crate::Result<String> {
            panic!("a bug in the work")
        });
        assert!(
            matches!(wait(&job), JobState::Failed(e) if e.to_string().contains("internal error"))
        );
        let job = BackgroundJob::spawn("stop", &ctx, |j| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            j.check()?;
            Ok(String::new())
        });
        job.cancel();
        assert_eq!(wait(&job), JobState::Cancelled);
    }
}
