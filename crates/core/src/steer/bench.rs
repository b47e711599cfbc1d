//! Steering benchmarks: slider change → preview image on the tiny pipeline, and per-step UNet
//! time at 256×256 for SD-Turbo-sized random weights (`saescope bench steer`).

use super::edit::{EditMode, FeatureEdit, TokenScope};
use super::pipeline::{GenerateOptions, Pipeline};
use super::session::{self, Decoder};
use crate::error::Result;
use crate::sae::Sae;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use candle_transformers::models::stable_diffusion::unet_2d::UNet2DConditionModel;
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

#[derive(Debug, Serialize)]
pub struct SteerBench {
    pub device: String,
    pub threads: usize,
    pub tiny: TinyLatency,
    pub sd_turbo_unet: Option<UnetStep>,
}

#[derive(Debug, Serialize)]
pub struct TinyLatency {
    pub size: usize,
    pub steps: usize,
    pub slider_changes: usize,
    /// Slider value → edited conditioning → denoised → preview image, median and p95 (ms).
    pub preview_median_ms: f64,
    pub preview_p95_ms: f64,
    /// Of which: editing the conditioning + denoising, and the preview decoder (medians, ms).
    pub denoise_median_ms: f64,
    pub preview_decode_median_ms: f64,
    /// The same change with the full VAE decoder (what the view shows once the slider rests).
    pub full_median_ms: f64,
    pub full_decode_median_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct UnetStep {
    pub size: usize,
    pub latent: [usize; 4],
    pub parameters: usize,
    pub build_seconds: f64,
    pub step_seconds: Vec<f64>,
    pub median_step_seconds: f64,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Latency of one slider change on the tiny Turbo-style pipeline at `size`.
pub fn tiny_latency(tokenizer_json: &Path, size: usize, changes: usize) -> Result<TinyLatency> {
    let dir = tempfile_dir()?;
    super::tiny::write_tiny_pipeline(&dir, tokenizer_json, 7, true)?;
    let pipe = Pipeline::load(dir.to_str().unwrap_or_default(), None, &Device::Cpu)?;
    let sae = Sae::random_topk(pipe.embedding_width(), 1024, 16, 0.2, 11);
    let cond = pipe.encode_prompt("a watercolor painting of a lighthouse at sunset")?;
    let opts = GenerateOptions {
        width: size,
        height: size,
        ..pipe.default_options()
    };
    let mut preview = Vec::new();
    let mut full = Vec::new();
    let (mut denoise, mut preview_decode, mut full_decode) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..changes + 1 {
        let edit = FeatureEdit {
            feature: 3,
            mode: EditMode::Add(i as f32 * 0.5),
            tokens: TokenScope::All,
        };
        let t = Instant::now();
        let g = session::generate(
            &pipe,
            Some(&sae),
            &cond,
            std::slice::from_ref(&edit),
            &opts,
            Decoder::Preview,
            &mut |_, _| true,
        )?;
        let p = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let h = session::generate(
            &pipe,
            Some(&sae),
            &cond,
            &[edit],
            &opts,
            Decoder::Full,
            &mut |_, _| true,
        )?;
        let f = t.elapsed().as_secs_f64() * 1e3;
        if i > 0 {
            preview.push(p);
            full.push(f);
            denoise.push(g.denoise_seconds * 1e3);
            preview_decode.push(g.decode_seconds * 1e3);
            full_decode.push(h.decode_seconds * 1e3);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let p95 = {
        let mut v = preview.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        v[((v.len() as f64 * 0.95).ceil() as usize).saturating_sub(1)]
    };
    Ok(TinyLatency {
        size,
        steps: opts.steps,
        slider_changes: changes,
        preview_median_ms: median(&mut preview),
        preview_p95_ms: p95,
        denoise_median_ms: median(&mut denoise),
        preview_decode_median_ms: median(&mut preview_decode),
        full_median_ms: median(&mut full),
        full_decode_median_ms: median(&mut full_decode),
    })
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("saescope-steer-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d).map_err(|e| crate::error::Error::io(&d, e))?;
    Ok(d)
}

/// One UNet step with SD 2.1 / SD-Turbo's architecture (865M parameters, random weights) at
/// `size`×`size`: the UNet forward dominates each sampler step.
pub fn sd_turbo_unet_step(size: usize, steps: usize, device: &Device) -> Result<UnetStep> {
    // stabilityai/sd-turbo's unet/config.json (the SD 2.1 UNet), read like any pipeline's.
    let dir = tempfile_dir()?;
    let cfg_path = dir.join("sd_turbo_unet.json");
    crate::fsutil::write_json_atomic(
        &cfg_path,
        &serde_json::json!({
            "_class_name": "UNet2DConditionModel", "sample_size": 64, "in_channels": 4, "out_channels": 4,
            "block_out_channels": [320, 640, 1280, 1280],
            "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
            "attention_head_dim": [5, 10, 20, 20], "cross_attention_dim": 1024, "layers_per_block": 2,
            "norm_num_groups": 32, "norm_eps": 1e-5, "use_linear_projection": true,
            "flip_sin_to_cos": true, "freq_shift": 0, "downsample_padding": 1, "mid_block_scale_factor": 1
        }),
    )?;
    let spec = super::config::unet(&cfg_path)?;
    let _ = std::fs::remove_dir_all(&dir);
    let t = Instant::now();
    let map = VarMap::new();
    let unet = UNet2DConditionModel::new(
        VarBuilder::from_varmap(&map, DType::F32, device),
        4,
        4,
        false,
        spec.config,
    )?;
    let parameters = map.all_vars().iter().map(|v| v.elem_count()).sum();
    let build_seconds = t.elapsed().as_secs_f64();
    let latent = [1, 4, size / 8, size / 8];
    let x = Tensor::randn(0f32, 1.0, latent.to_vec(), device)?;
    let ctx = Tensor::randn(0f32, 1.0, (1, 77, 1024), device)?;
    let mut step_seconds = Vec::new();
    for i in 0..steps + 1 {
        let t = Instant::now();
        let out = unet.forward(&x, 999.0 - i as f64, &ctx)?;
        out.to_device(&Device::Cpu)?; // waits for the GPU
        if i > 0 {
            step_seconds.push(t.elapsed().as_secs_f64());
        }
    }
    let mut s = step_seconds.clone();
    Ok(UnetStep {
        size,
        latent,
        parameters,
        build_seconds,
        median_step_seconds: median(&mut s),
        step_seconds,
    })
}

pub fn run(
    tokenizer_json: &Path,
    tiny_size: usize,
    unet_size: Option<usize>,
    device: &Device,
) -> Result<SteerBench> {
    Ok(SteerBench {
        device: format!("{device:?}"),
        threads: rayon::current_num_threads(),
        tiny: tiny_latency(tokenizer_json, tiny_size, 20)?,
        sd_turbo_unet: unet_size
            .map(|s| sd_turbo_unet_step(s, 3, device))
            .transpose()?,
    })
}
