//! Heatmaps: a feature's activation over an image's patch grid — computed on demand for any
//! image (dataset or not) by running the backbone to the tapped layer and encoding, or taken
//! from the index's stored per-token activations — and rendered as colour overlays and patch
//! crops for export and display.

use crate::backbone::{Backbone, TokenGeometry, TokenKind};
use crate::error::{Error, Result};
use crate::sae::Sae;
use image::{Rgb, RgbImage, imageops};
use serde::Serialize;
use std::path::Path;

/// A feature's activation per patch, row-major over the grid.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Heatmap {
    pub feature: u32,
    pub grid_h: usize,
    pub grid_w: usize,
    /// Model input size in pixels (the grid covers it).
    pub input_size: (usize, usize),
    pub values: Vec<f32>,
    /// Activation on the CLS token, when there is one.
    pub cls: Option<f32>,
}

impl Heatmap {
    /// The integer zoom that brings the model-input width to about `width` pixels (at least 1).
    pub fn zoom_for(&self, width: usize) -> u32 {
        (width / self.input_size.0.max(1)).max(1) as u32
    }

    pub fn max(&self) -> f32 {
        self.values.iter().fold(0f32, |a, &b| a.max(b))
    }

    /// From activations on the stored tokens (`token_indices` = which sequence positions).
    pub fn from_tokens(
        feature: u32,
        geometry: &TokenGeometry,
        token_indices: &[usize],
        acts: &[f32],
    ) -> Heatmap {
        let mut values = vec![0f32; geometry.grid_h * geometry.grid_w];
        let mut cls = None;
        for (&t, &v) in token_indices.iter().zip(acts) {
            match geometry.kind(t) {
                TokenKind::Patch { row, col } => values[row * geometry.grid_w + col] = v,
                TokenKind::Cls => cls = Some(v),
                TokenKind::Register(_) => {}
            }
        }
        Heatmap {
            feature,
            grid_h: geometry.grid_h,
            grid_w: geometry.grid_w,
            input_size: (
                geometry.grid_w * geometry.patch_size,
                geometry.grid_h * geometry.patch_size,
            ),
            values,
            cls,
        }
    }
}

/// The SAE codes of every token of one image (backbone run to the tapped layer).
pub fn encode_image(
    backbone: &dyn Backbone,
    sae: &Sae,
    layer: usize,
    img: &image::RgbImage,
) -> Result<crate::sae::SparseCodes> {
    let (pixels, _) = backbone
        .preprocessor()
        .batch(std::slice::from_ref(img), backbone.device())?;
    let hidden = backbone.forward_to(&pixels, layer)?;
    let h: Vec<f32> = hidden.flatten_all()?.to_vec1()?;
    Ok(sae.encode_sparse(&h))
}

/// Runs the backbone on one image file and returns the heatmaps of `features`.
pub fn heatmaps_for_image(
    backbone: &dyn Backbone,
    sae: &Sae,
    layer: usize,
    image: &Path,
    features: &[u32],
) -> Result<Vec<Heatmap>> {
    for &f in features {
        if f as usize >= sae.d_sae {
            return Err(Error::Invalid(format!(
                "feature {f} does not exist: the SAE has {} features (0..{})",
                sae.d_sae,
                sae.d_sae - 1
            )));
        }
    }
    let img = crate::store::dataset::load_rgb(image)
        .map_err(|e| Error::Invalid(format!("{}: {e}", image.display())))?;
    let codes = encode_image(backbone, sae, layer, &img)?;
    let geometry = backbone.info().geometry;
    let tokens: Vec<usize> = (0..codes.rows()).collect();
    Ok(features
        .iter()
        .map(|&f| Heatmap::from_tokens(f, &geometry, &tokens, &codes.feature_column(f)))
        .collect())
}

/// The image as the model saw it, at the model-input size: resized and cropped by the model's
/// preprocessing when known, so heatmap cells line up with the pixels each patch covered;
/// otherwise (older workspaces) stretched to the input size.
pub fn model_view(
    img: &RgbImage,
    preprocessor: Option<&crate::backbone::preprocess::Preprocessor>,
    input: (usize, usize),
) -> RgbImage {
    match preprocessor {
        Some(p) => p.view(img).0,
        None => imageops::resize(
            img,
            input.0 as u32,
            input.1 as u32,
            imageops::FilterType::Triangle,
        ),
    }
}

/// The model-input box a token covers: its patch, or the whole input for CLS/registers.
pub fn token_box(geometry: &TokenGeometry, token: usize) -> [f32; 4] {
    geometry.patch_box(token).unwrap_or([
        0.0,
        0.0,
        (geometry.grid_w * geometry.patch_size) as f32,
        (geometry.grid_h * geometry.patch_size) as f32,
    ])
}

