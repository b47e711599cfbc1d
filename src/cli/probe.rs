//! `saescope probe`: Linear probe: multinomial logistic regression on the pooled output, fit on one
//! folder's images and scored on another's (classes = sub-folder names). With --spliced, also with
//! the tapped layer replaced by an SAE's reconstruction (--sae, else the workspace's active one).

use super::*;

#[derive(Args)]
pub struct ProbeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Folder the probe is fit on (the L2 strength is chosen on every fifth image of it).
    #[arg(long)]
    fit: PathBuf,
    /// Folder the probe is scored on.
    #[arg(long)]
    eval: PathBuf,
    /// Also probe with the workspace's layer replaced by its SAE's reconstruction.
    #[arg(long)]
    spliced: bool,
    /// Workspace whose layer and SAE --spliced uses.
    #[arg(long, required_if_eq("spliced", "true"))]
    workspace: Option<PathBuf>,
    /// The SAE --spliced uses: a name under WS/saes/ or an SAE folder. Default: the
    /// workspace's active SAE.
    #[arg(long, requires = "spliced")]
    sae: Option<PathBuf>,
    /// Fixed L2 strength instead of the held-out choice.
    #[arg(long)]
    l2: Option<f64>,
    /// Other workspaces (same model and layer) whose stored activations are read for the
    /// images they hold (repeatable; --workspace is always read).
    #[arg(long, requires = "workspace")]
    reuse: Vec<PathBuf>,
    #[arg(long, default_value_t = 32)]
    batch: usize,
}

pub fn run(a: ProbeArgs, ctx: &Ctx) -> Result<()> {
    let ProbeArgs {
        model,
        fit,
        eval,
        spliced,
        workspace,
        sae,
        l2,
        reuse,
        batch,
    } = a;
    let (job, bar) = progress_job("probe");
    let report = ops::measure::probe(
        &ops::measure::ProbeRequest {
            model: model.spec()?,
            device: ctx.device_choice()?,
            fit,
            eval,
            workspace,
            spliced,
            sae,
            options: ops::analysis::probe::ProbeOptions {
                batch,
                l2,
                reuse_stores: reuse,
                ..Default::default()
            },
        },
        &job,
    )?;
    bar.finish_and_clear();
    emit(ctx, &report, || {
        println!(
            "probe on {} classes: fit {} images, eval {} images",
            report.classes.len(),
            report.n_fit,
            report.n_eval
        );
        println!(
            "  clean   accuracy {:.4} (fit {:.4}, l2 {:e})",
            report.clean.accuracy, report.clean.fit_accuracy, report.clean.l2
        );
        if let Some(s) = &report.spliced {
            println!(
                "  spliced accuracy {:.4} (fit {:.4}, l2 {:e}), layer {} replaced by the SAE reconstruction",
                s.accuracy, s.fit_accuracy, s.l2, report.layer
            );
        }
    })
}
