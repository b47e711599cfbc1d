//! Automated attribute discovery: for each candidate feature, generate at −α, 0 and +α over a
//! few prompts and seeds, score every image with CLIP zero-shot against an attribute vocabulary,
//! and rank features by how consistently steering moves one attribute. The result is written as
//! a ranking (with image strips) and in the labelled-feature export format.

use super::edit::{EditMode, FeatureEdit, TokenScope};
use super::pipeline::{GenerateOptions, Pipeline};
use super::session::{self, Decoder};
use crate::analysis::export::{ExportFile, ExportedExample, ExportedFeature, FeatureStats};
use crate::analysis::index::sae_fingerprint;
use crate::analysis::labels::{Label, LabelSource};
use crate::backbone::clip::TextTransformer;
use crate::backbone::tokenizer::ClipTokenizer;
use crate::backbone::{Backbone, ModelSpec, VisionTransformer};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::job::{Job, Progress};
use crate::sae::Sae;
use candle_core::{Device, Tensor};
use image::RgbImage;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Attributes steering commonly moves: colour, medium, light, weather, content.
pub const BUILTIN_ATTRIBUTES: &[&str] = &[
    "red",
    "orange",
    "yellow",
    "green",
    "blue",
    "purple",
    "pink",
    "black and white",
    "colorful",
    "dark",
    "bright",
    "a photograph",
    "a painting",
    "a drawing",
    "a cartoon",
    "a 3d render",
    "night",
    "sunset",
    "snow",
    "rain",
    "water",
    "fire",
    "trees",
    "flowers",
    "a city",
    "mountains",
    "the sea",
    "a person",
    "a face",
    "an animal",
    "a dog",
    "a cat",
    "a bird",
    "a car",
    "a building",
    "food",
    "text",
    "abstract patterns",
    "a close-up",
    "a wide landscape",
];

pub const DEFAULT_PROMPTS: &[&str] = &[
    "a photo of a house by a lake",
    "a portrait of a woman in a garden",
    "a street in an old town",
];

/// CLIP image and text towers with the tokenizer, for zero-shot scores.
pub struct ClipScorer {
    vision: VisionTransformer,
    text: TextTransformer,
    tokenizer: ClipTokenizer,
    device: Device,
}

impl ClipScorer {
    /// A CLIP folder or id; `tokenizer` overrides the folder's tokenizer files.
    pub fn load(model: &str, tokenizer: Option<&Path>, device: &Device) -> Result<Self> {
        let spec = ModelSpec::from_cli(model, None)?;
        let vision = crate::backbone::source::load_backbone(&spec, device)?;
        let text = crate::backbone::source::load_clip_text(&spec, device)?;
        let tokenizer = match tokenizer {
            Some(t) => ClipTokenizer::from_tokenizer_json(t)?,
            None => match spec.resolve()? {
                crate::backbone::source::Resolved::Folder(dir) => clip_tokenizer_of(&dir)?,
                _ => {
                    return Err(Error::Model(format!(
                        "{model}: CLIP is read from a folder or hub id"
                    )));
                }
            },
        };
        Ok(ClipScorer {
            vision,
            text,
            tokenizer,
            device: device.clone(),
        })
    }

    /// Unit text embeddings of "a picture of {attribute}".
    pub fn texts(&self, attributes: &[String]) -> Result<Vec<Vec<f32>>> {
        let len = self.text.max_len;
        let ids: Vec<u32> = attributes
            .iter()
            .flat_map(|a| self.tokenizer.encode(&format!("a picture of {a}."), len))
            .collect();
        let ids = Tensor::from_vec(ids, (attributes.len(), len), &self.device)?;
        let e = self
            .text
            .forward(&ids)?
            .embeds
            .ok_or_else(|| Error::Model("the CLIP text tower has no projection".into()))?;
        Ok(e.to_vec2::<f32>()?.into_iter().map(unit).collect())
    }

    /// Unit image embeddings.
    pub fn images(&self, images: &[RgbImage]) -> Result<Vec<Vec<f32>>> {
        let (pixels, _) = self.vision.preprocessor().batch(images, &self.device)?;
        let e = self
            .vision
            .outputs(&pixels)?
            .embeds
            .ok_or_else(|| Error::Model("the CLIP vision tower has no projection".into()))?;
        Ok(e.to_vec2::<f32>()?.into_iter().map(unit).collect())
    }
}

