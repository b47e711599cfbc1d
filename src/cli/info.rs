//! `saescope info`: Describe a model: layers, width, token geometry, preprocessing.

use super::*;

#[derive(Args)]
pub struct InfoArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long)]
    json: bool,
}

pub fn run(a: InfoArgs) -> Result<()> {
    let InfoArgs { model, json } = a;
    let (_, b) = model.load()?;
    let value = serde_json::json!({ "model": b.info(), "preprocessing": b.preprocessor() });
    emit_pretty(json, &value)
}
