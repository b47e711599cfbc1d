//! `saescope submit`: run a command on a Slurm cluster. A stage that splits into tasks
//! (`extract`) becomes a job array plus a merge job that waits for all of it (`afterok`); any
//! other command one job. The sbatch scripts are written into WS/slurm/ and the job ids printed.

use super::*;

#[derive(Args)]
pub struct SubmitArgs {
    /// Number of tasks for a stage that splits (extract).
    #[arg(long)]
    tasks: Option<usize>,
    /// An sbatch option for the jobs, e.g. --sbatch=--partition=gpu --sbatch=--gres=gpu:1
    /// --sbatch=--time=4:00:00 (repeatable).
    #[arg(long, allow_hyphen_values = true)]
    sbatch: Vec<String>,
    /// Print the scripts; write and submit nothing.
    #[arg(long)]
    dry_run: bool,
    /// Submit only the tasks that are not done (then the merge).
    #[arg(long)]
    resume: bool,
    /// The command and its arguments, after `--`: e.g. `-- extract --model M --layer 9 --images
    /// DIR --workspace WS`.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

pub fn run(a: SubmitArgs, ctx: &Ctx) -> Result<()> {
    let request = ops::cluster::SubmitRequest {
        exe: std::env::current_exe().context("finding the saescope binary to submit")?,
        command: a.command,
        tasks: a.tasks,
        sbatch: a.sbatch,
        dry_run: a.dry_run,
        resume: a.resume,
    };
    let r = ops::cluster::submit(&request)?;
    emit(ctx, &r, || {
        if r.dry_run {
            for (path, text) in r.scripts.iter().zip(&r.script_texts) {
                println!("# {} (not written)\n{text}", path.display());
            }
            return;
        }
        for (path, id) in r.scripts.iter().zip(&r.jobs) {
            println!("submitted {} as job {id}", path.display());
        }
        if !r.tasks.is_empty() {
            println!(
                "tasks {:?}; see them with `saescope status --workspace {}`",
                r.tasks,
                r.workspace.display()
            );
        }
    })
}
