//! Reading a diffusers pipeline folder's `config.json` files into candle's model configs.
//! candle's presets are fixed to the released sizes; reading the files lets any diffusers-layout
//! pipeline load (the real ones, fine-tunes, and the tiny random ones the tests build).

use crate::error::{Error, Result};
use candle_transformers::models::stable_diffusion::{unet_2d, vae};
use serde_json::Value;
use std::path::Path;

fn bad(path: &Path, what: &str) -> Error {
    Error::Model(format!(
        "{}: {what}; is this a diffusers pipeline folder (model_index.json with unet/, vae/, text_encoder/, tokenizer/)?",
        path.display()
    ))
}

fn usize_list(v: &Value, n: usize) -> Option<Vec<usize>> {
    match v {
        Value::Array(a) => a.iter().map(|x| x.as_u64().map(|x| x as usize)).collect(),
        Value::Number(x) => x.as_u64().map(|x| vec![x as usize; n]),
        _ => None,
    }
}

/// The UNet's config plus the channel counts candle takes separately.
pub struct UnetSpec {
    pub config: unet_2d::UNet2DConditionModelConfig,
    pub in_channels: usize,
    pub out_channels: usize,
    /// Width of the text conditioning it cross-attends to.
    pub cross_attention_dim: usize,
    /// SDXL's extra pooled-text / time-id conditioning, which candle's UNet does not implement.
    pub has_added_conditioning: bool,
    /// Latent size it was trained at (× 8 = the native image size).
    pub sample_size: usize,
}

pub fn unet(path: &Path) -> Result<UnetSpec> {
    let c: Value = crate::fsutil::read_json(path)?;
    let channels = c
        .get("block_out_channels")
        .and_then(|v| usize_list(v, 0))
        .ok_or_else(|| bad(path, "no block_out_channels"))?;
    let n = channels.len();
    let types: Vec<String> = c
        .get("down_block_types")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .ok_or_else(|| bad(path, "no down_block_types"))?;
    if types.len() != n {
        return Err(bad(
            path,
            "down_block_types and block_out_channels differ in length",
        ));
    }
    // diffusers' `attention_head_dim` historically holds the number of heads (as candle's
    // BlockConfig does); `num_attention_heads`, when set, is the newer name for it.
    let heads = c
        .get("num_attention_heads")
        .filter(|v| !v.is_null())
        .or_else(|| c.get("attention_head_dim"))
        .and_then(|v| usize_list(v, n))
        .unwrap_or(vec![8; n]);
    let layers = c
        .get("transformer_layers_per_block")
        .and_then(|v| usize_list(v, n))
        .unwrap_or(vec![1; n]);
    let cross = c
        .get("cross_attention_dim")
        .and_then(|v| usize_list(v, n))
        .and_then(|v| v.first().copied())
        .ok_or_else(|| bad(path, "no cross_attention_dim"))?;
    let blocks = (0..n)
        .map(|i| unet_2d::BlockConfig {
            out_channels: channels[i],
            use_cross_attn: types[i].starts_with("CrossAttn").then_some(layers[i]),
            attention_head_dim: heads[i],
        })
        .collect();
    let f = |k: &str, d: f64| c.get(k).and_then(Value::as_f64).unwrap_or(d);
    let u = |k: &str, d: usize| {
        c.get(k)
            .and_then(Value::as_u64)
            .map(|x| x as usize)
            .unwrap_or(d)
    };
    let b = |k: &str, d: bool| c.get(k).and_then(Value::as_bool).unwrap_or(d);
    Ok(UnetSpec {
        config: unet_2d::UNet2DConditionModelConfig {
            center_input_sample: b("center_input_sample", false),
            flip_sin_to_cos: b("flip_sin_to_cos", true),
            freq_shift: f("freq_shift", 0.0),
            blocks,
            layers_per_block: u("layers_per_block", 2),
            downsample_padding: u("downsample_padding", 1),
            mid_block_scale_factor: f("mid_block_scale_factor", 1.0),
            norm_num_groups: u("norm_num_groups", 32),
            norm_eps: f("norm_eps", 1e-5),
            cross_attention_dim: cross,
            sliced_attention_size: None,
            use_linear_projection: b("use_linear_projection", false),
        },
        in_channels: u("in_channels", 4),
        out_channels: u("out_channels", 4),
        cross_attention_dim: cross,
        has_added_conditioning: c.get("addition_embed_type").is_some_and(|v| !v.is_null()),
        sample_size: u("sample_size", 64),
    })
}

pub struct VaeSpec {
    pub config: vae::AutoEncoderKLConfig,
    pub scaling_factor: f64,
}

pub fn vae(path: &Path) -> Result<VaeSpec> {
    let c: Value = crate::fsutil::read_json(path)?;
    let channels = c
        .get("block_out_channels")
        .and_then(|v| usize_list(v, 0))
        .ok_or_else(|| bad(path, "no block_out_channels"))?;
    let u = |k: &str, d: usize| {
        c.get(k)
            .and_then(Value::as_u64)
            .map(|x| x as usize)
            .unwrap_or(d)
    };
    let b = |k: &str| c.get(k).and_then(Value::as_bool).unwrap_or(true);
    Ok(VaeSpec {
        config: vae::AutoEncoderKLConfig {
            block_out_channels: channels,
            layers_per_block: u("layers_per_block", 2),
            latent_channels: u("latent_channels", 4),
            norm_num_groups: u("norm_num_groups", 32),
            use_quant_conv: b("use_quant_conv"),
            use_post_quant_conv: b("use_post_quant_conv"),
        },
        scaling_factor: c
            .get("scaling_factor")
            .and_then(Value::as_f64)
            .unwrap_or(0.18215),
    })
}

/// `scheduler/scheduler_config.json`: the noise schedule the model was trained with.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ScheduleSpec {
    pub class_name: String,
    pub num_train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: String,
    pub prediction_type: String,
    pub timestep_spacing: String,
    pub steps_offset: usize,
}

pub fn schedule(path: &Path) -> Result<ScheduleSpec> {
    let c: Value = crate::fsutil::read_json(path)?;
    let s = |k: &str, d: &str| c.get(k).and_then(Value::as_str).unwrap_or(d).to_string();
    let f = |k: &str, d: f64| c.get(k).and_then(Value::as_f64).unwrap_or(d);
    let spec = ScheduleSpec {
        class_name: s("_class_name", "EulerAncestralDiscreteScheduler"),
        num_train_timesteps: c
            .get("num_train_timesteps")
            .and_then(Value::as_u64)
            .unwrap_or(1000) as usize,
        beta_start: f("beta_start", 0.00085),
        beta_end: f("beta_end", 0.012),
        beta_schedule: s("beta_schedule", "scaled_linear"),
        prediction_type: s("prediction_type", "epsilon"),
        timestep_spacing: s("timestep_spacing", "leading"),
        steps_offset: c.get("steps_offset").and_then(Value::as_u64).unwrap_or(0) as usize,
    };
    if !["scaled_linear", "linear"].contains(&spec.beta_schedule.as_str()) {
        return Err(bad(
            path,
            &format!(
                "beta_schedule `{}` is not supported (scaled_linear, linear)",
                spec.beta_schedule
            ),
        ));
    }
    if !["epsilon", "v_prediction"].contains(&spec.prediction_type.as_str()) {
        return Err(bad(
            path,
            &format!(
                "prediction_type `{}` is not supported (epsilon, v_prediction)",
                spec.prediction_type
            ),
        ));
    }
    Ok(spec)
}
