//! `saescope steer …`: the diffusion-steering commands of the binary (see `ops::steer`).

use crate::{Ctx, emit_pretty, ops, progress_job};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use ops::steer::discover;
use ops::steer::edit::{FeatureEdit, TokenScope};
use ops::steer::pipeline::{GenerateOptions, Pipeline};
use ops::steer::session::{self, Decoder};
use ops::steering;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Args, Clone)]
pub struct PipelineArgs {
    /// Diffusers pipeline folder or Hugging Face id (stabilityai/sd-turbo, stabilityai/sdxl-turbo,
    /// stable-diffusion-v1-5/stable-diffusion-v1-5, …).
    #[arg(long)]
    pub pipeline: String,
    /// TAESD-family preview decoder (folder, file or id such as madebyollin/taesd); default: the
    /// pipeline's `taesd/` folder when it has one, else the full VAE.
    #[arg(long)]
    pub preview_decoder: Option<String>,
}

impl PipelineArgs {
    /// The pipeline, with the text SAE `sae` checked to fit its text encoder.
    pub fn load(&self, sae: Option<&Path>, ctx: &Ctx) -> Result<steering::Loaded> {
        let request = steering::LoadRequest {
            pipeline: self.pipeline.clone(),
            preview_decoder: self.preview_decoder.clone(),
            sae: sae.map(Path::to_path_buf),
            device: ctx.device_choice()?,
        };
        steering::load(&request, &Default::default())
            .with_context(|| format!("loading pipeline `{}`", self.pipeline))
    }
}

