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
    let ws = saescope::store::Workspace::open(&workspace)?;
    let _lock = lock_writer(
        &workspace,
        "use-sae",
        Some(std::time::Duration::from_secs(30)),
    )?;
    let home = ws.sae_home(Some(&name))?;
    ws.set_active_sae(&name)?;
    emit_pretty(ctx, &serde_json::json!({ "active": name, "folder": home }))
}
