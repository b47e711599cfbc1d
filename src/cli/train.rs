//! `saescope train`: Train an SAE on a workspace's activations, saved to WS/saes/<name>/ in SAELens
//! format (never over another SAE) and made the workspace's active SAE. An interrupted run (crash,
//! Ctrl-C, cancel) resumes from its last checkpoint when re-run with the same settings.

use super::*;

#[derive(Args)]
pub struct TrainArgs {
    #[arg(long)]
    workspace: PathBuf,
    /// The SAE's folder name under WS/saes/ (default: from the settings, e.g. topk-1536-k32).
    /// A finished SAE of that name with the same settings is reported, not trained again.
    #[arg(long)]
    name: Option<String>,
    /// topk, batchtopk, matryoshka (BatchTopK codes, nested-prefix loss), jumprelu (learned
    /// per-latent thresholds) or relu (L1 penalty weighted by decoder norms).
    #[arg(long, default_value = "topk")]
    arch: String,
    #[arg(long)]
    d_sae: usize,
    /// Active latents per token (topk; batchtopk and matryoshka on average; jumprelu's L0
    /// target unless --l0-coeff is given). Ignored by relu.
    #[arg(long, default_value_t = 32)]
    k: usize,
    /// matryoshka: a number N draws N prefix ends per batch as saev does (default 10); a list
    /// (1024,4096,16384) fixes the ends (--d-sae is added as the last).
    #[arg(long)]
    prefixes: Option<String>,
    /// jumprelu: a fixed L0 penalty coefficient (the PyTorch peer's form, coefficient × L0)
    /// instead of the default L0 target of --k.
    #[arg(long)]
    l0_coeff: Option<f32>,
    /// L1 coefficient (relu), on normalised activations if --normalize.
    #[arg(long, default_value_t = 5.0)]
    l1: f32,
    /// Scale activations to mean norm √d_in before training (folded into the saved SAE).
    #[arg(long)]
    normalize: bool,
    /// Checkpoint every N steps (default: every 60 s).
    #[arg(long)]
    checkpoint_every: Option<u64>,
    /// Discard an unfinished run's checkpoint instead of resuming it.
    #[arg(long)]
    restart: bool,
    /// Refuse a run whose time, estimated on its first steps (and printed), exceeds this.
    #[arg(long, default_value_t = ops::sae::workflow::DEFAULT_MAX_HOURS)]
    max_hours: f64,
    /// Draw each CLS row this many times as often as a patch row (1 to 1024; default 1).
    /// The store holds one CLS row per image, so without it the SAE spends little on the
    /// token that pooled read-outs (probes, classifier heads) depend on.
    #[arg(long, default_value_t = 1)]
    cls_weight: u32,
    /// Train only on the stored activations of the images under this folder (the workspace's
    /// image files or links to them), e.g. to keep a selection split out of the SAE's training.
    #[arg(long)]
    images: Option<PathBuf>,
    /// Training tokens (default: 10 passes over the store, or over the --images subset).
    #[arg(long)]
    tokens: Option<u64>,
    #[arg(long, default_value_t = 4096)]
    batch: usize,
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(a: TrainArgs, ctx: &Ctx) -> Result<()> {
    let TrainArgs {
        workspace,
        name,
        arch,
        d_sae,
        k,
        prefixes,
        l0_coeff,
        l1,
        normalize,
        checkpoint_every,
        restart,
        max_hours,
        cls_weight,
        images,
        tokens,
        batch,
        lr,
        seed,
    } = a;
    let arch = ops::sae::train::TrainArch::parse(&arch, l1)?.with_options(
        prefixes.as_deref(),
        l0_coeff,
        k,
    )?;
    let (job, bar) = progress_job("train");
    let opts = ops::sae::workflow::TrainOptions {
        arch,
        tokens,
        batch,
        lr,
        seed,
        normalize,
        checkpoint_every,
        restart,
        max_hours,
        cls_weight,
        name,
        images,
        ..ops::sae::workflow::TrainOptions::topk(d_sae, k)
    };
    let report = ops::build::train(
        &ops::build::TrainRequest {
            workspace,
            device: ctx.device_choice()?,
            options: opts,
        },
        &job,
    )?;
    bar.finish_and_clear();
    emit_pretty(ctx, &report)
}
