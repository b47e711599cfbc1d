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
    } = a;
    let (job, bar) = progress_job("extract");
    let report = ops::build::extract(
        &ops::build::ExtractRequest {
            model: model.spec()?,
            device: ctx.device_choice()?,
            images,
            workspace,
            options: ops::workspace::ExtractOptions {
                layer,
                tokens,
                dtype,
                batch_size: batch,
                images_per_shard: shard_images,
            },
        },
        &job,
    )?;
    bar.finish_and_clear();
    emit(ctx, &report, || {
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
