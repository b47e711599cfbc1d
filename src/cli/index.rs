//! `saescope index`: Build the feature index (top images per feature, frequencies, histograms, per-
//! image top features) into the SAE's folder (WS/saes/<name>/index); resumes an interrupted build.

use super::*;

#[derive(Args)]
pub struct IndexArgs {
    #[command(flatten)]
    target: SaeArgs,
    /// Top images kept per feature.
    #[arg(long, default_value_t = 64)]
    top_n: usize,
    /// Rebuild from scratch.
    #[arg(long)]
    rebuild: bool,
    #[arg(long)]
    json: bool,
}

pub fn run(a: IndexArgs) -> Result<()> {
    let IndexArgs {
        target: SaeArgs { workspace, sae },
        top_n,
        rebuild,
        json,
    } = a;
    let (job, bar) = progress_job("index");
    let report = saescope::ops::analyse::build_index(
        &saescope::ops::analyse::IndexRequest {
            workspace,
            sae,
            options: saescope::analysis::index::IndexOptions {
                top_n,
                rebuild,
                ..Default::default()
            },
        },
        &job,
    )?;
    bar.finish_and_clear();
    emit_pretty(json, &report)
}
