//! `saescope summary`: a workspace at a glance (model, layer, activations, SAEs and their
//! analyses, and any file that cannot be read), as the app's workspace panel shows it.

use super::*;

#[derive(Args)]
pub struct SummaryArgs {
    #[arg(long)]
    workspace: PathBuf,
}

pub fn run(a: SummaryArgs, ctx: &Ctx) -> Result<()> {
    emit_pretty(ctx, &ops::session::summary(&a.workspace)?)
}
