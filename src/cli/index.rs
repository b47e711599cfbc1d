//! `saescope index`: Build the feature index (top images per feature, frequencies, histograms, per-
//! image top features) into the SAE's folder (WS/saes/<name>/index); resumes an interrupted build.

use super::*;

#[derive(Args)]
pub struct IndexArgs {
    #[command(flatten)]
    target: SaeArgs,
    /// Top images kept per feature.
    #[arg(long, default_value_t = 64)]
    top_n: usize,
    /// Rebuild from scratch.
    #[arg(long)]
    rebuild: bool,
    /// Run only task I (0-based) of --tasks N: a contiguous part of the shards, merged later by
    /// `saescope merge`. Default: SLURM_ARRAY_TASK_ID − SLURM_ARRAY_TASK_MIN in a job array (or
    /// JOB_COMPLETION_INDEX in a Kubernetes indexed job).
    #[arg(long)]
    task: Option<usize>,
    /// How many tasks the index is split into. Default: SLURM_ARRAY_TASK_COUNT in a job array.
    #[arg(long)]
    tasks: Option<usize>,
}

pub fn run(a: IndexArgs, ctx: &Ctx) -> Result<()> {
    let IndexArgs {
        target: SaeArgs { workspace, sae },
        top_n,
        rebuild,
        task,
        tasks,
    } = a;
    let task = ops::cluster::task_of(task, tasks)?.map(|(t, _)| t);
    let (job, bar) = progress_job("index");
    let report = ops::analyse::build_index(
        &ops::analyse::IndexRequest {
            device: ctx.device_choice()?,
            workspace,
            sae,
            options: ops::analysis::index::IndexOptions {
                top_n,
                rebuild,
                task,
                ..Default::default()
            },
        },
        &job,
    )?;
    bar.finish_and_clear();
    emit_pretty(ctx, &report)
}
