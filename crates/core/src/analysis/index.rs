//! The feature index: for every SAE feature its top images (by strongest patch, with that
//! image's per-token activations for heatmaps), firing frequencies, mean activation, a
//! log-spaced histogram, per-class counts and a uniform random sample of the images where it
//! fires (the feature page's examples across the activation range); for every image its top
//! features.
//!
//! Built by streaming the activation store shard by shard. Memory is bounded independently of
//! the number of images: the top lists hold d_sae × top_n × (tokens + 3) values, the per-feature
//! statistics d_sae × (HIST_BINS + classes + 4), plus one decoded shard (rows × d_in × 6 bytes),
//! the codes and summaries of one encode chunk (8,192 rows), and one copy of the state while it
//! is written. Per-image
//! top features go to one small file per shard. After every shard the state is checkpointed
//! (`state-<shard>.safetensors` + `progress.json`, same commit rule as training checkpoints), so
//! an interrupted build resumes at the next shard.

use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::job::{Job, Progress};
use crate::sae::Sae;
use crate::store::Workspace;
use crate::store::activations::{ActivationStore, ShardData};
use rayon::prelude::*;
use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub const INDEX_DIR: &str = "index";
const PROGRESS: &str = "progress.json";
/// Histogram: 10 log-spaced bins per decade over [1e-3, 1e3), plus one bin below and one above.
pub const HIST_BINS: usize = 62;
const HIST_LO: f32 = 1e-3;
/// What the process needs besides the index's data (code, allocator, thread stacks, the
/// workspace listing), counted in the reported memory bound.
const PROCESS_OVERHEAD: u64 = 64 << 20;
/// Top features kept per image.
pub const IMAGE_TOP: usize = 32;
/// Images kept per feature in its random sample (examples across the activation range).
pub const SAMPLES: usize = 32;
/// The index format written now; a partial index of another format is rebuilt, not resumed.
const FORMAT: &str = "saescope-index-v2";

/// Lower edge of histogram bin `b` (bin 0 is everything below 1e-3).
pub fn hist_edge(b: usize) -> f32 {
    if b == 0 {
        0.0
    } else {
        HIST_LO * 10f32.powf((b - 1) as f32 / 10.0)
    }
}