/// A perceptual dark-purple → orange → yellow ramp (hand-picked stops, linear in between).
pub fn colormap(t: f32) -> [u8; 3] {
    const STOPS: [[f32; 3]; 5] = [
        [0.0, 0.0, 4.0],
        [87.0, 16.0, 110.0],
        [188.0, 55.0, 84.0],
        [249.0, 142.0, 9.0],
        [252.0, 255.0, 164.0],
    ];
    let t = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f32;
    let i = (t.floor() as usize).min(STOPS.len() - 2);
    let f = t - i as f32;
    let c = |k: usize| round_u8(STOPS[i][k] + f * (STOPS[i + 1][k] - STOPS[i][k]));
    [c(0), c(1), c(2)]
}

/// The model view of an image ([`model_view`]), scaled up by `zoom`, with the heatmap blended
/// over it (bilinear between patch centres). `vmax` sets full colour (≤ 0: the map's own maximum).
pub fn overlay(img: &RgbImage, heat: &Heatmap, zoom: u32, vmax: f32, alpha: f32) -> RgbImage {
    let size = (
        heat.input_size.0 as u32 * zoom,
        heat.input_size.1 as u32 * zoom,
    );
    overlay_sized(img, heat, size, vmax, alpha)
}

/// [`overlay`] at any `(width, height)`, also below the model's input size (a thumbnail drawn
/// at the size it is shown costs a fraction of one at the input size).
pub fn overlay_sized(
    img: &RgbImage,
    heat: &Heatmap,
    (w, h): (u32, u32),
    vmax: f32,
    alpha: f32,
) -> RgbImage {
    let mut out = imageops::resize(img, w, h, imageops::FilterType::Nearest);
    let vmax = if vmax > 0.0 {
        vmax
    } else {
        heat.max().max(1e-12)
    };
    // The bilinear weights depend on x through the column and on y through the row alone:
    // each is worked out once (positions in patch units, relative to patch centres).
    let axis = |n: u32, grid: usize| -> Vec<(usize, usize, f32)> {
        (0..n)
            .map(|i| {
                let g =
                    ((i as f32 + 0.5) / n as f32 * grid as f32 - 0.5).clamp(0.0, (grid - 1) as f32);
                let i0 = g.floor() as usize;
                (i0, (i0 + 1).min(grid - 1), g - i0 as f32)
            })
            .collect()
    };
    let (cols, rows) = (axis(w, heat.grid_w), axis(h, heat.grid_h));
    let gw = heat.grid_w;
    let at = |r: usize, c: usize| heat.values[r * gw + c];
    for (y, &(y0, y1, fy)) in rows.iter().enumerate() {
        for (x, &(x0, x1, fx)) in cols.iter().enumerate() {
            let v = ((1.0 - fy) * ((1.0 - fx) * at(y0, x0) + fx * at(y0, x1))
                + fy * ((1.0 - fx) * at(y1, x0) + fx * at(y1, x1)))
                / vmax;
            let c = colormap(v);
            let a = alpha * v.clamp(0.0, 1.0).sqrt();
            let p = out.get_pixel_mut(x as u32, y as u32);
            p.0 = [0, 1, 2].map(|k| round_u8((1.0 - a) * p.0[k] as f32 + a * c[k] as f32));
        }
    }
    out
}

/// `x.round() as u8` for 0 ≤ x (halves away from zero), without the libm call `round` is on a
/// baseline x86-64 target (a fifth of a feature page's opening time).
fn round_u8(x: f32) -> u8 {
    let t = x as u32;
    (t + u32::from(x - t as f32 >= 0.5)).min(255) as u8
}

/// The patch `[x0, y0, x1, y1]` (model-input pixels) of the model view of an image
/// ([`model_view`]), with a margin of half a patch, scaled to `size`×`size`.
pub fn patch_crop(
    model: &RgbImage,
    input: (usize, usize),
    patch_box: [f32; 4],
    size: u32,
) -> RgbImage {
    let m = (patch_box[2] - patch_box[0]) / 2.0;
    let x0 = (patch_box[0] - m).max(0.0) as u32;
    let y0 = (patch_box[1] - m).max(0.0) as u32;
    let x1 = ((patch_box[2] + m) as u32).min(input.0 as u32);
    let y1 = ((patch_box[3] + m) as u32).min(input.1 as u32);
    let crop = imageops::crop_imm(model, x0, y0, (x1 - x0).max(1), (y1 - y0).max(1)).to_image();
    imageops::resize(&crop, size, size, imageops::FilterType::Nearest)
}

