//! `saescope probe`: Linear probe: multinomial logistic regression on the pooled output, fit on one
//! folder's images and scored on another's (classes = sub-folder names). With --spliced, also with
//! the tapped layer replaced by the workspace SAE's reconstruction.

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
    /// Fixed L2 strength instead of the held-out choice.
    #[arg(long)]
    l2: Option<f64>,
    /// Other workspaces (same model and layer) whose stored activations are read for the
    /// images they hold (repeatable; --workspace is always read).
    #[arg(long, requires = "workspace")]
    reuse: Vec<PathBuf>,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[arg(long)]
    json: bool,
}

pub fn run(a: ProbeArgs) -> Result<()> {
    let ProbeArgs {
        model,
        fit,
        eval,
        spliced,
        workspace,
        l2,
        reuse,
        batch,
        json,
    } = a;
    if batch == 0 {
        anyhow::bail!("--batch must be at least 1");
    }
    if l2.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
        anyhow::bail!("--l2 must be a finite number ≥ 0");
    }
    let (_, b) = model.load()?;
    // With a workspace, the model runs to its layer (or reads it from its store) and
    // finishes from there; the pooled output is the same.
    let (layer, sae) = match &workspace {
        Some(ws) => {
            let ws = saescope::store::Workspace::open(ws)?;
            let sae = spliced
                .then(|| saescope::sae::workflow::workspace_sae(&ws, None))
                .transpose()?;
            (ws.config.layer, sae)
        }
        None => (b.info().n_layers - 1, None),
    };
    let opts = saescope::analysis::probe::ProbeOptions {
        batch,
        l2,
        reuse_stores: workspace.iter().cloned().chain(reuse).collect(),
        ..Default::default()
    };
    let (job, bar) = progress_job("probe");
    let report =
        saescope::analysis::probe::probe(&b, sae.as_ref(), layer, &fit, &eval, &opts, &job)?;
    bar.finish_and_clear();
    emit(json, &report, || {
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
