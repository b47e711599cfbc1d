//! `saescope export`: Export features (JSON + CSV + PNGs) to share; see docs/FORMATS.md.

use super::*;

#[derive(Args)]
pub struct ExportArgs {
    #[arg(long)]
    workspace: PathBuf,
    /// The SAE: a name under WS/saes/ or an SAE folder/file (one from elsewhere is imported
    /// into WS/saes/ when analyses are written for it). Default: the workspace's active SAE.
    #[arg(long)]
    sae: Option<PathBuf>,
    #[arg(long)]
    out: PathBuf,
    /// Feature ids, e.g. 3,10-12 (default: every feature that fired).
    #[arg(long, conflicts_with = "labelled")]
    features: Option<String>,
    /// Only labelled features.
    #[arg(long)]
    labelled: bool,
    /// Skip the per-feature PNGs.
    #[arg(long)]
    no_png: bool,
    #[arg(long)]
    json: bool,
}

pub fn run(a: ExportArgs) -> Result<()> {
    let ExportArgs {
        workspace,
        sae,
        out,
        features,
        labelled,
        no_png,
        json,
    } = a;
    use saescope::analysis::export::{Selection, parse_ids};
    let selection = match (&features, labelled) {
        (Some(f), _) => Selection::Ids(parse_ids(f)?),
        (None, true) => Selection::Labelled,
        (None, false) => Selection::Alive,
    };
    let report = saescope::ops::share::export(&saescope::ops::share::ExportRequest {
        workspace,
        sae,
        selection,
        out,
        pngs: !no_png,
    })?;
    emit_pretty(json, &report)
}
