//! CLIP zero-shot feature labels: each feature's top images are embedded with the CLIP image
//! tower, averaged (weighted by the feature's activation) and compared with the text embeddings
//! of "a photo of a {concept}." over a concept vocabulary (built-in list plus the user's). The
//! label is the best concept; its confidence the softmax probability at CLIP's logit scale.

use super::index::FeatureIndex;
use super::labels::{Label, LabelSource, Labels};
use crate::backbone::source::{ModelSpec, Resolved, load_clip_text};
use crate::backbone::tokenizer::ClipTokenizer;
use crate::backbone::{Backbone, Family};
use crate::error::{Error, Result};
use crate::job::{Job, Progress};
use crate::store::Dataset;
use crate::store::extract::decode_images;
use candle_core::Tensor;
use std::collections::HashMap;
use std::path::Path;

/// Concepts that vision-model features commonly pick up: objects, animals, scenes, parts,
/// textures, colours.
pub const BUILTIN_CONCEPTS: &[&str] = &[
    "airplane",
    "car",
    "truck",
    "bus",
    "bicycle",
    "motorcycle",
    "boat",
    "ship",
    "train",
    "bird",
    "cat",
    "dog",
    "horse",
    "deer",
    "frog",
    "cow",
    "sheep",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "fish",
    "insect",
    "flower",
    "tree",
    "grass",
    "leaves",
    "sky",
    "cloud",
    "water",
    "sea",
    "river",
    "beach",
    "snow",
    "mountain",
    "road",
    "building",
    "house",
    "window",
    "door",
    "wall",
    "fence",
    "floor",
    "table",
    "chair",
    "bed",
    "person",
    "face",
    "eye",
    "hand",
    "hair",
    "wheel",
    "wing",
    "tail",
    "leg",
    "head",
    "fur",
    "feathers",
    "scales",
    "metal",
    "wood",
    "stone",
    "glass",
    "plastic",
    "fabric",
    "text",
    "digit",
    "logo",
    "stripes",
    "spots",
    "checkerboard",
    "grid",
    "dots",
    "edge",
    "corner",
    "curve",
    "circle",
    "line",
    "shadow",
    "reflection",
    "blur",
    "darkness",
    "bright light",
    "red",
    "orange",
    "yellow",
    "green",
    "blue",
    "purple",
    "pink",
    "brown",
    "black",
    "white",
    "gray",
    "food",
    "fruit",
    "vehicle",
    "animal",
    "plant",
    "indoor scene",
    "outdoor scene",
    "background",
];

/// Built-in concepts plus one concept per line of `extra` (duplicates dropped).
pub fn vocabulary(extra: Option<&Path>) -> Result<Vec<String>> {
    let mut v: Vec<String> = BUILTIN_CONCEPTS.iter().map(|s| s.to_string()).collect();
    if let Some(p) = extra {
        let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
        for l in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            if !v.iter().any(|c| c == l) {
                v.push(l.to_string());
            }
        }
    }
    Ok(v)
}

fn prompt(concept: &str) -> String {
    let article = if concept.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("a photo of {article} {concept}.")
}

/// Scales `v` to unit length (CLIP compares unit embeddings).
pub fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
}

/// The best concept for an (unnormalised) image embedding: (index, softmax probability at
/// logit scale `scale`, cosine). `texts` are unit vectors.
pub fn pick(image: &[f32], texts: &[Vec<f32>], scale: f32) -> (usize, f64, f64) {
    let mut e = image.to_vec();
    normalize(&mut e);
    let cos: Vec<f32> = texts
        .iter()
        .map(|t| t.iter().zip(&e).map(|(a, b)| a * b).sum())
        .collect();
    let best = (0..cos.len())
        .max_by(|&a, &b| cos[a].total_cmp(&cos[b]))
        .unwrap_or(0);
    let m = cos[best] * scale;
    let z: f64 = cos.iter().map(|&c| ((c * scale - m) as f64).exp()).sum();
    (best, 1.0 / z, cos[best] as f64)
}

