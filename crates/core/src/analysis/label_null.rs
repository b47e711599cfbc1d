//! The null that class labels are tested against: how class-enriched the top images of *random
//! directions* in this layer are.
//!
//! A binomial test against a class's base rate treats a feature's top images as a random draw
//! of images. They are not: a backbone's representation is class-structured, so the strongest
//! images of any direction, even a random one, share classes far more than chance (measured on
//! the CIFAR-10 ViT: 26 % of an untrained SAE's features passed a Bonferroni binomial test). The
//! claim a class label makes to a user is "this feature is about the class", which needs more
//! class enrichment than a direction chosen without looking at the data reaches. So each
//! workspace gets [`DIRECTIONS`] random unit directions (seeded, Gaussian, as an untrained SAE's
//! encoder rows are), ranked over the same images the index ranks (strongest stored token of
//! each image, top `top_n` images), and a feature is labelled only when its class is more
//! significant than the best class of *every* random direction. If the feature were just
//! another random direction, that happens with probability at most 1 / (DIRECTIONS + 1)
//! (exchangeability), so at most about 0.4 % of random features get a label.
//!
//! The null depends only on the store, the images and `top_n`, not on the SAE, so it is
//! computed once per workspace and `top_n` and kept in `WS/label-null-<top_n>.json`.

use super::labels::binomial_tail;
use crate::error::Result;
use crate::fsutil;
use crate::job::{Job, Progress};
use crate::linalg::{RhsLayout, matmul};
use crate::store::Workspace;
use crate::store::activations::ActivationStore;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Random directions in the null (the chance a random feature is labelled is ≤ 1/257).
pub const DIRECTIONS: usize = 256;
const SEED: u64 = 0x6c61_6265_6c5f_6e75;
const FORMAT: &str = "saescope-label-null-v1";
/// Rows projected per step: bounded scratch, full-size GEMMs.
const CHUNK_ROWS: usize = 8192;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassNull {
    pub format: String,
    pub directions: usize,
    pub seed: u64,
    pub top_n: usize,
    /// What the null was computed over; a store that no longer matches is computed again.
    pub store_key: String,
    /// Per random direction: the binomial p-value of its most over-represented class among
    /// its top images (against that class's share of all images).
    pub best_p: Vec<f64>,
    /// Per random direction: that class's share of its top images.
    pub best_precision: Vec<f64>,
}

impl ClassNull {
    /// The smallest p-value any random direction reached: a label must beat it.
    pub fn min_p(&self) -> f64 {
        self.best_p.iter().copied().fold(1.0, f64::min)
    }

    /// The highest top-image class share any random direction reached.
    pub fn max_precision(&self) -> f64 {
        self.best_precision.iter().copied().fold(0.0, f64::max)
    }
}

fn null_path(ws: &Workspace, top_n: usize) -> PathBuf {
    ws.dir.join(format!("label-null-{top_n}.json"))
}

/// Identifies the store and images the null was computed over.
fn store_key(store: &ActivationStore, classes: &[Option<u32>]) -> String {
    let m = &store.manifest;
    let shards = m
        .shards
        .iter()
        .flat_map(|s| [s.rows as u64, s.bytes, s.first_image as u64]);
    let h = crate::fingerprint::fnv1a(
        shards.chain(classes.iter().map(|c| c.map_or(u64::MAX, u64::from))),
    );
    format!(
        "d_model={} rows={} tokens={:?} fnv={h:016x}",
        m.d_model,
        m.rows(),
        m.token_indices
    )
}

/// The workspace's label null for `top_n` top images: read from its file when it matches the
/// store, otherwise computed (one pass over the activations) and saved.
pub fn class_null(ws: &Workspace, top_n: usize, job: &Job) -> Result<ClassNull> {
    let store = ActivationStore::open(&ws.activations_dir())?;
    if !store.manifest.is_complete() {
        return Err(crate::store::activations::unfinished(&ws.dir));
    }
    let ds = ws.dataset()?;
    let classes: Vec<Option<u32>> = ds.images.iter().map(|e| e.class).collect();
    let key = store_key(&store, &classes);
    let path = null_path(ws, top_n);
    if let Ok(saved) = fsutil::read_json::<ClassNull>(&path)
        && saved.format == FORMAT
        && saved.store_key == key
        && saved.directions == DIRECTIONS
        && saved.seed == SEED
        && saved.best_p.len() == DIRECTIONS
    {
        return Ok(saved);
    }
    let (top, seen) = top_images_of_random_directions(&store, top_n, job)?;
    // Base rates over the images in the store, as the feature index counts them.
    let n_classes = ds.classes.len();
    let mut class_sizes = vec![0u64; n_classes];
    for &i in &seen {
        if let Some(Some(c)) = classes.get(i as usize)
            && let Some(n) = class_sizes.get_mut(*c as usize)
        {
            *n += 1;
        }
    }
    let n_images = (seen.len() as u64).max(1);
    let (best_p, best_precision) = top
        .iter()
        .map(|images| best_class(images, &classes, &class_sizes, n_images))
        .unzip();
    let null = ClassNull {
        format: FORMAT.into(),
        directions: DIRECTIONS,
        seed: SEED,
        top_n,
        store_key: key,
        best_p,
        best_precision,
    };
    fsutil::write_json_atomic(&path, &null)?;
    Ok(null)
}

