//! Thumbnail textures (strongest-patch crops, heatmap overlays) made on demand from the index
//! and cached. A per-frame budget keeps scrolling smooth: what is not ready yet shows a
//! placeholder and the frame asks for a repaint.

use crate::analysis::heatmap::{Heatmap, model_view, outlined_patch, overlay_sized, token_box};
use crate::analysis::index::FeatureIndex;
use crate::backbone::TokenGeometry;
use crate::ops::workspace::Dataset;
use std::collections::HashMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ThumbKind {
    /// The feature's best image with its strongest patch outlined (grid cards, tree, chips):
    /// a crop of the patch alone was a few blurred pixels on small images like CIFAR's.
    Card,
    /// The `rank`-th top image with the feature's heatmap over it.
    Overlay(u16),
    /// The `rank`-th top image as the model saw it, without the heatmap (side by side).
    Plain(u16),
    /// The `i`-th image of the feature's random sample, its strongest patch outlined.
    Sample(u16),
}

pub struct Thumbs {
    cache: HashMap<(u32, ThumbKind), Option<egui::TextureHandle>>,
    /// 64-px thumbnails of image files outside the index (the OOD page's unusual images).
    files: HashMap<std::path::PathBuf, Option<egui::TextureHandle>>,
    /// Why a thumbnail shows the "unreadable" placeholder (its image could not be read).
    problems: HashMap<(u32, ThumbKind), String>,
    file_problems: HashMap<std::path::PathBuf, String>,
    /// The "unreadable" placeholder, made once and shared by every slot that shows it.
    unreadable: Option<egui::TextureHandle>,
    /// Thumbnails still allowed this frame.
    budget: usize,
    pub per_frame: usize,
}

impl Default for Thumbs {
    fn default() -> Self {
        Thumbs {
            cache: HashMap::new(),
            files: HashMap::new(),
            problems: HashMap::new(),
            file_problems: HashMap::new(),
            unreadable: None,
            budget: 0,
            per_frame: 24,
        }
    }
}

/// A thumbnail's texture (nearest-neighbour: patch cells stay crisp).
fn texture(
    ctx: &egui::Context,
    feature: u32,
    kind: ThumbKind,
    img: &image::RgbImage,
) -> egui::TextureHandle {
    ctx.load_texture(
        format!("thumb-{feature}-{kind:?}"),
        egui::ColorImage::from_rgb([img.width() as usize, img.height() as usize], img.as_raw()),
        egui::TextureOptions::NEAREST,
    )
}

pub struct ThumbSource<'a> {
    pub index: &'a FeatureIndex,
    pub ds: &'a Dataset,
    pub geometry: &'a TokenGeometry,
    pub token_indices: &'a [usize],
    pub preprocessor: Option<&'a crate::backbone::preprocess::Preprocessor>,
    /// Heatmap opacity over the image (0 to 1).
    pub alpha: f32,
}

impl Thumbs {
    /// Whether a thumbnail has been made (or found impossible) already.
    pub fn is_ready(&self, feature: u32, kind: ThumbKind) -> bool {
        self.cache.contains_key(&(feature, kind))
    }

    /// Makes the missing thumbnails among `kinds` of `feature` at once, in parallel (within this
    /// frame's budget): a feature page's top images arrive together instead of one by one.
    pub fn prefetch(
        &mut self,
        ctx: &egui::Context,
        src: &ThumbSource,
        feature: u32,
        kinds: &[ThumbKind],
    ) {
        use rayon::prelude::*;
        let missing: Vec<ThumbKind> = kinds
            .iter()
            .copied()
            .filter(|k| !self.cache.contains_key(&(feature, *k)))
            .collect();
        let todo = &missing[..missing.len().min(self.budget)];
        if todo.len() < missing.len() {
            ctx.request_repaint();
        }
        self.budget -= todo.len();
        let made: Vec<(ThumbKind, Made)> = todo
            .par_iter()
            .map(|&k| (k, make(src, feature, k)))
            .collect();
        for (kind, img) in made {
            self.insert(ctx, feature, kind, img);
        }
    }

    fn insert(
        &mut self,
        ctx: &egui::Context,
        feature: u32,
        kind: ThumbKind,
        made: Made,
    ) -> Option<egui::TextureHandle> {
        let tex = match made {
            Ok(img) => img.map(|img| texture(ctx, feature, kind, &img)),
            Err(why) => {
                self.problems
                    .insert((feature, kind), format!("cannot show this image: {why}"));
                Some(self.unreadable(ctx))
            }
        };
        self.cache.insert((feature, kind), tex.clone());
        tex
    }

    /// A 64-px thumbnail of any image file (None: unreadable, or not made yet this frame).
    pub fn file(
        &mut self,
        ctx: &egui::Context,
        path: &std::path::Path,
    ) -> Option<egui::TextureHandle> {
        if let Some(t) = self.files.get(path) {
            return t.clone();
        }
        if self.budget == 0 {
            ctx.request_repaint();
            return None;
        }
        self.budget -= 1;
        let tex = match crate::ops::workspace::load_rgb(path) {
            Ok(img) => {
                let small = image::imageops::thumbnail(&img, 64, 64);
                ctx.load_texture(
                    format!("file-thumb-{}", path.display()),
                    egui::ColorImage::from_rgb(
                        [small.width() as usize, small.height() as usize],
                        small.as_raw(),
                    ),
                    egui::TextureOptions::NEAREST,
                )
            }
            Err(e) => {
                self.file_problems
                    .insert(path.to_path_buf(), format!("cannot show this image: {e}"));
                self.unreadable(ctx)
            }
        };
        self.files.insert(path.to_path_buf(), Some(tex.clone()));
        Some(tex)
    }

