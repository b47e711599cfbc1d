//! `saescope status`: each task of a workspace's split jobs (done, running, failed, missing),
//! from the task files, with Slurm's queue when `squeue` is on PATH.

use super::*;

#[derive(Args)]
pub struct StatusArgs {
    #[arg(long)]
    workspace: PathBuf,
}

pub fn run(a: StatusArgs, ctx: &Ctx) -> Result<()> {
    let r = ops::cluster::status(&a.workspace, true)?;
    emit(ctx, &r, || {
        if r.stages.is_empty() {
            println!("no split jobs in {}", r.workspace.display());
        }
        for s in &r.stages {
            let done = s.states.iter().filter(|t| t.state == "done").count();
            println!(
                "{:?}{} in {} tasks: {done} done{}",
                s.stage,
                s.sae
                    .as_ref()
                    .map_or(String::new(), |n| format!(" of SAE {n}")),
                s.tasks,
                if s.merged { ", merged" } else { "" }
            );
            for t in &s.states {
                println!(
                    "  task {:>4}  {:<8} {}/{} shards{}",
                    t.task,
                    t.state,
                    t.shards_done,
                    t.shards,
                    t.host
                        .as_ref()
                        .map_or(String::new(), |h| format!("  on {h}"))
                );
            }
        }
        if let Some(q) = &r.squeue {
            println!("squeue: {}", if q.is_empty() { "no jobs" } else { "" });
            for l in q {
                println!("  {l}");
            }
        }
    })
}
