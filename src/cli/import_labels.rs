//! `saescope import-labels`: Import the labels of an export (features.json or its folder) into a
//! workspace.

use super::*;

#[derive(Args)]
pub struct ImportLabelsArgs {
    #[arg(long)]
    workspace: PathBuf,
    /// The SAE: a name under WS/saes/ or an SAE folder/file (one from elsewhere is imported
    /// into WS/saes/ when analyses are written for it). Default: the workspace's active SAE.
    #[arg(long)]
    sae: Option<PathBuf>,
    #[arg(long)]
    from: PathBuf,
    /// Import even if the export was made with another SAE.
    #[arg(long)]
    force: bool,
    #[arg(long)]
    json: bool,
}

pub fn run(a: ImportLabelsArgs) -> Result<()> {
    let ImportLabelsArgs {
        workspace,
        sae,
        from,
        force,
        json,
    } = a;
    let report = saescope::ops::share::import_labels(&saescope::ops::share::ImportLabelsRequest {
        workspace,
        sae,
        from,
        force,
    })?;
    emit_pretty(json, &report)
}
