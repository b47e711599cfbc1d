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
    #[arg(long)]
    json: bool,
}

pub fn run(a: HeatmapArgs) -> Result<()> {
    let HeatmapArgs {
        target: SaeArgs { workspace, sae },
        image,
        features,
        out,
        json,
    } = a;
    let ws = saescope::store::Workspace::open(&workspace)?;
    let sae = saescope::sae::workflow::workspace_sae(&ws, sae.as_deref())?;
    let b = backbone::load_backbone(&ws.config.model, &candle_core::Device::Cpu)?;
    let ids = saescope::analysis::export::parse_ids(&features)?;
    let maps =
        saescope::analysis::heatmap::heatmaps_for_image(&b, &sae, ws.config.layer, &image, &ids)?;
    let mut files = Vec::new();
    if let Some(out) = &out {
        std::fs::create_dir_all(out)?;
        let img = saescope::store::dataset::load_rgb(&image)
            .map_err(|e| anyhow::anyhow!("{}: {e}", image.display()))?;
        let view = b.preprocessor().view(&img).0;
        for m in &maps {
            let o = saescope::analysis::heatmap::overlay(&view, m, m.zoom_for(256), 0.0, 0.75);
            let p = out.join(format!("heatmap-{}.png", m.feature));
            o.save(&p)?;
            files.push(p);
        }
    }
    let report = serde_json::json!({"image": image, "heatmaps": maps, "png": files});
    emit_pretty(json, &report)
}
