//! ViTs written with PyTorch's `nn.TransformerEncoder` (conv patch embedding, CLS token, learned
//! positions, `TransformerEncoderLayer` blocks with packed `in_proj_weight`), loaded from a
//! `.pth` state_dict. Matches `torch.nn.TransformerEncoderLayer` (post-norm by default) and the
//! reference in `shared/models/vit-cifar10/MODEL.md`.
//!
//! Depth, width, FFN size, patch size and grid are read off the tensors; what the weights cannot
//! tell (heads, norm placement, normalisation, class names) comes from a small JSON config.

use super::layers::{Activation, Block, LayerNorm, Linear, Mlp, PatchEmbed, SelfAttention};
use super::preprocess::{Preprocessor, Resample, Resize};
use super::weights::Weights;
use super::{BackboneInfo, Classifier, Embeddings, Family, Pool, TokenGeometry, VisionTransformer};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// What a `.pth` ViT needs beyond its tensors. Written as JSON (`--model-config FILE`, or
/// `<checkpoint>.json` beside the checkpoint).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TorchVitConfig {
    /// Attention heads per layer (the weights do not record it).
    pub heads: usize,
    /// `norm_first` of `nn.TransformerEncoderLayer` (PyTorch's default is false: post-norm).
    #[serde(default)]
    pub norm_first: bool,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_activation")]
    pub activation: Activation,
    /// Per-channel normalisation of [0, 1] RGB.
    #[serde(default = "default_mean")]
    pub mean: [f32; 3],
    #[serde(default = "default_std")]
    pub std: [f32; 3],
    /// Filter used when an image is not the model's input size.
    #[serde(default = "default_resample")]
    pub resample: Resample,
    /// Class names in logit order; defaults to the dataset's sorted sub-folder names.
    #[serde(default)]
    pub class_names: Option<Vec<String>>,
}

fn default_eps() -> f64 {
    1e-5
}
fn default_activation() -> Activation {
    Activation::Relu
}
fn default_mean() -> [f32; 3] {
    super::preprocess::IMAGENET_MEAN
}
fn default_std() -> [f32; 3] {
    super::preprocess::IMAGENET_STD
}
fn default_resample() -> Resample {
    Resample::Bilinear
}

fn find_key<'a>(w: &'a Weights, what: &str, pred: impl Fn(&str) -> bool) -> Result<&'a String> {
    w.keys().filter(|k| pred(k)).min_by_key(|k| k.len()).ok_or_else(|| {
        Error::Model(format!(
            "{}: no {what} tensor found. saescope loads ViTs built from nn.TransformerEncoder \
             (keys like patch_embed.proj.weight, cls_token, pos_embed, transformer.layers.N.self_attn.in_proj_weight)",
            w.origin()
        ))
    })
}

