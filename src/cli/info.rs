//! `saescope info`: Describe a model (layers, width, token geometry, preprocessing), or with
//! --devices the compute devices this build and machine offer.

use super::*;

#[derive(Args)]
pub struct InfoArgs {
    /// Hugging Face id (org/name), a folder with config.json + *.safetensors, or a PyTorch .pth ViT.
    #[arg(long, required_unless_present = "devices")]
    model: Option<String>,
    /// JSON config for a .pth ViT (heads, mean/std, class names); default: <checkpoint>.json beside it.
    #[arg(long)]
    model_config: Option<PathBuf>,
    /// DINOv2 position interpolation to non-native grids (`transformers` or `original`).
    #[arg(long, value_parser = choices::<ops::backbone::PosInterpolation>())]
    pos_interpolation: Option<backbone::PosInterpolation>,
    /// List the compute devices (cpu, cuda, metal), which can be used, and why not.
    #[arg(long)]
    devices: bool,
}

pub fn run(a: InfoArgs, ctx: &Ctx) -> Result<()> {
    let InfoArgs {
        model,
        model_config,
        pos_interpolation,
        devices,
    } = a;
    if devices {
        let (_, auto) = ops::device::resolve(ops::device::DeviceChoice::Auto)?;
        let list = ops::device::devices();
        let value = serde_json::json!({ "devices": list, "auto": auto });
        return emit(ctx, &value, || {
            for d in &list {
                let state = if d.available {
                    "available"
                } else {
                    "not available"
                };
                println!("{:<8} {state}: {}", d.device, d.detail);
            }
            println!("--device auto would use {auto}");
        });
    }
    let Some(model) = model else {
        anyhow::bail!("name a model (--model ID|FOLDER|FILE.pth) or ask for --devices");
    };
    let model = ModelArgs {
        model,
        model_config,
        pos_interpolation,
    };
    let (_, b) = model.load(&ctx.device()?)?;
    let value = serde_json::json!({ "model": b.info(), "preprocessing": b.preprocessor() });
    emit_pretty(ctx, &value)
}
