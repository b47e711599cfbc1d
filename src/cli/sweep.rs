//! `saescope sweep`: Train a grid of SAEs (architecture × width × k × learning rate) on one pass
//! of shuffled batches: the store is read once for all of them, and each lands in
//! WS/saes/<name>/ as if trained alone (same seed, same batches). `--group I --groups N` trains
//! every N-th SAE of the grid, so a Slurm array runs the groups in parallel. Re-running resumes.

use super::*;

#[derive(Args)]
pub struct SweepArgs {
    #[arg(long)]
    workspace: PathBuf,
    /// A prefix for the SAEs' names (NAME-topk-1536-k32, …), e.g. to run a grid again beside
    /// an earlier one.
    #[arg(long)]
    name: Option<String>,
    /// Architectures, comma-separated: topk, batchtopk, matryoshka, jumprelu, relu.
    #[arg(long, value_delimiter = ',', default_value = "topk")]
    arch: Vec<String>,
    /// Dictionary sizes, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    d_sae: Vec<usize>,
    /// Active latents per token (topk; batchtopk and matryoshka on average; jumprelu's L0
    /// target), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "32")]
    k: Vec<usize>,
    /// Learning rates, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1e-3")]
    lr: Vec<f32>,
    /// matryoshka: a count of sampled prefixes (default 10, as saev) or fixed ends.
    #[arg(long)]
    prefixes: Option<String>,
    /// jumprelu: a fixed L0 penalty coefficient instead of the L0 target --k.
    #[arg(long)]
    l0_coeff: Option<f32>,
    /// relu: the L1 coefficient.
    #[arg(long, default_value_t = 5.0)]
    l1: f32,
    /// Training tokens for every SAE (default: 10 passes over the store).
    #[arg(long)]
    tokens: Option<u64>,
    #[arg(long, default_value_t = 4096)]
    batch: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Scale activations to mean norm √d_in before training (folded into the saved SAEs).
    #[arg(long)]
    normalize: bool,
    /// Draw each CLS row this many times as often as a patch row (1 to 1024).
    #[arg(long, default_value_t = 1)]
    cls_weight: u32,
    /// Train only on the stored activations of the images under this folder.
    #[arg(long)]
    images: Option<PathBuf>,
    /// Checkpoint every N steps (default: every 60 s).
    #[arg(long)]
    checkpoint_every: Option<u64>,
    /// Discard unfinished runs' checkpoints instead of resuming them.
    #[arg(long)]
    restart: bool,
    /// Refuse a run whose time, estimated on its first steps (and printed), exceeds this.
    #[arg(long, default_value_t = ops::sae::workflow::DEFAULT_MAX_HOURS)]
    max_hours: f64,
    /// This process's group (0-based; default: a Slurm array's task index).
    #[arg(long)]
    group: Option<usize>,
    /// Split the grid into this many groups (SAE i goes to group i mod N).
    #[arg(long)]
    groups: Option<usize>,
}

pub fn run(a: SweepArgs, ctx: &Ctx) -> Result<()> {
    let SweepArgs {
        workspace,
        name,
        arch,
        d_sae,
        k,
        lr,
        prefixes,
        l0_coeff,
        l1,
        tokens,
        batch,
        seed,
        normalize,
        cls_weight,
        images,
        checkpoint_every,
        restart,
        max_hours,
        group,
        groups,
    } = a;
    let base = ops::sae::workflow::TrainOptions {
        tokens,
        batch,
        seed,
        normalize,
        cls_weight,
        images,
        checkpoint_every,
        restart,
        max_hours,
        ..ops::sae::workflow::TrainOptions::topk(1, 1)
    };
    let (job, bar) = progress_job("sweep");
    let report = ops::sweep::sweep(
        &ops::sweep::SweepRequest {
            workspace,
            device: ctx.device_choice()?,
            name_prefix: name,
            archs: arch,
            d_saes: d_sae,
            ks: k,
            lrs: lr,
            prefixes,
            l0_coeff,
            l1,
            base,
            group,
            groups,
        },
        &job,
    )?;
    bar.finish_and_clear();
    emit(ctx, &report, || {
        println!(
            "group {} of {}: {} of the grid's {} SAEs in {:.1} s",
            report.group,
            report.groups,
            report.saes.len(),
            report.grid,
            report.seconds
        );
        for s in &report.saes {
            println!(
                "  {:<32} FVE {:.3}  L0 {:>6.1}  dead {:>5.1}%{}",
                s.name,
                s.final_fve,
                s.final_l0,
                s.dead_fraction * 100.0,
                if s.already_trained {
                    "  (already trained)"
                } else {
                    ""
                }
            );
        }
    })
}
