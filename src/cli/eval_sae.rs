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
    #[arg(long)]
    json: bool,
}

pub fn run(a: EvalSaeArgs) -> Result<()> {
    let EvalSaeArgs {
        target: SaeArgs { workspace, sae },
        images,
        batch,
        json,
    } = a;
    let ws = saescope::store::Workspace::open(&workspace)?;
    let sae = saescope::sae::workflow::workspace_sae(&ws, sae.as_deref())?;
    let b = backbone::load_backbone(&ws.config.model, &candle_core::Device::Cpu)?;
    let (job, bar) = progress_job("eval-sae");
    let report = saescope::sae::workflow::evaluate(&ws, &b, &sae, &images, batch, &job)?;
    bar.finish_and_clear();
    emit_pretty(json, &report)
}
