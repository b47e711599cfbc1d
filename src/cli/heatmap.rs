//! `saescope heatmap`: Heatmap of features over any image (in the dataset or not): JSON grid and a
//! PNG overlay.

use super::*;

#[derive(Args)]
pub struct HeatmapArgs {
    #[command(flatten)]
    target: SaeArgs,
    #[arg(long)]
    image: PathBuf,
    /// Feature ids, e.g. 3,10-12.
    #[arg(long)]
    features: String,
    /// Write overlays here (one PNG per feature: <out>/heatmap-<feature>.png).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(a: HeatmapArgs, ctx: &Ctx) -> Result<()> {
    let HeatmapArgs {
        target: SaeArgs { workspace, sae },
        image,
        features,
        out,
    } = a;
    let report = ops::measure::heatmap(&ops::measure::HeatmapRequest {
        workspace,
        sae,
        device: ctx.device_choice()?,
        image,
        features: ops::analysis::export::parse_ids(&features)?,
        png_dir: out,
    })?;
    emit_pretty(ctx, &report)
}