    /// Why the thumbnail of `feature`'s `kind` is the "unreadable" placeholder, if it is.
    pub fn problem(&self, feature: u32, kind: ThumbKind) -> Option<&str> {
        self.problems.get(&(feature, kind)).map(String::as_str)
    }

    /// Why the thumbnail of the file `path` is the "unreadable" placeholder, if it is.
    pub fn file_problem(&self, path: &std::path::Path) -> Option<&str> {
        self.file_problems.get(path).map(String::as_str)
    }

    /// Drops the heatmap thumbnails (made again at the new opacity when next asked for).
    pub fn forget_overlays(&mut self) {
        self.cache
            .retain(|(_, kind), _| !matches!(kind, ThumbKind::Overlay(_)));
    }

    pub fn begin_frame(&mut self) {
        self.budget = self.per_frame;
    }

    /// The texture, or None if it cannot exist (no such image) or is not made yet; in the
    /// latter case a repaint is requested.
    pub fn get(
        &mut self,
        ctx: &egui::Context,
        src: &ThumbSource,
        feature: u32,
        kind: ThumbKind,
    ) -> Option<egui::TextureHandle> {
        if let Some(t) = self.cache.get(&(feature, kind)) {
            return t.clone();
        }
        if self.budget == 0 {
            ctx.request_repaint();
            return None;
        }
        self.budget -= 1;
        let made = make(src, feature, kind);
        self.insert(ctx, feature, kind, made)
    }
}

impl Thumbs {
    /// The placeholder of a thumbnail whose image cannot be read (its reason is on hover, from
    /// [`Thumbs::problem`]).
    fn unreadable(&mut self, ctx: &egui::Context) -> egui::TextureHandle {
        self.unreadable
            .get_or_insert_with(|| unreadable_texture(ctx))
            .clone()
    }
}

/// A red-grey checker, so a slot whose image cannot be read is visibly not an image.
fn unreadable_texture(ctx: &egui::Context) -> egui::TextureHandle {
    let n = 8;
    let pixels: Vec<u8> = (0..n * n)
        .flat_map(|i| {
            if (i / n + i % n) % 2 == 0 {
                [200, 80, 80]
            } else {
                [120, 120, 120]
            }
        })
        .collect();
    ctx.load_texture(
        "thumb-unreadable",
        egui::ColorImage::from_rgb([n, n], &pixels),
        egui::TextureOptions::NEAREST,
    )
}

/// A thumbnail's image: None when there is no such entry; an error when its file cannot be read.
type Made = Result<Option<image::RgbImage>, String>;

fn make(src: &ThumbSource, feature: u32, kind: ThumbKind) -> Made {
    let Some(image) = entry(src, feature, kind) else {
        return Ok(None);
    };
    let img = src
        .ds
        .load(image as usize)
        .map_err(|e| format!("{}: {e}", src.ds.abs_path(image as usize).display()))?;
    Ok(draw(src, feature, kind, img))
}

/// The dataset image a thumbnail shows.
fn entry(src: &ThumbSource, feature: u32, kind: ThumbKind) -> Option<u32> {
    match kind {
        ThumbKind::Sample(i) => Some(
            src.index
                .samples
                .get(feature as usize)?
                .get(i as usize)?
                .image,
        ),
        ThumbKind::Overlay(r) | ThumbKind::Plain(r) => {
            Some(src.index.top.get(feature as usize)?.get(r as usize)?.image)
        }
        ThumbKind::Card => Some(src.index.top.get(feature as usize)?.first()?.image),
    }
}

fn draw(
    src: &ThumbSource,
    feature: u32,
    kind: ThumbKind,
    img: image::RgbImage,
) -> Option<image::RgbImage> {
    if let ThumbKind::Sample(i) = kind {
        let e = src.index.samples.get(feature as usize)?.get(i as usize)?;
        let g = src.geometry;
        let input = (g.grid_w * g.patch_size, g.grid_h * g.patch_size);
        let img = model_view(&img, src.preprocessor, input);
        let b = token_box(g, *src.token_indices.get(e.token as usize)?);
        return Some(outlined_patch(&img, input, b, 96));
    }
    let rank = match kind {
        ThumbKind::Overlay(r) | ThumbKind::Plain(r) => r as usize,
        _ => 0,
    };
    let e = src.index.top.get(feature as usize)?.get(rank)?;
    let heat = Heatmap::from_tokens(feature, src.geometry, src.token_indices, &e.tokens);
    let img = model_view(&img, src.preprocessor, heat.input_size);
    match kind {
        ThumbKind::Overlay(_) => Some(overlay_sized(
            &img,
            &heat,
            tile_size(heat.input_size),
            src.index.max_act[feature as usize],
            src.alpha,
        )),
        ThumbKind::Plain(_) => {
            let (w, h) = tile_size(heat.input_size);
            Some(image::imageops::resize(
                &img,
                w,
                h,
                image::imageops::FilterType::Triangle,
            ))
        }
        _ => {
            let b = token_box(src.geometry, *src.token_indices.get(e.token as usize)?);
            Some(outlined_patch(&img, heat.input_size, b, 64))
        }
    }
}

/// A top image's tile: about 128 px on its longer side (the page shows it at 88 points), a
/// whole multiple of a small input (CIFAR's 32 px: 128) and a scaled-down large one (DINOv2's
/// 224 px: 128, a third of the pixels to colour).
fn tile_size((w, h): (usize, usize)) -> (u32, u32) {
    let zoom = (128 / w.max(h).max(1)).max(1);
    let (w, h) = (w * zoom, h * zoom);
    let long = w.max(h).max(1);
    if long <= 128 {
        (w as u32, h as u32)
    } else {
        (
            (w * 128).div_ceil(long) as u32,
            (h * 128).div_ceil(long) as u32,
        )
    }
}
