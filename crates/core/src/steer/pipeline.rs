//! A text-to-image diffusion pipeline in diffusers layout (SD 1.5, SD 2.1 / SD-Turbo, SDXL /
//! SDXL-Turbo) on candle-transformers' UNet and VAE, with saescope's CLIP text encoder and
//! tokenizer. The text conditioning is a plain tensor handed to every UNet step, which is what
//! steering edits.

use super::config::{self, ScheduleSpec};
use super::scheduler::{EulerAncestral, gaussian};
use super::taesd::TinyAutoencoder;
use crate::backbone::clip::{self, TextTransformer};
use crate::backbone::tokenizer::ClipTokenizer;
use crate::backbone::weights::Weights;
use crate::error::{Error, Result};
use crate::fix::Opt;
use crate::rng::Rng;
use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::stable_diffusion::{
    unet_2d::UNet2DConditionModel, vae::AutoEncoderKL,
};
use image::RgbImage;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PipelineKind {
    /// One CLIP text encoder, last hidden state (SD 1.x, SD 2.x, SD-Turbo).
    Sd,
    /// Two text encoders, penultimate hidden states concatenated (SDXL, SDXL-Turbo).
    Sdxl,
}

struct TextEncoder {
    tokenizer: ClipTokenizer,
    model: TextTransformer,
    pad: u32,
}

impl TextEncoder {
    fn load(dir: &Path, enc: &str, tok: &str, device: &Device) -> Result<Self> {
        let enc_dir = dir.join(enc);
        let config: serde_json::Value = crate::fsutil::read_json(&enc_dir.join("config.json"))?;
        let (_, text) = clip::tower_configs(&config)?;
        let text = text.ok_or_else(|| {
            Error::Model(format!(
                "{}: not a CLIP text encoder config",
                enc_dir.display()
            ))
        })?;
        let weights = Weights::load_safetensors(&[weights_file(&enc_dir, "model")?], device)?;
        let model = TextTransformer::load(&weights, &text)?;
        let tok_dir = dir.join(tok);
        let tokenizer = ClipTokenizer::from_folder(&tok_dir)?;
        let pad = pad_token(&tok_dir)
            .and_then(|p| tokenizer.token_id(&p))
            .unwrap_or(tokenizer.eos);
        Ok(TextEncoder {
            tokenizer,
            model,
            pad,
        })
    }
}

/// `pad_token` of `tokenizer_config.json` (a string or `{content: …}`), if any.
fn pad_token(tok_dir: &Path) -> Option<String> {
    let v: serde_json::Value =
        crate::fsutil::read_json(&tok_dir.join("tokenizer_config.json")).ok()?;
    let p = v.get("pad_token")?;
    p.as_str()
        .map(String::from)
        .or_else(|| p.get("content").and_then(|c| c.as_str()).map(String::from))
}

