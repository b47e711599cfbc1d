//! The prompt corpus a text-encoder SAE is trained on, collecting the encoder's per-token
//! outputs over it, and training the SAE with the SAE engine (`saescope steer train-sae`).
//!
//! A steering folder holds `steer.json` (which pipeline and corpus), `activations/` (the token
//! embeddings, one row per prompt token) and `sae/` (checkpoints while training, then the SAE in
//! SAELens layout), so an interrupted training resumes like any other.

use super::pipeline::Pipeline;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::job::{Job, Progress};
use crate::sae::SaeMeta;
use crate::sae::workflow::{self, TrainOptions, TrainReport};
use crate::store::activations::{ActivationStore, write_single_shard_store};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const SUBJECTS: [&str; 40] = [
    "a cat",
    "a dog",
    "a horse",
    "a red fox",
    "an owl",
    "a goldfish",
    "a butterfly",
    "an elephant",
    "a lighthouse",
    "a castle",
    "a wooden cabin",
    "a skyscraper",
    "a bridge",
    "a windmill",
    "a sailing ship",
    "a steam train",
    "a vintage car",
    "a bicycle",
    "a hot air balloon",
    "a spaceship",
    "an old man",
    "a young woman",
    "a child",
    "a knight in armour",
    "a chef",
    "an astronaut",
    "a dancer",
    "a bowl of fruit",
    "a cup of coffee",
    "a birthday cake",
    "a bouquet of flowers",
    "a tree",
    "a mountain",
    "a waterfall",
    "a desert",
    "a forest",
    "a city street",
    "a beach",
    "a snowy village",
    "a robot",
];

const SETTINGS: [&str; 24] = [
    "at sunset",
    "at night",
    "in the rain",
    "in the snow",
    "under a clear blue sky",
    "in a misty forest",
    "on a busy street",
    "in a quiet room",
    "by the sea",
    "in the desert",
    "on a mountain top",
    "in a field of flowers",
    "in autumn",
    "in spring",
    "under neon lights",
    "in a dark cave",
    "on the moon",
    "underwater",
    "in a library",
    "in a kitchen",
    "at golden hour",
    "during a storm",
    "in a garden",
    "in a snowy landscape",
];

const STYLES: [&str; 25] = [
    "a photograph",
    "an oil painting",
    "a watercolor painting",
    "a pencil sketch",
    "a charcoal drawing",
    "a 3d render",
    "a cartoon",
    "an anime illustration",
    "a pixel art image",
    "a vintage photo",
    "a black and white photo",
    "a cinematic still",
    "a children's book illustration",
    "an impressionist painting",
    "a cubist painting",
    "a stained glass window",
    "a mosaic",
    "a low poly render",
    "a macro photograph",
    "an aerial photograph",
    "a polaroid",
    "a comic book panel",
    "a ukiyo-e woodblock print",
    "a claymation scene",
    "a blueprint",
];

const MOODS: [&str; 12] = [
    "",
    "bright and colorful",
    "dark and moody",
    "highly detailed",
    "minimalist",
    "soft pastel colors",
    "dramatic lighting",
    "warm tones",
    "cold tones",
    "serene",
    "chaotic",
    "whimsical",
];

/// About 1,200 varied prompts: subjects × settings × styles × moods, in a fixed order.
pub fn builtin_prompts() -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..1200usize {
        let subject = SUBJECTS[i % SUBJECTS.len()];
        let setting = SETTINGS[(i / 2 + i * 7) % SETTINGS.len()];
        let style = STYLES[(i / 3 + i * 11) % STYLES.len()];
        let mood = MOODS[(i / 5 + i * 3) % MOODS.len()];
        let mut p = format!("{style} of {subject} {setting}");
        if !mood.is_empty() {
            p.push_str(", ");
            p.push_str(mood);
        }
        out.push(p);
    }
    out.sort();
    out.dedup();
    out
}

/// One prompt per non-empty line; `#` starts a comment line.
pub fn read_prompt_file(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let prompts: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    if prompts.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: no prompts (write one prompt per line)",
            path.display()
        )));
    }
    Ok(prompts)
}

/// Per-token conditioning rows of every prompt (positions 1..=EOS: the prompt's tokens and its
/// EOS; BOS is the same for every prompt and padding repeats the EOS summary). Returns the
/// rows and, for each row, its prompt's index.
pub fn collect_embeddings(
    pipe: &Pipeline,
    prompts: &[String],
    job: &Job,
) -> Result<(Vec<f32>, Vec<u32>)> {
    let mut rows = Vec::new();
    let mut ids = Vec::new();
    for (i, p) in prompts.iter().enumerate() {
        job.check()?;
        let cond = pipe.encode_prompt(p)?;
        let (r, d) = cond.rows()?;
        for t in 1..=cond.eos_position {
            rows.extend_from_slice(&r[t * d..(t + 1) * d]);
            ids.push(i as u32);
        }
        job.report(Progress {
            done: i as u64 + 1,
            total: prompts.len() as u64,
            unit: "prompts",
            message: "encoding prompts".into(),
        });
    }
    Ok((rows, ids))
}

pub const STEER_FILE: &str = "steer.json";

