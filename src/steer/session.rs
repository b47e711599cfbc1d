//! One steered generation: edit the conditioning, denoise with the prompt's seed, decode with the
//! preview or the full decoder. Shared by the CLI, the app's steering view and the benchmarks.

use super::edit::{self, FeatureEdit};
use super::pipeline::{Conditioning, GenerateOptions, Pipeline};
use crate::error::Result;
use crate::sae::Sae;
use candle_core::Tensor;
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

/// An unsteered and a steered image of one prompt and seed: the comparison the CLI's
/// `steer generate` writes and the app's sliders show.
pub struct Pair {
    pub base: (Tensor, RgbImage),
    pub steered: (Tensor, RgbImage),
    /// No edit changes anything: the steered side is the unsteered one, not run again.
    pub identical: bool,
    pub seconds: f64,
}

/// Makes the unsteered image (or reuses `base_latents` from an earlier pair with the same prompt
/// and options, as the sliders do) and the steered one. `on_step(done, total, side)` is called
/// after each sampler step over both sides; returning false cancels.
#[allow(clippy::too_many_arguments)]
pub fn steered_pair(
    pipe: &Pipeline,
    sae: Option<&Sae>,
    prompt: &str,
    edits: &[FeatureEdit],
    opts: &GenerateOptions,
    decoder: Decoder,
    base_latents: Option<Tensor>,
    on_step: &mut dyn FnMut(usize, usize, &str) -> bool,
) -> Result<Pair> {
    let t0 = Instant::now();
    let any_edit = edits.iter().any(|e| !e.is_noop());
    let total = (opts.steps * (usize::from(base_latents.is_none()) + usize::from(any_edit))).max(1);
    let cond = pipe.encode_prompt(prompt)?;
    let mut done = 0;
    let mut step = |side: &str| {
        done += 1;
        on_step(done, total, side)
    };
    let base_latents = match base_latents {
        Some(l) => l,
        None => pipe.denoise(&cond, opts, &mut |_, _| step("unsteered"))?,
    };
    let base_image = decode(pipe, &base_latents, decoder)?;
    let (steered, identical) = if any_edit {
        let sae = sae.ok_or_else(|| {
            crate::Error::Invalid("steering edits need a text-encoder SAE: give one".into())
        })?;
        let edited = edit::apply(sae, &cond, edits)?;
        let l = pipe.denoise(&edited, opts, &mut |_, _| step("steered"))?;
        let img = decode(pipe, &l, decoder)?;
        ((l, img), false)
    } else {
        ((base_latents.clone(), base_image.clone()), true)
    };
    Ok(Pair {
        base: (base_latents, base_image),
        steered,
        identical,
        seconds: t0.elapsed().as_secs_f64(),
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