/// A CLIP folder's own tokenizer; a folder without tokenizer files gets the shared CLIP
/// tokenizer (the one `steer make-tiny` writes into a tiny pipeline) when it is there: every
/// CLIP uses OpenAI's one BPE vocabulary, and the shared tiny CLIP ships without it.
fn clip_tokenizer_of(dir: &Path) -> Result<ClipTokenizer> {
    let own = dir.join("tokenizer.json").exists() || dir.join("vocab.json").exists();
    let shared = super::tiny::shared_clip_tokenizer();
    if !own && shared.is_file() {
        return ClipTokenizer::from_tokenizer_json(&shared);
    }
    ClipTokenizer::from_folder(dir)
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    crate::analysis::zero_shot::normalize(&mut v);
    v
}

/// Zero-shot probabilities over the attributes: softmax of CLIP's cosines at its logit scale
/// (100), so an attribute's score rises only when it gains on the others.
fn zero_shot(image: &[f32], texts: &[Vec<f32>]) -> Vec<f64> {
    let logits: Vec<f64> = texts
        .iter()
        .map(|t| {
            100.0
                * t.iter()
                    .zip(image)
                    .map(|(a, b)| (a * b) as f64)
                    .sum::<f64>()
        })
        .collect();
    let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let z: f64 = logits.iter().map(|l| (l - m).exp()).sum();
    logits.iter().map(|l| (l - m).exp() / z).collect()
}