/// Text-SAE defaults sized to the embedding width: 4× expansion (256 to 8192 features),
/// k = d_in/16 (4 to 32), and at least 2 M training tokens, since a prompt corpus has far fewer
/// tokens than an image set (about 16 k for the built-in one).
pub fn default_train_options(d_in: usize) -> TrainOptions {
    TrainOptions {
        batch: 1024,
        tokens: Some(2_000_000),
        ..TrainOptions::topk((4 * d_in).clamp(256, 8192), (d_in / 16).clamp(4, 32))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SteerFolder {
    pub pipeline: String,
    pub embedding_width: usize,
    pub prompts: usize,
    pub tokens: usize,
    pub prompt_file: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
pub struct TextSaeReport {
    pub folder: String,
    pub prompts: usize,
    /// Training tokens (rows) from the training prompts.
    pub tokens: usize,
    /// Every tenth prompt is held out of training and evaluates the SAE.
    pub heldout_prompts: usize,
    pub heldout_tokens: usize,
    pub heldout_fve: f64,
    pub heldout_l0: f64,
    pub collect_seconds: f64,
    pub train: TrainReport,
}

/// Every tenth prompt is held out for evaluation.
fn is_heldout(prompt: u32) -> bool {
    prompt % 10 == 9
}

/// Collects the corpus's embeddings into `out` (reused when already there for the same pipeline
/// and corpus) and trains an SAE on them into `out/sae`, on the pipeline's device
/// (`opts.device` is replaced by it).
pub fn train_text_sae(
    pipe: &Pipeline,
    pipeline_source: &str,
    prompt_file: Option<&Path>,
    out: &Path,
    opts: &TrainOptions,
    job: &Job,
) -> Result<TextSaeReport> {
    let mut prompts = builtin_prompts();
    if let Some(f) = prompt_file {
        prompts.extend(read_prompt_file(f)?);
    }
    let act_dir = out.join("activations");
    let heldout_dir = out.join("heldout");
    let wanted_pipeline = pipeline_source.to_string();
    let existing: Option<SteerFolder> = fsutil::read_json(&out.join(STEER_FILE)).ok();
    let start = std::time::Instant::now();
    let reuse = existing.as_ref().is_some_and(|e| {
        e.pipeline == wanted_pipeline
            && e.prompts == prompts.len()
            && e.prompt_file.as_deref() == prompt_file
            && ActivationStore::open(&act_dir).is_ok()
            && ActivationStore::open(&heldout_dir).is_ok()
    });
    let (store, heldout) = if reuse {
        let h = ActivationStore::open(&heldout_dir)?;
        let rows = if h.manifest.shards.is_empty() {
            Vec::new()
        } else {
            h.read_shard(0)?.activations
        };
        (ActivationStore::open(&act_dir)?, rows)
    } else {
        if existing.is_some() {
            // Different corpus or pipeline: its embeddings and SAE no longer apply.
            for sub in ["activations", "heldout", workflow::SAE_DIR] {
                let p = out.join(sub);
                if p.exists() {
                    std::fs::remove_dir_all(&p).map_err(|e| Error::io(&p, e))?;
                }
            }
        }
        let (rows, ids) = collect_embeddings(pipe, &prompts, job)?;
        let d = pipe.embedding_width();
        let (mut train_rows, mut train_ids, mut held_rows, mut held_ids) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (r, &p) in rows.chunks(d).zip(&ids) {
            if is_heldout(p) {
                held_rows.extend_from_slice(r);
                held_ids.push(p);
            } else {
                train_rows.extend_from_slice(r);
                train_ids.push(p);
            }
        }
        let store = write_single_shard_store(&act_dir, &train_rows, d, &train_ids, prompts.len())?;
        write_single_shard_store(&heldout_dir, &held_rows, d, &held_ids, prompts.len())?;
        fsutil::write_json_atomic(
            &out.join(STEER_FILE),
            &SteerFolder {
                pipeline: wanted_pipeline,
                embedding_width: d,
                prompts: prompts.len(),
                tokens: ids.len(),
                prompt_file: prompt_file.map(Path::to_path_buf),
            },
        )?;
        (store, held_rows)
    };
    let tokens = store.manifest.rows();
    let collect_seconds = start.elapsed().as_secs_f64();
    let meta = SaeMeta {
        model_name: Some(pipe.name.clone()),
        hook_name: Some(match pipe.kind {
            super::pipeline::PipelineKind::Sd => "text_encoder.last_hidden_state".into(),
            super::pipeline::PipelineKind::Sdxl => {
                "text_encoder.hidden_states[-2] + text_encoder_2.hidden_states[-2]".into()
            }
        }),
        source_format: None,
        pos_interpolation: None,
        cls_weight: None,
    };
    let sae_dir = out.join(workflow::SAE_DIR);
    // Trained where the pipeline runs (the CPU trainer on the CPU, the device trainer elsewhere).
    let opts = TrainOptions {
        device: pipe.device.clone(),
        ..opts.clone()
    };
    let train = workflow::train_on_store(&store, &sae_dir, meta, None, &opts, job)?;
    let sae = crate::sae::formats::load_sae(&sae_dir)?;
    let (heldout_fve, heldout_l0) = crate::sae::fve_and_l0(&sae, &heldout);
    Ok(TextSaeReport {
        folder: out.display().to_string(),
        prompts: prompts.len(),
        tokens,
        heldout_prompts: (0..prompts.len() as u32).filter(|&p| is_heldout(p)).count(),
        heldout_tokens: heldout.len() / sae.d_in.max(1),
        heldout_fve,
        heldout_l0,
        collect_seconds,
        train,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_corpus_is_large_varied_and_stable() {
        let a = builtin_prompts();
        assert!(a.len() >= 1000, "{}", a.len());
        assert_eq!(a, builtin_prompts());
        let styles = STYLES
            .iter()
            .filter(|s| a.iter().any(|p| p.starts_with(*s)))
            .count();
        assert_eq!(styles, STYLES.len());
    }
}
