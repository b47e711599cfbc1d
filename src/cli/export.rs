//! `saescope export`: Export features (JSON + CSV + PNGs) to share; see docs/FORMATS.md.

use super::*;

#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    target: SaeArgs,
    #[arg(long)]
    out: PathBuf,
    /// Feature ids, e.g. 3,10-12 (default: every feature that fired).
    #[arg(long, conflicts_with_all = ["labelled", "significant"])]
    features: Option<String>,
    /// Only labelled features (any label: class, manual, imported, CLIP).
    #[arg(long, conflicts_with = "significant")]
    labelled: bool,
    /// Only features whose class label is statistically supported (beats chance and every
    /// random direction; see docs/FORMATS.md).
    #[arg(long)]
    significant: bool,
    /// Skip the per-feature PNGs.
    #[arg(long)]
    no_png: bool,
}

pub fn run(a: ExportArgs, ctx: &Ctx) -> Result<()> {
    let ExportArgs {
        target: SaeArgs { workspace, sae },
        out,
        features,
        labelled,
        significant,
        no_png,
    } = a;
    use ops::analysis::export::{Selection, parse_ids};
    let selection = match (&features, labelled, significant) {
        (Some(f), _, _) => Selection::Ids(parse_ids(f)?),
        (None, _, true) => Selection::Significant,
        (None, true, false) => Selection::Labelled,
        (None, false, false) => Selection::Alive,
    };
    let (job, bar) = progress_job("export");
    let report = ops::share::export(
        &ops::share::ExportRequest {
            workspace,
            sae,
            selection,
            out,
            pngs: !no_png,
        },
        &job,
    )?;
    bar.finish_and_clear();
    emit_pretty(ctx, &report)
}
