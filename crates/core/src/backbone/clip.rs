//! CLIP vision and text towers in Hugging Face layout (`CLIPModel`, `CLIPVisionModel(WithProjection)`,
//! `CLIPTextModel(WithProjection)`), matching `transformers.models.clip.modeling_clip`:
//! pre-norm blocks, `pre_layrnorm` on the vision embeddings, `post_layernorm` on the pooled CLS,
//! causal text attention pooled at the first EOS token.

use super::layers::{Activation, Block, LayerNorm, Linear, Mlp, PatchEmbed, SelfAttention};
use super::preprocess::{self, Preprocessor, Resample, Resize};
use super::weights::Weights;
use super::{BackboneInfo, Embeddings, Family, Pool, TokenGeometry, VisionTransformer};
use crate::error::{Error, Result};
use candle_core::{D, DType, Device, IndexOp, Tensor};
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
pub struct TowerConfig {
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
    // vision
    #[serde(default = "d_image")]
    pub image_size: usize,
    #[serde(default = "d_patch")]
    pub patch_size: usize,
    // text
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    #[serde(default = "d_maxpos")]
    pub max_position_embeddings: usize,
    #[serde(default = "d_eos")]
    pub eos_token_id: i64,
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
    "quick_gelu".into()
}
fn d_eps() -> f64 {
    1e-5
}
fn d_image() -> usize {
    224
}
fn d_patch() -> usize {
    32
}
fn d_vocab() -> usize {
    49408
}
fn d_maxpos() -> usize {
    77
}
fn d_eos() -> i64 {
    2
}

/// The two towers' configs from a `config.json` of any CLIP layout.
pub fn tower_configs(
    config: &serde_json::Value,
) -> Result<(Option<TowerConfig>, Option<TowerConfig>)> {
    let parse = |v: &serde_json::Value| -> Result<TowerConfig> {
        serde_json::from_value(v.clone())
            .map_err(|e| Error::Model(format!("config.json: bad CLIP tower config: {e}")))
    };
    match config.get("model_type").and_then(|v| v.as_str()) {
        Some("clip_vision_model") => Ok((Some(parse(config)?), None)),
        Some("clip_text_model") => Ok((None, Some(parse(config)?))),
        _ => Ok((
            config.get("vision_config").map(parse).transpose()?,
            config.get("text_config").map(parse).transpose()?,
        )),
    }
}

fn load_blocks(w: &Weights, c: &TowerConfig) -> Result<Vec<Block>> {
    load_encoder_layers(
        w,
        c.num_hidden_layers,
        c.hidden_size,
        c.intermediate_size,
        c.num_attention_heads,
        &c.hidden_act,
        c.layer_norm_eps,
    )
}

/// Pre-norm `encoder.layers.N` blocks in the CLIP naming (`layer_norm1`, `self_attn.{q,k,v,out}_proj`,
/// `layer_norm2`, `mlp.fc1/fc2`), shared by CLIP and SigLIP.
pub fn load_encoder_layers(
    w: &Weights,
    n_layers: usize,
    d: usize,
    inter: usize,
    heads: usize,
    act: &str,
    eps: f64,
) -> Result<Vec<Block>> {
    let act = Activation::from_hf(act)?;
    (0..n_layers)
        .map(|i| {
            let l = w.sub(&format!("encoder.layers.{i}"));
            Ok(Block {
                norm1: LayerNorm::load(&l, "layer_norm1", d, eps)?,
                attn: SelfAttention::load_separate(
                    &l,
                    [
                        "self_attn.q_proj",
                        "self_attn.k_proj",
                        "self_attn.v_proj",
                        "self_attn.out_proj",
                    ],
                    d,
                    heads,
                )?,
                norm2: LayerNorm::load(&l, "layer_norm2", d, eps)?,
                mlp: Mlp {
                    fc1: Linear::load(&l, "mlp.fc1", d, inter)?,
                    fc2: Linear::load(&l, "mlp.fc2", inter, d)?,
                    act,
                },
                layer_scale: None,
                norm_first: true,
            })
        })
        .collect()
}

/// The CLIP image processor's defaults (resize shortest edge, center crop, OpenAI mean/std).
pub fn default_preprocessor(image_size: usize) -> Preprocessor {
    Preprocessor {
        resize: Resize::ShortestEdge(image_size as u32),
        resample: Resample::Bicubic,
        crop: Some((image_size as u32, image_size as u32)),
        mean: preprocess::OPENAI_CLIP_MEAN,
        std: preprocess::OPENAI_CLIP_STD,
    }
}