/// The model view of an image ([`model_view`], `input` pixels) scaled to `size`×`size`, with
/// the patch `[x0, y0, x1, y1]` (model-input pixels) outlined: the whole image, and where in it.
pub fn outlined_patch(
    model: &RgbImage,
    input: (usize, usize),
    patch_box: [f32; 4],
    size: u32,
) -> RgbImage {
    let mut out = imageops::resize(model, size, size, imageops::FilterType::Triangle);
    let (sx, sy) = (
        size as f32 / input.0.max(1) as f32,
        size as f32 / input.1.max(1) as f32,
    );
    let last = size.saturating_sub(1);
    let x0 = ((patch_box[0] * sx) as u32).min(last);
    let y0 = ((patch_box[1] * sy) as u32).min(last);
    let x1 = ((patch_box[2] * sx).ceil() as u32).clamp(x0 + 1, size) - 1;
    let y1 = ((patch_box[3] * sy).ceil() as u32).clamp(y0 + 1, size) - 1;
    // Two pixels wide, inside the box: yellow on a dark line so it shows on any image.
    for (inset, colour) in [(0, Rgb([255, 220, 0])), (1, Rgb([20, 20, 20]))] {
        let (a0, b0) = (x0 + inset, y0 + inset);
        let (a1, b1) = (
            x1.saturating_sub(inset).max(a0),
            y1.saturating_sub(inset).max(b0),
        );
        for x in a0..=a1 {
            out.put_pixel(x, b0, colour);
            out.put_pixel(x, b1, colour);
        }
        for y in b0..=b1 {
            out.put_pixel(a0, y, colour);
            out.put_pixel(a1, y, colour);
        }
    }
    out
}

