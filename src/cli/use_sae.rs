//! `saescope use-sae`: Make one of a workspace's SAEs the active one (used when --sae is not
//! given).

use super::*;

#[derive(Args)]
pub struct UseSaeArgs {
    #[arg(long)]
    workspace: PathBuf,
    /// Its name under WS/saes/ (see `saescope saes`).
    name: String,
}

pub fn run(a: UseSaeArgs, ctx: &Ctx) -> Result<()> {
    let UseSaeArgs { workspace, name } = a;
    let home = ops::saes::use_sae(&workspace, &name)?;
    emit_pretty(ctx, &serde_json::json!({ "active": name, "folder": home }))
}
