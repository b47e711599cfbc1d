//! `saescope saes`: List a workspace's SAEs (WS/saes/<name>/) with their training figures and
//! analyses.

use super::*;

#[derive(Args)]
pub struct SaesArgs {
    #[arg(long)]
    workspace: PathBuf,
}

pub fn run(a: SaesArgs, ctx: &Ctx) -> Result<()> {
    let SaesArgs { workspace } = a;
    let ws = ops::workspace::Workspace::open(&workspace)?;
    let list = ops::saes::list_saes(&ws);
    emit(ctx, &serde_json::json!({ "saes": list }), || {
        for s in &list {
            println!(
                "{} {:<28} d_sae {:<6} FVE {:<6} L0 {:<6} index {} labels {}",
                if s.active { "*" } else { " " },
                s.name,
                s.d_sae,
                s.final_fve.map_or("-".into(), |v| format!("{v:.3}")),
                s.final_l0.map_or("-".into(), |v| format!("{v:.1}")),
                if s.index { "yes" } else { "no" },
                s.labels
            );
        }
    })
}