/// `<stem>.safetensors`, else the fp16 variant `<stem>.fp16.safetensors`.
fn weights_file(dir: &Path, stem: &str) -> Result<PathBuf> {
    for name in [
        format!("{stem}.safetensors"),
        format!("{stem}.fp16.safetensors"),
    ] {
        let p = dir.join(&name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(Error::Model(format!(
        "{}: no {stem}.safetensors (or {stem}.fp16.safetensors); saescope reads safetensors weights only — \
         download the safetensors files of this pipeline",
        dir.display()
    )))
}

/// A prompt's conditioning: the token ids and the text encoder output the UNet attends to.
#[derive(Clone, Debug)]
pub struct Conditioning {
    pub prompt: String,
    pub ids: Vec<u32>,
    /// Positions 1..=eos hold the prompt's tokens and its EOS; later positions are padding.
    pub eos_position: usize,
    /// [1, T, D]
    pub embedding: Tensor,
}

impl Conditioning {
    /// The embedding as T rows of D floats.
    pub fn rows(&self) -> Result<(Vec<f32>, usize)> {
        let e = self.embedding.i(0)?;
        let d = e.dim(1)?;
        Ok((e.flatten_all()?.to_vec1()?, d))
    }

    /// A copy with another embedding (same shape).
    pub fn with_rows(&self, rows: Vec<f32>) -> Result<Conditioning> {
        let shape = self.embedding.shape().clone();
        Ok(Conditioning {
            embedding: Tensor::from_vec(rows, shape, self.embedding.device())?,
            ..self.clone()
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GenerateOptions {
    pub seed: u64,
    pub steps: usize,
    pub width: usize,
    pub height: usize,
    /// Classifier-free guidance scale; ≤ 1 runs the UNet on the prompt alone (Turbo models).
    pub guidance: f64,
    pub negative_prompt: String,
}

/// The largest image side generated (twice SDXL's native 1,024; D5: 100,000 took 20 GB).
pub const MAX_SIZE: usize = 2048;

impl GenerateOptions {
    /// Sizes (multiples of 8, from 64 to [`MAX_SIZE`]) and a finite, non-negative guidance,
    /// before anything is allocated.
    pub fn check(&self) -> Result<()> {
        for side in [self.width, self.height] {
            if !side.is_multiple_of(8) || !(64..=MAX_SIZE).contains(&side) {
                return Err(crate::fixable!(
                    [
                        Opt::Size,
                        format!(
                            " {}×{}: each side must be a multiple of 8 from 64 to {MAX_SIZE}",
                            self.width, self.height
                        )
                    ],
                    ["256 is a good CPU preview size; 512 or 1024 the models' own"]
                ));
            }
        }
        if !(self.guidance.is_finite() && self.guidance >= 0.0) {
            return Err(crate::fixable!(
                [
                    Opt::Guidance,
                    format!(
                        " must be a finite number of at least 0 (got {})",
                        self.guidance
                    )
                ],
                ["use 0 for Turbo models, about 7.5 for the others"]
            ));
        }
        Ok(())
    }
}

pub struct Pipeline {
    pub dir: PathBuf,
    pub name: String,
    pub kind: PipelineKind,
    encoders: Vec<TextEncoder>,
    unet: UNet2DConditionModel,
    unet_in_channels: usize,
    vae: AutoEncoderKL,
    vae_scale: f64,
    pub schedule: ScheduleSpec,
    pub preview: Option<TinyAutoencoder>,
    pub device: Device,
    /// Native resolution (the UNet's `sample_size` × 8).
    pub native_size: usize,
    /// A distilled few-step model (SD-Turbo, SDXL-Turbo): 1 step, no guidance.
    pub is_turbo: bool,
    /// candle's UNet lacks SDXL's pooled-text / time-id conditioning.
    pub missing_added_conditioning: bool,
}

impl Pipeline {
    /// From a diffusers pipeline folder or a Hugging Face id. `preview` names a TAESD-family
    /// decoder (file, folder or id); without it a `taesd/` folder inside the pipeline is used.
    pub fn load(source: &str, preview: Option<&str>, device: &Device) -> Result<Self> {
        let dir = resolve_pipeline(source)?;
        let index: serde_json::Value = crate::fsutil::read_json(&dir.join("model_index.json"))
            .map_err(|e| {
                Error::Model(format!(
                    "{}: not a diffusers pipeline folder ({e}); pass a folder with model_index.json, unet/, vae/, text_encoder/ and tokenizer/, or a Hugging Face id such as stabilityai/sd-turbo",
                    dir.display()
                ))
            })?;
        let kind = if index.get("text_encoder_2").is_some() {
            PipelineKind::Sdxl
        } else {
            PipelineKind::Sd
        };
        let mut encoders = vec![TextEncoder::load(
            &dir,
            "text_encoder",
            "tokenizer",
            device,
        )?];
        if kind == PipelineKind::Sdxl {
            encoders.push(TextEncoder::load(
                &dir,
                "text_encoder_2",
                "tokenizer_2",
                device,
            )?);
        }
        let unet_spec = config::unet(&dir.join("unet/config.json"))?;
        let text_width: usize = encoders.iter().map(|e| e.model.d_model).sum();
        if text_width != unet_spec.cross_attention_dim {
            return Err(Error::Model(format!(
                "{}: the text encoder gives {text_width}-wide embeddings but the UNet cross-attends to {}; the folder mixes components of different models",
                dir.display(),
                unet_spec.cross_attention_dim
            )));
        }
        let unet_file = weights_file(&dir.join("unet"), "diffusion_pytorch_model")?;
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[unet_file], DType::F32, device)? };
        let unet = UNet2DConditionModel::new(
            vb,
            unet_spec.in_channels,
            unet_spec.out_channels,
            false,
            unet_spec.config.clone(),
        )?;
        let vae_spec = config::vae(&dir.join("vae/config.json"))?;
        let vae_file = weights_file(&dir.join("vae"), "diffusion_pytorch_model")?;
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[vae_file], DType::F32, device)? };
        let vae = AutoEncoderKL::new(vb, 3, 3, vae_spec.config.clone())?;
        let schedule = config::schedule(&dir.join("scheduler/scheduler_config.json"))?;
        let preview_source = match preview {
            Some(p) => Some(resolve_preview(p)?),
            None => Some(dir.join("taesd")).filter(|p| p.is_dir()),
        };
        let preview = preview_source
            .map(|p| TinyAutoencoder::load(&p, device))
            .transpose()?;
        if let Some(p) = &preview
            && p.decoder.is_some()
            && p.latent_channels() != unet_spec.out_channels
        {
            return Err(Error::Model(format!(
                "{}: this preview decoder reads {}-channel latents but the pipeline makes {}-channel ones; use madebyollin/taesd (SD 1.x/2.x) or madebyollin/taesdxl (SDXL)",
                p.origin,
                p.latent_channels(),
                unet_spec.out_channels
            )));
        }
        let name = index
            .get("_name_or_path")
            .and_then(|v| v.as_str())
            .map(String::from)
            .unwrap_or_else(|| source.to_string());
        let is_turbo =
            name.to_lowercase().contains("turbo") || source.to_lowercase().contains("turbo");
        Ok(Pipeline {
            dir,
            name,
            kind,
            encoders,
            unet,
            unet_in_channels: unet_spec.in_channels,
            vae,
            vae_scale: vae_spec.scaling_factor,
            schedule,
            preview,
            device: device.clone(),
            native_size: unet_spec.sample_size * 8,
            is_turbo,
            missing_added_conditioning: unet_spec.has_added_conditioning,
        })
    }

    /// Sensible defaults for this model: Turbo models take 1 step without guidance.
    pub fn default_options(&self) -> GenerateOptions {
        GenerateOptions {
            seed: 0,
            steps: if self.is_turbo { 1 } else { 20 },
            width: self.native_size,
            height: self.native_size,
            guidance: if self.is_turbo { 0.0 } else { 7.5 },
            negative_prompt: String::new(),
        }
    }

    /// Width of the conditioning (what a text-encoder SAE must read).
    pub fn embedding_width(&self) -> usize {
        self.encoders.iter().map(|e| e.model.d_model).sum()
    }

    pub fn context_length(&self) -> usize {
        self.encoders[0].model.max_len
    }

    /// The prompt's tokens as text with their positions (1..EOS), for choosing which to steer.
    pub fn prompt_tokens(&self, prompt: &str) -> Vec<(usize, String)> {
        let enc = &self.encoders[0];
        let ids = enc
            .tokenizer
            .encode_padded(prompt, enc.model.max_len, enc.pad);
        ids.iter()
            .enumerate()
            .skip(1)
            .take_while(|&(_, &id)| id != enc.tokenizer.eos)
            .map(|(i, &id)| {
                (
                    i,
                    enc.tokenizer
                        .token_text(id)
                        .unwrap_or_else(|| format!("<{id}>")),
                )
            })
            .collect()
    }

    /// The UNet's conditioning for `prompt`.
    pub fn encode_prompt(&self, prompt: &str) -> Result<Conditioning> {
        let mut parts = Vec::new();
        let mut first_ids = Vec::new();
        for (i, enc) in self.encoders.iter().enumerate() {
            let ids = enc
                .tokenizer
                .encode_padded(prompt, enc.model.max_len, enc.pad);
            let t = Tensor::from_vec(ids.clone(), (1, ids.len()), &self.device)?;
            let out = enc.model.forward(&t)?;
            parts.push(match self.kind {
                PipelineKind::Sd => out.last,
                PipelineKind::Sdxl => out.hidden[out.hidden.len() - 2].clone(),
            });
            if i == 0 {
                first_ids = ids;
            }
        }
        let embedding = Tensor::cat(&parts, 2)?;
        let eos = self.encoders[0].tokenizer.eos;
        let eos_position = first_ids
            .iter()
            .position(|&t| t == eos)
            .unwrap_or(first_ids.len() - 1);
        Ok(Conditioning {
            prompt: prompt.to_string(),
            ids: first_ids,
            eos_position,
            embedding,
        })
    }

    /// Runs the sampler from seeded noise and returns the final latents [1, C, h/8, w/8].
    /// `on_step(done, total)` is called after each step; returning false cancels.
    pub fn denoise(
        &self,
        cond: &Conditioning,
        opts: &GenerateOptions,
        on_step: &mut dyn FnMut(usize, usize) -> bool,
    ) -> Result<Tensor> {
        opts.check()?;
        let sched = EulerAncestral::new(&self.schedule, opts.steps)?;
        let mut rng = Rng::new(opts.seed);
        let shape = [1, self.unet_in_channels, opts.height / 8, opts.width / 8];
        let mut latents = (gaussian(&mut rng, &shape, &self.device)? * sched.init_noise_sigma)?;
        let guided = opts.guidance > 1.0;
        let context = if guided {
            let uncond = self.encode_prompt(&opts.negative_prompt)?;
            Tensor::cat(&[&uncond.embedding, &cond.embedding], 0)?
        } else {
            cond.embedding.clone()
        };
        for (i, &t) in sched.timesteps.iter().enumerate() {
            let input = sched.scale_model_input(&latents, i)?;
            let input = if guided {
                Tensor::cat(&[&input, &input], 0)?
            } else {
                input
            };
            let noise = self.unet.forward(&input, t, &context)?;
            let noise = if guided {
                let u = noise.i(0..1)?;
                let c = noise.i(1..2)?;
                (&u + ((c - &u)? * opts.guidance)?)?
            } else {
                noise
            };
            latents = sched.step(&noise, i, &latents, &mut rng)?;
            if !on_step(i + 1, sched.timesteps.len()) {
                return Err(Error::Cancelled);
            }
        }
        Ok(latents)
    }

    /// The full VAE decoder.
    pub fn decode(&self, latents: &Tensor) -> Result<RgbImage> {
        let x = self.vae.decode(&(latents / self.vae_scale)?)?;
        to_image(&((x + 1.0)? / 2.0)?)
    }

    /// The fast TAESD-family preview decoder, or the full one when none is loaded.
    pub fn decode_preview(&self, latents: &Tensor) -> Result<RgbImage> {
        match self.preview.as_ref().filter(|p| p.decoder.is_some()) {
            Some(p) => to_image(&p.decode(latents)?),
            None => self.decode(latents),
        }
    }
}

/// [1, 3, H, W] in [0, 1] → an RGB image (clamped).
pub fn to_image(x: &Tensor) -> Result<RgbImage> {
    let x = x.i(0)?.clamp(0f32, 1f32)?;
    let (_, h, w) = x.dims3()?;
    let data: Vec<u8> = (x.permute((1, 2, 0))? * 255.0)?
        .round()?
        .to_dtype(DType::U8)?
        .flatten_all()?
        .to_vec1()?;
    RgbImage::from_raw(w as u32, h as u32, data)
        .ok_or_else(|| Error::Invalid("decoded image has the wrong size".into()))
}

/// A local folder, or a Hugging Face id fetched into the hub cache.
fn resolve_pipeline(source: &str) -> Result<PathBuf> {
    let p = Path::new(source);
    if p.is_dir() {
        return Ok(p.to_path_buf());
    }
    if p.exists() {
        return Err(Error::Model(format!(
            "{source}: a pipeline is a folder in diffusers layout (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/), not a file"
        )));
    }
    if !crate::backbone::source::looks_like_hub_id(source) {
        return Err(Error::Model(format!(
            "pipeline `{source}` not found: no such folder, and it is not a Hugging Face id (org/name)"
        )));
    }
    crate::backbone::source::fetch_hub_files(source, &PIPELINE_FILES, Opt::Pipeline)
}

fn resolve_preview(source: &str) -> Result<PathBuf> {
    let p = Path::new(source);
    if p.exists() || !crate::backbone::source::looks_like_hub_id(source) {
        return Ok(p.to_path_buf());
    }
    crate::backbone::source::fetch_hub_files(
        source,
        &[
            ("config.json", true),
            ("diffusion_pytorch_model.safetensors", true),
        ],
        Opt::PreviewDecoder,
    )
}

/// Files a diffusers text-to-image pipeline needs (SDXL's second encoder is optional). The fp16
/// variants are tried first: half the download.
const PIPELINE_FILES: [(&str, bool); 16] = [
    ("model_index.json", true),
    ("scheduler/scheduler_config.json", true),
    ("text_encoder/config.json", true),
    (
        "text_encoder/model.fp16.safetensors|text_encoder/model.safetensors",
        true,
    ),
    ("tokenizer/vocab.json", true),
    ("tokenizer/merges.txt", true),
    ("tokenizer/tokenizer_config.json", false),
    ("text_encoder_2/config.json", false),
    (
        "text_encoder_2/model.fp16.safetensors|text_encoder_2/model.safetensors",
        false,
    ),
    ("tokenizer_2/vocab.json", false),
    ("tokenizer_2/merges.txt", false),
    ("tokenizer_2/tokenizer_config.json", false),
    ("unet/config.json", true),
    (
        "unet/diffusion_pytorch_model.fp16.safetensors|unet/diffusion_pytorch_model.safetensors",
        true,
    ),
    ("vae/config.json", true),
    (
        "vae/diffusion_pytorch_model.fp16.safetensors|vae/diffusion_pytorch_model.safetensors",
        true,
    ),
];
