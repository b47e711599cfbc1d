//! `saescope encode`: Write the first stored activation rows and an SAE's codes for them to a
//! safetensors file (`x`, `codes`), to compare with other tools or to analyse in Python.

use super::*;

#[derive(Args)]
pub struct EncodeArgs {
    #[arg(long)]
    workspace: PathBuf,
    /// One of the workspace's SAEs (its name under WS/saes/) or an SAE folder; default: the
    /// active one.
    #[arg(long)]
    sae: Option<PathBuf>,
    /// How many rows, from the first shard on (at most 65,536).
    #[arg(long, default_value_t = 256)]
    rows: usize,
    /// The safetensors file to write.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: EncodeArgs, ctx: &Ctx) -> Result<()> {
    let EncodeArgs {
        workspace,
        sae,
        rows,
        out,
    } = a;
    let report = ops::saes::encode_rows(&workspace, sae.as_deref(), rows, &out)?;
    emit_pretty(ctx, &report)
}
