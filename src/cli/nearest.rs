//! `saescope nearest`: the features whose decoder directions are closest to a feature's (cosine),
//! as the feature page lists them.

use super::*;

#[derive(Args)]
pub struct NearestArgs {
    #[command(flatten)]
    target: SaeArgs,
    /// The feature whose neighbours to list.
    #[arg(long)]
    feature: u32,
    /// How many neighbours (1 to 1000).
    #[arg(long, default_value_t = 8)]
    n: usize,
}

pub fn run(a: NearestArgs, ctx: &Ctx) -> Result<()> {
    if !(1..=1000).contains(&a.n) {
        anyhow::bail!("--n must be between 1 and 1000 (got {})", a.n);
    }
    let report = ops::measure::nearest(&ops::measure::NearestRequest {
        workspace: a.target.workspace,
        sae: a.target.sae,
        feature: a.feature,
        n: a.n,
    })?;
    emit_pretty(ctx, &report)
}
