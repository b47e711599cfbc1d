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

mod exact;
mod hist;
use hist::hist_bin;
pub use hist::{HIST_BINS, HIST_PER_DECADE, hist_edge};
pub mod split;
pub use exact::ExactSums;

use crate::error::{Error, IoContext, Result};
use crate::fix::{Command, Opt};
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
/// What the process needs besides the index's data (code, allocator, thread stacks, the
/// workspace listing), counted in the reported memory bound.
const PROCESS_OVERHEAD: u64 = 64 << 20;
/// Top features kept per image.
pub const IMAGE_TOP: usize = 32;
/// Images kept per feature in its random sample (examples across the activation range).
pub const SAMPLES: usize = 32;
/// The index format written now; a partial index of another format is rebuilt, not resumed.
const FORMAT: &str = "saescope-index-v4";

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
    /// The next shard to index (shards [first_shard, shards_done) are in the state).
    shards_done: usize,
    complete: bool,
    state_file: String,
    seconds: f64,
    /// A task's first shard (0 for the whole index).
    #[serde(default)]
    first_shard: usize,
    /// A task's end shard (None for the whole index: the store's end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    end_shard: Option<usize>,
    /// Set when the index was merged from that many tasks (`saescope merge`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    merged_from: Option<usize>,
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
#[derive(Clone, Debug, PartialEq)]
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
    pub act_sum: ExactSums,
    pub max_act: Vec<f32>,
    /// [d_sae, HIST_BINS] token activation counts.
    pub hist: Vec<u64>,
    /// [d_sae, n_classes]: images of each class in which the feature fired.
    pub class_images: Vec<u64>,
    /// [d_sae, n_classes]: Σ over those images of the feature's max activation.
    pub class_act: ExactSums,
    /// Images per class.
    pub class_sizes: Vec<u64>,
    /// [n_classes, d_in]: Σ over images of the mean raw activation (baseline class profiles).
    pub class_raw: ExactSums,
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
            act_sum: ExactSums::zeros(d_sae),
            max_act: vec![0.0; d_sae],
            hist: vec![0; d_sae * HIST_BINS],
            class_images: vec![0; d_sae * n_classes],
            class_act: ExactSums::zeros(d_sae * n_classes),
            class_sizes: vec![0; n_classes],
            class_raw: ExactSums::zeros(n_classes * d_in),
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
        self.act_sum.get(j) / self.token_count[j].max(1) as f64
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
            self.class_raw.add_slice(c * self.d_in, &summary.mean_raw);
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
                self.class_act.add(j * self.n_classes + c, f.max as f64);
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
    sum: ExactSums,
    max: Vec<f32>,
    hist: Vec<u64>,
}

