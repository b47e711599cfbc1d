//! One steered generation: edit the conditioning, denoise with the prompt's seed, decode with the
//! preview or the full decoder. Shared by the CLI, the app's steering view and the benchmarks.

use super::edit::{self, FeatureEdit};
use super::pipeline::{Conditioning, GenerateOptions, Pipeline};
use crate::error::Result;
use crate::sae::Sae;
use candle_core::{Device, Tensor};
use image::RgbImage;
use serde::Serialize;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decoder {
    /// The TAESD-family tiny decoder (the full one when the pipeline has none).
    Preview,
    /// The pipeline's VAE.
    Full,
}

pub struct Generation {
    pub latents: Tensor,
    pub image: RgbImage,
    pub decoder: Decoder,
    pub denoise_seconds: f64,
    pub decode_seconds: f64,
}

/// Edits `cond` with `edits` (none: unsteered), denoises and decodes.
pub fn generate(
    pipe: &Pipeline,
    sae: Option<&Sae>,
    cond: &Conditioning,
    edits: &[FeatureEdit],
    opts: &GenerateOptions,
    decoder: Decoder,
    on_step: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Generation> {
    let t0 = Instant::now();
    let cond = match sae {
        Some(sae) if !edits.is_empty() => edit::apply(sae, cond, edits)?,
        _ => cond.clone(),
    };
    let latents = pipe.denoise(&cond, opts, on_step)?;
    let denoise_seconds = t0.elapsed().as_secs_f64();
    let image = decode(pipe, &latents, decoder)?;
    Ok(Generation {
        latents,
        image,
        decoder,
        denoise_seconds,
        decode_seconds: t0.elapsed().as_secs_f64() - denoise_seconds,
    })
}

pub fn decode(pipe: &Pipeline, latents: &Tensor, decoder: Decoder) -> Result<RgbImage> {
    match decoder {
        Decoder::Preview => pipe.decode_preview(latents),
        Decoder::Full => pipe.decode(latents),
    }
}

/// Mean absolute difference of two images' pixels, in [0, 255].
pub fn mean_abs_diff(a: &RgbImage, b: &RgbImage) -> f64 {
    let n = a.as_raw().len().min(b.as_raw().len()).max(1);
    a.as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| (*x as f64 - *y as f64).abs())
        .sum::<f64>()
        / n as f64
}

/// The GPU when saescope was built with `cuda` or `metal` and one is present, else the CPU.
pub fn default_device(force_cpu: bool) -> Device {
    if force_cpu {
        return Device::Cpu;
    }
    #[cfg(feature = "cuda")]
    if let Ok(d) = Device::new_cuda(0) {
        return d;
    }
    #[cfg(feature = "metal")]
    if let Ok(d) = Device::new_metal(0) {
        return d;
    }
    Device::Cpu
}
