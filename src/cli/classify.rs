//! `saescope classify`: Accuracy of a model's classifier head on a folder of class sub-folders.

use super::*;

#[derive(Args)]
pub struct ClassifyArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long)]
    images: PathBuf,
    #[arg(long, default_value_t = 500)]
    batch: usize,
}

pub fn run(a: ClassifyArgs, ctx: &Ctx) -> Result<()> {
    let ClassifyArgs {
        model,
        images,
        batch,
    } = a;
    let (job, bar) = progress_job("classify");
    let report = ops::measure::classify(
        &ops::measure::ClassifyRequest {
            model: model.spec()?,
            device: ctx.device_choice()?,
            images,
            batch,
        },
        &job,
    )?;
    bar.finish_and_clear();
    emit(ctx, &report, || {
        println!(
            "accuracy {:.4} on {} images ({:.0} images/s)",
            report.accuracy, report.n, report.images_per_s
        );
        for (c, a) in &report.per_class {
            println!("  {c:<16} {a:.4}");
        }
    })
}