impl TokenStats {
    fn new(d_sae: usize) -> Self {
        TokenStats {
            count: vec![0; d_sae],
            sum: ExactSums::zeros(d_sae),
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
                stats.sum.add(j, v as f64);
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
    /// One task of a split index (`saescope merge` folds them), or None for the whole index.
    pub task: Option<crate::store::tasks::TaskSpec>,
}

impl Default for IndexOptions {
    fn default() -> Self {
        IndexOptions {
            top_n: 64,
            encode_rows: 8192,
            rebuild: false,
            task: None,
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
    // Counts are u64, exact sums i128 (16 bytes), maxima f32.
    let stats = d_sae * (HIST_BINS * 8 + classes * 24 + 8 + 8 + 16 + 4 + SAMPLES * 12);
    (top + stats + classes * d_in * 16) as u64
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
        return Err(crate::store::activations::unfinished(&ws.dir));
    }
    sae.check_fits(
        store.manifest.d_model,
        &format!("layer {} of {}", ws.config.layer, ws.config.backbone.name),
    )?;
    let ds = ws.dataset()?;
    let n_classes = ds.classes.len();
    let tokens = store.manifest.tokens_per_image();
    if opts.top_n == 0 || opts.encode_rows == 0 {
        return Err(crate::fixable!([
            Opt::TopN,
            format!(
                " must be at least 1 (got {}), and so must the rows encoded per step (got {})",
                opts.top_n, opts.encode_rows
            )
        ]));
    }
    // Checked before allocating: a failed allocation aborts instead of returning an error.
    let need = 2 * state_bytes_bound(sae.d_sae, opts.top_n, tokens, n_classes, sae.d_in);
    if let Some(avail) = crate::memory::available_bytes()
        && need as f64 > 0.9 * avail as f64
    {
        return Err(crate::fixable!(
            [
                Opt::TopN,
                format!(
                    " {} for {} features needs about {:.1} GB, but {:.1} GB of memory is available",
                    opts.top_n,
                    sae.d_sae,
                    need as f64 / 1e9,
                    avail as f64 / 1e9
                )
            ],
            ["lower ", Opt::TopN]
        ));
    }
    let settings = IndexSettings {
        top_n: opts.top_n,
        sae_fingerprint: sae_fingerprint(sae),
    };
    let n_shards = store.manifest.shards.len();
    let range = opts.task.map_or(0..n_shards, |t| t.range(n_shards));
    let (dir, _claim) = match &opts.task {
        Some(t) => (
            split::task_dir(home, t),
            Some(crate::store::tasks::Claim::take(
                &split::task_claim(home, t),
                &format!("index task {} of {}", t.task, t.tasks),
            )?),
        ),
        None => (index_dir(home), None),
    };
    std::fs::create_dir_all(&dir).at(&dir)?;
    let previous: Option<ProgressFile> = {
        let p = dir.join(PROGRESS);
        if p.exists() && !opts.rebuild {
            Some(fsutil::read_json(&p)?)
        } else {
            None
        }
    };
    let resume = previous
        .filter(|p| p.settings == settings && p.format == FORMAT && p.first_shard == range.start);
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
    let start_shard = resume.as_ref().map_or(range.start, |p| p.shards_done);
    let seconds_before = resume.as_ref().map_or(0.0, |p| p.seconds);
    let start = Instant::now();
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
    // A task with no shards (more tasks than shards) still records that it is done.
    if range.is_empty() && resume.is_none() {
        let state_file = "state-empty.safetensors".to_string();
        write_state(&dir.join(&state_file), &index)?;
        fsutil::write_json_atomic(
            &dir.join(PROGRESS),
            &progress_file(&settings, range.clone(), range.end, state_file, 0.0, opts),
        )?;
    }
    for s in start_shard..range.end {
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
            index.max_act[j] = index.max_act[j].max(stats.max[j]);
        }
        index.act_sum.add_all(&stats.sum);
        index
            .hist
            .iter_mut()
            .zip(&stats.hist)
            .for_each(|(a, b)| *a += b);
        write_image_top(&dir.join(image_top_file(s)), &image_top)?;
        let state_file = format!("state-{s:05}.safetensors");
        write_state(&dir.join(&state_file), &index)?;
        let complete = s + 1 == range.end;
        fsutil::write_json_atomic(
            &dir.join(PROGRESS),
            &progress_file(
                &settings,
                range.clone(),
                s + 1,
                state_file.clone(),
                seconds_before + start.elapsed().as_secs_f64(),
                opts,
            ),
        )?;
        remove_other_states(&dir, &state_file);
        job.report(Progress {
            done: (s + 1 - range.start) as u64,
            total: range.len() as u64,
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
        shards: range.len(),
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

/// The progress of an index (or a task's part) with shards up to `done` indexed.
fn progress_file(
    settings: &IndexSettings,
    range: std::ops::Range<usize>,
    done: usize,
    state_file: String,
    seconds: f64,
    opts: &IndexOptions,
) -> ProgressFile {
    ProgressFile {
        format: FORMAT.into(),
        settings: settings.clone(),
        shards_done: done,
        complete: done == range.end,
        state_file,
        seconds,
        first_shard: range.start,
        end_shard: opts.task.map(|_| range.end),
        merged_from: None,
    }
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
    read_state(&dir.join(finished_state_file(home)?))
}

/// Each feature's top images (dataset ids, strongest first) from a finished index, without the
/// rest of it (what the compare page shows for other SAEs).
pub fn load_top_images(home: &Path) -> Result<Vec<Vec<u32>>> {
    state::read_top_images(&index_dir(home).join(finished_state_file(home)?))
}

/// The state file of `home`'s finished index; an error that says how to make one otherwise.
fn finished_state_file(home: &Path) -> Result<String> {
    let dir = index_dir(home);
    let p = dir.join(PROGRESS);
    if !p.exists() {
        return Err(crate::fixable!(
            [home, ": no feature index yet for this SAE"],
            ["run ", Command::Index { rebuild: false }]
        ));
    }
    let progress: ProgressFile = fsutil::read_json(&p)?;
    if progress.format != FORMAT {
        return Err(crate::fixable!(
            [
                home,
                format!(
                    ": the feature index was built by an older saescope (`{}`; this one reads `{FORMAT}`, \
                     whose histograms are four times finer)",
                    progress.format
                )
            ],
            ["rebuild it with ", Command::Index { rebuild: true }]
        ));
    }
    if !progress.complete {
        return Err(crate::fixable!(
            [
                home,
                format!(
                    ": the feature index is unfinished ({} shards done)",
                    progress.shards_done
                )
            ],
            [
                "re-run ",
                Command::Index { rebuild: false },
                " to complete it"
            ]
        ));
    }
    Ok(progress.state_file)
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

pub(crate) mod state;
use state::{Tensor, corrupt, f32s, read_state, serialize, u32s, write_state};

#[cfg(test)]
mod tests;
