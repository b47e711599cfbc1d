//! `saescope ood`: OOD detection: fit on in-distribution images, score the in-distribution folder
//! and each OOD folder with SAE and baseline methods (AUROC, FPR at 95% TPR). Full per-image
//! results go to WS/saes/<name>/ood/results.json.

use super::*;

#[derive(Args)]
pub struct OodArgs {
    #[command(flatten)]
    target: SaeArgs,
    /// In-distribution images to fit on (e.g. the train split).
    #[arg(long)]
    fit: PathBuf,
    /// In-distribution images to score (e.g. the test split).
    #[arg(long)]
    id: PathBuf,
    /// Out-of-distribution folders (repeatable).
    #[arg(long, required = true)]
    ood: Vec<PathBuf>,
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Covariance ridge for SAE-code Mahalanobis, relative to the mean variance
    /// (default: chosen by held-out likelihood on every fifth fit image, never on --id/--ood).
    #[arg(long)]
    ridge: Option<f64>,
    /// Other workspaces (same model and layer) whose stored activations are read for the
    /// images they hold instead of recomputing them (repeatable; --workspace is always read).
    #[arg(long)]
    reuse: Vec<PathBuf>,
    /// Run only task I (0-based) of --tasks N: the model and SAE over a contiguous part of
    /// every folder's batches, stored for `saescope merge`, which fits and scores. Default:
    /// SLURM_ARRAY_TASK_ID − SLURM_ARRAY_TASK_MIN in a job array.
    #[arg(long)]
    task: Option<usize>,
    /// How many tasks the run is split into. Default: SLURM_ARRAY_TASK_COUNT in a job array.
    #[arg(long)]
    tasks: Option<usize>,
}

pub fn run(a: OodArgs, ctx: &Ctx) -> Result<()> {
    let OodArgs {
        target: SaeArgs { workspace, sae },
        fit,
        id,
        ood,
        batch,
        ridge,
        reuse,
        task,
        tasks,
    } = a;
    let (job, bar) = progress_job("ood");
    let request = ops::analyse::OodRequest {
        device: ctx.device_choice()?,
        workspace,
        sae,
        fit,
        id,
        ood,
        options: ops::analysis::ood::OodOptions {
            batch,
            ridge_codes: ridge,
            reuse_stores: reuse,
            ..Default::default()
        },
    };
    if let Some((task, _)) = ops::cluster::task_of(task, tasks)? {
        let report = ops::analyse::ood_task(&request, task, &job)?;
        bar.finish_and_clear();
        return emit_pretty(ctx, &report);
    }
    let (results, path) = ops::analyse::ood(&request, &job)?;
    bar.finish_and_clear();
    let summary = ops::analysis::ood::summary(&results, &path, 10);
    emit(ctx, &summary, || {
        println!(
            "{:<22} {:<22} {:>7} {:>7}",
            "method", "OOD set", "AUROC", "FPR95"
        );
        for r in &results.results {
            println!(
                "{:<22} {:<22} {:>7.4} {:>7.4}",
                r.method, r.ood_set, r.auroc, r.fpr95
            );
        }
        println!("per-image scores: {}", path.display());
    })
}
