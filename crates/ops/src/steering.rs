//! Diffusion steering's use cases, the same for `saescope steer …` and the app's Steering view:
//! load a pipeline with its text SAE (checked to fit the text encoder), train a text SAE over
//! the prompt corpus, and discover which features move which attribute.

use crate::device::DeviceChoice;
use crate::error::{Error, Result};
use crate::job::Job;
use crate::sae::Sae;
use crate::sae::workflow::TrainOptions;
use crate::steer::corpus::{self, TextSaeReport, TopPromptsFile};
use crate::steer::discover::{self, ClipScorer, DiscoverOptions, Discovery};
use crate::steer::pipeline::{GenerateOptions, Pipeline};
use crate::steer::session::PromptFeature;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Default)]
pub struct LoadRequest {
    /// Diffusers folder or Hugging Face id.
    pub pipeline: String,
    /// TAESD-family preview decoder; None: the pipeline's own `taesd/`, else the full VAE.
    pub preview_decoder: Option<String>,
    /// The text-encoder SAE (folder or file).
    pub sae: Option<PathBuf>,
    pub device: DeviceChoice,
}

/// A pipeline ready to generate, with its text SAE.
pub struct Loaded {
    pub pipe: Pipeline,
    pub sae: Option<Sae>,
    /// Each SAE feature's strongest corpus prompts, when its folder has them.
    pub top_prompts: Option<TopPromptsFile>,
}

/// Loads the pipeline, then the SAE, which must fit the pipeline's text-encoder width.
pub fn load(r: &LoadRequest, job: &Job) -> Result<Loaded> {
    let device = crate::device_of(r.device)?;
    let preview = r
        .preview_decoder
        .as_deref()
        .filter(|p| !p.trim().is_empty());
    let pipe = Pipeline::load(r.pipeline.trim(), preview, &device)?;
    job.check()?;
    let (sae, top_prompts) = match &r.sae {
        None => (None, None),
        Some(p) => {
            let sae = crate::sae::formats::load_sae(p)?;
            sae.check_fits(pipe.embedding_width(), "this pipeline's text encoder")?;
            (Some(sae), corpus::read_top_prompts(p)?)
        }
    };
    Ok(Loaded {
        pipe,
        sae,
        top_prompts,
    })
}

/// What to change of the corpus defaults when training a text SAE (None: the default).
#[derive(Clone, Debug, Default)]
pub struct TextSaeRequest {
    /// The pipeline's folder or id, recorded in the SAE's metadata.
    pub pipeline: String,
    /// Extra prompts, one a line, added to the built-in corpus.
    pub prompts: Option<PathBuf>,
    /// Where the SAE and its corpus files go (the SAE in `<out>/sae`).
    pub out: PathBuf,
    pub d_sae: Option<usize>,
    pub k: Option<usize>,
    pub tokens: Option<u64>,
    pub batch: Option<usize>,
    pub restart: bool,
    /// Refuse a run estimated to take longer (default: training's).
    pub max_hours: Option<f64>,
}

/// Trains (or resumes) a TopK SAE on the text encoder's per-token outputs over the corpus.
pub fn train_text_sae(pipe: &Pipeline, r: &TextSaeRequest, job: &Job) -> Result<TextSaeReport> {
    let d = corpus::default_train_options(pipe.embedding_width());
    let opts = TrainOptions {
        tokens: r.tokens.or(d.tokens),
        batch: r.batch.unwrap_or(d.batch),
        restart: r.restart,
        checkpoint_every: d.checkpoint_every,
        max_hours: r.max_hours.unwrap_or(d.max_hours),
        ..TrainOptions::topk(r.d_sae.unwrap_or(d.d_sae), r.k.unwrap_or(d.k))
    };
    corpus::train_text_sae(pipe, &r.pipeline, r.prompts.as_deref(), &r.out, &opts, job)
}

/// The SAE folder that [`train_text_sae`] writes into `out`.
pub fn text_sae_dir(out: &Path) -> PathBuf {
    out.join(crate::sae::workflow::SAE_DIR)
}

#[derive(Clone, Debug)]
pub struct DiscoverRequest {
    /// CLIP model (folder or id) that scores the images.
    pub clip: String,
    pub clip_tokenizer: Option<PathBuf>,
    /// Prompt file (one a line); None: the built-in prompts.
    pub prompts: Option<PathBuf>,
    pub seeds: Vec<u64>,
    /// Features to test; empty: the strongest `candidates`.
    pub features: Vec<usize>,
    pub candidates: usize,
    pub alpha: Option<f32>,
    /// Extra attributes (one a line) beside the built-in ones.
    pub vocab: Option<PathBuf>,
    pub generate: GenerateOptions,
    pub out: PathBuf,
}

/// Ranks features by how consistently ±α moves a CLIP attribute; writes the ranking, image
/// strips and a labelled-feature export into `out`.
pub fn discover(
    pipe: &Pipeline,
    sae: Option<&Sae>,
    r: &DiscoverRequest,
    job: &Job,
) -> Result<Discovery> {
    let sae = sae.ok_or_else(|| {
        Error::Invalid("discovery needs a text SAE: load the pipeline with one".into())
    })?;
    let scorer = ClipScorer::load(&r.clip, r.clip_tokenizer.as_deref(), &pipe.device)
        .map_err(|e| Error::Model(format!("loading CLIP `{}`: {e}", r.clip)))?;
    let prompts = match &r.prompts {
        Some(p) => corpus::read_prompt_file(p)?,
        None => discover::DEFAULT_PROMPTS
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    let mut attributes: Vec<String> = discover::BUILTIN_ATTRIBUTES
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let Some(v) = &r.vocab {
        for a in corpus::read_prompt_file(v)? {
            if !attributes.contains(&a) {
                attributes.push(a);
            }
        }
    }
    let opts = DiscoverOptions {
        prompts,
        seeds: r.seeds.clone(),
        features: r.features.clone(),
        candidates: r.candidates,
        alpha: r.alpha,
        attributes,
        generate: r.generate.clone(),
    };
    discover::discover(pipe, sae, &scorer, &opts, &r.out, job)
}

/// The text SAE's features active on `prompt`'s own tokens, strongest first, `n` at most.
pub fn prompt_features(loaded: &Loaded, prompt: &str, n: usize) -> Result<Vec<PromptFeature>> {
    let sae = loaded.sae.as_ref().ok_or_else(|| {
        Error::Invalid("a prompt's features need a text SAE: load the pipeline with one".into())
    })?;
    crate::steer::session::prompt_features(&loaded.pipe, sae, prompt, n)
}