/// Labels every feature with top images via CLIP zero-shot. Manual labels are kept.
#[allow(clippy::too_many_arguments)]
pub fn label_with_clip(
    labels: &mut Labels,
    index: &FeatureIndex,
    ds: &Dataset,
    spec: &ModelSpec,
    backbone: &dyn Backbone,
    vocab: &[String],
    examples: usize,
    job: &Job,
) -> Result<usize> {
    if backbone.info().family != Family::Clip {
        return Err(crate::fixable!(
            [format!(
                "CLIP zero-shot labels need a CLIP workspace; this one uses {} ({:?})",
                backbone.info().name,
                backbone.info().family
            )],
            ["use ", crate::fix::Opt::FromClasses, " or manual labels"]
        ));
    }
    let device = backbone.device().clone();
    let Resolved::Folder(dir) = spec.resolve()? else {
        return Err(Error::Invalid(
            "CLIP models are read from a folder or hub id".into(),
        ));
    };
    let tokenizer = ClipTokenizer::from_folder(&dir)?;
    let text = load_clip_text(spec, &device)?;
    let ids: Vec<u32> = vocab
        .iter()
        .flat_map(|c| tokenizer.encode(&prompt(c), text.max_len))
        .collect();
    let ids = Tensor::from_vec(ids, (vocab.len(), text.max_len), &device)?;
    let out = text.forward(&ids)?;
    let t_emb = out
        .embeds
        .ok_or_else(|| Error::Model("the CLIP text tower has no projection".into()))?;
    let texts: Vec<Vec<f32>> = t_emb
        .to_vec2::<f32>()?
        .into_iter()
        .map(|mut v| {
            normalize(&mut v);
            v
        })
        .collect();
    // Embed every image that is among some feature's top examples, once.
    let mut wanted: Vec<usize> = index
        .top
        .iter()
        .flat_map(|l| l.iter().take(examples).map(|e| e.image as usize))
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut emb: HashMap<usize, Vec<f32>> = HashMap::new();
    for (n, chunk) in wanted.chunks(64).enumerate() {
        job.check()?;
        let (imgs, ok, _) = decode_images(ds, chunk);
        if imgs.is_empty() {
            continue;
        }
        let (pixels, _) = backbone.preprocessor().batch(&imgs, &device)?;
        let e = backbone
            .outputs(&pixels)?
            .embeds
            .ok_or_else(|| Error::Model("the CLIP vision tower has no projection".into()))?;
        for (i, mut v) in ok.into_iter().zip(e.to_vec2::<f32>()?) {
            normalize(&mut v);
            emb.insert(i, v);
        }
        job.report(Progress {
            done: ((n + 1) * 64).min(wanted.len()) as u64,
            total: wanted.len() as u64,
            unit: "images",
            message: "CLIP image embeddings".into(),
        });
    }
    let mut labelled = 0;
    for (j, list) in index.top.iter().enumerate() {
        let dim = texts.first().map_or(0, Vec::len);
        let mut mean = vec![0f32; dim];
        let mut any = false;
        for e in list.iter().take(examples) {
            if let Some(v) = emb.get(&(e.image as usize)) {
                mean.iter_mut().zip(v).for_each(|(m, x)| *m += e.value * x);
                any = true;
            }
        }
        if !any {
            continue;
        }
        let (best, p, cos) = pick(&mean, &texts, 100.0);
        labels.set(
            j as u32,
            Label {
                text: vocab[best].clone(),
                source: LabelSource::Clip,
                confidence: p,
                precision: None,
                recall: None,
                note: Some(format!(
                    "cosine {cos:.3} over {} top images",
                    list.len().min(examples)
                )),
                evidence: None,
            },
        );
        labelled += 1;
    }
    Ok(labelled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_closest_concept_with_a_softmax_confidence() {
        let texts = vec![vec![1.0, 0.0], vec![0.0, 1.0]];
        let (best, p, cos) = pick(&[0.2, 0.9], &texts, 100.0);
        assert_eq!(best, 1);
        assert!(p > 0.99 && p <= 1.0, "{p}");
        assert!((cos - 0.9 / (0.85f64).sqrt()).abs() < 1e-5);
        let (_, even, _) = pick(&[1.0, 1.0], &texts, 100.0);
        assert!((even - 0.5).abs() < 1e-6);
    }

    #[test]
    fn prompts_and_vocabulary() {
        assert_eq!(prompt("cat"), "a photo of a cat.");
        assert_eq!(prompt("airplane"), "a photo of an airplane.");
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("v.txt");
        std::fs::write(&p, "# mine\nrust\ncat\n\nsolar panel\n").unwrap();
        let v = vocabulary(Some(&p)).unwrap();
        assert_eq!(v.len(), BUILTIN_CONCEPTS.len() + 2);
        assert_eq!(v.last().unwrap(), "solar panel");
    }
}
