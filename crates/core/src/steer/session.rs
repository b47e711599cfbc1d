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
    opts.check()?;
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
/// once with `done` 0 before the first step (so a progress bar has its total at once, not after
/// a first step that can take seconds) and after each sampler step over both sides; returning
/// false cancels.
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
    opts.check()?;
    let t0 = Instant::now();
    let any_edit = edits.iter().any(|e| !e.is_noop());
    let total = (opts.steps * (usize::from(base_latents.is_none()) + usize::from(any_edit))).max(1);
    let first_side = if base_latents.is_none() {
        "unsteered"
    } else {
        "steered"
    };
    if !on_step(0, total, first_side) {
        return Err(crate::Error::Cancelled);
    }
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

/// A text-SAE feature active on a prompt: its strongest activation over the prompt's tokens
/// (its EOS included, padding not), at which position, and on how many tokens it fires.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PromptFeature {
    pub feature: u32,
    pub max: f32,
    pub position: usize,
    pub tokens: usize,
}

/// The SAE features active on `prompt`, strongest first, `n` at most.
pub fn prompt_features(
    pipe: &Pipeline,
    sae: &Sae,
    prompt: &str,
    n: usize,
) -> Result<Vec<PromptFeature>> {
    let mut v = features_on(&pipe.encode_prompt(prompt)?, sae)?;
    v.sort_by(|a, b| b.max.total_cmp(&a.max).then(a.feature.cmp(&b.feature)));
    v.truncate(n);
    Ok(v)
}

/// The SAE features active on an encoded prompt's own tokens (positions 1..=EOS), by feature id.
pub fn features_on(c: &Conditioning, sae: &Sae) -> Result<Vec<PromptFeature>> {
    let (rows, d) = c.rows()?;
    let codes = sae.encode_sparse(&rows[d..(c.eos_position + 1) * d]);
    let mut found: std::collections::BTreeMap<u32, PromptFeature> = Default::default();
    for r in 0..codes.rows() {
        for (feature, v) in codes.row(r) {
            let e = found.entry(feature).or_insert(PromptFeature {
                feature,
                max: v,
                position: r + 1,
                tokens: 0,
            });
            e.tokens += 1;
            if v > e.max {
                e.max = v;
                e.position = r + 1;
            }
        }
    }
    Ok(found.into_values().collect())
}

/// Where two images of one size differ: per pixel the mean absolute difference over the
/// channels, scaled by `gain` and drawn through the heatmap colours (the figure for the whole
/// image is [`mean_abs_diff`]). None when the sizes differ.
pub fn difference_image(a: &RgbImage, b: &RgbImage, gain: f32) -> Option<RgbImage> {
    if a.dimensions() != b.dimensions() {
        return None;
    }
    let mut out = RgbImage::new(a.width(), a.height());
    for ((pa, pb), po) in a.pixels().zip(b.pixels()).zip(out.pixels_mut()) {
        let d: u32 = (0..3).map(|c| pa[c].abs_diff(pb[c]) as u32).sum();
        let t = (d as f32 / (3.0 * 255.0) * gain).min(1.0);
        *po = image::Rgb(crate::analysis::heatmap::colormap(t));
    }
    Some(out)
}

#[cfg(test)]
mod progress_tests {
    use super::*;

    /// A progress bar has the total before the first step, which can take seconds.
    #[test]
    fn a_pair_reports_its_total_before_the_first_step() {
        let dir = tempfile::tempdir().unwrap();
        super::super::tiny::write_tiny_pipeline(
            dir.path(),
            &super::super::tiny::shared_clip_tokenizer(),
            7,
            true,
        )
        .unwrap();
        let name = dir.path().display().to_string();
        let pipe = Pipeline::load(&name, None, &candle_core::Device::Cpu).unwrap();
        let opts = GenerateOptions {
            steps: 3,
            width: 64,
            height: 64,
            ..pipe.default_options()
        };
        let mut calls = Vec::new();
        steered_pair(
            &pipe,
            None,
            "a cat",
            &[],
            &opts,
            Decoder::Preview,
            None,
            &mut |d, n, s| {
                calls.push((d, n, s.to_string()));
                true
            },
        )
        .unwrap();
        let seen: Vec<(usize, usize)> = calls.iter().map(|(d, n, _)| (*d, *n)).collect();
        assert_eq!(seen, [(0, 3), (1, 3), (2, 3), (3, 3)]);
        assert!(calls.iter().all(|(_, _, s)| s == "unsteered"));
    }
}

#[cfg(test)]
mod difference_tests {
    use super::*;

    #[test]
    fn difference_image_is_zero_where_equal_and_hot_where_changed() {
        let a = RgbImage::from_pixel(4, 2, image::Rgb([10, 20, 30]));
        let mut b = a.clone();
        b.put_pixel(1, 1, image::Rgb([250, 20, 30]));
        let d = difference_image(&a, &b, 4.0).unwrap();
        let mean = mean_abs_diff(&a, &b);
        assert_eq!(
            *d.get_pixel(0, 0),
            image::Rgb(crate::analysis::heatmap::colormap(0.0))
        );
        // 240 of 765 on one channel, ×4, saturates.
        assert_eq!(
            *d.get_pixel(1, 1),
            image::Rgb(crate::analysis::heatmap::colormap(1.0))
        );
        assert!((mean - 240.0 / 24.0).abs() < 1e-9);
        assert!(difference_image(&a, &RgbImage::new(2, 2), 4.0).is_none());
        assert_eq!(mean_abs_diff(&a, &a), 0.0);
    }
}