/// The most significant class among `images` (p-value, precision).
fn best_class(
    images: &[u32],
    classes: &[Option<u32>],
    class_sizes: &[u64],
    n_images: u64,
) -> (f64, f64) {
    let mut counts = vec![0usize; class_sizes.len()];
    for &i in images {
        if let Some(Some(c)) = classes.get(i as usize)
            && let Some(n) = counts.get_mut(*c as usize)
        {
            *n += 1;
        }
    }
    counts
        .iter()
        .zip(class_sizes)
        .map(|(&k, &size)| {
            let base = size as f64 / n_images as f64;
            (
                binomial_tail(k, images.len(), base),
                k as f64 / images.len().max(1) as f64,
            )
        })
        .fold((1.0, 0.0), |best, x| if x.0 < best.0 { x } else { best })
}

/// Per random direction, the `top_n` images whose strongest stored token projects highest on
/// it (the ranking the feature index uses for features); and every image seen.
fn top_images_of_random_directions(
    store: &ActivationStore,
    top_n: usize,
    job: &Job,
) -> Result<(Vec<Vec<u32>>, Vec<u32>)> {
    let d = store.manifest.d_model;
    let tokens = store.manifest.tokens_per_image().max(1);
    let mut rng = crate::rng::Rng::new(SEED);
    let mut w: Vec<f32> = (0..DIRECTIONS * d).map(|_| rng.normal()).collect();
    for row in w.chunks_mut(d.max(1)) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|v| *v /= norm);
    }
    // Per direction (value, image), cut back to top_n whenever it reaches twice that.
    let mut best: Vec<Vec<(f32, u32)>> = (0..DIRECTIONS)
        .map(|_| Vec::with_capacity(2 * top_n + 1))
        .collect();
    let keep = |v: &mut Vec<(f32, u32)>| {
        if v.len() > top_n {
            v.select_nth_unstable_by(top_n - 1, |a, b| b.0.total_cmp(&a.0));
            v.truncate(top_n);
        }
    };
    let total = store.manifest.rows() as u64;
    let mut done = 0u64;
    let mut seen = Vec::new();
    let imgs_per_chunk = (CHUNK_ROWS / tokens).max(1);
    let mut proj = vec![0f32; imgs_per_chunk * tokens * DIRECTIONS];
    for s in 0..store.manifest.shards.len() {
        job.check()?;
        let shard = store.read_shard(s)?;
        let n_img = shard.rows() / tokens;
        for first in (0..n_img).step_by(imgs_per_chunk) {
            let last = (first + imgs_per_chunk).min(n_img);
            let rows = (last - first) * tokens;
            let x = &shard.activations[first * tokens * d..last * tokens * d];
            let p = &mut proj[..rows * DIRECTIONS];
            matmul(
                p,
                x,
                &w,
                (rows, d, DIRECTIONS),
                RhsLayout::Transposed,
                false,
                true,
            );
            for i in 0..last - first {
                let Some(&image) = shard.image_ids.get(first + i) else {
                    continue;
                };
                seen.push(image);
                let rows_of_image = &p[i * tokens * DIRECTIONS..(i + 1) * tokens * DIRECTIONS];
                for (j, list) in best.iter_mut().enumerate() {
                    let peak = rows_of_image
                        .chunks_exact(DIRECTIONS)
                        .map(|r| r[j])
                        .fold(f32::NEG_INFINITY, f32::max);
                    list.push((peak, image));
                    if list.len() >= 2 * top_n {
                        keep(list);
                    }
                }
            }
        }
        done += shard.rows() as u64;
        job.report(Progress {
            done,
            total,
            unit: "tokens",
            message: "class-label null: random directions".into(),
        });
    }
    let top = best
        .into_iter()
        .map(|mut v| {
            keep(&mut v);
            v.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            v.into_iter().map(|(_, i)| i).collect()
        })
        .collect();
    Ok((top, seen))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_class_is_the_most_significant_one() {
        // 10 images, classes 0 (8 images) and 1 (2 images); top images: 2 of class 1 and
        // 2 of class 0. Class 1 (base rate 0.2, 2 of 4) is more significant than class 0.
        let classes: Vec<Option<u32>> = (0..10).map(|i| Some(u32::from(i >= 8))).collect();
        let (p, precision) = best_class(&[8, 9, 0, 1], &classes, &[8, 2], 10);
        assert!((p - binomial_tail(2, 4, 0.2)).abs() < 1e-12);
        assert_eq!(precision, 0.5);
    }
}