pub fn load(w: &Weights, cfg: &TorchVitConfig, name: &str) -> Result<VisionTransformer> {
    let patch_key = find_key(w, "patch-embedding (4-D conv weight)", |k| {
        k.contains("patch") && k.ends_with("weight") && w.get_opt(k).is_some_and(|t| t.rank() == 4)
    })?
    .clone();
    let patch_w = w.get(&patch_key)?;
    let (d, _, p, _) = patch_w.dims4()?;
    let patch_b = w.get_opt(&patch_key.replace("weight", "bias"));
    let cls_key = find_key(w, "cls_token", |k| {
        k.contains("cls_token") || k.ends_with("class_token")
    })?
    .clone();
    let cls = w.get(&cls_key)?.flatten_all()?;
    let pos_key = find_key(w, "position embedding", |k| {
        k.contains("pos_embed") || k.ends_with("pos_embedding")
    })?
    .clone();
    let pos = w.get(&pos_key)?;
    let pos = pos.reshape((pos.elem_count() / d, d))?;
    let n_patches = pos.dim(0)? - 1;
    let side = (n_patches as f64).sqrt().round() as usize;
    if side * side != n_patches {
        return Err(Error::Model(format!(
            "{pos_key} has {n_patches} patch positions, not a square grid"
        )));
    }

    // Layers: `<prefix>layers.<i>.self_attn.in_proj_weight`.
    let attn_key = find_key(w, "encoder layer", |k| {
        k.ends_with("layers.0.self_attn.in_proj_weight")
    })?
    .clone();
    let layer_prefix = attn_key
        .trim_end_matches("0.self_attn.in_proj_weight")
        .to_string();
    let mut blocks = Vec::new();
    while w.contains(&format!(
        "{layer_prefix}{}.self_attn.in_proj_weight",
        blocks.len()
    )) {
        let l = w.sub(&format!("{layer_prefix}{}", blocks.len()));
        if d % cfg.heads != 0 {
            return Err(Error::Model(format!(
                "width {d} is not divisible by heads = {}; fix `heads` in the model config",
                cfg.heads
            )));
        }
        let ffn = l.get("linear1.weight")?.dim(0)?;
        // nn.MultiheadAttention names its packed projection `in_proj_weight` / `in_proj_bias`.
        let in_proj = Linear::new(
            l.get_shape("self_attn.in_proj_weight", &[3 * d, d])?,
            Some(l.get_shape("self_attn.in_proj_bias", &[3 * d])?),
        )?;
        blocks.push(Block {
            norm1: LayerNorm::load(&l, "norm1", d, cfg.layer_norm_eps)?,
            attn: SelfAttention::from_packed(
                in_proj,
                Linear::load(&l, "self_attn.out_proj", d, d)?,
                cfg.heads,
            ),
            norm2: LayerNorm::load(&l, "norm2", d, cfg.layer_norm_eps)?,
            mlp: Mlp {
                fc1: Linear::load(&l, "linear1", d, ffn)?,
                fc2: Linear::load(&l, "linear2", ffn, d)?,
                act: cfg.activation,
            },
            layer_scale: None,
            norm_first: cfg.norm_first,
        });
    }
    // nn.TransformerEncoder(norm=LayerNorm) puts a final norm at `<prefix>norm`.
    let encoder_prefix = layer_prefix.trim_end_matches("layers.");
    let final_norm = if w.contains(&format!("{encoder_prefix}norm.weight")) {
        Some(LayerNorm::load(
            w,
            &format!("{encoder_prefix}norm"),
            d,
            cfg.layer_norm_eps,
        )?)
    } else {
        None
    };

    // Classifier head: `mlp_head` = Sequential(LayerNorm, Linear), or a plain `head` Linear.
    let classifier = if w.contains("mlp_head.1.weight") {
        let n = w.get("mlp_head.1.weight")?.dim(0)?;
        Some(Classifier {
            norm: Some(LayerNorm::load(w, "mlp_head.0", d, cfg.layer_norm_eps)?),
            linear: Linear::load(w, "mlp_head.1", d, n)?,
        })
    } else if w.contains("head.weight") {
        let n = w.get("head.weight")?.dim(0)?;
        Some(Classifier {
            norm: None,
            linear: Linear::load(w, "head", d, n)?,
        })
    } else {
        None
    };
    if let (Some(c), Some(names)) = (&classifier, &cfg.class_names)
        && c.linear.out_dim() != names.len()
    {
        return Err(Error::Model(format!(
            "the model config lists {} class names but the classifier has {} outputs",
            names.len(),
            c.linear.out_dim()
        )));
    }
    let size = (side * p) as u32;
    Ok(VisionTransformer::new(
        BackboneInfo {
            name: name.to_string(),
            family: Family::TorchVit,
            n_layers: blocks.len(),
            d_model: d,
            geometry: TokenGeometry {
                has_cls: true,
                registers: 0,
                grid_h: side,
                grid_w: side,
                patch_size: p,
            },
            class_names: classifier.as_ref().and(cfg.class_names.clone()),
            pos_interpolation: None,
        },
        Preprocessor {
            resize: Resize::Exact {
                height: size,
                width: size,
            },
            resample: cfg.resample,
            crop: None,
            mean: cfg.mean,
            std: cfg.std,
        },
        Embeddings {
            patch: PatchEmbed::new(patch_w, patch_b)?,
            cls: Some(cls),
            registers: None,
            pos,
            pos_grid: (side, side),
            pre_norm: None,
            interpolate: None,
        },
        blocks,
        final_norm,
        None,
        Pool::Cls,
        classifier,
        None,
    ))
}
