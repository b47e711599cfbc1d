//! `saescope merge`: fold the finished tasks of a split extraction, index or OOD run into the
//! workspace, exactly as one machine would have written it (refuses missing, unfinished or
//! foreign tasks; merging again changes nothing).

use super::*;

#[derive(Args)]
pub struct MergeArgs {
    #[arg(long)]
    workspace: PathBuf,
    /// Which split to merge (its number of tasks), when the workspace holds several.
    #[arg(long)]
    tasks: Option<usize>,
    /// The stage to merge (default: the one with tasks not merged yet, extraction first).
    #[arg(long, value_parser = choices::<ops::cluster::Stage>())]
    stage: Option<ops::cluster::Stage>,
    /// The SAE whose index tasks are merged (a name under WS/saes/; default: the active one).
    #[arg(long)]
    sae: Option<PathBuf>,
}

pub fn run(a: MergeArgs, ctx: &Ctx) -> Result<()> {
    let r = ops::cluster::merge(&ops::cluster::MergeRequest {
        workspace: a.workspace,
        tasks: a.tasks,
        stage: a.stage,
        sae: a.sae,
    })?;
    let again = |already: bool| {
        if already {
            " (already merged: nothing changed)"
        } else {
            ""
        }
    };
    emit(ctx, &r, || {
        if let Some(m) = &r.activations {
            let note = again(m.already_merged);
            println!(
                "{} tasks → {} shards, {} rows{note}",
                m.tasks, m.shards, m.rows
            );
        }
        if let Some(m) = &r.index {
            let note = again(m.already_merged);
            println!(
                "{} index tasks → {} shards, {} images{note}",
                m.tasks, m.shards, m.images
            );
        }
        if let Some(m) = &r.ood {
            let note = again(m.already_merged);
            println!("{} OOD tasks fitted and scored{note}", m.tasks);
            for row in &m.summary.table {
                println!(
                    "  {:<22} {:<22} AUROC {:.4}",
                    row.method, row.ood_set, row.auroc
                );
            }
        }
    })
}
