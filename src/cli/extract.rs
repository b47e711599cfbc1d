//! `saescope extract`: Extract activations of one layer over an image folder into a workspace
//! (resumable).

use super::*;

#[derive(Args)]
pub struct ExtractArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Residual stream after this block (0-based).
    #[arg(long)]
    layer: usize,
    /// Image folder (class = sub-folder).
    #[arg(long)]
    images: PathBuf,
    #[arg(long)]
    workspace: PathBuf,
    /// Which tokens to store.
    #[arg(long, default_value = "all", value_parser = choices::<TokenSelection>())]
    tokens: TokenSelection,
    /// Storage type of the activations.
    #[arg(long, default_value = "f16", value_parser = choices::<StoreDType>())]
    dtype: StoreDType,
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Images per shard (default: about 64 MiB per shard).
    #[arg(long)]
    shard_images: Option<usize>,
    /// Run only task I (0-based) of --tasks N: a contiguous part of the shards, merged later by
    /// `saescope merge`. Default: SLURM_ARRAY_TASK_ID − SLURM_ARRAY_TASK_MIN in a job array (or
    /// JOB_COMPLETION_INDEX in a Kubernetes indexed job).
    #[arg(long)]
    task: Option<usize>,
    /// How many tasks the work is split into. Default: SLURM_ARRAY_TASK_COUNT in a job array.
    #[arg(long)]
    tasks: Option<usize>,
    /// Print the number of images, the store's size on disk and a rough extraction time (a
    /// forward pass timed here on the first images), and extract nothing.
    #[arg(long)]
    estimate: bool,
}

pub fn run(a: ExtractArgs, ctx: &Ctx) -> Result<()> {
    let ExtractArgs {
        model,
        layer,
        images,
        workspace,
        tokens,
        dtype,
        batch,
        shard_images,
        task,
        tasks,
        estimate,
    } = a;
    let options = ops::workspace::ExtractOptions {
        layer,
        tokens,
        dtype,
        batch_size: batch,
        images_per_shard: shard_images,
    };
    if estimate {
        let e = ops::estimate::estimate(&ops::estimate::EstimateRequest {
            model: model.spec()?,
            device: ctx.device_choice()?,
            images,
            options,
        })?;
        return emit(ctx, &e, || {
            println!(
                "{} images × {} tokens × {} × {} bytes ({:?}) = {} bytes on disk",
                e.images, e.tokens_per_image, e.d_model, e.bytes_per_value, e.dtype, e.store_bytes
            );
            match (e.seconds, e.images_per_s) {
                (Some(s), Some(rate)) => println!(
                    "extraction about {s:.0} s at {rate:.1} images/s (a forward pass to layer \
                     {layer} timed on {} images on {})",
                    e.timed_images, e.device
                ),
                _ => println!("extraction time unknown until the first shard"),
            }
            for s in &e.unreadable {
                println!("  unreadable {}: {}", s.path, s.reason);
            }
        });
    }
    let task = ops::cluster::task_of(task, tasks)?;
    let (job, bar) = progress_job("extract");
    let report = ops::build::extract(
        &ops::build::ExtractRequest {
            model: model.spec()?,
            device: ctx.device_choice()?,
            images,
            workspace,
            options,
            task: task.map(|(t, _)| t),
        },
        &job,
    )?;
    bar.finish_and_clear();
    emit(ctx, &report, || {
        if let Some((t, source)) = task {
            println!(
                "task {} of {} ({source:?}): {}",
                t.task,
                t.tasks,
                if report.complete {
                    "done; merge with `saescope merge` once every task is"
                } else {
                    "not finished"
                }
            );
        }
        println!(
            "{} images → {} rows × {} in {} shards ({} reused) at {:.0} images/s; {} skipped",
            report.extracted_images,
            report.rows,
            report.d_model,
            report.shards,
            report.shards_reused,
            report.images_per_s,
            report.skipped.len()
        );
        for s in &report.skipped {
            println!("  skipped {}: {}", s.path, s.reason);
        }
    })
}
