//! `saescope eval-sae`: Evaluate a workspace's SAE on an image folder: FVE, MSE, L0, dead/dense,
//! spliced accuracy.

use super::*;

#[derive(Args)]
pub struct EvalSaeArgs {
    #[command(flatten)]
    target: SaeArgs,
    /// Images to evaluate on (e.g. the test split).
    #[arg(long)]
    images: PathBuf,
    #[arg(long, default_value_t = 256)]
    batch: usize,
}

pub fn run(a: EvalSaeArgs, ctx: &Ctx) -> Result<()> {
    let EvalSaeArgs {
        target: SaeArgs { workspace, sae },
        images,
        batch,
    } = a;
    let (job, bar) = progress_job("eval-sae");
    let report = ops::measure::evaluate(
        &ops::measure::EvalRequest {
            workspace,
            sae,
            device: ctx.device_choice()?,
            images,
            batch,
        },
        &job,
    )?;
    bar.finish_and_clear();
    emit_pretty(ctx, &report)
}
