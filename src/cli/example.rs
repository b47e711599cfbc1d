//! `saescope example`: Make the built-in example workspace (no download): synthetic images of
//! four classes and a small random-weight DINOv2-layout model, extracted, with an SAE trained,
//! indexed and class-labelled.

use super::*;

#[derive(Args)]
pub struct ExampleArgs {
    /// A new or empty folder (or an earlier example's, which is finished or reported).
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: ExampleArgs, ctx: &Ctx) -> Result<()> {
    let (job, bar) = progress_job("example");
    let report = ops::example::example(
        &ops::example::ExampleRequest {
            folder: a.out.clone(),
            device: ctx.device_choice()?,
        },
        &job,
    )?;
    bar.finish_and_clear();
    let workspace = ops::example::workspace_of(&a.out);
    let mut value = serde_json::to_value(&report)?;
    value["workspace"] = workspace.display().to_string().into();
    emit(ctx, &value, || {
        println!(
            "example workspace: {} ({} images, SAE {} with {} features, {} labelled from classes)",
            workspace.display(),
            report.extracted_images,
            report.sae,
            report.features,
            report.labelled_from_classes
        );
        println!("open it: saescope gui --workspace {}", workspace.display());
    })
}