/// Loads the vision tower. `w` holds the whole checkpoint (with or without `vision_model.`).
pub fn load_vision(
    w: &Weights,
    c: &TowerConfig,
    preprocessor: Preprocessor,
    name: &str,
) -> Result<VisionTransformer> {
    let d = c.hidden_size;
    let v = w.sub("vision_model");
    let grid = c.image_size / c.patch_size;
    let patch = PatchEmbed::new(
        v.get_shape(
            "embeddings.patch_embedding.weight",
            &[d, 3, c.patch_size, c.patch_size],
        )?,
        None,
    )?;
    let projection = match w.get_opt("visual_projection.weight") {
        Some(p) => Some(Linear::new(p, None)?),
        None => None,
    };
    let blocks = load_blocks(&v, c)?;
    Ok(VisionTransformer::new(
        BackboneInfo {
            name: name.to_string(),
            family: Family::Clip,
            n_layers: blocks.len(),
            d_model: d,
            geometry: TokenGeometry {
                has_cls: true,
                registers: 0,
                grid_h: grid,
                grid_w: grid,
                patch_size: c.patch_size,
            },
            class_names: None,
            pos_interpolation: None,
        },
        preprocessor,
        Embeddings {
            patch,
            cls: Some(v.get_shape("embeddings.class_embedding", &[d])?),
            registers: None,
            pos: v.get_shape(
                "embeddings.position_embedding.weight",
                &[grid * grid + 1, d],
            )?,
            pos_grid: (grid, grid),
            pre_norm: Some(LayerNorm::load(&v, "pre_layrnorm", d, c.layer_norm_eps)?),
            interpolate: None,
        },
        blocks,
        None,
        Some(LayerNorm::load(&v, "post_layernorm", d, c.layer_norm_eps)?),
        Pool::Cls,
        None,
        projection,
    ))
}

/// CLIP's text tower: token + position embeddings, causal pre-norm blocks, final norm.
pub struct TextTransformer {
    token_embedding: Tensor,
    position_embedding: Tensor,
    blocks: Vec<Block>,
    final_norm: LayerNorm,
    projection: Option<Linear>,
    eos_token_id: i64,
    pub d_model: usize,
    pub max_len: usize,
}

pub struct TextOutputs {
    /// Embeddings (index 0) and the output of every block.
    pub hidden: Vec<Tensor>,
    /// `final_layer_norm` of the last block's output [B, T, D].
    pub last: Tensor,
    /// The last state at each sequence's EOS token [B, D].
    pub pooled: Tensor,
    /// `text_projection(pooled)` when the checkpoint has it.
    pub embeds: Option<Tensor>,
}

impl TextTransformer {
    pub fn load(w: &Weights, c: &TowerConfig) -> Result<Self> {
        let d = c.hidden_size;
        let t = w.sub("text_model");
        Ok(TextTransformer {
            token_embedding: t
                .get_shape("embeddings.token_embedding.weight", &[c.vocab_size, d])?,
            position_embedding: t.get_shape(
                "embeddings.position_embedding.weight",
                &[c.max_position_embeddings, d],
            )?,
            blocks: load_blocks(&t, c)?,
            final_norm: LayerNorm::load(&t, "final_layer_norm", d, c.layer_norm_eps)?,
            projection: w
                .get_opt("text_projection.weight")
                .map(|p| Linear::new(p, None))
                .transpose()?,
            eos_token_id: c.eos_token_id,
            d_model: d,
            max_len: c.max_position_embeddings,
        })
    }

    pub fn n_layers(&self) -> usize {
        self.blocks.len()
    }

    /// input_ids [B, T] (u32 or i64) → all hidden states, final state, pooled and projected output.
    pub fn forward(&self, input_ids: &Tensor) -> Result<TextOutputs> {
        let ids = input_ids.to_dtype(DType::U32)?;
        let (b, t) = ids.dims2()?;
        if t > self.max_len {
            return Err(Error::Invalid(format!(
                "text of {t} tokens is longer than CLIP's {} positions",
                self.max_len
            )));
        }
        let dev = ids.device();
        let tok = self
            .token_embedding
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, t, self.d_model))?;
        let mut x = tok.broadcast_add(&self.position_embedding.narrow(0, 0, t)?)?;
        let mask = causal_mask(t, dev)?;
        let mut hidden = vec![x.clone()];
        for block in &self.blocks {
            x = block.forward(&x, Some(&mask))?;
            hidden.push(x.clone());
        }
        let last = self.final_norm.forward(&x)?;
        let pooled = self.pool(&last, &ids)?;
        let embeds = self
            .projection
            .as_ref()
            .map(|p| p.forward(&pooled))
            .transpose()?;
        Ok(TextOutputs {
            hidden,
            last,
            pooled,
            embeds,
        })
    }

    /// transformers: with the legacy eos id 2 the pooled token is argmax(input_ids), otherwise the
    /// first position holding `eos_token_id`.
    fn pool(&self, last: &Tensor, ids: &Tensor) -> Result<Tensor> {
        let rows: Vec<Vec<u32>> = ids.to_vec2()?;
        let mut picked = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let pos = if self.eos_token_id == 2 {
                row.iter()
                    .enumerate()
                    .max_by_key(|(j, v)| (**v, std::cmp::Reverse(*j)))
                    .map(|(j, _)| j)
                    .unwrap_or(0)
            } else {
                row.iter()
                    .position(|&v| v as i64 == self.eos_token_id)
                    .unwrap_or(row.len() - 1)
            };
            picked.push(last.i((i, pos))?);
        }
        Ok(Tensor::stack(&picked, 0)?)
    }
}

/// Additive causal mask [T, T]: 0 on and below the diagonal, -inf above.
fn causal_mask(t: usize, dev: &Device) -> Result<Tensor> {
    let m: Vec<f32> = (0..t)
        .flat_map(|i| (0..t).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Ok(Tensor::from_vec(m, (t, t), dev)?)
}

/// L2-normalises rows, as CLIP does before comparing image and text embeddings.
pub fn normalize(x: &Tensor) -> Result<Tensor> {
    Ok(x.broadcast_div(&x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?)?)
}
