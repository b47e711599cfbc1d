//! `saescope intervene`: edit SAE features in the model's stream and see what the model does.
//! With --image: one image, its prediction before and after and where the output changed.
//! With --class: each feature's causal effect on that class over the workspace's images
//! (ablated on every token, beside random features of matching frequency), saved beside the SAE.
//! With --attribute: each feature's class attribution (its decoder direction at a typical
//! activation added to every patch token of a stratified sample of the workspace's images, beside
//! random directions of the same norm), saved beside the SAE.

use super::*;
use ops::analysis::intervene::{EditMode, FeatureEdit, Intervention, TokenScope};

#[derive(Clone, Copy, clap::ValueEnum)]
enum Mode {
    /// Set the features to 0.
    Ablate,
    /// Set them to --value (also where they were inactive).
    Clamp,
    /// Multiply them by --value.
    Scale,
}

#[derive(Args)]
pub struct InterveneArgs {
    #[command(flatten)]
    target: SaeArgs,
    /// One image to edit (any file). Either this, --class or --attribute.
    #[arg(long, conflicts_with_all = ["class", "top_lift", "attribute"])]
    image: Option<PathBuf>,
    /// Measure the features' causal effects on this class (a class folder of the workspace).
    #[arg(long, conflicts_with = "attribute")]
    class: Option<String>,
    /// Measure the features' class attributions: which classes' logits each feature's decoder
    /// direction pushes (added at --value, default its mean activation where it fires, to every
    /// patch token of --sample images), beside --random random directions of the same norm.
    #[arg(long)]
    attribute: bool,
    /// With --attribute: images sampled from the workspace, stratified over its classes.
    #[arg(long, default_value_t = 64)]
    sample: usize,
    /// Feature ids, e.g. 3,10-12.
    #[arg(long)]
    features: Option<String>,
    /// With --class: also the N features with the highest lift for the class.
    #[arg(long, default_value_t = 0)]
    top_lift: usize,
    /// With --top-lift: pass over features firing on fewer images (their lifts rest on a few).
    #[arg(long, default_value_t = 20)]
    min_images: u64,
    /// With --class: random features of matching frequency per feature (default 10). With
    /// --attribute: random directions of the same norm (default 8).
    #[arg(long)]
    random: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, value_enum, default_value = "ablate")]
    mode: Mode,
    /// The clamp value or the scale factor; with --attribute, the activation added.
    #[arg(long)]
    value: Option<f32>,
    /// Tokens edited (--image): `all`, `patches`, or sequence positions like 1,5-9.
    #[arg(long, default_value = "all")]
    tokens: String,
    /// Classes listed before and after (--image).
    #[arg(long, default_value_t = 5)]
    top: usize,
    #[arg(long, default_value_t = 64)]
    batch: usize,
}

pub fn run(a: InterveneArgs, ctx: &Ctx) -> Result<()> {
    let features = match &a.features {
        Some(s) => ops::analysis::export::parse_ids(s)?,
        None => Vec::new(),
    };
    if a.attribute {
        return attribute(&a, features, ctx);
    }
    match (&a.image, &a.class) {
        (Some(image), None) => one_image(&a, image, features, ctx),
        (None, Some(class)) => effects(&a, class, features, ctx),
        _ => anyhow::bail!(
            "say what to intervene on: --image FILE (one image), --class NAME (causal effects over the workspace's images of that class) or --attribute (class attributions)"
        ),
    }
}

fn one_image(
    a: &InterveneArgs,
    image: &std::path::Path,
    features: Vec<u32>,
    ctx: &Ctx,
) -> Result<()> {
    if features.is_empty() {
        anyhow::bail!("name the features to edit: --features 3,10-12");
    }
    let mode = match (a.mode, a.value) {
        (Mode::Ablate, None) => EditMode::Ablate,
        (Mode::Ablate, Some(_)) => anyhow::bail!("--mode ablate takes no --value"),
        (Mode::Clamp, Some(v)) => EditMode::Clamp(v),
        (Mode::Scale, Some(v)) => EditMode::Scale(v),
        (_, None) => anyhow::bail!("--mode clamp and --mode scale need --value"),
    };
    let scope = match a.tokens.trim() {
        "all" => TokenScope::All,
        "patches" => TokenScope::Patches,
        list => TokenScope::Tokens(
            // No model has more tokens than this: a longer list is refused unexpanded.
            ops::analysis::export::parse_id_list(list, ops::fix::Opt::Tokens, 1 << 20)
                .map_err(|e| anyhow::anyhow!("{e} (or use `all` / `patches`)"))?
                .into_iter()
                .map(|t| t as usize)
                .collect(),
        ),
    };
    let r = ops::intervene::ImageRequest {
        device: ctx.device_choice()?,
        workspace: a.target.workspace.clone(),
        sae: a.target.sae.clone(),
        image: image.to_path_buf(),
        intervention: Intervention {
            edits: features
                .iter()
                .map(|&feature| FeatureEdit { feature, mode })
                .collect(),
            scope,
        },
        top_k: a.top,
    };
    let out = ops::intervene::image(&r)?;
    emit(ctx, &out, || {
        println!(
            "{} codes changed on {} tokens at layer {}{}",
            out.codes_changed,
            out.tokens_edited,
            out.layer,
            if out.identical {
                " — the output is unchanged, bit for bit"
            } else {
                ""
            }
        );
        for (o, e) in out.original.iter().zip(&out.edited) {
            println!(
                "  {:>16} {:.4}   →   {:>16} {:.4}",
                o.class, o.prob, e.class, e.prob
            );
        }
        println!("  pooled output cosine {:.6}", out.pooled_cosine);
    })
}

