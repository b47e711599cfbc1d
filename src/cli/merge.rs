//! `saescope merge`: fold the finished tasks of a split extraction into the workspace, exactly
//! as one machine would have written it (refuses missing, unfinished or foreign tasks; merging
//! again changes nothing).

use super::*;

#[derive(Args)]
pub struct MergeArgs {
    #[arg(long)]
    workspace: PathBuf,
    /// Which split to merge (its number of tasks), when the workspace holds several.
    #[arg(long)]
    tasks: Option<usize>,
}

pub fn run(a: MergeArgs, ctx: &Ctx) -> Result<()> {
    let r = ops::cluster::merge(&a.workspace, a.tasks)?;
    emit(ctx, &r, || {
        let m = &r.activations;
        println!(
            "{} tasks → {} shards, {} rows{}",
            m.tasks,
            m.shards,
            m.rows,
            if m.already_merged {
                " (already merged: nothing changed)"
            } else {
                ""
            }
        );
    })
}
