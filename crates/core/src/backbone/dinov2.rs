//! DINOv2 (and DINOv2 with registers) in Hugging Face layout, matching
//! `transformers.models.dinov2.modeling_dinov2`: pre-norm blocks with LayerScale, exact GELU,
//! bicubic position interpolation for other input sizes (transformers' or the original code's,
//! [`super::pos_interp`]), final `layernorm`, CLS pooling.

use super::layers::{Activation, Block, LayerNorm, Linear, Mlp, PatchEmbed, SelfAttention};
use super::preprocess::{self, Preprocessor, Resample, Resize};
use super::weights::Weights;
use super::{
    BackboneInfo, Embeddings, Family, Pool, PosInterpolation, TokenGeometry, VisionTransformer,
};
use crate::error::{Error, Result};
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
pub struct Config {
    #[serde(default = "d_hidden")]
    pub hidden_size: usize,
    #[serde(default = "d_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "d_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "d_ratio")]
    pub mlp_ratio: f64,
    #[serde(default = "d_act")]
    pub hidden_act: String,
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "d_image")]
    pub image_size: usize,
    #[serde(default = "d_patch")]
    pub patch_size: usize,
    #[serde(default)]
    pub use_swiglu_ffn: bool,
    #[serde(default)]
    pub num_register_tokens: usize,
}

fn d_hidden() -> usize {
    768
}
fn d_heads() -> usize {
    12
}
fn d_layers() -> usize {
    12
}
fn d_ratio() -> f64 {
    4.0
}
fn d_act() -> String {
    "gelu".into()
}
fn d_eps() -> f64 {
    1e-6
}
fn d_image() -> usize {
    518
}
fn d_patch() -> usize {
    14
}

/// `BitImageProcessor` defaults used by facebook/dinov2-*: shortest edge 256, crop 224, ImageNet stats.
pub fn default_preprocessor() -> Preprocessor {
    Preprocessor {
        resize: Resize::ShortestEdge(256),
        resample: Resample::Bicubic,
        crop: Some((224, 224)),
        mean: preprocess::IMAGENET_MEAN,
        std: preprocess::IMAGENET_STD,
    }
}

/// `pos_interpolation`: how the 37×37 position table meets the input grid (default: transformers',
/// since this reads Hugging Face folders; see [`super::pos_interp`]).
pub fn load(
    w: &Weights,
    c: &Config,
    preprocessor: Preprocessor,
    name: &str,
    pos_interpolation: Option<PosInterpolation>,
) -> Result<VisionTransformer> {
    let pos_interpolation = pos_interpolation.unwrap_or(PosInterpolation::Transformers);
    if c.use_swiglu_ffn {
        return Err(Error::Model(format!(
            "{name}: DINOv2 with SwiGLU FFN (giant) is not supported yet; use small/base/large"
        )));
    }
    // Dinov2ForImageClassification nests the backbone under `dinov2.`.
    let w = if w.contains("embeddings.cls_token") {
        w.sub("")
    } else {
        w.sub("dinov2")
    };
    let w = &w;
    let d = c.hidden_size;
    let p = c.patch_size;
    let ffn = (d as f64 * c.mlp_ratio) as usize;
    let act = Activation::from_hf(&c.hidden_act)?;
    let pos = w.get("embeddings.position_embeddings")?;
    let n_pos = pos.elem_count() / d;
    let pos = pos.reshape((n_pos, d))?;
    let side = ((n_pos - 1) as f64).sqrt().round() as usize;
    if side * side + 1 != n_pos {
        return Err(Error::Model(format!(
            "{name}: position table of {n_pos} entries is not CLS + a square grid"
        )));
    }
    let registers = w
        .get_opt("embeddings.register_tokens")
        .map(|r| r.reshape((r.elem_count() / d, d)))
        .transpose()?;
    let n_reg = registers
        .as_ref()
        .map(|r| r.dim(0))
        .transpose()?
        .unwrap_or(0);
    let blocks = (0..c.num_hidden_layers)
        .map(|i| {
            let l = w.sub(&format!("encoder.layer.{i}"));
            Ok(Block {
                norm1: LayerNorm::load(&l, "norm1", d, c.layer_norm_eps)?,
                attn: SelfAttention::load_separate(
                    &l,
                    [
                        "attention.attention.query",
                        "attention.attention.key",
                        "attention.attention.value",
                        "attention.output.dense",
                    ],
                    d,
                    c.num_attention_heads,
                )?,
                norm2: LayerNorm::load(&l, "norm2", d, c.layer_norm_eps)?,
                mlp: Mlp {
                    fc1: Linear::load(&l, "mlp.fc1", d, ffn)?,
                    fc2: Linear::load(&l, "mlp.fc2", ffn, d)?,
                    act,
                },
                layer_scale: Some((
                    l.get_shape("layer_scale1.lambda1", &[d])?,
                    l.get_shape("layer_scale2.lambda1", &[d])?,
                )),
                norm_first: true,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    // The grid the preprocessing produces (224/14 = 16 for the released models).
    let input = preprocessor.output_size(c.image_size as u32, c.image_size as u32);
    let grid = (input.1 as usize / p, input.0 as usize / p);
    Ok(VisionTransformer::new(
        BackboneInfo {
            name: name.to_string(),
            family: Family::Dinov2,
            n_layers: blocks.len(),
            d_model: d,
            geometry: TokenGeometry {
                has_cls: true,
                registers: n_reg,
                grid_h: grid.0,
                grid_w: grid.1,
                patch_size: p,
            },
            class_names: None,
            // Recorded only when the grid differs from the table's (otherwise nothing is resized).
            pos_interpolation: (grid != (side, side)).then_some(pos_interpolation),
        },
        preprocessor,
        Embeddings {
            patch: PatchEmbed::new(
                w.get_shape(
                    "embeddings.patch_embeddings.projection.weight",
                    &[d, 3, p, p],
                )?,
                Some(w.get_shape("embeddings.patch_embeddings.projection.bias", &[d])?),
            )?,
            cls: Some(w.get("embeddings.cls_token")?.flatten_all()?),
            registers,
            pos,
            pos_grid: (side, side),
            pre_norm: None,
            interpolate: Some(pos_interpolation),
        },
        blocks,
        Some(LayerNorm::load(w, "layernorm", d, c.layer_norm_eps)?),
        None,
        Pool::Cls,
        None,
        None,
    ))
}