fn effects(a: &InterveneArgs, class: &str, features: Vec<u32>, ctx: &Ctx) -> Result<()> {
    if a.value.is_some() || !matches!(a.mode, Mode::Ablate) {
        anyhow::bail!("--class measures ablations only: drop --mode/--value");
    }
    let r = ops::intervene::EffectRequest {
        device: ctx.device_choice()?,
        workspace: a.target.workspace.clone(),
        sae: a.target.sae.clone(),
        class: class.to_string(),
        features,
        top_lift: a.top_lift,
        min_images: a.min_images,
        options: ops::analysis::causal::EffectOptions {
            random: a.random.unwrap_or(10),
            seed: a.seed,
            batch: a.batch,
        },
    };
    let (job, bar) = progress_job("effects");
    let report = ops::intervene::effects(&r, &job)?;
    bar.finish_and_clear();
    emit(ctx, &report, || {
        println!(
            "causal effects on `{}` over {} images (ablated on every token; Δ = edited − original)",
            report.class, report.images
        );
        println!("  feature   lift   ΔP(class)   random ΔP (mean ± sd)   beats random");
        for e in &report.effects {
            println!(
                "  {:>7} {:>6.2} {:>11.5}   {:>9.5} ± {:<9.5}   {:>5.0}%",
                e.feature,
                e.lift,
                e.ablated.mean_dprob,
                e.random_mean_dprob,
                e.random_std_dprob,
                100.0 * e.beats_random
            );
        }
        println!(
            "  mean ΔP {:.5} vs random {:.5}; {} of {} features beyond their random mean; saved to {}",
            report.mean_dprob,
            report.random_mean_dprob,
            report.features_beyond_random,
            report.effects.len(),
            report.saved_to.display()
        );
    })
}

fn attribute(a: &InterveneArgs, features: Vec<u32>, ctx: &Ctx) -> Result<()> {
    if !matches!(a.mode, Mode::Ablate) || a.top_lift > 0 || a.tokens != "all" {
        anyhow::bail!(
            "--attribute adds each feature's decoder direction to every patch token: drop --mode, --top-lift and --tokens (--value sets the activation added)"
        );
    }
    let r = ops::intervene::AttributionRequest {
        device: ctx.device_choice()?,
        workspace: a.target.workspace.clone(),
        sae: a.target.sae.clone(),
        features,
        activation: a.value,
        options: ops::analysis::attribution::AttributionOptions {
            images: a.sample,
            random: a.random.unwrap_or(8),
            seed: a.seed,
            batch: a.batch,
        },
    };
    let (job, bar) = progress_job("attribution");
    let report = ops::intervene::attribute(&r, &job)?;
    bar.finish_and_clear();
    emit(ctx, &report, || {
        for f in &report.attributions {
            println!(
                "feature {}: decoder direction × {:.3} ({}) added to {} patch tokens of {} images at layer {}; \
                 control: {} random directions of the same norm ({:.3})",
                f.feature,
                f.activation,
                f.activation_from,
                f.tokens_per_image,
                f.images,
                f.layer,
                f.random_directions,
                f.edit_norm
            );
            println!(
                "  {:>16}   Δ logit ± SE        random Δ (mean ± sd)   beyond random",
                "class"
            );
            let mut order: Vec<_> = f.classes.iter().collect();
            order.sort_by(|x, y| y.mean_dlogit.total_cmp(&x.mean_dlogit));
            for p in order {
                println!(
                    "  {:>16}   {:+8.4} ± {:<7.4}   {:+8.4} ± {:<7.4}   {}",
                    p.class,
                    p.mean_dlogit,
                    p.se_dlogit,
                    p.random_mean_dlogit,
                    p.random_sd_dlogit,
                    if p.beyond_random { "yes" } else { "no" }
                );
            }
            println!(
                "  shared shift of every logit {:+.4} (moves no probability)",
                f.shared_shift
            );
        }
        println!("saved to {}", report.saved_to.display());
    })
}
