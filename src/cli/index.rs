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
}

pub fn run(a: IndexArgs, ctx: &Ctx) -> Result<()> {
    let IndexArgs {
        target: SaeArgs { workspace, sae },
        top_n,
        rebuild,
    } = a;
    let (job, bar) = progress_job("index");
    let report = ops::analyse::build_index(
        &ops::analyse::IndexRequest {
            device: ctx.device_choice()?,
            workspace,
            sae,
            options: ops::analysis::index::IndexOptions {
                top_n,
                rebuild,
                ..Default::default()
            },
        },
        &job,
    )?;
    bar.finish_and_clear();
    emit_pretty(ctx, &report)
}
