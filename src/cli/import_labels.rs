//! `saescope import-labels`: Import the labels of an export (features.json or its folder) into a
//! workspace.

use super::*;

#[derive(Args)]
pub struct ImportLabelsArgs {
    #[command(flatten)]
    target: SaeArgs,
    #[arg(long)]
    from: PathBuf,
    /// Import even if the export was made with another SAE.
    #[arg(long)]
    force: bool,
}

pub fn run(a: ImportLabelsArgs, ctx: &Ctx) -> Result<()> {
    let ImportLabelsArgs {
        target: SaeArgs { workspace, sae },
        from,
        force,
    } = a;
    let report = ops::share::import_labels(&ops::share::ImportLabelsRequest {
        workspace,
        sae,
        from,
        force,
    })?;
    emit_pretty(ctx, &report)
}
