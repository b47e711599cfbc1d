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
use crate::sae::workflow::{self, TrainOptions, TrainReport};
use crate::sae::{Sae, SaeMeta};
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

/// Beside a text SAE's folder: each feature's strongest corpus prompts (what the steering view
/// shows for a feature).
pub const TOP_PROMPTS_FILE: &str = "top_prompts.json";
/// Prompts kept per feature.
const TOP_PROMPTS: usize = 5;

/// A corpus prompt and a feature's strongest activation on its tokens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopPrompt {
    pub prompt: String,
    pub activation: f32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TopPromptsFile {
    pub format: String,
    /// Per feature, strongest first.
    pub features: Vec<Vec<TopPrompt>>,
}

/// Each feature's strongest prompts: (prompt index, its largest activation over the prompt's
/// rows), strongest first, `n` at most. `prompt_of_row` names each row's prompt.
pub fn top_prompts(
    sae: &Sae,
    rows: &[f32],
    prompt_of_row: &[u32],
    n: usize,
) -> Vec<Vec<(u32, f32)>> {
    let codes = sae.encode_sparse(rows);
    let mut best: Vec<std::collections::HashMap<u32, f32>> = vec![Default::default(); sae.d_sae];
    for (r, &p) in prompt_of_row.iter().enumerate().take(codes.rows()) {
        for (j, v) in codes.row(r) {
            let e = best[j as usize].entry(p).or_insert(v);
            *e = e.max(v);
        }
    }
    best.into_iter()
        .map(|m| {
            let mut v: Vec<(u32, f32)> = m.into_iter().collect();
            v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            v.truncate(n);
            v
        })
        .collect()
}

/// Writes `out/top_prompts.json` from the corpus embeddings in `out` (training and held-out).
fn write_top_prompts(out: &Path, sae: &Sae, prompts: &[String]) -> Result<()> {
    let (mut rows, mut ids) = (Vec::new(), Vec::new());
    for sub in ["activations", "heldout"] {
        let store = ActivationStore::open(&out.join(sub))?;
        if !store.manifest.shards.is_empty() {
            let shard = store.read_shard(0)?;
            rows.extend_from_slice(&shard.activations);
            ids.extend_from_slice(&shard.image_ids);
        }
    }
    let features = top_prompts(sae, &rows, &ids, TOP_PROMPTS)
        .into_iter()
        .map(|list| {
            list.into_iter()
                .filter_map(|(p, activation)| {
                    Some(TopPrompt {
                        prompt: prompts.get(p as usize)?.clone(),
                        activation,
                    })
                })
                .collect()
        })
        .collect();
    fsutil::write_json_atomic(
        &out.join(TOP_PROMPTS_FILE),
        &TopPromptsFile {
            format: "saescope-top-prompts-v1".into(),
            features,
        },
    )
}

/// The top prompts beside a text SAE (`…/sae` or its folder); `None` when there is no such
/// file (SAEs from elsewhere, or trained before it was written).
pub fn read_top_prompts(sae_path: &Path) -> Result<Option<TopPromptsFile>> {
    let file = [sae_path.parent(), Some(sae_path)]
        .into_iter()
        .flatten()
        .map(|d| d.join(TOP_PROMPTS_FILE))
        .find(|p| p.is_file());
    file.map(|p| fsutil::read_json(&p)).transpose()
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
        ..Default::default()
    };
    let sae_dir = out.join(workflow::SAE_DIR);
    // Trained where the pipeline runs (the CPU trainer on the CPU, the device trainer elsewhere).
    let opts = TrainOptions {
        device: pipe.device.clone(),
        ..opts.clone()
    };
    let train = workflow::train_on_store(&store, &sae_dir, meta, None, None, &opts, job)?;
    let sae = crate::sae::formats::load_sae(&sae_dir)?;
    let (heldout_fve, heldout_l0) = crate::sae::fve_and_l0(&sae, &heldout);
    write_top_prompts(out, &sae, &prompts)?;
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

#[cfg(test)]
mod top_prompt_tests {
    use super::*;

    /// Top prompts are each feature's largest activation per prompt, strongest first: checked
    /// against the dense encoding row by row.
    #[test]
    fn top_prompts_rank_each_features_prompts_by_their_strongest_token() {
        let sae = Sae::random_topk(8, 16, 3, 0.5, 7);
        let mut rng = crate::rng::Rng::new(1);
        let rows: Vec<f32> = (0..40 * 8).map(|_| rng.normal()).collect();
        let ids: Vec<u32> = (0..40).map(|r| r / 4).collect(); // 10 prompts of 4 tokens
        let got = top_prompts(&sae, &rows, &ids, 3);
        assert_eq!(got.len(), 16);
        for (j, list) in got.iter().enumerate() {
            let mut want: Vec<(u32, f32)> = Vec::new();
            for p in 0..10u32 {
                let m = (0..4)
                    .map(|t| sae.encode(&rows[(p as usize * 4 + t) * 8..][..8])[j])
                    .fold(0f32, f32::max);
                if m > 0.0 {
                    want.push((p, m));
                }
            }
            want.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            want.truncate(3);
            assert_eq!(list.len(), want.len(), "feature {j}");
            for (a, b) in list.iter().zip(&want) {
                assert_eq!(a.0, b.0, "feature {j}");
                assert!((a.1 - b.1).abs() < 1e-5);
            }
        }
        assert!(got.iter().any(|l| !l.is_empty()));
    }
}