/// Tiles in a grid with `pad` pixels of dark background between them.
pub fn grid(tiles: &[RgbImage], cols: usize, pad: u32) -> RgbImage {
    let (tw, th) = tiles.first().map_or((1, 1), |t| t.dimensions());
    let cols = cols.max(1).min(tiles.len().max(1));
    let rows = tiles.len().div_ceil(cols).max(1);
    let mut out = RgbImage::from_pixel(
        cols as u32 * (tw + pad) + pad,
        rows as u32 * (th + pad) + pad,
        Rgb([24, 24, 28]),
    );
    for (i, t) in tiles.iter().enumerate() {
        let (c, r) = ((i % cols) as u32, (i / cols) as u32);
        imageops::overlay(
            &mut out,
            t,
            (pad + c * (tw + pad)) as i64,
            (pad + r * (th + pad)) as i64,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    /// The overlay as it was first written (bilinear per pixel, `f32::round`), to hold the
    /// faster one to, byte for byte.
    fn reference_overlay(
        img: &RgbImage,
        heat: &Heatmap,
        zoom: u32,
        vmax: f32,
        alpha: f32,
    ) -> RgbImage {
        let (w, h) = (
            heat.input_size.0 as u32 * zoom,
            heat.input_size.1 as u32 * zoom,
        );
        let base = imageops::resize(img, w, h, imageops::FilterType::Nearest);
        let vmax = if vmax > 0.0 {
            vmax
        } else {
            heat.max().max(1e-12)
        };
        let mut out = base.clone();
        for y in 0..h {
            for x in 0..w {
                let gx = (x as f32 + 0.5) / w as f32 * heat.grid_w as f32 - 0.5;
                let gy = (y as f32 + 0.5) / h as f32 * heat.grid_h as f32 - 0.5;
                let v = bilinear(&heat.values, heat.grid_w, heat.grid_h, gx, gy) / vmax;
                let t = v.clamp(0.0, 1.0) * 4.0;
                let i = (t.floor() as usize).min(3);
                let f = t - i as f32;
                const STOPS: [[f32; 3]; 5] = [
                    [0.0, 0.0, 4.0],
                    [87.0, 16.0, 110.0],
                    [188.0, 55.0, 84.0],
                    [249.0, 142.0, 9.0],
                    [252.0, 255.0, 164.0],
                ];
                let c = [0, 1, 2]
                    .map(|k| (STOPS[i][k] + f * (STOPS[i + 1][k] - STOPS[i][k])).round() as u8);
                let a = alpha * v.clamp(0.0, 1.0).sqrt();
                let p = base.get_pixel(x, y).0;
                out.put_pixel(
                    x,
                    y,
                    image::Rgb(
                        [0, 1, 2]
                            .map(|k| ((1.0 - a) * p[k] as f32 + a * c[k] as f32).round() as u8),
                    ),
                );
            }
        }
        out
    }

    fn bilinear(v: &[f32], gw: usize, gh: usize, x: f32, y: f32) -> f32 {
        let x = x.clamp(0.0, (gw - 1) as f32);
        let y = y.clamp(0.0, (gh - 1) as f32);
        let (x0, y0) = (x.floor() as usize, y.floor() as usize);
        let (x1, y1) = ((x0 + 1).min(gw - 1), (y0 + 1).min(gh - 1));
        let (fx, fy) = (x - x0 as f32, y - y0 as f32);
        let at = |r: usize, c: usize| v[r * gw + c];
        (1.0 - fy) * ((1.0 - fx) * at(y0, x0) + fx * at(y0, x1))
            + fy * ((1.0 - fx) * at(y1, x0) + fx * at(y1, x1))
    }

    #[test]
    fn the_overlay_equals_the_per_pixel_reference_byte_for_byte() {
        let mut rng = crate::rng::Rng::new(3);
        for (grid, patch, zoom, vmax, alpha) in [
            (16, 14, 1, 0.0, 0.75),
            (8, 4, 3, 2.5, 0.3),
            (5, 7, 2, 0.0, 1.0),
        ] {
            let size = (grid * patch) as u32;
            let img = RgbImage::from_fn(size + 7, size + 3, |_, _| {
                image::Rgb([0, 0, 0].map(|_: u8| (rng.next_u64() % 256) as u8))
            });
            let heat = Heatmap {
                feature: 0,
                grid_w: grid,
                grid_h: grid,
                input_size: (grid * patch, grid * patch),
                values: (0..grid * grid).map(|_| rng.uniform() * 3.0).collect(),
                cls: None,
            };
            assert_eq!(
                overlay(&img, &heat, zoom, vmax, alpha),
                reference_overlay(&img, &heat, zoom, vmax, alpha)
            );
        }
        for x in [0.0f32, 0.49999997, 0.5, 1.5, 2.4999998, 254.5, 254.9, 255.0] {
            assert_eq!(round_u8(x), x.round() as u8, "{x}");
        }
    }

    use super::*;

    fn geometry() -> TokenGeometry {
        TokenGeometry {
            has_cls: true,
            registers: 0,
            grid_h: 2,
            grid_w: 3,
            patch_size: 4,
        }
    }

    #[test]
    fn outlined_patch_frames_the_patch_and_keeps_the_rest() {
        // A 32×32 model view of grey, the patch [8, 4, 12, 8] (4-px patches), shown at 64 px.
        let model = RgbImage::from_pixel(32, 32, Rgb([128, 128, 128]));
        let out = outlined_patch(&model, (32, 32), [8.0, 4.0, 12.0, 8.0], 64);
        assert_eq!(out.dimensions(), (64, 64));
        let yellow = Rgb([255, 220, 0]);
        // The box is 16..24 × 8..16 at 2× scale: its corners and edges are yellow.
        for (x, y) in [(16, 8), (23, 8), (16, 15), (23, 15), (20, 8), (16, 12)] {
            assert_eq!(*out.get_pixel(x, y), yellow, "({x}, {y})");
        }
        // Inside the frame and away from it, the image is untouched.
        assert_eq!(*out.get_pixel(20, 12), Rgb([128, 128, 128]));
        assert_eq!(*out.get_pixel(40, 40), Rgb([128, 128, 128]));
        // A box at the image's edge stays inside the image.
        let edge = outlined_patch(&model, (32, 32), [28.0, 28.0, 32.0, 32.0], 64);
        assert_eq!(*edge.get_pixel(63, 63), yellow);
    }

    #[test]
    fn tokens_map_onto_the_patch_grid() {
        let g = geometry();
        let h = Heatmap::from_tokens(
            5,
            &g,
            &[0, 1, 2, 3, 4, 5, 6],
            &[9.0, 1.0, 0.0, 0.0, 0.0, 2.0, 0.0],
        );
        assert_eq!(h.cls, Some(9.0));
        assert_eq!(h.values, [1.0, 0.0, 0.0, 0.0, 2.0, 0.0]);
        assert_eq!(h.input_size, (12, 8));
        // Patch-only stores skip the CLS position.
        let p = Heatmap::from_tokens(5, &g, &[1, 2, 3, 4, 5, 6], &[0.0, 0.0, 0.0, 0.0, 0.0, 3.0]);
        assert_eq!(p.values[5], 3.0);
        assert_eq!(p.cls, None);
    }

    #[test]
    fn overlay_is_hot_where_the_feature_fires() {
        let g = geometry();
        let h = Heatmap::from_tokens(0, &g, &[1, 2, 3, 4, 5, 6], &[0.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
        let img = RgbImage::from_pixel(12, 8, Rgb([0, 0, 0]));
        let o = overlay(&img, &h, 2, 0.0, 0.8);
        assert_eq!(o.dimensions(), (24, 16));
        let hot = o.get_pixel(22, 14).0; // bottom-right patch
        let cold = o.get_pixel(1, 1).0;
        assert!(hot[0] as u32 + hot[1] as u32 > 200, "{hot:?}");
        assert_eq!(cold, [0, 0, 0]);
        assert_eq!(colormap(0.0), [0, 0, 4]);
        assert_eq!(colormap(1.0), [252, 255, 164]);
    }
}
