//! SigLIP vision tower in Hugging Face layout (`SiglipModel` with `vision_model.` or
//! `SiglipVisionModel`), matching `transformers.models.siglip.modeling_siglip`: no CLS token,
//! pre-norm blocks with tanh-GELU, `post_layernorm`, multi-head attention pooling head.

use super::layers::{self, Activation, LayerNorm, Linear, Mlp, PatchEmbed};
use super::preprocess::{Preprocessor, Resample, Resize};
use super::weights::Weights;
use super::{BackboneInfo, Embeddings, Family, Pool, TokenGeometry, VisionTransformer};
use crate::error::Result;
use candle_core::Tensor;
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
pub struct Config {
    #[serde(default = "d_hidden")]
    pub hidden_size: usize,
    #[serde(default = "d_inter")]
    pub intermediate_size: usize,
    #[serde(default = "d_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "d_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "d_act")]
    pub hidden_act: String,
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "d_image")]
    pub image_size: usize,
    #[serde(default = "d_patch")]
    pub patch_size: usize,
    #[serde(default = "d_head")]
    pub vision_use_head: bool,
}

fn d_hidden() -> usize {
    768
}
fn d_inter() -> usize {
    3072
}
fn d_heads() -> usize {
    12
}
fn d_layers() -> usize {
    12
}
fn d_act() -> String {
    "gelu_pytorch_tanh".into()
}
fn d_eps() -> f64 {
    1e-6
}
fn d_image() -> usize {
    224
}
fn d_patch() -> usize {
    16
}
fn d_head() -> bool {
    true
}

/// `SiglipImageProcessor` defaults: resize to a square (bicubic), mean = std = 0.5, no crop.
pub fn default_preprocessor(image_size: usize) -> Preprocessor {
    let s = image_size as u32;
    Preprocessor {
        resize: Resize::Exact {
            height: s,
            width: s,
        },
        resample: Resample::Bicubic,
        crop: None,
        mean: [0.5; 3],
        std: [0.5; 3],
    }
}

/// Multi-head attention pooling: a learned probe attends over all tokens, then a residual MLP.
#[derive(Clone)]
pub struct MapHead {
    probe: Tensor,
    /// q, k, v projections split from the packed `in_proj_weight`.
    proj: [Linear; 3],
    out: Linear,
    norm: LayerNorm,
    mlp: Mlp,
    heads: usize,
}

impl MapHead {
    /// tokens [B, T, D] → pooled [B, D].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, _, d) = x.dims3()?;
        let q = self
            .probe
            .reshape((1, 1, d))?
            .broadcast_as((b, 1, d))?
            .contiguous()?;
        let h = layers::cross_attention(&q, x, &self.proj, &self.out, self.heads)?;
        let h = (&h + self.mlp.forward(&self.norm.forward(&h)?)?)?;
        Ok(h.squeeze(1)?)
    }
}

pub fn load(
    w: &Weights,
    c: &Config,
    preprocessor: Preprocessor,
    name: &str,
) -> Result<VisionTransformer> {
    let w = if w.contains("embeddings.patch_embedding.weight") {
        w.sub("")
    } else {
        w.sub("vision_model")
    };
    let w = &w;
    let d = c.hidden_size;
    let p = c.patch_size;
    let grid = c.image_size / p;
    let act = Activation::from_hf(&c.hidden_act)?;
    let blocks = super::clip::load_encoder_layers(
        w,
        c.num_hidden_layers,
        d,
        c.intermediate_size,
        c.num_attention_heads,
        &c.hidden_act,
        c.layer_norm_eps,
    )?;
    let pool = if c.vision_use_head && w.contains("head.probe") {
        let h = w.sub("head");
        Pool::Map(Box::new(MapHead {
            probe: h.get_shape("probe", &[1, 1, d])?,
            proj: {
                let w = h.get_shape("attention.in_proj_weight", &[3 * d, d])?;
                let b = h.get_shape("attention.in_proj_bias", &[3 * d])?;
                let part =
                    |i: usize| Linear::new(w.narrow(0, i * d, d)?, Some(b.narrow(0, i * d, d)?));
                [part(0)?, part(1)?, part(2)?]
            },
            out: Linear::load(&h, "attention.out_proj", d, d)?,
            norm: LayerNorm::load(&h, "layernorm", d, c.layer_norm_eps)?,
            mlp: Mlp {
                fc1: Linear::load(&h, "mlp.fc1", d, c.intermediate_size)?,
                fc2: Linear::load(&h, "mlp.fc2", c.intermediate_size, d)?,
                act,
            },
            heads: c.num_attention_heads,
        }))
    } else {
        Pool::Cls
    };
    Ok(VisionTransformer::new(
        BackboneInfo {
            name: name.to_string(),
            family: Family::Siglip,
            n_layers: blocks.len(),
            d_model: d,
            geometry: TokenGeometry {
                has_cls: false,
                registers: 0,
                grid_h: grid,
                grid_w: grid,
                patch_size: p,
            },
            class_names: None,
            pos_interpolation: None,
        },
        preprocessor,
        Embeddings {
            patch: PatchEmbed::new(
                w.get_shape("embeddings.patch_embedding.weight", &[d, 3, p, p])?,
                Some(w.get_shape("embeddings.patch_embedding.bias", &[d])?),
            )?,
            cls: None,
            registers: None,
            pos: w.get_shape("embeddings.position_embedding.weight", &[grid * grid, d])?,
            pos_grid: (grid, grid),
            pre_norm: None,
            interpolate: None,
        },
        blocks,
        Some(LayerNorm::load(w, "post_layernorm", d, c.layer_norm_eps)?),
        None,
        pool,
        None,
        None,
    ))
}
