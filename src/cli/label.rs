//! `saescope label`: Feature labels: automatic ones from class folders, and manual ones (which
//! always win).

use super::*;

#[derive(Args)]
pub struct LabelArgs {
    #[command(flatten)]
    target: SaeArgs,
    /// Label every feature with its most precise class among its top images.
    #[arg(long)]
    from_classes: bool,
    /// Label features by CLIP zero-shot against a concept vocabulary (CLIP workspaces).
    #[arg(long)]
    clip: bool,
    /// Extra concepts for --clip, one per line (added to the built-in list).
    #[arg(long, requires = "clip")]
    vocab: Option<PathBuf>,
    /// Top images per feature that --clip looks at.
    #[arg(long, default_value_t = 8)]
    examples: usize,
    /// Manual label, e.g. --set "12=striped fur" (an empty text removes the label).
    #[arg(long = "set")]
    set: Vec<String>,
}

pub fn run(a: LabelArgs, ctx: &Ctx) -> Result<()> {
    let LabelArgs {
        target: SaeArgs { workspace, sae },
        from_classes,
        clip,
        vocab,
        examples,
        set,
    } = a;
    let set = set
        .iter()
        .map(|s| {
            let (id, text) = s.split_once('=').ok_or_else(|| {
                anyhow::anyhow!("--set `{s}`: expected FEATURE=TEXT, e.g. --set \"12=striped fur\"")
            })?;
            let id: u32 = id
                .trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("--set `{s}`: `{id}` is not a feature id"))?;
            Ok((id, text.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    let (job, bar) = progress_job("labels");
    let report = ops::analyse::label(
        &ops::analyse::LabelRequest {
            // Only CLIP zero-shot labels run a model.
            device: if clip {
                ctx.device_choice()?
            } else {
                Default::default()
            },
            workspace,
            sae,
            from_classes,
            clip: clip.then_some((vocab, examples)),
            set,
        },
        &job,
    )?;
    bar.finish_and_clear();
    emit_pretty(ctx, &report)
}