#[derive(Args, Clone)]
pub struct SamplingArgs {
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Sampler steps (default: 1 for Turbo models, 20 otherwise).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Square image size in pixels, a multiple of 8 (default: the model's native size; 256 is
    /// a good CPU preview size).
    #[arg(long)]
    pub size: Option<usize>,
    /// Classifier-free guidance (default: 0 = off for Turbo models, 7.5 otherwise).
    #[arg(long)]
    pub guidance: Option<f64>,
    #[arg(long, default_value = "")]
    pub negative_prompt: String,
}

impl SamplingArgs {
    pub fn options(&self, pipe: &Pipeline) -> GenerateOptions {
        let d = pipe.default_options();
        GenerateOptions {
            seed: self.seed,
            steps: self.steps.unwrap_or(d.steps),
            width: self.size.unwrap_or(d.width),
            height: self.size.unwrap_or(d.height),
            guidance: self.guidance.unwrap_or(d.guidance),
            negative_prompt: self.negative_prompt.clone(),
        }
    }
}

#[derive(Subcommand)]
pub enum SteerCommand {
    /// Train an SAE on the text encoder's per-token outputs over a prompt corpus (resumable).
    TrainSae {
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// Folder for the embeddings, checkpoints and the SAE (`OUT/sae`).
        #[arg(long)]
        out: PathBuf,
        /// Extra prompts, one per line, added to the ~1,200 built-in ones.
        #[arg(long)]
        prompts: Option<PathBuf>,
        /// Features (default: 4 × the embedding width, 256 to 8192).
        #[arg(long)]
        d_sae: Option<usize>,
        /// Active features per token (default: width / 16, 4 to 32).
        #[arg(long)]
        k: Option<usize>,
        /// Training tokens (default: 2 M, i.e. many passes over the corpus's tokens).
        #[arg(long)]
        tokens: Option<u64>,
        #[arg(long, default_value_t = 1024)]
        batch: usize,
        #[arg(long)]
        restart: bool,
        /// Refuse a run estimated to take longer than this (hours; default 72).
        #[arg(long)]
        max_hours: Option<f64>,
    },
    /// Generate unsteered and steered images for a prompt.
    Generate {
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// A text-encoder SAE (folder or file; e.g. OUT/sae from `steer train-sae`).
        #[arg(long)]
        sae: Option<PathBuf>,
        #[arg(long)]
        prompt: String,
        /// FEATURE=ALPHA adds ALPHA·W_dec[FEATURE]; FEATURE=clamp:VALUE sets the feature. Repeat to mix.
        #[arg(long = "feature")]
        features: Vec<String>,
        /// Tokens the edits apply to: all, prompt, or positions like 1,2,5.
        #[arg(long, default_value = "all")]
        tokens: String,
        #[command(flatten)]
        sampling: SamplingArgs,
        /// Decode with the preview decoder instead of the full VAE.
        #[arg(long)]
        preview: bool,
        /// Output folder for unsteered.png, steered.png and side_by_side.png.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Rank SAE features by how consistently steering with them moves a CLIP-scored attribute.
    Discover {
        #[command(flatten)]
        pipeline: PipelineArgs,
        #[arg(long)]
        sae: PathBuf,
        /// CLIP model for zero-shot scoring (folder or id, e.g. openai/clip-vit-base-patch32).
        #[arg(long)]
        clip: String,
        /// tokenizer.json for the CLIP model (default: its folder's own, else the shared CLIP
        /// tokenizer that make-tiny uses).
        #[arg(long)]
        clip_tokenizer: Option<PathBuf>,
        /// Features to test, e.g. 3,10-12; default: the --candidates most active on the prompts.
        #[arg(long)]
        features: Option<String>,
        #[arg(long, default_value_t = 8)]
        candidates: usize,
        /// Prompts, one per line (default: three built-in scenes).
        #[arg(long)]
        prompts: Option<PathBuf>,
        #[arg(long, default_value = "0,1")]
        seeds: String,
        /// Steering strength (default: twice each feature's largest activation on the prompts).
        #[arg(long)]
        alpha: Option<f32>,
        /// Extra attributes, one per line, added to the built-in vocabulary.
        #[arg(long)]
        vocab: Option<PathBuf>,
        #[command(flatten)]
        sampling: SamplingArgs,
        #[arg(long)]
        out: PathBuf,
    },
    /// The text SAE's features active on a prompt's tokens, strongest first (the Steering
    /// view's "Features of this prompt").
    PromptFeatures {
        #[command(flatten)]
        pipeline: PipelineArgs,
        #[arg(long)]
        sae: PathBuf,
        #[arg(long)]
        prompt: String,
        /// At most this many features (1 to 1000).
        #[arg(long, default_value_t = 12)]
        n: usize,
    },
    /// Write a tiny random-weight SD-style pipeline (diffusers layout) to try the tools on.
    MakeTiny {
        #[arg(long)]
        out: PathBuf,
        /// CLIP tokenizer.json (default: ../shared/data/clip/tokenizer.json).
        #[arg(long)]
        tokenizer: Option<PathBuf>,
        /// SD-Turbo style: trailing timesteps, 1 step, no guidance.
        #[arg(long)]
        turbo: bool,
        /// SDXL-Turbo style: two text encoders (implies Turbo sampling).
        #[arg(long)]
        sdxl: bool,
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
}

#[derive(Serialize)]
struct GenerateReport {
    pipeline: String,
    prompt: String,
    options: GenerateOptions,
    decoder: Decoder,
    edits: Vec<FeatureEdit>,
    unsteered: PathBuf,
    steered: Option<PathBuf>,
    side_by_side: Option<PathBuf>,
    /// Mean absolute pixel difference steered vs unsteered (0–255).
    mean_abs_pixel_diff: Option<f64>,
    seconds: f64,
    missing_added_conditioning: bool,
}

fn save_png(img: &image::RgbImage, path: &Path) -> Result<()> {
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )?;
    ops::fsutil::write_atomic(path, &bytes)?;
    Ok(())
}

pub fn run(cmd: SteerCommand, ctx: &Ctx) -> Result<()> {
    match cmd {
        SteerCommand::PromptFeatures {
            pipeline,
            sae,
            prompt,
            n,
        } => {
            if !(1..=1000).contains(&n) {
                anyhow::bail!("--n must be between 1 and 1000 (got {n})");
            }
            let loaded = pipeline.load(Some(&sae), ctx)?;
            let features = steering::prompt_features(&loaded, &prompt, n)?;
            // The prompt's tokens by position, so each feature's position reads as a word.
            let tokens = loaded.pipe.prompt_tokens(&prompt);
            emit_pretty(
                ctx,
                &serde_json::json!({ "prompt": prompt, "tokens": tokens, "features": features }),
            )
        }
        SteerCommand::MakeTiny {
            out,
            tokenizer,
            turbo,
            sdxl,
            seed,
        } => {
            let tok = tokenizer.unwrap_or_else(ops::steer::tiny::shared_clip_tokenizer);
            use ops::steer::tiny::TinyKind;
            let kind = match (sdxl, turbo) {
                (true, _) => TinyKind::SdxlTurbo,
                (false, true) => TinyKind::SdTurbo,
                (false, false) => TinyKind::Sd,
            };
            ops::steer::tiny::write_tiny(&out, &tok, seed, kind)?;
            emit_pretty(
                ctx,
                &serde_json::json!({ "pipeline": out, "kind": format!("{kind:?}"), "seed": seed }),
            )
        }
        SteerCommand::TrainSae {
            pipeline,
            out,
            prompts,
            d_sae,
            k,
            tokens,
            batch,
            restart,
            max_hours,
        } => {
            let pipe = pipeline.load(None, ctx)?.pipe;
            let (job, bar) = progress_job("train-sae");
            let request = steering::TextSaeRequest {
                pipeline: pipeline.pipeline.clone(),
                prompts,
                out,
                d_sae,
                k,
                tokens,
                batch: Some(batch),
                restart,
                max_hours,
            };
            let report = steering::train_text_sae(&pipe, &request, &job)?;
            bar.finish_and_clear();
            emit_pretty(ctx, &report)
        }
        SteerCommand::Generate {
            pipeline,
            sae,
            prompt,
            features,
            tokens,
            sampling,
            preview,
            out,
        } => {
            let start = std::time::Instant::now();
            let scope = TokenScope::parse(&tokens)?;
            let edits = features
                .iter()
                .map(|f| FeatureEdit::parse(f, &scope))
                .collect::<ops::Result<Vec<_>>>()?;
            if sae.is_none() && !edits.is_empty() {
                anyhow::bail!(
                    "--feature needs --sae (the text-encoder SAE the feature ids refer to)"
                )
            }
            let steering::Loaded { pipe, sae, .. } = pipeline.load(sae.as_deref(), ctx)?;
            let opts = sampling.options(&pipe);
            let decoder = if preview {
                Decoder::Preview
            } else {
                Decoder::Full
            };
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            let pair = session::steered_pair(
                &pipe,
                sae.as_ref(),
                &prompt,
                &edits,
                &opts,
                decoder,
                None,
                &mut |_, _, _| true,
            )?;
            let unsteered = out.join("unsteered.png");
            save_png(&pair.base.1, &unsteered)?;
            let (mut steered, mut side, mut diff) = (None, None, None);
            if !edits.is_empty() {
                let g = &pair.steered.1;
                let p = out.join("steered.png");
                save_png(g, &p)?;
                let s = out.join("side_by_side.png");
                save_png(&discover::hstack(&[&pair.base.1, g]), &s)?;
                diff = Some(session::mean_abs_diff(&pair.base.1, g));
                steered = Some(p);
                side = Some(s);
            }
            emit_pretty(
                ctx,
                &GenerateReport {
                    pipeline: pipe.name.clone(),
                    prompt,
                    options: opts,
                    decoder,
                    edits,
                    unsteered,
                    steered,
                    side_by_side: side,
                    mean_abs_pixel_diff: diff,
                    seconds: start.elapsed().as_secs_f64(),
                    missing_added_conditioning: pipe.missing_added_conditioning,
                },
            )
        }
        SteerCommand::Discover {
            pipeline,
            sae,
            clip,
            clip_tokenizer,
            features,
            candidates,
            prompts,
            seeds,
            alpha,
            vocab,
            sampling,
            out,
        } => {
            let loaded = pipeline.load(Some(&sae), ctx)?;
            let seeds = seeds
                .split(',')
                .map(|s| s.trim().parse::<u64>())
                .collect::<std::result::Result<Vec<_>, _>>()
                .context("--seeds: expected numbers like 0,1,2")?;
            let features = match &features {
                Some(f) => ops::analysis::export::parse_ids(f)?
                    .into_iter()
                    .map(|x| x as usize)
                    .collect(),
                None => Vec::new(),
            };
            let request = steering::DiscoverRequest {
                clip,
                clip_tokenizer,
                prompts,
                seeds,
                features,
                candidates,
                alpha,
                vocab,
                generate: sampling.options(&loaded.pipe),
                out: out.clone(),
            };
            let (job, bar) = progress_job("discover");
            let result = steering::discover(&loaded.pipe, loaded.sae.as_ref(), &request, &job)?;
            bar.finish_and_clear();
            emit_pretty(
                ctx,
                &serde_json::json!({
                    "out": out,
                    "discovery": out.join(discover::DISCOVERY_FILE),
                    "export": out.join(discover::EXPORT_FILE),
                    "ranking": result.ranking,
                }),
            )
        }
    }
}
