//! `saescope eval`: the SAE benchmark. Every SAE of a workspace (or those named with --sae) is
//! scored beside two controls at its width and sparsity (the untrained initialisation and PCA
//! directions): FVE, NMSE, L0, dead and dense latents, the spliced probe, sparse probing,
//! monosemanticity and Moran's I. Written to WS/saes/<name>/benchmark.json, WS/benchmark.json
//! and WS/benchmark.csv.

use super::*;
use ops::analysis::benchmark::{BenchmarkOptions, Estimate, VariantScores};

#[derive(Args)]
pub struct EvalArgs {
    #[arg(long)]
    workspace: PathBuf,
    /// An SAE of the workspace by name (repeatable); every SAE when not given.
    #[arg(long)]
    sae: Vec<String>,
    /// Labelled images (<folder>/<class>/<image>) the probes are fit on.
    #[arg(long)]
    fit: PathBuf,
    /// Images everything is scored on; the probes score the ones in class folders named like
    /// the fit folder's. Use images no SAE was trained on.
    #[arg(long)]
    images: PathBuf,
    /// Other workspaces (same model and layer) whose stored activations are read for the
    /// images they hold (repeatable; --workspace is always read).
    #[arg(long)]
    reuse: Vec<PathBuf>,
    /// Latents the sparse probe reads.
    #[arg(long, default_value_t = 16)]
    probe_latents: usize,
    /// Skip the spliced probe (the slow part: the model's last blocks once per SAE and control).
    #[arg(long)]
    no_spliced: bool,
    /// Training rows the controls' sparsity and PCA directions come from.
    #[arg(long, default_value_t = 50_000)]
    sample_rows: usize,
    /// Fixed L2 strength for the probes instead of the held-out choice.
    #[arg(long)]
    l2: Option<f64>,
    #[arg(long, default_value_t = 32)]
    batch: usize,
}

pub fn run(a: EvalArgs, ctx: &Ctx) -> Result<()> {
    let (job, bar) = progress_job("eval");
    let out = ops::benchmark::benchmark(
        &ops::benchmark::BenchmarkRequest {
            workspace: a.workspace,
            saes: a.sae,
            device: ctx.device_choice()?,
            fit: a.fit,
            eval: a.images,
            stores: a.reuse,
            options: BenchmarkOptions {
                batch: a.batch,
                probe: ops::analysis::probe::ProbeOptions {
                    batch: a.batch,
                    l2: a.l2,
                    ..Default::default()
                },
                probe_latents: a.probe_latents,
                spliced: !a.no_spliced,
                sample_rows: a.sample_rows,
                ..Default::default()
            },
        },
        &job,
    )?;
    bar.finish_and_clear();
    emit(ctx, &out, || {
        let r = &out.report;
        println!(
            "{} SAE(s), layer {}: probes fit on {} images, scored on {} ({} labelled); clean \
             probe {:.4}, majority class {:.4}",
            r.saes.len(),
            r.layer,
            r.n_fit,
            r.n_eval,
            r.n_eval_labelled,
            r.clean_accuracy.value,
            r.chance
        );
        println!(
            "{:<28} {:<9} {:>7} {:>7} {:>6} {:>7} {:>7} {:>7} {:>7}",
            "sae", "variant", "FVE", "L0", "dead", "spliced", "sparse", "mono", "moran"
        );
        for s in &r.saes {
            for (variant, v) in [
                ("trained", &s.trained),
                ("untrained", &s.untrained),
                ("pca", &s.pca),
            ] {
                println!("{:<28} {:<9} {}", s.name, variant, row(v));
            }
            let failing = s.not_separating();
            if !failing.is_empty() {
                println!(
                    "  does not separate from its controls on: {}",
                    failing.join(", ")
                );
            }
        }
        println!("written: {} and {}", out.json.display(), out.csv.display());
    })
}

fn row(v: &VariantScores) -> String {
    let e = |x: Option<Estimate>| x.map_or("-".to_string(), |e| format!("{:.4}", e.value));
    let r = &v.reconstruction;
    format!(
        "{:>7.4} {:>7.1} {:>6.3} {:>7} {:>7} {:>7} {:>7}",
        r.fve.value,
        r.l0.value,
        r.dead_fraction,
        e(v.spliced_accuracy),
        e(Some(v.sparse_probe)),
        e(v.monosemanticity),
        e(v.morans_i)
    )
}