fn hist_bin(v: f32) -> usize {
    if v < HIST_LO {
        0
    } else {
        ((v / HIST_LO).log10() * 10.0)
            .floor()
            .min((HIST_BINS - 2) as f32) as usize
            + 1
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IndexSettings {
    pub top_n: usize,
    /// Identifies the SAE the index was built with (d_sae + a checksum of its weights).
    pub sae_fingerprint: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct ProgressFile {
    format: String,
    settings: IndexSettings,
    shards_done: usize,
    complete: bool,
    state_file: String,
    seconds: f64,
}

/// One of a feature's top images.
#[derive(Clone, Debug, PartialEq)]
pub struct TopEntry {
    /// Dataset image index.
    pub image: u32,
    /// Position (index into the stored tokens) of the strongest token.
    pub token: u32,
    pub value: f32,
    /// The feature's activation on every stored token of that image (for the heatmap).
    pub tokens: Vec<f32>,
}

/// One image of a feature's random sample: its strongest token and that activation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleEntry {
    pub image: u32,
    pub token: u32,
    pub value: f32,
}

/// The sampling key of (feature, image). Each feature keeps the [`SAMPLES`] images with the
/// smallest keys among those where it fires (bottom-k sampling): a uniform sample that does not
/// depend on the order images arrive in, so a resumed index holds the same one.
fn sample_key(feature: u32, image: u32) -> u64 {
    crate::rng::Rng::new(((feature as u64) << 32) | image as u64).next_u64()
}

/// Everything the index holds for analysis and display.
#[derive(Clone, Debug)]
pub struct FeatureIndex {
    pub d_sae: usize,
    pub top_n: usize,
    pub tokens_per_image: usize,
    pub n_classes: usize,
    pub n_images: u64,
    pub n_tokens: u64,
    /// Tokens on which each feature fired.
    pub token_count: Vec<u64>,
    /// Images in which each feature fired on at least one token.
    pub image_count: Vec<u64>,
    /// Σ activation over firing tokens (mean when active = act_sum / token_count).
    pub act_sum: Vec<f64>,
    pub max_act: Vec<f32>,
    /// [d_sae, HIST_BINS] token activation counts.
    pub hist: Vec<u64>,
    /// [d_sae, n_classes]: images of each class in which the feature fired.
    pub class_images: Vec<u64>,
    /// [d_sae, n_classes]: Σ over those images of the feature's max activation.
    pub class_act: Vec<f64>,
    /// Images per class.
    pub class_sizes: Vec<u64>,
    /// [n_classes, d_in]: Σ over images of the mean raw activation (baseline class profiles).
    pub class_raw: Vec<f64>,
    pub d_in: usize,
    /// Per feature, best first.
    pub top: Vec<Vec<TopEntry>>,
    /// Per feature, a uniform random sample of the images where it fires (by sampling key).
    pub samples: Vec<Vec<SampleEntry>>,
    /// False for indexes written before samples were kept (they load with no samples).
    pub has_samples: bool,
}

impl FeatureIndex {
    fn new(d_sae: usize, d_in: usize, top_n: usize, tokens: usize, n_classes: usize) -> Self {
        FeatureIndex {
            d_sae,
            top_n,
            tokens_per_image: tokens,
            n_classes,
            n_images: 0,
            n_tokens: 0,
            token_count: vec![0; d_sae],
            image_count: vec![0; d_sae],
            act_sum: vec![0.0; d_sae],
            max_act: vec![0.0; d_sae],
            hist: vec![0; d_sae * HIST_BINS],
            class_images: vec![0; d_sae * n_classes],
            class_act: vec![0.0; d_sae * n_classes],
            class_sizes: vec![0; n_classes],
            class_raw: vec![0.0; n_classes * d_in],
            d_in,
            top: vec![Vec::new(); d_sae],
            samples: vec![Vec::new(); d_sae],
            has_samples: true,
        }
    }

    /// `n` examples of feature `j` at evenly spaced quantiles of its image-level activation
    /// (over the images where it fires, estimated from its random sample): (quantile, position
    /// in `samples[j]`), weakest first. Fewer when the sample is smaller than `n`.
    pub fn quantile_examples(&self, j: usize, n: usize) -> Vec<(f64, usize)> {
        let Some(s) = self.samples.get(j) else {
            return Vec::new();
        };
        let mut order: Vec<usize> = (0..s.len()).collect();
        order.sort_by(|&a, &b| s[a].value.total_cmp(&s[b].value).then(a.cmp(&b)));
        let n = n.min(s.len());
        (0..n)
            .map(|q| {
                let quantile = (q as f64 + 0.5) / n as f64;
                let i = ((quantile * s.len() as f64) as usize).min(s.len() - 1);
                (quantile, order[i])
            })
            .collect()
    }

    /// Fraction of tokens on which feature `j` fires.
    pub fn token_frequency(&self, j: usize) -> f64 {
        self.token_count[j] as f64 / self.n_tokens.max(1) as f64
    }
    pub fn image_frequency(&self, j: usize) -> f64 {
        self.image_count[j] as f64 / self.n_images.max(1) as f64
    }
    pub fn mean_active(&self, j: usize) -> f64 {
        self.act_sum[j] / self.token_count[j].max(1) as f64
    }
    /// How many times more often class `c` is among the images where feature `j` fires than
    /// among all images: P(c | j fires) / P(c). 1 = no preference; 0 when it never fires.
    pub fn lift(&self, j: usize, c: usize) -> f64 {
        let (fired, size) = (self.image_count[j], self.class_sizes[c]);
        if fired == 0 || size == 0 {
            return 0.0;
        }
        let p_c_given_j = self.class_images[j * self.n_classes + c] as f64 / fired as f64;
        p_c_given_j / (size as f64 / self.n_images.max(1) as f64)
    }

    /// The class with the highest lift for feature `j` and that lift (None without classes).
    pub fn best_lift(&self, j: usize) -> Option<(usize, f64)> {
        (0..self.n_classes)
            .map(|c| (c, self.lift(j, c)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// Features that never fired on the indexed data.
    pub fn dead(&self) -> usize {
        self.token_count.iter().filter(|&&c| c == 0).count()
    }

    /// Adds one image: its sparse codes per token (`rows` = its tokens) and class.
    fn add_image(&mut self, summary: ImageSummary) {
        self.n_images += 1;
        if let Some(c) = summary.class {
            self.class_sizes[c] += 1;
            let raw = &mut self.class_raw[c * self.d_in..(c + 1) * self.d_in];
            raw.iter_mut()
                .zip(&summary.mean_raw)
                .for_each(|(a, &b)| *a += b as f64);
        }
        for f in summary.features {
            let j = f.feature as usize;
            self.image_count[j] += 1;
            let key = sample_key(f.feature, summary.image);
            let sample = &mut self.samples[j];
            let key_of = |e: &SampleEntry| sample_key(f.feature, e.image);
            if sample.len() < SAMPLES || sample.last().is_some_and(|e| key < key_of(e)) {
                let pos = sample.partition_point(|e| key_of(e) < key);
                sample.insert(
                    pos,
                    SampleEntry {
                        image: summary.image,
                        token: f.argmax,
                        value: f.max,
                    },
                );
                sample.truncate(SAMPLES);
            }
            if let Some(c) = summary.class {
                self.class_images[j * self.n_classes + c] += 1;
                self.class_act[j * self.n_classes + c] += f.max as f64;
            }
            let list = &mut self.top[j];
            // Ties keep the earlier image, so the result does not depend on shard timing.
            if list.len() < self.top_n || f.max > list.last().map_or(f32::MIN, |e| e.value) {
                let mut tokens = vec![0f32; self.tokens_per_image];
                for (t, v) in f.hits {
                    tokens[t as usize] = v;
                }
                let entry = TopEntry {
                    image: summary.image,
                    token: f.argmax,
                    value: f.max,
                    tokens,
                };
                let pos = list.partition_point(|e| e.value >= entry.value);
                list.insert(pos, entry);
                list.truncate(self.top_n);
            }
        }
    }
}

struct FeatureInImage {
    feature: u32,
    max: f32,
    argmax: u32,
    /// (token position, activation) where it fired; made dense only if it enters a top list.
    hits: Vec<(u32, f32)>,
}

/// What one image contributes (computed in parallel, merged in image order).
struct ImageSummary {
    image: u32,
    class: Option<usize>,
    mean_raw: Vec<f32>,
    features: Vec<FeatureInImage>,
    /// Top IMAGE_TOP (feature, max activation), strongest first.
    top: Vec<(u32, f32)>,
}

/// Token-level statistics of a shard.
struct TokenStats {
    count: Vec<u64>,
    sum: Vec<f64>,
    max: Vec<f32>,
    hist: Vec<u64>,
}

impl TokenStats {
    fn new(d_sae: usize) -> Self {
        TokenStats {
            count: vec![0; d_sae],
            sum: vec![0.0; d_sae],
            max: vec![0.0; d_sae],
            hist: vec![0; d_sae * HIST_BINS],
        }
    }
}

/// A fingerprint that changes whenever the SAE's weights do (see [`Sae::fingerprint`]).
pub fn sae_fingerprint(sae: &Sae) -> String {
    sae.fingerprint()
}

/// Encodes one shard chunk by chunk and feeds each image's summary to `sink` (in image order,
/// so only one chunk of summaries is ever held). Rows of an image are contiguous.
fn summarise_shard(
    shard: &ShardData,
    sae: &Sae,
    tokens: usize,
    class_of: &(dyn Fn(u32) -> Option<usize> + Sync),
    encode_rows: usize,
    sink: &mut dyn FnMut(ImageSummary),
) -> TokenStats {
    let d = shard.d_model;
    let n_img = shard.rows() / tokens;
    let mut stats = TokenStats::new(sae.d_sae);
    // Encode a few thousand rows at a time: bounded scratch, full-size GEMMs.
    let imgs_per_chunk = (encode_rows / tokens).max(1);
    for first in (0..n_img).step_by(imgs_per_chunk) {
        let last = (first + imgs_per_chunk).min(n_img);
        let x = &shard.activations[first * tokens * d..last * tokens * d];
        let codes = sae.encode_sparse(x);
        let (sums, chunk_hits): (Vec<ImageSummary>, Vec<Vec<(u32, f32)>>) = (first..last)
            .into_par_iter()
            .map(|i| {
                let image = shard.image_ids[i];
                let rows = (i - first) * tokens..(i - first + 1) * tokens;
                let mut per_feature: HashMap<u32, FeatureInImage> = HashMap::new();
                let mut token_hits = Vec::new();
                for (t, r) in rows.clone().enumerate() {
                    for (j, v) in codes.row(r) {
                        token_hits.push((j, v));
                        let e = per_feature.entry(j).or_insert_with(|| FeatureInImage {
                            feature: j,
                            max: 0.0,
                            argmax: t as u32,
                            hits: Vec::new(),
                        });
                        e.hits.push((t as u32, v));
                        if v > e.max {
                            e.max = v;
                            e.argmax = t as u32;
                        }
                    }
                }
                let mut features: Vec<FeatureInImage> = per_feature.into_values().collect();
                features.sort_by_key(|f| f.feature);
                let mut top: Vec<(u32, f32)> =
                    features.iter().map(|f| (f.feature, f.max)).collect();
                top.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                top.truncate(IMAGE_TOP);
                let xr = &x[(i - first) * tokens * d..(i - first + 1) * tokens * d];
                let mut mean_raw = vec![0f32; d];
                for row in xr.chunks(d) {
                    mean_raw
                        .iter_mut()
                        .zip(row)
                        .for_each(|(m, v)| *m += v / tokens as f32);
                }
                (
                    ImageSummary {
                        image,
                        class: class_of(image),
                        mean_raw,
                        features,
                        top,
                    },
                    token_hits,
                )
            })
            .unzip();
        // Fold the per-token (feature, value) hits into the dense token statistics.
        for hits in chunk_hits {
            for (j, v) in hits {
                let j = j as usize;
                stats.count[j] += 1;
                stats.sum[j] += v as f64;
                stats.max[j] = stats.max[j].max(v);
                stats.hist[j * HIST_BINS + hist_bin(v)] += 1;
            }
        }
        sums.into_iter().for_each(&mut *sink);
    }
    stats
}

/// The per-shard work of the index, for `saescope bench index`.
pub fn bench_summarise(shard: &ShardData, sae: &Sae, tokens: usize) -> u64 {
    let mut ix = FeatureIndex::new(sae.d_sae, sae.d_in, 64, tokens, 0);
    let encode_rows = IndexOptions::default().encode_rows;
    summarise_shard(shard, sae, tokens, &|_| None, encode_rows, &mut |s| {
        ix.add_image(s)
    });
    ix.n_images
}

#[derive(Clone, Debug)]
pub struct IndexOptions {
    pub top_n: usize,
    /// Rows encoded per GEMM.
    pub encode_rows: usize,
    /// Rebuild from scratch even if a matching partial or complete index exists.
    pub rebuild: bool,
}

impl Default for IndexOptions {
    fn default() -> Self {
        IndexOptions {
            top_n: 64,
            encode_rows: 8192,
            rebuild: false,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct IndexReport {
    pub index: String,
    pub images: u64,
    pub tokens: u64,
    pub features: usize,
    pub dead_features: usize,
    pub shards: usize,
    pub resumed_at_shard: usize,
    pub seconds: f64,
    pub tokens_per_s: f64,
    /// Memory bound of the index state (top lists + statistics), bytes.
    pub state_bytes_bound: u64,
    /// Bound on the whole build's memory: the state twice (while it is written), one decoded
    /// shard, one encode chunk, the SAE and 64 MiB for the process itself. Independent of the
    /// number of images.
    pub memory_bound_bytes: u64,
}

/// State memory bound for the given shapes (see the module comment).
pub fn state_bytes_bound(
    d_sae: usize,
    top_n: usize,
    tokens: usize,
    classes: usize,
    d_in: usize,
) -> u64 {
    let top = d_sae * top_n * (tokens * 4 + 40);
    let stats = d_sae * (HIST_BINS * 8 + classes * 16 + 8 + 8 + 8 + 4 + SAMPLES * 12);
    (top + stats + classes * d_in * 8) as u64
}

/// The index of the SAE whose folder is `home` (`WS/saes/<name>/index`).
pub fn index_dir(home: &Path) -> PathBuf {
    home.join(INDEX_DIR)
}

/// Builds (or resumes, or reuses) the feature index of `sae` (whose folder is `home`) over the
/// workspace's activations.
pub fn build_index(
    ws: &Workspace,
    home: &Path,
    sae: &Sae,
    opts: &IndexOptions,
    job: &Job,
) -> Result<IndexReport> {
    let store = ActivationStore::open(&ws.activations_dir())?;
    if !store.manifest.is_complete() {
        return Err(Error::Workspace(format!(
            "{}: extraction is not finished; re-run `saescope extract` to complete it",
            ws.dir.display()
        )));
    }
    sae.check_fits(
        store.manifest.d_model,
        &format!("layer {} of {}", ws.config.layer, ws.config.backbone.name),
    )?;
    let ds = ws.dataset()?;
    let n_classes = ds.classes.len();
    let tokens = store.manifest.tokens_per_image();
    if opts.top_n == 0 || opts.encode_rows == 0 {
        return Err(Error::Invalid(format!(
            "--top-n must be at least 1 (got {}), and so must the rows encoded per step (got {})",
            opts.top_n, opts.encode_rows
        )));
    }
    // Checked before allocating: a failed allocation aborts instead of returning an error.
    let need = 2 * state_bytes_bound(sae.d_sae, opts.top_n, tokens, n_classes, sae.d_in);
    if let Some(avail) = crate::memory::available_bytes()
        && need as f64 > 0.9 * avail as f64
    {
        return Err(Error::Invalid(format!(
            "--top-n {} for {} features needs about {:.1} GB, but {:.1} GB of memory is \
             available: lower --top-n",
            opts.top_n,
            sae.d_sae,
            need as f64 / 1e9,
            avail as f64 / 1e9
        )));
    }
    let settings = IndexSettings {
        top_n: opts.top_n,
        sae_fingerprint: sae_fingerprint(sae),
    };
    let dir = index_dir(home);
    std::fs::create_dir_all(&dir).at(&dir)?;
    let previous: Option<ProgressFile> = {
        let p = dir.join(PROGRESS);
        if p.exists() && !opts.rebuild {
            Some(fsutil::read_json(&p)?)
        } else {
            None
        }
    };
    let resume = previous.filter(|p| p.settings == settings && p.format == FORMAT);
    let mut index = match &resume {
        Some(p) => read_state(&dir.join(&p.state_file))?,
        None => FeatureIndex::new(
            sae.d_sae,
            store.manifest.d_model,
            opts.top_n,
            tokens,
            n_classes,
        ),
    };
    let start_shard = resume.as_ref().map_or(0, |p| p.shards_done);
    let seconds_before = resume.as_ref().map_or(0.0, |p| p.seconds);
    let start = Instant::now();
    let n_shards = store.manifest.shards.len();
    let class_of = |img: u32| {
        ds.images
            .get(img as usize)
            .and_then(|e| e.class)
            .map(|c| c as usize)
    };
    let crash_after: Option<usize> = std::env::var("SAESCOPE_CRASH_AFTER_INDEX_SHARD")
        .ok()
        .and_then(|v| v.parse().ok());
    let mut tokens_this_run = 0u64;
    for s in start_shard..n_shards {
        job.check()?;
        let shard = store.read_shard(s)?;
        let mut image_top: Vec<(u32, Vec<(u32, f32)>)> = Vec::new();
        let stats = summarise_shard(&shard, sae, tokens, &class_of, opts.encode_rows, &mut |s| {
            image_top.push((s.image, s.top.clone()));
            index.add_image(s);
        });
        index.n_tokens += shard.rows() as u64;
        tokens_this_run += shard.rows() as u64;
        for (j, c) in stats.count.iter().enumerate() {
            index.token_count[j] += c;
            index.act_sum[j] += stats.sum[j];
            index.max_act[j] = index.max_act[j].max(stats.max[j]);
        }
        index
            .hist
            .iter_mut()
            .zip(&stats.hist)
            .for_each(|(a, b)| *a += b);
        write_image_top(&dir.join(image_top_file(s)), &image_top)?;
        let state_file = format!("state-{s:05}.safetensors");
        write_state(&dir.join(&state_file), &index)?;
        let complete = s + 1 == n_shards;
        fsutil::write_json_atomic(
            &dir.join(PROGRESS),
            &ProgressFile {
                format: FORMAT.into(),
                settings: settings.clone(),
                shards_done: s + 1,
                complete,
                state_file: state_file.clone(),
                seconds: seconds_before + start.elapsed().as_secs_f64(),
            },
        )?;
        remove_other_states(&dir, &state_file);
        job.report(Progress {
            done: (s + 1) as u64,
            total: n_shards as u64,
            unit: "shards",
            message: format!("{} images", index.n_images),
        });
        if crash_after == Some(s + 1) && !complete {
            std::process::abort(); // fault injection for the resume test
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let d_in = store.manifest.d_model;
    let state = state_bytes_bound(sae.d_sae, opts.top_n, tokens, n_classes, d_in);
    let shard_rows = store.manifest.images_per_shard * tokens;
    Ok(IndexReport {
        index: dir.display().to_string(),
        images: index.n_images,
        tokens: index.n_tokens,
        features: index.d_sae,
        dead_features: index.dead(),
        shards: n_shards,
        resumed_at_shard: start_shard,
        seconds: seconds_before + secs,
        tokens_per_s: tokens_this_run as f64 / secs.max(1e-9),
        state_bytes_bound: state,
        memory_bound_bytes: 2 * state
            + (shard_rows * d_in * 6) as u64
            + (opts.encode_rows * (d_in + 4 * tokens.max(64)) * 8) as u64
            + (sae.d_sae * d_in * 8) as u64
            + PROCESS_OVERHEAD,
    })
}

fn remove_other_states(dir: &Path, keep: &str) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("state-") && name != keep {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

fn image_top_file(shard: usize) -> String {
    format!("images-{shard:05}.safetensors")
}

/// True when the SAE whose folder is `home` has a finished feature index.
pub fn is_complete(home: &Path) -> bool {
    fsutil::read_json::<ProgressFile>(&index_dir(home).join(PROGRESS)).is_ok_and(|p| p.complete)
}

/// Loads the complete index of the SAE whose folder is `home`; errors tell how to build it.
pub fn load_index(home: &Path) -> Result<FeatureIndex> {
    let dir = index_dir(home);
    let p = dir.join(PROGRESS);
    if !p.exists() {
        return Err(Error::Workspace(format!(
            "{}: no feature index yet for this SAE; run `saescope index`",
            home.display(),
        )));
    }
    let progress: ProgressFile = fsutil::read_json(&p)?;
    if !progress.complete {
        return Err(Error::Workspace(format!(
            "{}: the feature index is unfinished ({} shards done); re-run `saescope index` to complete it",
            home.display(),
            progress.shards_done
        )));
    }
    read_state(&dir.join(&progress.state_file))
}

/// Every image's top features (image id → strongest first), read from the per-shard files.
pub fn load_image_top(home: &Path) -> Result<HashMap<u32, Vec<(u32, f32)>>> {
    let dir = index_dir(home);
    let mut out = HashMap::new();
    let mut s = 0;
    loop {
        let p = dir.join(image_top_file(s));
        if !p.exists() {
            break;
        }
        let bytes = std::fs::read(&p).at(&p)?;
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| corrupt(&p, e))?;
        let images = u32s(&st, "image", &p)?;
        let ids = u32s(&st, "feature", &p)?;
        let vals = f32s(&st, "value", &p)?;
        let counts = u32s(&st, "count", &p)?;
        let mut at = 0usize;
        for (img, &n) in images.iter().zip(&counts) {
            let n = n as usize;
            out.insert(
                *img,
                ids[at..at + n]
                    .iter()
                    .copied()
                    .zip(vals[at..at + n].iter().copied())
                    .collect(),
            );
            at += n;
        }
        s += 1;
    }
    Ok(out)
}

fn write_image_top(path: &Path, tops: &[(u32, Vec<(u32, f32)>)]) -> Result<()> {
    let images: Vec<u32> = tops.iter().map(|t| t.0).collect();
    let counts: Vec<u32> = tops.iter().map(|t| t.1.len() as u32).collect();
    let ids: Vec<u32> = tops.iter().flat_map(|t| t.1.iter().map(|x| x.0)).collect();
    let vals: Vec<f32> = tops.iter().flat_map(|t| t.1.iter().map(|x| x.1)).collect();
    let bytes = serialize(vec![
        ("image", Tensor::U32(images)),
        ("count", Tensor::U32(counts)),
        ("feature", Tensor::U32(ids)),
        ("value", Tensor::F32(vals)),
    ])?;
    fsutil::write_atomic(path, &bytes)
}

enum Tensor {
    U32(Vec<u32>),
    U64(Vec<u64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

fn serialize(tensors: Vec<(&str, Tensor)>) -> Result<Vec<u8>> {
    let bytes: Vec<(&str, Dtype, usize, Vec<u8>)> = tensors
        .into_iter()
        .map(|(n, t)| match t {
            Tensor::U32(v) => (
                n,
                Dtype::U32,
                v.len(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            Tensor::U64(v) => (
                n,
                Dtype::U64,
                v.len(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            Tensor::F32(v) => (
                n,
                Dtype::F32,
                v.len(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            Tensor::F64(v) => (
                n,
                Dtype::F64,
                v.len(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
        })
        .collect();
    let bad = |e: safetensors::SafeTensorError| Error::Invalid(format!("cannot encode index: {e}"));
    let mut views = Vec::new();
    for (n, dt, len, b) in &bytes {
        views.push((
            n.to_string(),
            TensorView::new(*dt, vec![*len], b).map_err(bad)?,
        ));
    }
    safetensors::serialize(views, None).map_err(bad)
}

fn corrupt(p: &Path, e: impl std::fmt::Display) -> Error {
    Error::Workspace(format!(
        "{}: corrupt index file ({e}); run `saescope index --rebuild` to rebuild the index",
        p.display()
    ))
}

fn raw<'a>(st: &'a safetensors::SafeTensors, name: &str, p: &Path) -> Result<&'a [u8]> {
    Ok(st.tensor(name).map_err(|e| corrupt(p, e))?.data())
}
fn u32s(st: &safetensors::SafeTensors, name: &str, p: &Path) -> Result<Vec<u32>> {
    Ok(raw(st, name, p)?
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
        .collect())
}
fn u64s(st: &safetensors::SafeTensors, name: &str, p: &Path) -> Result<Vec<u64>> {
    Ok(raw(st, name, p)?
        .chunks_exact(8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
        .collect())
}
fn f32s(st: &safetensors::SafeTensors, name: &str, p: &Path) -> Result<Vec<f32>> {
    Ok(raw(st, name, p)?
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect())
}
fn f64s(st: &safetensors::SafeTensors, name: &str, p: &Path) -> Result<Vec<f64>> {
    Ok(raw(st, name, p)?
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect())
}

fn write_state(path: &Path, ix: &FeatureIndex) -> Result<()> {
    let (d_sae, n, t) = (ix.d_sae, ix.top_n, ix.tokens_per_image);
    // Top lists as fixed [d_sae, top_n] tables; `top_len` says how many entries are real.
    let mut img = vec![0u32; d_sae * n];
    let mut tok = vec![0u32; d_sae * n];
    let mut val = vec![0f32; d_sae * n];
    let mut pat = vec![0f32; d_sae * n * t];
    let mut len = vec![0u32; d_sae];
    for (j, list) in ix.top.iter().enumerate() {
        len[j] = list.len() as u32;
        for (r, e) in list.iter().enumerate() {
            img[j * n + r] = e.image;
            tok[j * n + r] = e.token;
            val[j * n + r] = e.value;
            pat[(j * n + r) * t..(j * n + r + 1) * t].copy_from_slice(&e.tokens);
        }
    }
    let mut s_len = vec![0u32; d_sae];
    let mut s_img = vec![0u32; d_sae * SAMPLES];
    let mut s_tok = vec![0u32; d_sae * SAMPLES];
    let mut s_val = vec![0f32; d_sae * SAMPLES];
    for (j, sample) in ix.samples.iter().enumerate() {
        s_len[j] = sample.len() as u32;
        for (r, e) in sample.iter().enumerate() {
            s_img[j * SAMPLES + r] = e.image;
            s_tok[j * SAMPLES + r] = e.token;
            s_val[j * SAMPLES + r] = e.value;
        }
    }
    let shape = vec![
        d_sae as u64,
        n as u64,
        t as u64,
        ix.n_classes as u64,
        ix.n_images,
        ix.n_tokens,
        ix.d_in as u64,
    ];
    let bytes = serialize(vec![
        ("shape", Tensor::U64(shape)),
        ("token_count", Tensor::U64(ix.token_count.clone())),
        ("image_count", Tensor::U64(ix.image_count.clone())),
        ("act_sum", Tensor::F64(ix.act_sum.clone())),
        ("max_act", Tensor::F32(ix.max_act.clone())),
        ("hist", Tensor::U64(ix.hist.clone())),
        ("class_images", Tensor::U64(ix.class_images.clone())),
        ("class_act", Tensor::F64(ix.class_act.clone())),
        ("class_sizes", Tensor::U64(ix.class_sizes.clone())),
        ("class_raw", Tensor::F64(ix.class_raw.clone())),
        ("top_len", Tensor::U32(len)),
        ("top_image", Tensor::U32(img)),
        ("top_token", Tensor::U32(tok)),
        ("top_value", Tensor::F32(val)),
        ("top_tokens", Tensor::F32(pat)),
        ("sample_len", Tensor::U32(s_len)),
        ("sample_image", Tensor::U32(s_img)),
        ("sample_token", Tensor::U32(s_tok)),
        ("sample_value", Tensor::F32(s_val)),
    ])?;
    fsutil::write_atomic(path, &bytes)
}

fn read_state(path: &Path) -> Result<FeatureIndex> {
    let bytes = std::fs::read(path).at(path)?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| corrupt(path, e))?;
    let shape = u64s(&st, "shape", path)?;
    if shape.len() != 7 {
        return Err(corrupt(path, "bad shape header"));
    }
    let [d_sae, n, t, c, n_images, n_tokens, d_in] = [0, 1, 2, 3, 4, 5, 6].map(|i| shape[i]);
    let (d_sae, n, t, c, d_in) = (
        d_sae as usize,
        n as usize,
        t as usize,
        c as usize,
        d_in as usize,
    );
    let mut ix = FeatureIndex::new(d_sae, d_in, n, t, c);
    ix.n_images = n_images;
    ix.n_tokens = n_tokens;
    ix.token_count = u64s(&st, "token_count", path)?;
    ix.image_count = u64s(&st, "image_count", path)?;
    ix.act_sum = f64s(&st, "act_sum", path)?;
    ix.max_act = f32s(&st, "max_act", path)?;
    ix.hist = u64s(&st, "hist", path)?;
    ix.class_images = u64s(&st, "class_images", path)?;
    ix.class_act = f64s(&st, "class_act", path)?;
    ix.class_sizes = u64s(&st, "class_sizes", path)?;
    ix.class_raw = f64s(&st, "class_raw", path)?;
    let len = u32s(&st, "top_len", path)?;
    let img = u32s(&st, "top_image", path)?;
    let tok = u32s(&st, "top_token", path)?;
    let val = f32s(&st, "top_value", path)?;
    let pat = f32s(&st, "top_tokens", path)?;
    if len.len() != d_sae
        || img.len() != d_sae * n
        || pat.len() != d_sae * n * t
        || ix.hist.len() != d_sae * HIST_BINS
    {
        return Err(corrupt(path, "table sizes disagree with the header"));
    }
    for j in 0..d_sae {
        ix.top[j] = (0..len[j] as usize)
            .map(|r| TopEntry {
                image: img[j * n + r],
                token: tok[j * n + r],
                value: val[j * n + r],
                tokens: pat[(j * n + r) * t..(j * n + r + 1) * t].to_vec(),
            })
            .collect();
    }
    // Indexes written before samples were kept have none (the feature page says to rebuild).
    ix.has_samples = st.tensor("sample_len").is_ok();
    if ix.has_samples {
        let len = u32s(&st, "sample_len", path)?;
        let img = u32s(&st, "sample_image", path)?;
        let tok = u32s(&st, "sample_token", path)?;
        let val = f32s(&st, "sample_value", path)?;
        let k = SAMPLES;
        if len.len() != d_sae
            || img.len() != d_sae * k
            || tok.len() != d_sae * k
            || val.len() != d_sae * k
            || len.iter().any(|&l| l as usize > k)
        {
            return Err(corrupt(path, "sample table sizes disagree with the header"));
        }
        for (j, (sample, &n)) in ix.samples.iter_mut().zip(&len).enumerate() {
            *sample = (j * k..j * k + n as usize)
                .map(|i| SampleEntry {
                    image: img[i],
                    token: tok[i],
                    value: val[i],
                })
                .collect();
        }
    }
    Ok(ix)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An image in which feature 0 fires at `value` on token 1 (a single class-less image).
    fn one_feature_image(image: u32, value: f32) -> ImageSummary {
        ImageSummary {
            image,
            class: None,
            mean_raw: vec![0.0; 2],
            features: vec![FeatureInImage {
                feature: 0,
                max: value,
                argmax: 1,
                hits: vec![(1, value)],
            }],
            top: vec![(0, value)],
        }
    }

    #[test]
    fn feature_samples_are_uniform_and_independent_of_image_order() {
        let images: Vec<u32> = (0..500).collect();
        let value = |i: u32| (i % 97) as f32 + 0.5;
        let build = |order: &[u32]| {
            let mut ix = FeatureIndex::new(1, 2, 4, 3, 0);
            for &i in order {
                ix.add_image(one_feature_image(i, value(i)));
            }
            ix
        };
        let forward = build(&images);
        let reversed: Vec<u32> = images.iter().rev().copied().collect();
        let backward = build(&reversed);
        assert_eq!(forward.samples[0].len(), SAMPLES);
        assert_eq!(forward.samples[0], backward.samples[0]);
        // The sample is the SAMPLES images of smallest key (bottom-k), with their values.
        let mut by_key = images.clone();
        by_key.sort_by_key(|&i| sample_key(0, i));
        let want: Vec<u32> = by_key[..SAMPLES].to_vec();
        let got: Vec<u32> = forward.samples[0].iter().map(|e| e.image).collect();
        assert_eq!(got, want);
        assert!(
            forward.samples[0]
                .iter()
                .all(|e| e.value == value(e.image) && e.token == 1)
        );
        // Not the first or the strongest images: a sample from the whole range.
        assert!(got.iter().any(|&i| i >= 250) && got.iter().any(|&i| i < 250));

        // Quantile examples: weakest first, spread over the sample.
        let q = forward.quantile_examples(0, 8);
        assert_eq!(q.len(), 8);
        let values: Vec<f32> = q
            .iter()
            .map(|&(_, i)| forward.samples[0][i].value)
            .collect();
        assert!(values.windows(2).all(|w| w[0] <= w[1]), "{values:?}");
        assert!(values[7] > values[0]);
        assert!((q[0].0 - 0.0625).abs() < 1e-12 && (q[7].0 - 0.9375).abs() < 1e-12);
        let mut sorted: Vec<f32> = forward.samples[0].iter().map(|e| e.value).collect();
        sorted.sort_by(f32::total_cmp);
        assert_eq!(values[0], sorted[2]);
        assert_eq!(values[7], sorted[30]);
        // A feature that never fired has none; asking for more than the sample gives the sample.
        assert!(
            FeatureIndex::new(2, 2, 4, 3, 0)
                .quantile_examples(1, 8)
                .is_empty()
        );
        assert_eq!(forward.quantile_examples(0, 100).len(), SAMPLES);
    }

    #[test]
    fn feature_samples_survive_the_state_file() {
        let mut ix = FeatureIndex::new(1, 2, 4, 3, 0);
        for i in 0..50 {
            ix.add_image(one_feature_image(i, i as f32));
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.safetensors");
        write_state(&p, &ix).unwrap();
        let back = read_state(&p).unwrap();
        assert!(back.has_samples);
        assert_eq!(back.samples, ix.samples);
    }

    #[test]
    fn histogram_bins_are_log_spaced() {
        assert_eq!(hist_bin(0.0005), 0);
        assert_eq!(hist_bin(0.001), 1);
        assert_eq!(hist_bin(0.0011), 1);
        assert_eq!(hist_bin(0.0013), 2);
        assert_eq!(hist_bin(1.0), 31);
        assert_eq!(hist_bin(1e6), HIST_BINS - 1);
        assert!((hist_edge(31) - 1.0).abs() < 1e-5);
        for b in 1..HIST_BINS - 1 {
            assert_eq!(hist_bin(hist_edge(b) * 1.0001), b, "bin {b}");
        }
    }

    #[test]
    fn top_lists_keep_the_best_images_in_order() {
        let mut ix = FeatureIndex::new(2, 1, 3, 2, 1);
        for (img, v) in [
            (0u32, 1.0f32),
            (1, 3.0),
            (2, 2.0),
            (3, 0.5),
            (4, 2.5),
            (5, 2.0),
        ] {
            ix.add_image(ImageSummary {
                image: img,
                class: Some(0),
                mean_raw: vec![1.0],
                features: vec![FeatureInImage {
                    feature: 1,
                    max: v,
                    argmax: 1,
                    hits: vec![(1, v)],
                }],
                top: vec![],
            });
        }
        let got: Vec<(u32, f32)> = ix.top[1].iter().map(|e| (e.image, e.value)).collect();
        assert_eq!(got, [(1, 3.0), (4, 2.5), (2, 2.0)]);
        assert_eq!(ix.image_count, [0, 6]);
        assert_eq!(ix.class_images, [0, 6]);
        assert!(ix.top[0].is_empty());
        // State files round-trip exactly.
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.safetensors");
        write_state(&p, &ix).unwrap();
        let back = read_state(&p).unwrap();
        assert_eq!(back.top, ix.top);
        assert_eq!(back.class_raw, ix.class_raw);
        assert_eq!(back.n_images, 6);
    }
}