#[derive(Clone, Debug)]
pub struct DiscoverOptions {
    pub prompts: Vec<String>,
    pub seeds: Vec<u64>,
    /// Features to test; empty: the `candidates` most active on the prompts' tokens.
    pub features: Vec<usize>,
    pub candidates: usize,
    /// Steering strength; `None`: twice the feature's largest activation on the prompts.
    pub alpha: Option<f32>,
    pub attributes: Vec<String>,
    pub generate: GenerateOptions,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AttributeEffect {
    pub attribute: String,
    /// Mean over prompt × seed of P(attribute | +α image) − P(attribute | −α image), P being
    /// CLIP's zero-shot probability over the vocabulary.
    pub mean_delta: f64,
    /// Share of prompt × seed pairs whose delta has the mean's sign.
    pub consistency: f64,
    /// mean / standard error (0 when there is one pair).
    pub t: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RankedFeature {
    pub feature: usize,
    pub alpha: f32,
    /// Its largest activation on the prompts' tokens.
    pub max_activation: f32,
    /// The attribute it moves most consistently, then the runners-up.
    pub effects: Vec<AttributeEffect>,
    /// ranking score: |mean delta| × consistency of the best attribute.
    pub score: f64,
    /// Image strips (−α | 0 | +α), one per prompt × seed, relative to the output folder.
    pub strips: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Discovery {
    pub pipeline: String,
    pub prompts: Vec<String>,
    pub seeds: Vec<u64>,
    pub attributes: Vec<String>,
    pub ranking: Vec<RankedFeature>,
}

pub const DISCOVERY_FILE: &str = "discovery.json";
pub const EXPORT_FILE: &str = "discovery-export.json";

/// Runs discovery and writes `discovery.json`, `discovery-export.json` and `strips/*.png` to `out`.
pub fn discover(
    pipe: &Pipeline,
    sae: &Sae,
    clip: &ClipScorer,
    opts: &DiscoverOptions,
    out: &Path,
    job: &Job,
) -> Result<Discovery> {
    if opts.prompts.is_empty() || opts.seeds.is_empty() || opts.attributes.len() < 2 {
        return Err(Error::Invalid(
            "discovery needs at least one prompt, one seed and two attributes".into(),
        ));
    }
    let conds = opts
        .prompts
        .iter()
        .map(|p| pipe.encode_prompt(p))
        .collect::<Result<Vec<_>>>()?;
    // Each feature's largest activation on the prompts' own tokens (and how often it fires).
    let mut max_act = vec![0f32; sae.d_sae];
    let mut fires = vec![0usize; sae.d_sae];
    for c in &conds {
        for f in session::features_on(c, sae)? {
            let j = f.feature as usize;
            max_act[j] = max_act[j].max(f.max);
            fires[j] += f.tokens;
        }
    }
    let features: Vec<usize> = if opts.features.is_empty() {
        let mut order: Vec<usize> = (0..sae.d_sae).filter(|&j| fires[j] > 0).collect();
        order.sort_by_key(|&j| (std::cmp::Reverse(fires[j]), j));
        order.truncate(opts.candidates);
        order
    } else {
        opts.features.clone()
    };
    if let Some(&bad) = features.iter().find(|&&f| f >= sae.d_sae) {
        return Err(Error::Invalid(format!(
            "feature {bad} does not exist: the SAE has {} features",
            sae.d_sae
        )));
    }
    let typical = {
        let mut v: Vec<f32> = max_act.iter().copied().filter(|&a| a > 0.0).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v.get(v.len() / 2).copied().unwrap_or(1.0)
    };
    let texts = clip.texts(&opts.attributes)?;
    let strips_dir = out.join("strips");
    std::fs::create_dir_all(&strips_dir).map_err(|e| Error::io(&strips_dir, e))?;
    let pairs: Vec<(usize, u64)> = (0..conds.len())
        .flat_map(|p| opts.seeds.iter().map(move |&s| (p, s)))
        .collect();
    let total = (pairs.len() * (1 + 2 * features.len())) as u64;
    let mut done = 0u64;
    let mut tick = |msg: String| {
        done += 1;
        job.report(Progress {
            done,
            total,
            unit: "images",
            message: msg,
        });
    };
    let render = |p: usize, seed: u64, edits: &[FeatureEdit]| -> Result<RgbImage> {
        job.check()?;
        let o = GenerateOptions {
            seed,
            ..opts.generate.clone()
        };
        Ok(session::generate(
            pipe,
            Some(sae),
            &conds[p],
            edits,
            &o,
            Decoder::Full,
            &mut |_, _| job.check().is_ok(),
        )?
        .image)
    };
    let mut base = Vec::new();
    for &(p, s) in &pairs {
        base.push(render(p, s, &[])?);
        tick("unsteered images".into());
    }
    let mut ranking = Vec::new();
    for &f in &features {
        let alpha = opts.alpha.unwrap_or(
            2.0 * if max_act[f] > 0.0 {
                max_act[f]
            } else {
                typical
            },
        );
        let mut deltas: Vec<Vec<f64>> = Vec::new();
        let mut strips = Vec::new();
        for (k, &(p, s)) in pairs.iter().enumerate() {
            let edit = |a: f32| FeatureEdit {
                feature: f,
                mode: EditMode::Add(a),
                tokens: TokenScope::All,
            };
            let minus = render(p, s, &[edit(-alpha)])?;
            tick(format!("feature {f} at −α"));
            let plus = render(p, s, &[edit(alpha)])?;
            tick(format!("feature {f} at +α"));
            let emb = clip.images(&[minus.clone(), plus.clone()])?;
            let (cm, cp) = (zero_shot(&emb[0], &texts), zero_shot(&emb[1], &texts));
            deltas.push(cp.iter().zip(&cm).map(|(a, b)| a - b).collect());
            let name = format!("f{f}_p{p}_s{s}.png");
            let strip = hstack(&[&minus, &base[k], &plus]);
            let mut bytes = Vec::new();
            strip
                .write_to(
                    &mut std::io::Cursor::new(&mut bytes),
                    image::ImageFormat::Png,
                )
                .map_err(|e| Error::Invalid(format!("cannot encode a PNG: {e}")))?;
            fsutil::write_atomic(&strips_dir.join(&name), &bytes)?;
            strips.push(format!("strips/{name}"));
        }
        let mut effects: Vec<AttributeEffect> = opts
            .attributes
            .iter()
            .enumerate()
            .map(|(a, name)| effect(name, &deltas.iter().map(|d| d[a]).collect::<Vec<_>>()))
            .collect();
        effects.sort_by(|a, b| {
            (b.mean_delta.abs() * b.consistency).total_cmp(&(a.mean_delta.abs() * a.consistency))
        });
        effects.truncate(5);
        let score = effects
            .first()
            .map_or(0.0, |e| e.mean_delta.abs() * e.consistency);
        ranking.push(RankedFeature {
            feature: f,
            alpha,
            max_activation: max_act[f],
            effects,
            score,
            strips,
        });
    }
    ranking.sort_by(|a, b| b.score.total_cmp(&a.score));
    let result = Discovery {
        pipeline: pipe.name.clone(),
        prompts: opts.prompts.clone(),
        seeds: opts.seeds.clone(),
        attributes: opts.attributes.clone(),
        ranking,
    };
    fsutil::write_json_atomic(&out.join(DISCOVERY_FILE), &result)?;
    fsutil::write_json_atomic(&out.join(EXPORT_FILE), &to_export(&result, sae, out))?;
    Ok(result)
}

fn effect(attribute: &str, deltas: &[f64]) -> AttributeEffect {
    let n = deltas.len().max(1) as f64;
    let mean = deltas.iter().sum::<f64>() / n;
    let same = deltas
        .iter()
        .filter(|d| d.signum() == mean.signum() && **d != 0.0)
        .count() as f64;
    let var = deltas.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    let t = if deltas.len() > 1 && var > 0.0 {
        mean / (var / n).sqrt()
    } else {
        0.0
    };
    AttributeEffect {
        attribute: attribute.to_string(),
        mean_delta: mean,
        consistency: same / n,
        t,
    }
}

/// Images side by side.
pub fn hstack(images: &[&RgbImage]) -> RgbImage {
    let h = images.iter().map(|i| i.height()).max().unwrap_or(0);
    let w: u32 = images.iter().map(|i| i.width()).sum();
    let mut out = RgbImage::new(w, h);
    let mut x = 0;
    for img in images {
        image::imageops::replace(&mut out, *img, x as i64, 0);
        x += img.width();
    }
    out
}

/// The ranking as a labelled-feature export: each feature labelled "more: <attribute>" or
/// "less: <attribute>" (the direction +α moves it), confidence = consistency, strips as examples.
pub fn to_export(d: &Discovery, sae: &Sae, out: &Path) -> ExportFile {
    ExportFile {
        format: crate::analysis::export::FORMAT.into(),
        version: crate::analysis::export::VERSION,
        model: d.pipeline.clone(),
        layer: 0,
        images_root: PathBuf::from(out),
        sae_d_in: sae.d_in,
        sae_d_sae: sae.d_sae,
        sae_fingerprint: sae_fingerprint(sae),
        features: d
            .ranking
            .iter()
            .map(|r| {
                let best = r.effects.first();
                ExportedFeature {
                    id: r.feature as u32,
                    label: best.map(|e| Label {
                        text: format!(
                            "{}: {}",
                            if e.mean_delta >= 0.0 { "more" } else { "less" },
                            e.attribute
                        ),
                        source: LabelSource::Steering,
                        confidence: e.consistency,
                        precision: None,
                        recall: None,
                        note: Some(format!(
                            "steering +{:.2}: CLIP zero-shot probability {:+.4} on average, t = {:.2}, over {} prompt × seed pairs",
                            r.alpha,
                            e.mean_delta,
                            e.t,
                            r.strips.len()
                        )),
                        evidence: None,
                    }),
                    stats: FeatureStats {
                        token_frequency: 0.0,
                        image_frequency: 0.0,
                        mean_activation: 0.0,
                        max_activation: r.max_activation,
                    },
                    classes: Vec::new(),
                    top_examples: r
                        .strips
                        .iter()
                        .map(|s| ExportedExample {
                            image: s.clone(),
                            class: None,
                            token: 0,
                            patch_box: None,
                            activation: r.alpha,
                        })
                        .collect(),
                    png: r.strips.first().cloned(),
                }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effects_measure_mean_consistency_and_t() {
        let e = effect("red", &[0.02, 0.03, 0.01, -0.01]);
        assert!((e.mean_delta - 0.0125).abs() < 1e-12);
        assert!((e.consistency - 0.75).abs() < 1e-12);
        assert!(e.t > 0.0);
        let none = effect("blue", &[0.0]);
        assert_eq!(none.consistency, 0.0);
        assert_eq!(none.t, 0.0);
    }

    /// The shared tiny CLIP has no tokenizer files: the scorer takes the shared CLIP
    /// tokenizer, the one `steer make-tiny` uses, as the CLI's `--clip-tokenizer` would.
    #[test]
    fn a_clip_folder_without_a_tokenizer_gets_the_shared_one() {
        let clip = crate::shared::shared_path("models/tiny-random/clip");
        assert!(!clip.join("tokenizer.json").exists());
        let name = clip.display().to_string();
        let scorer = ClipScorer::load(&name, None, &Device::Cpu).unwrap();
        let given = ClipScorer::load(
            &name,
            Some(&super::super::tiny::shared_clip_tokenizer()),
            &Device::Cpu,
        )
        .unwrap();
        let attributes = vec!["red".to_string(), "a dog".to_string()];
        assert_eq!(
            scorer.texts(&attributes).unwrap(),
            given.texts(&attributes).unwrap()
        );
    }
}
